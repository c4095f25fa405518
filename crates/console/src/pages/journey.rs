//! An order's journey (`/console/orders/{orderId}`): its timeline across the services, live
//! while the order is pending.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{error_page, layout, page, text};
use crate::Console;
use crate::session::Session;

pub(crate) async fn journey(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
) -> Response {
    let Ok(order_id) = uuid::Uuid::try_parse(&order_id) else {
        return error_page(Some(&session), StatusCode::NOT_FOUND, "No such order.");
    };
    let journey = crate::journey::journey(&console, &session.authorization(), order_id).await;
    let subject = order_id.to_string();
    let body = html! {
        h1 { "Journey of order " code { (subject) } }
        div #journey data-live { (journey_section(&journey)) }
    };
    page(layout(
        Some(&session),
        "orders",
        "Journey",
        Some(("journey", Some(&subject))),
        body,
    ))
}

/// The journey's timeline: the part of the page that updates live while the order is pending.
pub(crate) fn journey_section(j: &crate::journey::Journey) -> Markup {
    use crate::journey::StepKind;
    let status = j
        .order
        .as_ref()
        .and_then(|o| o.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    html! {
        div.cards {
            div.card { div.label { "status" } div.value { (status) } div.muted {
                (j.order.as_ref().map(|o| text(o, "failureReason")).unwrap_or_default())
            } }
            div.card { div.label { "total" } div.value { (j.order.as_ref().map(|o| text(o, "total")).unwrap_or("–")) } }
            div.card { div.label { "placed" } div { (j.placed_at.map_or_else(|| "–".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())) } }
            div.card { div.label { "trace id" } div { code { (j.trace_id.as_deref().unwrap_or("–")) } } }
        }
        @if let Some(waiting) = &j.waiting_on { p.banner role="status" { "Waiting: " (waiting) } }
        @for problem in &j.problems { p.error { "Could not read " (problem) } }
        @if j.truncated { p.error { "The read of the topics stopped at its budget: later messages may be missing." } }
        p {
            @for r in &j.read_models {
                span.ok[r.projected].warn[!r.projected] {
                    (r.group) (if r.projected { ": projected" } else { ": not projected yet" })
                } " "
            }
        }
        div.table-wrap { table {
            thead { tr { th { "time" } th { "what" } th { "by" } th { "where" } th { "ids" } } }
            tbody { @for step in &j.steps { tr {
                td { (step.at.format("%H:%M:%S%.3f")) }
                td {
                    @match step.kind {
                        StepKind::Event => { "event " strong { (step.what) } }
                        StepKind::Message => { "message " strong { (step.what) } }
                        StepKind::Applied => { "applied " (step.what) }
                    }
                    @if let Some(detail) = &step.detail { details { summary { "details" } pre { (detail) } } }
                }
                td { (step.by) }
                td { @if let (Some(t), Some(p), Some(o)) = (&step.topic, step.partition, step.offset) { code { (t) "/" (p) "/" (o) } } }
                td.muted {
                    @if let Some(id) = &step.message_id { "message " code { (id) } br; }
                    @if let Some(id) = &step.causation_id { "caused by " code { (id) } }
                }
            } } }
        } }
        p.muted { "As of " (Utc::now().format("%H:%M:%S UTC")) }
    }
}
