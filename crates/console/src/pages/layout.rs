//! What every page shares: the page around a body (header, navigation, the viewer's banner),
//! the error page, and how figures, times and texts are written.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::session::Session;

/// The page around `body`. `view` names the live view the page follows (`live.js`), if any.
pub(super) fn layout(
    session: Option<&Session>,
    active: &str,
    title: &str,
    view: Option<(&str, Option<&str>)>,
    body: Markup,
) -> Markup {
    let nav = [
        ("overview", "/console", "Overview"),
        ("orders", "/console/orders", "Orders"),
        ("catalog", "/console/catalog", "Catalog"),
        ("read-models", "/console/read-models", "Read models"),
        ("dead-letters", "/console/dead-letters", "Dead letters"),
        ("audit", "/console/audit", "Audit"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · shop console" }
                link rel="stylesheet" href="/console/assets/console.css";
                @if view.is_some() {
                    script src="/console/assets/live.js" defer {}
                }
            }
            body data-view=[view.map(|v| v.0)] data-subject=[view.and_then(|v| v.1)] {
                header {
                    strong { "shop console" }
                    @if let Some(session) = session {
                        nav {
                            @for (key, href, label) in nav {
                                a href=(href) aria-current=[(key == active).then_some("page")] { (label) } " "
                            }
                        }
                        @if view.is_some() { span.live-state {} }
                        span.who {
                            (session.actor) " · " (if session.ops { "ops" } else { "viewer" }) " "
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    @if session.is_some_and(|s| !s.ops) {
                        p.banner role="status" { "Read-only: you are signed in as a viewer. Operator actions need the ops role." }
                    }
                    (body)
                }
            }
        }
    }
}

pub(super) fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

pub(super) fn error_page(session: Option<&Session>, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { "Something went wrong" }
        p.error { (message) }
        p { a href="/console" { "Back to the overview" } }
    };
    (status, page(layout(session, "", "Error", None, body))).into_response()
}

pub(super) fn seconds(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.1} s"),
    }
}

pub(super) fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

pub(super) fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}/s"))
}

pub(super) fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// "12 s ago" for an RFC 3339 time.
pub(super) fn age(at: &str) -> String {
    match DateTime::parse_from_rfc3339(at) {
        Ok(at) => {
            let seconds = (Utc::now() - at.with_timezone(&Utc)).num_seconds().max(0);
            if seconds < 120 {
                format!("{seconds} s ago")
            } else if seconds < 7200 {
                format!("{} min ago", seconds / 60)
            } else {
                format!("{} h ago", seconds / 3600)
            }
        }
        Err(_) => at.to_owned(),
    }
}

pub(super) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The notice a page shows after an action redirected to it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    #[serde(default)]
    pub(super) notice: String,
}
