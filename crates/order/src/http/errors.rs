//! Every error of the `/api/orders` routes and the one place each becomes a problem document.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::auth::AuthError;
use platform::http::Problem;

use crate::commands::CommandError;
use crate::domain::{DomainError, Price, ProductId};

/// Every error of these routes, answered as a problem document in [`IntoResponse`].
#[derive(Debug)]
pub enum ApiError {
    Problem(Problem),
    /// 401 or 403, answered by `platform::auth`.
    Auth(AuthError),
    /// A line states a price that is not the catalog's current one: 409 `price-changed`, with
    /// the product and its current price as extension members (`productId`, `currentPrice`).
    PriceChanged {
        product_id: ProductId,
        current: Price,
        stated: Price,
    },
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError::Problem(problem)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Auth(error)
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        ApiError::Problem(command_problem(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem(problem) => problem.into_response(),
            ApiError::Auth(error) => error.into_response(),
            ApiError::PriceChanged {
                product_id,
                current,
                stated,
            } => {
                let status = StatusCode::CONFLICT;
                let body = serde_json::json!({
                    "type": platform::http::problem_type("price-changed"),
                    "title": "The price of a product has changed",
                    "status": status.as_u16(),
                    "detail": format!(
                        "product {} costs {current} now, not {stated}",
                        product_id.get()
                    ),
                    "productId": product_id,
                    "currentPrice": current,
                });
                (
                    status,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/problem+json"),
                    )],
                    body.to_string(),
                )
                    .into_response()
            }
        }
    }
}

/// 403 for what a role may not ask for, with why.
pub fn forbidden(detail: &str) -> ApiError {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Your role may not do this",
    )
    .detail(detail)
    .into()
}

pub fn order_not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "order-not-found", "No such order")
}

pub fn domain_problem(error: DomainError) -> Problem {
    let detail = error.to_string();
    let problem = match error {
        DomainError::EmptyOrder => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty-order",
            "An order needs at least one line",
        ),
        DomainError::TooManyLines => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-many-lines",
            "The order has too many lines",
        ),
        DomainError::QuantityTooLarge => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity-too-large",
            "A line would hold too many units",
        ),
        DomainError::AlreadyPlaced => Problem::new(
            StatusCode::CONFLICT,
            "order-exists",
            "The order already exists",
        ),
        DomainError::NotPlaced => order_not_found(),
        DomainError::NotPending(_) => Problem::new(
            StatusCode::CONFLICT,
            "order-not-pending",
            "The order is no longer pending",
        ),
        DomainError::NotEnoughToRemove { .. } => Problem::new(
            StatusCode::CONFLICT,
            "not-enough-to-remove",
            "The order holds fewer units of the product than asked to remove",
        ),
        DomainError::WouldBeEmpty => Problem::new(
            StatusCode::CONFLICT,
            "order-would-be-empty",
            "Removing every unit would leave the order empty",
        ),
        DomainError::TooManyChanges => Problem::new(
            StatusCode::CONFLICT,
            "too-many-changes",
            "The order accepts no more changes",
        ),
    };
    problem.detail(detail)
}

/// The one place a command error becomes a problem.
pub fn command_problem(error: CommandError) -> Problem {
    match error {
        CommandError::Domain(e) => domain_problem(e),
        // Another customer's order is answered exactly like an unknown one.
        CommandError::NotOwner => order_not_found(),
        CommandError::Contended | CommandError::Conflict(_) => Problem::new(
            StatusCode::CONFLICT,
            "concurrent-modification",
            "The order was changed concurrently; retry",
        ),
        // The key's first request stands; this one conflicts with it (the body is fine).
        CommandError::KeyReused => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            "The Idempotency-Key was already used for a different request",
        ),
        CommandError::Database(e) if is_unavailable(&e) => {
            tracing::warn!(error = %e, "database unavailable");
            Problem::unavailable("the order store is unavailable")
        }
        e => {
            tracing::error!(error = ?e, "command failed");
            Problem::internal()
        }
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}
