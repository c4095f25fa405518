//! `GET /api/payments`: every payment, oldest first, a page at a time (`platform::pagination`;
//! the cursor is the last payment's `(created_at, payment_id)`, the key of `payments_by_time`).

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use platform::http::{Problem, Query};
use platform::pagination::PageQuery;
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
    description = "Paginated: follow `Link: rel=\"next\"` until it is absent.",
    params(PageQuery),
    responses(
        (status = 200, description = "The payments, at most `limit`", body = Vec<PaymentView>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of 1..=1000", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The payment store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(pool): State<PgPool>,
    Query(query): Query<PageQuery>,
    uri: Uri,
) -> Result<Response, Problem> {
    let page = query.page()?;
    // Before every payment: every `created_at` is later than 1970.
    let (after_time, after_id) = page
        .cursor(parse_cursor)?
        .unwrap_or((DateTime::UNIX_EPOCH, Uuid::nil()));
    let payments: Vec<PaymentView> = sqlx::query_as(
        "SELECT payment_id, order_id, customer_id, amount, status, created_at
         FROM payments
         WHERE (created_at, payment_id) > ($1, $2)
         ORDER BY created_at, payment_id
         LIMIT $3",
    )
    .bind(after_time)
    .bind(after_id)
    .bind(page.fetch())
    .fetch_all(&pool)
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "listing payments failed");
        Problem::unavailable("the payment store is unavailable")
    })?;
    Ok(page.respond(&uri, payments, |p| cursor(p.created_at, p.payment_id)))
}

/// `created_at` in microseconds (PostgreSQL's precision, so the key round-trips exactly), a
/// dot and the payment id: `1733533200123456.0191…`.
fn cursor(created_at: DateTime<Utc>, payment_id: Uuid) -> String {
    format!("{}.{}", created_at.timestamp_micros(), payment_id.simple())
}

fn parse_cursor(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = raw.split_once('.')?;
    let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((created_at, Uuid::try_parse(id).ok()?))
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
