//! One dead letter (`/console/dead-letters/{letterId}`): its reason, origin, headers and
//! payload, and, for an operator, redrive and discard.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::state_of;
use crate::Console;
use crate::dead_letters::{LetterId, Payload};
use crate::pages::layout::{error_page, layout, page};
use crate::session::Session;

pub(crate) async fn dead_letter(
    State(console): State<Console>,
    session: Session,
    Path(letter_id): Path<String>,
) -> Response {
    let Ok(id) = letter_id.parse::<LetterId>() else {
        return error_page(
            Some(&session),
            StatusCode::NOT_FOUND,
            "No such dead letter.",
        );
    };
    let letter = match console.dead_letters().get(id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => {
            return error_page(
                Some(&session),
                StatusCode::NOT_FOUND,
                "No such dead letter.",
            );
        }
        Err(e) => {
            return error_page(
                Some(&session),
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            );
        }
    };
    let body = html! {
        h1 { "Dead letter " code { (letter.id) } }
        div.cards {
            div.card { div.label { "consumer" } div { (letter.consumer) } }
            div.card { div.label { "type" } div { (letter.message_type.as_deref().unwrap_or("–")) } }
            div.card { div.label { "parked" } div { (letter.parked_at.format("%Y-%m-%d %H:%M:%S UTC")) } }
            div.card { div.label { "state" } div { (state_of(&letter)) } }
        }
        h2 { "Reason" }
        pre { (letter.reason) }
        p { "From " code { (letter.origin) } ", key " code { (letter.key.as_deref().unwrap_or("–")) } ", message id " code { (letter.message_id.as_deref().unwrap_or("–")) } }
        @if session.ops && letter.resolution.is_none() {
            div.actions {
                form method="post" action="/console/dead-letters/redrive" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="letterId" value=(letter.id);
                    input type="hidden" name="dryRun" value="false";
                    button.primary type="submit" { "Redrive" }
                }
                // A discard cannot be undone, so it asks first (the dry run's confirmation page);
                // a redrive is safe to repeat (§6) and acts at once.
                form method="post" action="/console/dead-letters/discard" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="letterId" value=(letter.id);
                    input type="hidden" name="dryRun" value="true";
                    button.danger type="submit" { "Discard…" }
                }
            }
        }
        h2 { "Headers" }
        div.table-wrap { table {
            tbody { @for (name, value) in &letter.headers { tr { th { (name) } td { code { (value.as_deref().unwrap_or("(null)")) } } } } }
        } }
        h2 { "Payload" }
        @match &letter.payload {
            Payload::Text(text) => { pre { (pretty(text)) } }
            Payload::Base64(b64) => { p.muted { "Not UTF-8; base64:" } pre { (b64) } }
            Payload::Absent => { p.muted { "The record has no payload." } }
        }
        p { a href="/console/dead-letters" { "← All dead letters" } }
    };
    page(layout(
        Some(&session),
        "dead-letters",
        "Dead letter",
        None,
        body,
    ))
}

/// JSON indented when it is JSON, else as it is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}
