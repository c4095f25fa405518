// Starts Swagger UI over the system's OpenAPI document. It is a file of its own, not an inline
// script, so the page's Content-Security-Policy allows scripts from this origin only.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // Operation ids show: scripts and clients name operations by them.
  displayOperationId: true,
  // The base layout: no top bar with a field that loads any other document.
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // Swagger UI would otherwise show a badge from an online validator, fetched from its host.
  validatorUrl: null,
  // A `?url=` or `?configUrl=` in the page's address is ignored: the page shows this document.
  queryConfigEnabled: false,
  // A token given to Authorize lives in this tab only, never in the browser's storage.
  persistAuthorization: false,
});
