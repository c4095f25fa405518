//! `GET /api/ops/audit` (viewer): the stock service's audit trail (`messaging::audit`), newest
//! first, a page at a time (the cursor is the last entry's id), optionally for one actor or one
//! action.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use messaging::audit::{self, Entry, Filter};
use platform::auth::{Identity, Role};
use platform::http::Query;
use platform::pagination::IdPageQuery;

use super::{AppState, Refusal, unavailable};

#[utoipa::path(
    get,
    path = "/api/ops/audit",
    operation_id = "listAudit",
    tag = "ops",
    summary = "The audit trail of operator actions on the catalog and stock",
    description = "Viewers and operators. Newest first, paginated: follow `Link: rel=\"next\"` until it is absent. The filters carry over to every page.",
    params(IdPageQuery, Filter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entries, at most `limit`", body = Vec<Entry>,
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
    Query(filter): Query<Filter>,
    uri: Uri,
) -> Result<Response, Refusal> {
    identity.require(Role::Viewer)?;
    let page = query.page()?;
    let before = page.cursor(|raw| raw.parse::<i64>().ok())?;
    let entries = async {
        let mut conn = state.pool.acquire().await?;
        audit::list(&mut conn, &filter, before, page.fetch()).await
    };
    let entries = (entries.await).map_err(|e| unavailable("listing the audit trail", &e))?;
    Ok(page.respond(&uri, entries, |e| e.id.to_string()))
}
