//! The console's own `/api/ops` routes besides dead letters: the overview and consumer lag.
//! Viewers (and operators) read them with a bearer token; they are what the pages show.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use platform::auth::{Identity, Role};
use platform::http::Problem;

use crate::Console;
use crate::lag::PartitionLag;
use crate::overview::Overview;

#[utoipa::path(
    get,
    path = "/api/ops/overview",
    operation_id = "getOverview",
    tag = "operations",
    summary = "The system at a glance",
    description = "Saga outcomes (totals since the order service started; per second and latency quantiles against the previous reading of the console, when there is one within a minute), outbox backlog per service, consumer lag per group and partition in messages and seconds, read-model lag, dead letters waiting, and the ten oldest stuck sagas. What could not be read is named in `problems`; the rest is still answered. A viewer or operator.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The figures", body = Overview),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn overview(
    State(console): State<Console>,
    identity: Identity,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Json(console.overview_now(authorization).await).into_response()
}

#[utoipa::path(
    get,
    path = "/api/ops/lag",
    operation_id = "getConsumerLag",
    tag = "operations",
    summary = "Consumer lag per group and partition",
    description = "For each consumer group of the system and each partition of the topics it reads: the committed offset, the partition's end, the records between them, and the age in seconds of the oldest of them. Committed offsets trail a consumer by its commit interval. A viewer or operator.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every group on every partition", body = Vec<PartitionLag>),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Kafka did not answer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn lag(State(console): State<Console>, identity: Identity) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    match console.lag().read().await {
        Ok(lags) => Json(lags).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "reading consumer lag failed");
            Problem::unavailable(format!("Kafka did not answer: {e}")).into_response()
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/ops/orders/{orderId}/journey",
    operation_id = "getOrderJourney",
    tag = "operations",
    summary = "An order's journey across the services",
    description = "One timeline of what each service recorded for the order: its events, every message of the order on every topic (partition, offset, headers: message id, causation, traceparent), and when each service's consumer applied each message; the trace id; for a pending order, the hop it waits on. Messages are read from Kafka from the order's placement on, at most 200000 records per partition (`truncated` says when the read stopped early). A viewer or operator.",
    security(("bearer" = [])),
    params(("orderId" = uuid::Uuid, Path, description = "The order")),
    responses(
        (status = 200, description = "The journey", body = crate::journey::Journey),
        (status = 400, description = "Not an order id", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order: the order service does not know it and no topic holds a message of it", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn journey(
    State(console): State<Console>,
    identity: Identity,
    headers: HeaderMap,
    axum::extract::Path(order_id): axum::extract::Path<String>,
) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    let Ok(order_id) = uuid::Uuid::try_parse(&order_id) else {
        return Problem::bad_request("orderId must be a UUID").into_response();
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let journey = crate::journey::journey(&console, authorization, order_id).await;
    if journey.order.is_none() && journey.steps.is_empty() {
        return Problem::not_found("No such order").into_response();
    }
    Json(journey).into_response()
}

pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(overview, lag, journey),
    components(schemas(
        Overview,
        PartitionLag,
        crate::overview::ComponentUp,
        crate::overview::InstanceUp,
        crate::overview::Sagas,
        crate::overview::ReasonCount,
        crate::overview::OutboxBacklog,
        crate::overview::ReadModelLag,
        crate::journey::Journey,
        crate::journey::Step,
        crate::journey::StepKind,
        crate::journey::ReadModel,
        platform::openapi::ProblemDoc,
    )),
    tags((name = "operations", description = "What operators read and do (viewer reads, ops acts)"))
)]
struct ApiDoc;
