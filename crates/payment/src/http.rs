//! `GET /api/payments`: payments, oldest first, a page at a time (`platform::pagination`; the
//! cursor is the last payment's `(created_at, payment_id)`, the key of `payments_by_time`, and
//! of `payments_by_customer` after the customer).
//!
//! Who sees what (SYSTEM.md I8): a customer sees only their own payments (the customer id is the
//! token's subject); a viewer (or operator) sees every payment, or one customer's with
//! `?customerId=`. A customer who names another customer gets 403 rather than an empty list,
//! so a client's mistake is not mistaken for "no payments".

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use platform::auth::{Identity, Role};
use platform::http::{Problem, Query};
use platform::openapi::BearerScheme;
use platform::pagination::TimeIdPageQuery;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
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

/// The filter of the payments list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsQuery {
    /// Only this customer's payments. A customer may name only themselves (else 403); their
    /// list is their own whether they name themselves or not.
    pub customer_id: Option<Uuid>,
}

/// Why the list was not served: the caller's identity or role, or a problem of the request or
/// of the store.
enum Refusal {
    Auth(platform::auth::AuthError),
    Problem(Problem),
}

impl From<platform::auth::AuthError> for Refusal {
    fn from(e: platform::auth::AuthError) -> Self {
        Self::Auth(e)
    }
}

impl From<Problem> for Refusal {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Auth(e) => e.into_response(),
            Self::Problem(p) => p.into_response(),
        }
    }
}

/// Whose payments `identity` lists when it asks for `asked`: `None` for everyone's.
fn whose(identity: &Identity, asked: Option<Uuid>) -> Result<Option<Uuid>, Refusal> {
    if identity.has(Role::Viewer) {
        return Ok(asked);
    }
    identity.require(Role::Customer)?;
    match asked {
        Some(customer) if customer != identity.subject => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Your role may not do this",
        )
        .detail("a customer lists only their own payments")
        .into()),
        _ => Ok(Some(identity.subject)),
    }
}

#[utoipa::path(
    get,
    path = "/api/payments",
    operation_id = "listPayments",
    tag = "payments",
    summary = "Payments, oldest first: a customer's own, or everyone's for a viewer",
    description = "A customer token lists only the customer's own payments (the token's subject); `customerId`, if sent, must be the customer's own, else 403. A viewer or operator token lists every payment, or one customer's with `customerId`. Paginated: follow `Link: rel=\"next\"` until it is absent; the filter carries over to every page.",
    params(TimeIdPageQuery, PaymentsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payments, at most `limit`", body = Vec<PaymentView>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit`, `after` or `customerId`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "A customer named another customer, or the token has no customer, viewer or ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::InvalidLimit,
        (status = 503, description = "The payment store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(pool): State<PgPool>,
    identity: Identity,
    Query(query): Query<TimeIdPageQuery>,
    Query(filter): Query<PaymentsQuery>,
    uri: Uri,
) -> Result<Response, Refusal> {
    let customer = whose(&identity, filter.customer_id)?;
    let page = query.page()?;
    // Before every payment: every `created_at` is later than 1970.
    let (after_time, after_id) = page
        .cursor(parse_cursor)?
        .unwrap_or((DateTime::UNIX_EPOCH, Uuid::nil()));
    let payments = async {
        let mut conn = pool.acquire().await?;
        read_page(&mut conn, customer, (after_time, after_id), page.fetch()).await
    };
    let payments = payments.await.map_err(|e| {
        tracing::warn!(error = %e, "listing payments failed");
        Problem::unavailable("the payment store is unavailable")
    })?;
    Ok(page.respond(&uri, payments, |p| cursor(p.created_at, p.payment_id)))
}

/// Up to `limit` payments after the key `after`, in key order: every customer's, or one's.
///
/// Two statements rather than one with `$n IS NULL OR …`: the services force generic plans, and
/// a generic plan could not pick the customer's index for the filtered list. The filtered one
/// compares and orders by the whole key of `payments_by_customer`, customer first: a row
/// comparison is an index condition only from the index's first column, and without it the
/// planner reads the time index and filters every payment by customer.
pub async fn read_page(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    after: (DateTime<Utc>, Uuid),
    limit: i64,
) -> Result<Vec<PaymentView>, sqlx::Error> {
    let (after_time, after_id) = after;
    match customer {
        None => {
            sqlx::query_as(
                "SELECT payment_id, order_id, customer_id, amount, status, created_at
                 FROM payments
                 WHERE (created_at, payment_id) > ($1, $2)
                 ORDER BY created_at, payment_id
                 LIMIT $3",
            )
            .bind(after_time)
            .bind(after_id)
            .bind(limit)
            .fetch_all(conn)
            .await
        }
        Some(customer) => {
            sqlx::query_as(
                "SELECT payment_id, order_id, customer_id, amount, status, created_at
                 FROM payments
                 WHERE customer_id = $1 AND (customer_id, created_at, payment_id) > ($1, $2, $3)
                 ORDER BY customer_id, created_at, payment_id
                 LIMIT $4",
            )
            .bind(customer)
            .bind(after_time)
            .bind(after_id)
            .bind(limit)
            .fetch_all(conn)
            .await
        }
    }
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
    modifiers(&BearerScheme),
    tags((name = "payments", description = "Customer payments"))
)]
struct ApiDoc;
