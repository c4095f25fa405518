//! The stock service's HTTP API. Who may call what (SYSTEM.md §8, §10):
//!
//! | route | who |
//! |---|---|
//! | `GET /api/products` ([`products`]) | public |
//! | `PUT /api/products/{productId}`, `POST /api/products/{productId}/restock` | ops |
//! | `GET /api/stock` ([`stock`]) | viewer |
//! | `GET /api/ops/audit` ([`audit`]) | viewer |
//!
//! Requests are checked here (400 for malformed JSON or wrong types, 422 for values out of
//! range), and every error leaves as a problem document: [`Refusal`] is the one place where the
//! handlers' errors become responses.

pub mod audit;
pub mod products;
pub mod stock;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use messaging::Doorbell;
use platform::auth::AuthError;
use platform::http::Problem;
use platform::openapi::BearerScheme;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Rung after a commit that queued outbox rows (a catalog change).
    pub doorbell: Doorbell,
}

pub fn routes(pool: PgPool, doorbell: Doorbell) -> Router {
    Router::new()
        .route("/api/stock", get(stock::list))
        .route("/api/products", get(products::list))
        .route(
            "/api/products/{product_id}",
            axum::routing::put(products::put),
        )
        .route(
            "/api/products/{product_id}/restock",
            post(products::restock),
        )
        .route("/api/ops/audit", get(audit::list))
        .with_state(AppState { pool, doorbell })
}

/// Why a request was not served: the caller's identity or role, or a problem of the request or
/// of the store.
#[derive(Debug)]
pub enum Refusal {
    Auth(AuthError),
    Problem(Problem),
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl From<Problem> for Refusal {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Auth(e) => e.into_response(),
            Self::Problem(p) => p.into_response(),
        }
    }
}

/// The store failed: logged here, once, and answered 503 without the cause.
fn unavailable(what: &str, error: &dyn std::error::Error) -> Problem {
    tracing::warn!(error = %error, "{what} failed");
    Problem::unavailable("the stock store is unavailable")
}

/// The OpenAPI document of the stock service's routes, merged into the system's by the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(stock::list, products::list, products::put, products::restock, audit::list),
    components(schemas(
        stock::StockView,
        crate::catalog::Product,
        products::PutProduct,
        products::Restock,
        messaging::audit::Entry
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "stock", description = "Product quantities"),
        (name = "catalog", description = "Products, prices and restocking"),
        (name = "ops", description = "The operator API")
    )
)]
struct ApiDoc;
