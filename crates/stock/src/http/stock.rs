//! `GET /api/stock`: every product with what is free and what is held for pending orders, a
//! page at a time (`platform::pagination`; the cursor is the last product id).

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use platform::http::{Problem, Query};
use platform::pagination::PageQuery;
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Stock, example = json!({"productId": 1, "name": "Keyboard", "available": 98, "reserved": 2}))]
pub struct StockView {
    pub product_id: i64,
    pub name: String,
    pub available: i32,
    pub reserved: i32,
}

/// Only reads: nothing here writes the outbox, so the doorbell goes unused.
pub fn routes(pool: PgPool, _doorbell: messaging::Doorbell) -> Router {
    Router::new()
        .route("/api/stock", get(list))
        .with_state(pool)
}

#[utoipa::path(
    get,
    path = "/api/stock",
    operation_id = "listStock",
    tag = "stock",
    summary = "Every product: units free and units held for pending orders",
    description = "By product id, paginated: follow `Link: rel=\"next\"` until it is absent.",
    params(PageQuery),
    responses(
        (status = 200, description = "The products, at most `limit`", body = Vec<StockView>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of 1..=1000", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The stock store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(pool): State<PgPool>,
    Query(query): Query<PageQuery>,
    uri: Uri,
) -> Result<Response, Problem> {
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
    .fetch_all(&pool)
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "listing stock failed");
        Problem::unavailable("the stock store is unavailable")
    })?;
    Ok(page.respond(&uri, products, |p| p.product_id.to_string()))
}

/// The OpenAPI document of `/api/stock`, merged into the system's by the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list),
    components(schemas(StockView)),
    tags((name = "stock", description = "Product quantities"))
)]
struct ApiDoc;
