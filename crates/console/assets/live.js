// Live sections of the console's pages. The server renders every section; this script only
// swaps in the new HTML that each server-sent event carries ({id, html}), so the pages read
// the same without JavaScript, just not live.
(function () {
  "use strict";
  var live = document.querySelectorAll("[data-live]");
  if (!live.length || !window.EventSource) {
    return;
  }
  var body = document.body;
  var url = "/console/events?view=" + encodeURIComponent(body.getAttribute("data-view") || "");
  var subject = body.getAttribute("data-subject");
  if (subject) {
    url += "&subject=" + encodeURIComponent(subject);
  }
  var source = new EventSource(url);
  source.addEventListener("open", function () {
    body.setAttribute("data-live", "on");
  });
  source.addEventListener("error", function () {
    body.setAttribute("data-live", "off");
  });
  source.addEventListener("section", function (event) {
    var section;
    try {
      section = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    var element = document.getElementById(section.id);
    if (element && element.hasAttribute("data-live")) {
      element.innerHTML = section.html;
    }
  });
})();
