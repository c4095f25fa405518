//! Audit (`/console/audit`): every operator action, the console's and the stock service's,
//! newest first.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::layout::{layout, page, text};
use crate::Console;
use crate::session::Session;

pub(crate) async fn audit(State(console): State<Console>, session: Session) -> Response {
    let own = async {
        let mut conn = console.pool().acquire().await?;
        messaging::audit::list(&mut conn, &messaging::audit::Filter::default(), None, 100).await
    };
    let auth = session.authorization();
    let (own, stock) = tokio::join!(
        own,
        crate::upstream::get(&console, &auth, "stock", "/api/ops/audit?limit=100")
    );
    let mut rows: Vec<(String, String, String, String, String)> = Vec::new();
    let mut problems = Vec::new();
    match own {
        Ok(entries) => rows.extend(entries.into_iter().map(|e| {
            (
                e.at.to_rfc3339(),
                e.actor,
                e.action,
                e.subject,
                "console".to_owned(),
            )
        })),
        Err(e) => problems.push(format!("the console's trail: {e}")),
    }
    match stock {
        Ok(Value::Array(entries)) => rows.extend(entries.iter().map(|e| {
            (
                text(e, "at").to_owned(),
                text(e, "actor").to_owned(),
                text(e, "action").to_owned(),
                text(e, "subject").to_owned(),
                "stock".to_owned(),
            )
        })),
        Ok(_) => {}
        Err(e) => problems.push(format!("the stock service's trail: {e}")),
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    let body = html! {
        h1 { "Audit" }
        p.muted { "Every operator action: catalog changes and restocks (stock service), dead letters redriven or discarded and read-model rebuilds (console). Newest first, the latest hundred of each." }
        @for p in &problems { p.error { "Could not read " (p) } }
        div.table-wrap { table {
            thead { tr { th { "when" } th { "who" } th { "what" } th { "subject" } th { "where" } } }
            tbody { @for (at, actor, action, subject, source) in &rows { tr {
                td { (at) } td { (actor) } td { (action) } td { code { (subject) } } td { (source) }
            } } }
        } }
    };
    page(layout(Some(&session), "audit", "Audit", None, body))
}
