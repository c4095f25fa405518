//! `/api/orders`: requests are parsed into domain values at this edge (`requests`), every
//! route knows its caller ([`Identity`]) and errors become problem documents in one place
//! (`errors`, [`ApiError`]); `doc` holds the response shapes of the OpenAPI document.
//!
//! Who may do what (SYSTEM.md §8, I8):
//!
//! - placing, adding and removing items need the `customer` role (403 without it: a viewer
//!   reads every order but changes none), and act only for the token's subject. The order's
//!   customer is the subject; a body `customerId` that names anyone else is 403. A change to an
//!   order of another customer is 404, exactly like an unknown order: no existence oracle.
//! - reading an order or its events: its customer, or a viewer (ops included). Another customer
//!   gets 404, like an unknown order. A token with neither role gets 403.
//! - `GET /api/orders`: a customer lists their own orders (naming another customer is 403); a
//!   viewer lists everyone's, filtered by `customerId` and `status` if asked.
//!
//! Prices come from the catalog replica ([`crate::catalog`]): a line's `unitPrice` is the
//! catalog's current price. A stated `unitPrice` that differs is 409 `price-changed` with the
//! current price; a product the replica does not know is 422 `unknown-product`: the order
//! service refuses what it cannot price. (Stock's `unknown_product` saga failure remains for a
//! product the catalog lists but stock does not hold.)

pub mod doc;
mod errors;
pub mod ops;
mod requests;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use messaging::Doorbell;
use platform::auth::{Identity, Role};
use platform::http::{FieldError, Json, Problem, Query};
use platform::pagination::{UuidPageQuery, VersionPageQuery};
use sqlx::PgPool;
use uuid::Uuid;

use crate::catalog;
use crate::commands::{self, CommandError, Context, Executed};
use crate::domain::{Command, CustomerId, DomainError, Line, OrderId, Price, ProductId, Quantity};
use crate::idempotency;
use crate::listing;
use crate::view::{self, EventView, OrderView};
pub use errors::ApiError;
use errors::{command_problem, domain_problem, forbidden, order_not_found};
pub use requests::{ItemRequest, ListFilters, PlaceOrderRequest, RemoveQuery};
use requests::{RequestedLine, field, invalid};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub doorbell: Doorbell,
    pub prices: catalog::PriceCache,
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
    let state = AppState {
        pool,
        doorbell,
        prices: catalog::PriceCache::default(),
    };
    Router::new()
        .route("/api/orders", post(place_order).get(list_orders))
        .route("/api/orders/{order_id}", get(get_order))
        .route("/api/ops/orders/stuck", get(ops::list_stuck))
        .route("/api/orders/{order_id}/events", get(get_events))
        .route("/api/orders/{order_id}/items", post(add_item))
        .route(
            "/api/orders/{order_id}/items/{product_id}",
            delete(remove_item),
        )
        .with_state(state)
}

// --- who may read ---------------------------------------------------------------------------

/// Whose orders a caller may read.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// A viewer (or operator): every order.
    Everyone,
    /// A customer: their own.
    Own(CustomerId),
}

impl Reader {
    /// 403 for a token with neither the viewer nor the customer role.
    fn of(identity: &Identity) -> Result<Self, ApiError> {
        if identity.has(Role::Viewer) {
            Ok(Reader::Everyone)
        } else {
            identity.require(Role::Customer)?;
            Ok(Reader::Own(CustomerId(identity.subject)))
        }
    }

    fn may_read(self, customer: CustomerId) -> bool {
        match self {
            Reader::Everyone => true,
            Reader::Own(own) => own == customer,
        }
    }
}

/// The customer a command acts for: the subject of a token with the customer role, else 403.
fn acting_customer(identity: &Identity) -> Result<CustomerId, ApiError> {
    identity.require(Role::Customer)?;
    Ok(CustomerId(identity.subject))
}

// --- pricing --------------------------------------------------------------------------------

/// Prices `requested` from the catalog replica: 422 `unknown-product` (naming every field) for
/// products it does not know, 409 `price-changed` for the first stated price that is not the
/// current one. `field_of(i)` names line `i`'s field prefix in a 422.
async fn price(
    state: &AppState,
    requested: &[RequestedLine],
    field_of: impl Fn(usize) -> String,
) -> Result<Vec<Line>, ApiError> {
    let products: Vec<ProductId> = requested.iter().map(|l| l.product_id).collect();
    let read = |from_table| state.prices.prices(&state.pool, &products, from_table);
    let mut current: HashMap<ProductId, Price> =
        read(false).await.map_err(|e| command_problem(e.into()))?;
    // A refusal is decided on the replica itself, never on a price the cache still holds.
    let refused = requested.iter().any(|line| {
        current
            .get(&line.product_id)
            .is_none_or(|price| line.unit_price.is_some_and(|stated| stated != *price))
    });
    if refused {
        current = read(true).await.map_err(|e| command_problem(e.into()))?;
    }
    let unknown: Vec<FieldError> = (requested.iter().enumerate())
        .filter(|(_, line)| !current.contains_key(&line.product_id))
        .map(|(i, line)| FieldError {
            field: format!("{}productId", field_of(i)),
            message: format!("product {} is not in the catalog", line.product_id.get()),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-product",
            "A product is not in the catalog",
        )
        .errors(unknown)
        .into());
    }
    let mut lines = Vec::with_capacity(requested.len());
    for line in requested {
        let Some(&price) = current.get(&line.product_id) else {
            continue;
        };
        if let Some(stated) = line.unit_price
            && stated != price
        {
            return Err(ApiError::PriceChanged {
                product_id: line.product_id,
                current: price,
                stated,
            });
        }
        lines.push(Line {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price: price,
        });
    }
    Ok(lines)
}

// --- handlers -------------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/api/orders",
    operation_id = "placeOrder",
    tag = "orders",
    summary = "Place an order",
    description = "Places an order for the caller (a customer) and starts its saga; the order starts `pending`. Each line is priced from the catalog at placement. A retried request with the same `Idempotency-Key` (the caller's own keys) returns the same order.",
    security(("bearer" = [])),
    request_body = PlaceOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]{1,200}$",
            description = "Makes retries of this request return the first order: 1 to 200 visible ASCII characters, no spaces. Keys are scoped to the customer; the same key with a different request is 409 `idempotency-key-reused`."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue"),
    ),
    responses(
        (status = 201, description = "The order was placed (or, for a retried key, had been)", body = doc::Order,
            headers(("Location" = String, description = "/api/orders/{orderId}"))),
        (status = 400, description = "Malformed JSON, wrong types or a malformed `Idempotency-Key`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a customer, or `customerId` names another customer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`price-changed`: a stated `unitPrice` is not the current price; `idempotency-key-reused`: the key was used for a different request", body = doc::PriceChanged, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A rule of the order is broken, or a product is not in the catalog (`unknown-product`)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Json(request): Json<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let customer = acting_customer(&identity)?;
    let (stated_customer, requested) = request.parse()?;
    if stated_customer.is_some_and(|stated| stated != customer.0) {
        return Err(forbidden("an order is placed for the caller only"));
    }
    let key = idempotency_key(&headers)?;
    // A retry is the request as sent, whatever the prices did since: it returns the order the
    // first attempt placed, before any pricing.
    let fingerprint = serde_json::json!({ "customerId": customer, "lines": requested });
    if let Some(key) = &key
        && let Some(existing) = idempotency::find(&state.pool, customer, key, &fingerprint).await?
    {
        return created(&existing);
    }
    let lines = price(&state, &requested, |i| format!("items[{i}].")).await?;
    let order_id = OrderId(Uuid::now_v7());
    let context = Context::external(order_id, traceparent(&headers)).acting_for(customer);
    let command = Command::Place {
        customer_id: customer,
        lines,
    };
    let executed = match key {
        None => commands::start(&state.pool, order_id, command, &context).await?,
        Some(key) => {
            idempotency::place_once(
                &state.pool,
                customer,
                &key,
                &fingerprint,
                order_id,
                command,
                &context,
            )
            .await?
        }
    };
    state.committed(&executed);
    created(&executed)
}

fn created(executed: &Executed) -> Result<Response, ApiError> {
    let view = order_view(executed)?;
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
    path = "/api/orders",
    operation_id = "listOrders",
    tag = "orders",
    summary = "List orders, newest first",
    description = "A customer lists their own orders; a viewer lists everyone's, filtered by `customerId` and `status` if given. Paginated: follow `Link: rel=\"next\"` until it is absent. Each item is the order as `GET /api/orders/{orderId}` shows it.",
    security(("bearer" = [])),
    params(ListFilters, UuidPageQuery),
    responses(
        (status = 200, description = "At most `limit` orders, newest first", body = Vec<doc::Order>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `customerId`, `status`, `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Neither customer nor viewer, or a customer naming another customer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::InvalidLimit,
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn list_orders(
    State(state): State<AppState>,
    identity: Identity,
    Query(filters): Query<ListFilters>,
    Query(query): Query<UuidPageQuery>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let reader = Reader::of(&identity)?;
    let (customer, status) = filters.parse()?;
    let customer = match reader {
        Reader::Everyone => customer,
        Reader::Own(own) => {
            if customer.is_some_and(|asked| asked != own.0) {
                return Err(forbidden("a customer lists only their own orders"));
            }
            Some(own.0)
        }
    };
    let page = query.page()?;
    let before = page.cursor(|raw| Uuid::parse_str(raw).ok())?;
    let filter = listing::Filter {
        customer,
        status,
        before,
    };
    let events = listing::page(&state.pool, &filter, page.fetch())
        .await
        .map_err(|e| command_problem(e.into()))?;
    let mut views = Vec::new();
    for stream in events.chunk_by(|a, b| a.stream_id == b.stream_id) {
        let order = view::fold(stream).map_err(|e| command_problem(e.into()))?;
        if let Some(view) = order.and_then(|order| OrderView::of(&order, stream)) {
            views.push(view);
        }
    }
    Ok(page.respond(&uri, views, |v| v.order_id.to_string()))
}

#[utoipa::path(
    get,
    path = "/api/orders/{orderId}",
    operation_id = "getOrder",
    tag = "orders",
    summary = "Read an order",
    description = "Its customer or a viewer; another customer's order is 404, like an unknown one.",
    security(("bearer" = [])),
    params(("orderId" = Uuid, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = doc::Order),
        platform::openapi::Unauthorized,
        (status = 403, description = "Neither customer nor viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or another customer's)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    identity: Identity,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let reader = Reader::of(&identity)?;
    let order_id = parse_order_id(&order_id)?;
    match commands::load(&state.pool, order_id).await? {
        Some((order, stream)) if reader.may_read(order.customer_id) => {
            OrderView::of(&order, &stream)
                .map(axum::Json)
                .ok_or_else(|| order_not_found().into())
        }
        _ => Err(order_not_found().into()),
    }
}

#[utoipa::path(
    get,
    path = "/api/orders/{orderId}/events",
    operation_id = "getOrderEvents",
    tag = "orders",
    summary = "An order's event history",
    description = "Its customer or a viewer; another customer's order is 404, like an unknown one. Paginated by version: follow `Link: rel=\"next\"` until it is absent.",
    security(("bearer" = [])),
    params(("orderId" = Uuid, Path, description = "The order"), VersionPageQuery),
    responses(
        (status = 200, description = "Its events in version order, at most `limit`", body = Vec<doc::Event>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Neither customer nor viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or another customer's)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::InvalidLimit,
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn get_events(
    State(state): State<AppState>,
    identity: Identity,
    Path(order_id): Path<String>,
    Query(query): Query<VersionPageQuery>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let reader = Reader::of(&identity)?;
    let order_id = parse_order_id(&order_id)?;
    let page = query.page()?;
    // The cursor is the version of the last event read.
    let after = page
        .cursor(|raw| raw.parse::<i32>().ok().filter(|v| *v > 0))?
        .unwrap_or(0);
    let store = |e: sqlx::Error| ApiError::from(CommandError::from(e));
    let customer = crate::event_store::customer_of(&state.pool, order_id.0)
        .await
        .map_err(store)?;
    if !customer.is_some_and(|c| reader.may_read(CustomerId(c))) {
        return Err(order_not_found().into());
    }
    let events = crate::event_store::load_page(&state.pool, order_id.0, after, page.fetch())
        .await
        .map_err(store)?;
    let views: Vec<EventView> = events.iter().map(EventView::from).collect();
    Ok(page.respond(&uri, views, |e| e.version.to_string()))
}

#[utoipa::path(
    post,
    path = "/api/orders/{orderId}/items",
    operation_id = "addItem",
    tag = "orders",
    summary = "Add a product to a pending order",
    description = "The order's customer only; another customer's order is 404, like an unknown one. The line is priced from the catalog now.",
    security(("bearer" = [])),
    params(("orderId" = Uuid, Path, description = "The order")),
    request_body = ItemRequest,
    responses(
        (status = 200, description = "The order after the change", body = doc::Order),
        (status = 400, description = "Malformed JSON or wrong types", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a customer (a viewer changes no order)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or another customer's)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The order is no longer pending (completed or failed), was changed too often (`too-many-changes`), or a stated `unitPrice` is not the current price (`price-changed`, with `productId` and `currentPrice`)", body = doc::PriceChanged, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A rule of the order is broken, or the product is not in the catalog (`unknown-product`)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn add_item(
    State(state): State<AppState>,
    identity: Identity,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    Json(item): Json<ItemRequest>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let customer = acting_customer(&identity)?;
    let order_id = parse_order_id(&order_id)?;
    let mut errors = Vec::new();
    let requested = item.parse("", &mut errors).ok_or_else(|| invalid(errors))?;
    let line = price(&state, &[requested], |_| String::new()).await?;
    let Some(&line) = line.first() else {
        return Err(Problem::internal().into());
    };
    let context = Context::external(order_id, traceparent(&headers)).acting_for(customer);
    let executed =
        commands::execute(&state.pool, order_id, Command::AddItem(line), &context).await?;
    state.committed(&executed);
    order_view(&executed).map(axum::Json)
}

#[utoipa::path(
    delete,
    path = "/api/orders/{orderId}/items/{productId}",
    operation_id = "removeItem",
    tag = "orders",
    summary = "Remove units of a product from a pending order",
    description = "The order's customer only; another customer's order is 404, like an unknown one.",
    security(("bearer" = [])),
    params(
        ("orderId" = Uuid, Path, description = "The order"),
        ("productId" = i64, Path, minimum = 1, maximum = 9_007_199_254_740_991_i64, description = "The product"),
        RemoveQuery,
    ),
    responses(
        (status = 200, description = "The order after the change", body = doc::Order),
        (status = 400, description = "Malformed product id or quantity", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a customer (a viewer changes no order)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or another customer's)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not pending, changed too often (`too-many-changes`), fewer units held than asked, or the order would be empty", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid product id or quantity", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The order store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn remove_item(
    State(state): State<AppState>,
    identity: Identity,
    Path((order_id, product_id)): Path<(String, String)>,
    Query(query): Query<RemoveQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<OrderView>, ApiError> {
    let customer = acting_customer(&identity)?;
    let order_id = parse_order_id(&order_id)?;
    let product_id: i64 = product_id
        .parse()
        .map_err(|_| Problem::bad_request("productId must be an integer"))?;
    let mut errors = Vec::new();
    let product_id = field(
        requests::parse_product(product_id),
        "productId",
        &mut errors,
    );
    // Without `quantity`, every unit of the product is removed.
    let quantity = match query.quantity {
        Some(q) => field(Quantity::parse(q), "quantity", &mut errors),
        None => None,
    };
    let product_id = product_id.ok_or_else(|| invalid(errors.clone()))?;
    if !errors.is_empty() {
        return Err(invalid(errors).into());
    }
    let context = Context::external(order_id, traceparent(&headers)).acting_for(customer);
    let quantity = match quantity {
        Some(q) => q,
        None => {
            // Another customer's order is unknown here too, before its lines say anything.
            let order = match commands::load(&state.pool, order_id).await? {
                Some((order, _)) if order.customer_id == customer => order,
                _ => return Err(order_not_found().into()),
            };
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
    .await?;
    state.committed(&executed);
    order_view(&executed).map(axum::Json)
}

// --- helpers --------------------------------------------------------------------------------

fn order_view(executed: &Executed) -> Result<OrderView, ApiError> {
    OrderView::of(&executed.order, &executed.stream).ok_or_else(|| order_not_found().into())
}

/// A path segment that is not a UUID names no order: 404, like an unknown UUID.
fn parse_order_id(raw: &str) -> Result<OrderId, Problem> {
    Uuid::parse_str(raw)
        .map(OrderId)
        .map_err(|_| order_not_found())
}

const MAX_IDEMPOTENCY_KEY: usize = 200;

/// 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters other than space (`^[!-~]{1,200}$`,
/// as the document declares): a space could be trimmed on the way, and a key must arrive as
/// it was sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let valid = (1..=MAX_IDEMPOTENCY_KEY).contains(&bytes.len())
        && bytes.iter().all(|b| (b'!'..=b'~').contains(b));
    match value.to_str() {
        Ok(key) if valid => Ok(Some(key.to_owned())),
        _ => Err(Problem::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters without spaces"
        ))),
    }
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

// --- OpenAPI ----------------------------------------------------------------------------------

/// The OpenAPI document of `/api/orders`, merged into the system's by the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(place_order, list_orders, get_order, get_events, add_item, remove_item, ops::list_stuck),
    components(schemas(
        PlaceOrderRequest,
        ItemRequest,
        doc::Order,
        doc::Item,
        doc::Event,
        doc::OrderStatus,
        doc::FailureReason,
        doc::PriceChanged,
        crate::stuck::StuckOrder,
        platform::openapi::ProblemDoc,
        platform::openapi::FieldErrorDoc,
    )),
    tags(
        (name = "orders", description = "Placing, changing and reading orders"),
        (name = "operations", description = "What operators read and do (viewer reads, ops acts)"),
    )
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(super::openapi()).unwrap_or_default()
    }

    #[test]
    fn every_operation_states_its_security_and_its_401_403_and_404() {
        let doc = document();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let mut operations = 0;
        for (path, item) in &paths {
            for (method, operation) in item.as_object().cloned().unwrap_or_default() {
                operations += 1;
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{ "bearer": [] }]),
                    "{method} {path}"
                );
                for status in ["401", "403"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} {status}"
                    );
                }
                if path.contains("{orderId}") {
                    assert!(operation["responses"]["404"].is_object(), "{method} {path}");
                }
            }
        }
        assert_eq!(operations, 7);
        let place = &doc["paths"]["/api/orders"]["post"]["responses"];
        assert!(place["409"].is_object());
        let add = &doc["paths"]["/api/orders/{orderId}/items"]["post"]["responses"];
        assert!(add["409"].is_object());
    }

    #[test]
    fn the_document_declares_the_bounds_the_server_enforces() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let item = &schemas["ItemRequest"]["properties"];
        assert_eq!(item["quantity"]["minimum"], 1.0);
        assert_eq!(
            item["quantity"]["maximum"],
            f64::from(crate::domain::MAX_QUANTITY)
        );
        assert_eq!(item["productId"]["minimum"], 1.0);
        let required = schemas["ItemRequest"]["required"].to_string();
        assert!(!required.contains("unitPrice"), "{required}");
        let place = &schemas["PlaceOrderRequest"];
        assert_eq!(place["properties"]["items"]["minItems"], 1);
        assert_eq!(
            place["properties"]["items"]["maxItems"],
            crate::domain::MAX_LINES
        );
        assert!(!place["required"].to_string().contains("customerId"));
        let key = (doc["paths"]["/api/orders"]["post"]["parameters"].as_array())
            .and_then(|ps| ps.iter().find(|p| p["name"] == "Idempotency-Key"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(key["schema"]["pattern"], r"^[!-~]{1,200}$", "{key}");
        assert_eq!(key["schema"]["maxLength"], 200, "{key}");
    }
}
