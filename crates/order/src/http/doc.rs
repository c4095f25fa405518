//! The shapes `OrderView`, `ItemView` and `EventView` serialise to, for the document only: the
//! views hold domain types whose wire form (money as decimal strings) is spelled out here. The
//! gateway's OpenAPI test compares them with real responses.

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

/// 409 `price-changed`: a problem document naming the product and its current price.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PriceChanged {
    /// `urn:shop:problem:price-changed` (other 409s carry their own type and no extension
    /// members).
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: Option<String>,
    /// The product whose price changed.
    product_id: Option<i64>,
    /// Its current price, a decimal string with two places.
    #[schema(example = "45.00")]
    current_price: Option<String>,
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
