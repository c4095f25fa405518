//! `GET /api/payments`: every payment, oldest first.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use platform::http::Problem;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/api/payments", get(list))
        .route("/health/ready", get(ready))
        .with_state(pool)
}

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

async fn ready(State(pool): State<PgPool>) -> Response {
    platform::health::readiness(&[platform::health::postgres(&pool).await])
}
