//! `GET /api/stock` (viewer): every product with what is free and what is held for pending
//! orders, a page at a time (`platform::pagination`; the cursor is the last product id).

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use platform::auth::{Identity, Role};
use platform::http::Query;
use platform::pagination::IdPageQuery;
use serde::Serialize;

use super::{AppState, Refusal, unavailable};

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Stock, example = json!({"productId": 1, "name": "Keyboard", "available": 98, "reserved": 2}))]
pub struct StockView {
    pub product_id: i64,
    pub name: String,
    pub available: i32,
    pub reserved: i32,
}

#[utoipa::path(
    get,
    path = "/api/stock",
    operation_id = "listStock",
    tag = "stock",
    summary = "Every product: units free and units held for pending orders",
    description = "Viewers and operators. By product id, paginated: follow `Link: rel=\"next\"` until it is absent.",
    params(IdPageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The products, at most `limit`", body = Vec<StockView>,
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
    uri: Uri,
) -> Result<Response, Refusal> {
    identity.require(Role::Viewer)?;
    let page = query.page()?;
    let after = page
        .cursor(|raw| raw.parse::<i64>().ok())?
        .unwrap_or(i64::MIN);
    let products: Vec<StockView> = sqlx::query_as(
        "SELECT product_id, name, available, reserved FROM products
         WHERE product_id > $1 ORDER BY product_id LIMIT $2",
    )
    .bind(after)
    .bind(page.fetch())
    .fetch_all(&state.pool)
    .await
    .map_err(|e| unavailable("listing stock", &e))?;
    Ok(page.respond(&uri, products, |p| p.product_id.to_string()))
}
