//! `/api/orders`: requests are parsed into domain values at this edge (400 for malformed JSON or
//! wrong types, 422 for values the domain refuses) and errors become problem documents here and
//! nowhere else.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use messaging::Doorbell;
use platform::http::{FieldError, Json, Problem, Query};
use platform::pagination::PageQuery;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::commands::{self, CommandError, Context, Executed};
use crate::domain::{
    Command, CustomerId, DomainError, Line, OrderId, Price, ProductId, Quantity, ValueError,
};
use crate::idempotency;
use crate::view::{EventView, OrderView};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub doorbell: Doorbell,
}

impl AppState {
    /// A command committed: if it appended events, their messages wait in the outbox.
    fn committed(&self, executed: &Executed) {
        if executed.appended > 0 {
            self.doorbell.ring();
        }
    }
}

pub fn routes(pool: PgPool, doorbell: Doorbell) -> Router {
    let state = AppState { pool, doorbell };
    Router::new()
        .route("/api/orders", post(place_order))
        .route("/api/orders/{order_id}", get(get_order))
        .route("/api/orders/{order_id}/events", get(get_events))
        .route("/api/orders/{order_id}/items", post(add_item))
        .route(
            "/api/orders/{order_id}/items/{product_id}",
            delete(remove_item),
        )
        .with_state(state)
}

// --- requests -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "customerId": "0b9a3c2e-5f0e-4c55-9a43-1c2d3e4f5a6b",
    "items": [{"productId": 1, "quantity": 2, "unitPrice": "12.50"}]
}))]
pub struct PlaceOrderRequest {
    /// The customer, a UUID.
    #[schema(format = Uuid)]
    pub customer_id: String,
    pub items: Vec<ItemRequest>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"productId": 1, "quantity": 2, "unitPrice": "12.50"}))]
pub struct ItemRequest {
    #[schema(minimum = 1)]
    pub product_id: i64,
    #[schema(minimum = 1)]
    pub quantity: i64,
    /// A decimal string with at most two places, e.g. `"12.50"`.
    #[schema(value_type = String, pattern = r"^[0-9]+(\.[0-9]{1,2})?$", example = "12.50")]
    pub unit_price: PriceInput,
}

/// Prices travel as decimal strings (`"12.50"`); a JSON number is read from its text, so
/// `12.345` is refused for its precision rather than rounded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PriceInput {
    Text(String),
    Number(serde_json::Number),
}

impl PriceInput {
    fn parse(&self) -> Result<Price, ValueError> {
        match self {
            PriceInput::Text(text) => Price::parse(text),
            PriceInput::Number(number) => Price::parse(&number.to_string()),
        }
    }
}

impl ItemRequest {
    fn parse(&self, at: &str, errors: &mut Vec<FieldError>) -> Option<Line> {
        let product_id = field(
            ProductId::parse(self.product_id),
            &format!("{at}productId"),
            errors,
        );
        let quantity = field(
            Quantity::parse(self.quantity),
            &format!("{at}quantity"),
            errors,
        );
        let unit_price = field(self.unit_price.parse(), &format!("{at}unitPrice"), errors);
        Some(Line {
            product_id: product_id?,
            quantity: quantity?,
            unit_price: unit_price?,
        })
    }
}

fn field<T>(result: Result<T, ValueError>, name: &str, errors: &mut Vec<FieldError>) -> Option<T> {
    result
        .map_err(|e| {
            errors.push(FieldError {
                field: name.to_owned(),
                message: e.to_string(),
            })
        })
        .ok()
}

fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-order",
        "The request breaks a rule of the order",
    )
    .errors(errors)
}

impl PlaceOrderRequest {
    fn parse(&self) -> Result<(CustomerId, Vec<Line>), Problem> {
        let mut errors = Vec::new();
        let customer = Uuid::parse_str(&self.customer_id)
            .map(CustomerId)
            .map_err(|_| {
                errors.push(FieldError {
                    field: "customerId".into(),
                    message: "customerId must be a UUID".into(),
                })
            })
            .ok();
        if self.items.is_empty() {
            return Err(domain_problem(DomainError::EmptyOrder));
        }
        if self.items.len() > crate::domain::MAX_LINES {
            return Err(domain_problem(DomainError::TooManyLines));
        }
        let lines: Vec<Option<Line>> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| item.parse(&format!("items[{i}]."), &mut errors))
            .collect();
        match (customer, lines.into_iter().collect::<Option<Vec<_>>>()) {
            (Some(customer), Some(lines)) if errors.is_empty() => Ok((customer, lines)),
            _ => Err(invalid(errors)),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Units to remove; without it, every unit of the product.
    #[param(minimum = 1)]
    pub quantity: Option<i64>,
}

// --- handlers -------------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/api/orders",
    operation_id = "placeOrder",
    tag = "orders",
    summary = "Place an order",
    description = "Starts the order `pending` and its saga. A retried request with the same `Idempotency-Key` returns the same order.",
    request_body = PlaceOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request return the first order"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue"),
    ),
    responses(
        (status = 201, description = "The order was placed", body = doc::Order,
            headers(("Location" = String, description = "/api/orders/{orderId}"))),
        (status = 400, description = "Malformed JSON or wrong types", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A rule of the order is broken", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<PlaceOrderRequest>,
) -> Result<Response, Problem> {
    let (customer_id, lines) = request.parse()?;
    let key = idempotency_key(&headers)?;
    let order_id = OrderId(Uuid::now_v7());
    let context = Context::external(order_id, traceparent(&headers));
    let command = Command::Place { customer_id, lines };

    let executed = match key {
        None => commands::start(&state.pool, order_id, command, &context).await,
        Some(key) => idempotency::place_once(&state.pool, key, order_id, command, &context).await,
    };
    let executed = executed.map_err(command_problem)?;
    state.committed(&executed);
    let view = order_view(&executed)?;
    let location = format!("/api/orders/{}", view.order_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(view),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/orders/{orderId}",
    operation_id = "getOrder",
    tag = "orders",
    summary = "Read an order",
    params(("orderId" = Uuid, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = doc::Order),
        (status = 404, description = "No such order", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, Problem> {
    let order_id = parse_order_id(&order_id)?;
    match commands::load(&state.pool, order_id)
        .await
        .map_err(command_problem)?
    {
        Some((order, stream)) => OrderView::of(&order, &stream)
            .map(axum::Json)
            .ok_or_else(order_not_found),
        None => Err(order_not_found()),
    }
}

#[utoipa::path(
    get,
    path = "/api/orders/{orderId}/events",
    operation_id = "getOrderEvents",
    tag = "orders",
    summary = "An order's event history",
    description = "Paginated by version: follow `Link: rel=\"next\"` until it is absent.",
    params(("orderId" = Uuid, Path, description = "The order"), PageQuery),
    responses(
        (status = 200, description = "Its events in version order, at most `limit`", body = Vec<doc::Event>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of 1..=1000", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn get_events(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    Query(query): Query<PageQuery>,
    uri: Uri,
) -> Result<Response, Problem> {
    let order_id = parse_order_id(&order_id)?;
    let page = query.page()?;
    // The cursor is the version of the last event read.
    let after = page
        .cursor(|raw| raw.parse::<i32>().ok().filter(|v| *v > 0))?
        .unwrap_or(0);
    let store = |e: sqlx::Error| command_problem(e.into());
    let events = crate::event_store::load_page(&state.pool, order_id.0, after, page.fetch())
        .await
        .map_err(store)?;
    // An empty page past the end of an order's history is still its history.
    if events.is_empty()
        && (after == 0
            || !crate::event_store::exists(&state.pool, order_id.0)
                .await
                .map_err(store)?)
    {
        return Err(order_not_found());
    }
    let views: Vec<EventView> = events.iter().map(EventView::from).collect();
    Ok(page.respond(&uri, views, |e| e.version.to_string()))
}

#[utoipa::path(
    post,
    path = "/api/orders/{orderId}/items",
    operation_id = "addItem",
    tag = "orders",
    summary = "Add a product to a pending order",
    params(("orderId" = Uuid, Path, description = "The order")),
    request_body = ItemRequest,
    responses(
        (status = 200, description = "The order after the change", body = doc::Order),
        (status = 400, description = "Malformed JSON or wrong types", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The order is no longer pending (completed or failed), or was changed too often (`too-many-changes`)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A rule of the order is broken", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn add_item(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    Json(item): Json<ItemRequest>,
) -> Result<axum::Json<OrderView>, Problem> {
    let order_id = parse_order_id(&order_id)?;
    let mut errors = Vec::new();
    let line = item.parse("", &mut errors).ok_or_else(|| invalid(errors))?;
    let context = Context::external(order_id, traceparent(&headers));
    let executed = commands::execute(&state.pool, order_id, Command::AddItem(line), &context)
        .await
        .map_err(command_problem)?;
    state.committed(&executed);
    order_view(&executed).map(axum::Json)
}

#[utoipa::path(
    delete,
    path = "/api/orders/{orderId}/items/{productId}",
    operation_id = "removeItem",
    tag = "orders",
    summary = "Remove units of a product from a pending order",
    params(
        ("orderId" = Uuid, Path, description = "The order"),
        ("productId" = i64, Path, description = "The product"),
        RemoveQuery,
    ),
    responses(
        (status = 200, description = "The order after the change", body = doc::Order),
        (status = 400, description = "Malformed product id or quantity", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not pending, changed too often (`too-many-changes`), fewer units held than asked, or the order would be empty", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid quantity", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn remove_item(
    State(state): State<AppState>,
    Path((order_id, product_id)): Path<(String, String)>,
    Query(query): Query<RemoveQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<OrderView>, Problem> {
    let order_id = parse_order_id(&order_id)?;
    let product_id: i64 = product_id
        .parse()
        .map_err(|_| Problem::bad_request("productId must be an integer"))?;
    let mut errors = Vec::new();
    let product_id = field(ProductId::parse(product_id), "productId", &mut errors);
    // Without `quantity`, every unit of the product is removed.
    let quantity = match query.quantity {
        Some(q) => field(Quantity::parse(q), "quantity", &mut errors),
        None => None,
    };
    let product_id = product_id.ok_or_else(|| invalid(errors.clone()))?;
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let context = Context::external(order_id, traceparent(&headers));
    let quantity = match quantity {
        Some(q) => q,
        None => {
            let (order, _) = commands::load(&state.pool, order_id)
                .await
                .map_err(command_problem)?
                .ok_or_else(order_not_found)?;
            Quantity::parse(i64::from(order.held(product_id))).map_err(|_| {
                domain_problem(DomainError::NotEnoughToRemove {
                    product: product_id.get(),
                    held: 0,
                    requested: 1,
                })
            })?
        }
    };
    let executed = commands::execute(
        &state.pool,
        order_id,
        Command::RemoveItem {
            product_id,
            quantity,
        },
        &context,
    )
    .await
    .map_err(command_problem)?;
    state.committed(&executed);
    order_view(&executed).map(axum::Json)
}

// --- helpers --------------------------------------------------------------------------------

fn order_view(executed: &Executed) -> Result<OrderView, Problem> {
    OrderView::of(&executed.order, &executed.stream).ok_or_else(order_not_found)
}

/// A path segment that is not a UUID names no order: 404, like an unknown UUID.
fn parse_order_id(raw: &str) -> Result<OrderId, Problem> {
    Uuid::parse_str(raw)
        .map(OrderId)
        .map_err(|_| order_not_found())
}

fn order_not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "order-not-found", "No such order")
}

const MAX_IDEMPOTENCY_KEY: usize = 200;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(key.to_owned())),
        _ => Err(Problem::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))),
    }
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn domain_problem(error: DomainError) -> Problem {
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

/// The one place a command error becomes an HTTP response.
fn command_problem(error: CommandError) -> Problem {
    match error {
        CommandError::Domain(e) => domain_problem(e),
        CommandError::Contended | CommandError::Conflict(_) => Problem::new(
            StatusCode::CONFLICT,
            "concurrent-modification",
            "The order was changed concurrently; retry",
        ),
        CommandError::KeyReused => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
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

// --- OpenAPI ----------------------------------------------------------------------------------

/// The OpenAPI document of `/api/orders`, merged into the system's by the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(place_order, get_order, get_events, add_item, remove_item),
    components(schemas(
        PlaceOrderRequest,
        ItemRequest,
        doc::Order,
        doc::Item,
        doc::Event,
        doc::OrderStatus,
        doc::FailureReason,
        platform::openapi::ProblemDoc,
        platform::openapi::FieldErrorDoc,
    )),
    tags((name = "orders", description = "Placing, changing and reading orders"))
)]
struct ApiDoc;

/// The shapes `OrderView`, `ItemView` and `EventView` serialise to, for the document only: the
/// views hold domain types whose wire form (money as decimal strings) is spelled out here. The
/// gateway's OpenAPI test compares them with real responses.
pub mod doc {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct Order {
        #[schema(format = Uuid)]
        order_id: String,
        #[schema(format = Uuid)]
        customer_id: String,
        status: OrderStatus,
        /// Set once the order failed.
        failure_reason: Option<FailureReason>,
        items: Vec<Item>,
        /// Σ quantity × unitPrice, a decimal string with two places.
        #[schema(example = "25.00")]
        total: String,
        /// The number of events in the order's stream.
        version: u32,
        #[schema(format = DateTime)]
        created_at: String,
        #[schema(format = DateTime)]
        updated_at: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct Item {
        product_id: i64,
        quantity: i64,
        #[schema(example = "12.50")]
        unit_price: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct Event {
        version: i32,
        /// `OrderPlaced`, `ItemAdded`, `OrderCompleted`, …
        #[schema(rename = "type")]
        event_type: String,
        /// The event's payload.
        data: serde_json::Value,
        #[schema(format = DateTime)]
        recorded_at: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    #[allow(dead_code)]
    pub enum OrderStatus {
        Pending,
        Completed,
        Failed,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    #[allow(dead_code)]
    pub enum FailureReason {
        OutOfStock,
        UnknownProduct,
        PaymentDeclined,
        TimedOut,
    }
}
