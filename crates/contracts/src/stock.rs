//! Facts published by the stock service on [`topics::STOCK`](crate::topics::STOCK).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_messages;

topic_messages!(
    /// Every message of the stock topic.
    StockMessage, crate::topics::STOCK, {
        // Version 2 added `customerId` and `amount`: payment acts on it since then.
        StockReserved(StockReserved) = 2,
        StockReservationFailed(StockReservationFailed),
        StockReleased(StockReleased),
    }
);

/// Every line of the order's `revision` is reserved. Payment captures `amount`, the total of
/// those lines as the order stated it, from the customer's credit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReserved {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// Some line of `revision` could not be reserved; nothing is reserved for the order any more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReservationFailed {
    pub order_id: Uuid,
    pub revision: u32,
    pub reason: ReservationFailure,
    /// The products that caused the failure.
    pub product_ids: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationFailure {
    OutOfStock,
    UnknownProduct,
}

/// The order's reservation was given back (compensation after a declined payment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    pub order_id: Uuid,
}
