//! `GET /api/stock`: every product with what is free and what is held for pending orders.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use platform::http::Problem;
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
    responses(
        (status = 200, description = "The products", body = Vec<StockView>),
        (status = 503, description = "The stock store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list(State(pool): State<PgPool>) -> Result<axum::Json<Vec<StockView>>, Problem> {
    sqlx::query_as("SELECT product_id, name, available, reserved FROM products ORDER BY product_id")
        .fetch_all(&pool)
        .await
        .map(axum::Json)
        .map_err(|e| {
            tracing::warn!(error = %e, "listing stock failed");
            Problem::unavailable("the stock store is unavailable")
        })
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
