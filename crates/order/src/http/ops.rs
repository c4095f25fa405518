//! `/api/ops/orders/...`: what operators read about the order service's sagas (viewer).

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use platform::auth::{Identity, Role};
use platform::http::{FieldError, Problem, Query};
use platform::pagination::TimeIdPageQuery;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::stuck;

/// How long an order may stay pending before it is listed when the caller does not say: a
/// saga settles in milliseconds, so five seconds is well past normal (docs/operations.md).
pub const DEFAULT_OLDER_THAN: u32 = 5;
/// The longest wait a caller may ask about: thirty days.
pub const MAX_OLDER_THAN: u32 = 2_592_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct StuckQuery {
    /// Only orders pending for at least this many seconds; 5 when absent.
    #[param(minimum = 0, maximum = 2_592_000, default = 5)]
    pub older_than: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/ops/orders/stuck",
    operation_id = "listStuckOrders",
    tag = "operations",
    summary = "List stuck sagas, pending longest first",
    description = "Orders whose saga has not settled and that were placed at least `olderThan` seconds ago, oldest first. Paginated: follow `Link: rel=\"next\"`. A viewer or operator.",
    security(("bearer" = [])),
    params(StuckQuery, TimeIdPageQuery),
    responses(
        (status = 200, description = "At most `limit` pending orders, oldest first", body = Vec<stuck::StuckOrder>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page; absent on the last page"))),
        (status = 400, description = "Malformed `olderThan`, `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of 1..=1000 or `olderThan` over 2592000", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_stuck(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<StuckQuery>,
    Query(query): Query<TimeIdPageQuery>,
    uri: Uri,
) -> Result<Response, ApiError> {
    identity.require(Role::Viewer)?;
    let older_than = filter.older_than.unwrap_or(DEFAULT_OLDER_THAN);
    if older_than > MAX_OLDER_THAN {
        return Err(too_long_ago().into());
    }
    let page = query.page()?;
    let after = page.cursor(stuck::parse_cursor)?;
    let placed_before = chrono::Utc::now()
        .checked_sub_signed(chrono::TimeDelta::seconds(i64::from(older_than)))
        .ok_or_else(too_long_ago)?;
    let filter = stuck::Filter {
        placed_before,
        after,
    };
    let orders = stuck::page(&state.pool, &filter, page.fetch())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "listing stuck orders failed");
            Problem::unavailable("the order store is unavailable")
        })?;
    Ok(page.respond(&uri, orders, stuck::cursor))
}

fn too_long_ago() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-query",
        "The query breaks a rule of the list",
    )
    .errors(vec![FieldError {
        field: "olderThan".to_owned(),
        message: format!("olderThan must be at most {MAX_OLDER_THAN} (thirty days)"),
    }])
}
