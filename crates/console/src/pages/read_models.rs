//! Read models (`/console/read-models`): their generations and lag, live, and a rebuild with
//! its progress.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{NoticeQuery, age, layout, number, page, text, urlencode};
use crate::Console;
use crate::session::Session;

pub(crate) async fn read_models(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let section = read_models_section(&console, &session).await;
    let body = html! {
        h1 { "Read models" }
        @if !query.notice.is_empty() { p.notice role="status" { (query.notice) } }
        div #read-models data-live { (section) }
        @if session.ops {
            h2 { "Rebuild" }
            p.muted { "A rebuild reads the order event store from the start into a new generation while the live projection goes on, then switches the reports to it at once." }
            form.filters method="post" action="/console/read-models/rebuild" {
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Read model" select name="store" {
                    option value="all" { "both" }
                    option value="redis" { "redis (products report)" }
                    option value="mongodb" { "mongodb (orders report)" }
                } }
                button.primary type="submit" { "Rebuild" }
            }
        }
    };
    page(layout(
        Some(&session),
        "read-models",
        "Read models",
        Some(("read-models", None)),
        body,
    ))
}

/// Generations, the latest rebuild and each store's lag: the live part of the page.
pub(crate) async fn read_models_section(console: &Console, session: &Session) -> Markup {
    let auth = session.authorization();
    let (state, metrics) = tokio::join!(
        crate::upstream::get(console, &auth, "projections", "/api/ops/read-models"),
        crate::scrape::read_component(console, "projections"),
    );
    html! {
        @match &state {
            Err(e) => { p.error { "Could not read the projections: " (e) } }
            Ok(state) => {
                div.table-wrap { table {
                    thead { tr { th { "store" } th { "current generation" } th { "being built" } th.num { "events behind (per partition)" } } }
                    tbody { @for m in state.get("models").and_then(Value::as_array).into_iter().flatten() {
                        @let store = text(m, "store");
                        tr {
                            td { (store) }
                            td { code { (m.pointer("/generations/current").and_then(Value::as_str).unwrap_or("–")) } }
                            td { code { (m.pointer("/generations/building").and_then(Value::as_str).unwrap_or("–")) } }
                            td.num {
                                @if let Some(metrics) = &metrics {
                                    @for s in metrics.matching("projection_lag", &[("store", store)]) {
                                        (s.label("partition").unwrap_or_default()) ": " (number(Some(s.value))) " "
                                    }
                                } @else { "–" }
                            }
                        }
                        @if let Some(error) = m.get("error").and_then(Value::as_str) { tr { td colspan="4" { p.error { (error) } } } }
                    } }
                } }
                @if let Some(r) = state.get("rebuild").filter(|r| !r.is_null()) {
                    h2 { "Latest rebuild" }
                    p {
                        (text(r, "store")) ", started by " (text(r, "by")) " " (age(text(r, "startedAt"))) ": "
                        (r.pointer("/progress/eventsRead").and_then(Value::as_u64).unwrap_or_default()) " events read, "
                        (r.pointer("/progress/completed").and_then(Value::as_u64).unwrap_or_default()) " completed and "
                        (r.pointer("/progress/failed").and_then(Value::as_u64).unwrap_or_default()) " failed orders counted; "
                        @if let Some(error) = r.get("error").and_then(Value::as_str) {
                            span.bad { "failed: " (error) }
                        } @else if r.get("finishedAt").is_some_and(|f| !f.is_null()) {
                            span.ok { "finished " (age(text(r, "finishedAt"))) }
                        } @else {
                            span.warn { "running" }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RebuildForm {
    csrf: String,
    store: String,
}

/// Starts a rebuild in the projections (which check the role again) and audits it here.
pub(crate) async fn rebuild(
    State(console): State<Console>,
    session: Session,
    Form(form): Form<RebuildForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf).and(session.require_ops()) {
        return refused.into_response();
    }
    let body = serde_json::json!({ "store": form.store });
    let answer = crate::upstream::send(
        &console,
        &session.authorization(),
        reqwest::Method::POST,
        "projections",
        "/api/ops/read-models/rebuild",
        &body,
    )
    .await;
    let notice = match answer {
        Ok(started) => {
            let audited = async {
                let mut conn = console.pool().acquire().await?;
                messaging::audit::record(
                    &mut conn,
                    &session.actor,
                    "read-model.rebuild",
                    &format!("read-model:{}", form.store),
                    None,
                    Some(&started),
                )
                .await
            };
            match audited.await {
                Ok(()) => format!("Rebuild of {} started.", form.store),
                Err(e) => {
                    tracing::warn!(error = %e, "auditing a rebuild failed");
                    format!(
                        "Rebuild of {} started; recording it in the audit trail failed.",
                        form.store
                    )
                }
            }
        }
        Err(e) => format!("Refused: {e}"),
    };
    Redirect::to(&format!(
        "/console/read-models?notice={}",
        urlencode(&notice)
    ))
    .into_response()
}
