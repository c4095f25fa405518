//! `GET /api/payments`: every payment, oldest first.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use platform::http::Problem;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Payment)]
pub struct PaymentView {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// A decimal string with two places.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "25.00")]
    pub amount: Decimal,
    /// `captured`, `declined` or `refunded`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Only reads: nothing here writes the outbox, so the doorbell goes unused.
pub fn routes(pool: PgPool, _doorbell: messaging::Doorbell) -> Router {
    Router::new()
        .route("/api/payments", get(list))
        .with_state(pool)
}

#[utoipa::path(
    get,
    path = "/api/payments",
    operation_id = "listPayments",
    tag = "payments",
    summary = "Every payment, oldest first",
    responses(
        (status = 200, description = "The payments", body = Vec<PaymentView>),
        (status = 503, description = "The payment store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list(State(pool): State<PgPool>) -> Result<axum::Json<Vec<PaymentView>>, Problem> {
    sqlx::query_as(
        "SELECT payment_id, order_id, customer_id, amount, status, created_at
         FROM payments ORDER BY created_at, payment_id",
    )
    .fetch_all(&pool)
    .await
    .map(axum::Json)
    .map_err(|e| {
        tracing::warn!(error = %e, "listing payments failed");
        Problem::unavailable("the payment store is unavailable")
    })
}

/// The OpenAPI document of `/api/payments`, merged into the system's by the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list),
    components(schemas(PaymentView)),
    tags((name = "payments", description = "Customer payments"))
)]
struct ApiDoc;
