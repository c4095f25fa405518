//! `GET /api/ops/audit` (viewer): the stock service's audit trail (`messaging::audit`), newest
//! first, a page at a time (the cursor is the last entry's id), optionally for one actor or one
//! action.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use chrono::{DateTime, Utc};
use messaging::audit::{self, Entry, Filter};
use platform::auth::{Identity, Role};
use platform::http::Query;
use platform::pagination::IdPageQuery;
use serde::{Deserialize, Serialize};

use super::{AppState, Refusal, unavailable};

/// The filters of the audit trail.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the actions of this actor (a token's `sub`, exactly).
    pub actor: Option<String>,
    /// Only this action: `product.add`, `product.change` or `product.restock`.
    pub action: Option<String>,
}

/// One operator action.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": 7, "at": "2026-12-07T03:30:00Z", "actor": "0b9a3c2e-5f0e-4c55-9a43-1c2d3e4f5a6b",
    "action": "product.restock", "subject": "product:1",
    "before": {"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "available": 3, "version": 1},
    "after": {"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "available": 13, "version": 1}
}))]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who: the token's `sub`.
    pub actor: String,
    /// What: `product.add`, `product.change` or `product.restock`.
    pub action: String,
    /// To what, e.g. `product:1`.
    pub subject: String,
    /// The subject before; `null` when it did not exist.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The subject after.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<Entry> for AuditEntry {
    fn from(e: Entry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            before: e.before,
            after: e.after,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/ops/audit",
    operation_id = "listAudit",
    tag = "ops",
    summary = "The audit trail of operator actions on the catalog and stock",
    description = "Viewers and operators. Newest first, paginated: follow `Link: rel=\"next\"` until it is absent. The filters carry over to every page.",
    params(IdPageQuery, AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entries, at most `limit`", body = Vec<AuditEntry>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "The token has neither the viewer nor the ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::InvalidLimit,
        (status = 503, description = "The stock store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<IdPageQuery>,
    Query(filter): Query<AuditQuery>,
    uri: Uri,
) -> Result<Response, Refusal> {
    identity.require(Role::Viewer)?;
    let page = query.page()?;
    let before = page.cursor(|raw| raw.parse::<i64>().ok())?;
    let filter = Filter {
        actor: filter.actor,
        action: filter.action,
    };
    let entries = async {
        let mut conn = state.pool.acquire().await?;
        audit::list(&mut conn, &filter, before, page.fetch()).await
    };
    let entries: Vec<AuditEntry> = (entries.await)
        .map_err(|e| unavailable("listing the audit trail", &e))?
        .into_iter()
        .map(AuditEntry::from)
        .collect();
    Ok(page.respond(&uri, entries, |e| e.id.to_string()))
}
