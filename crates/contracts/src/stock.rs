//! Facts published by the stock service on [`topics::STOCK`](crate::topics::STOCK).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_messages;

topic_messages!(
    /// Every message of the stock topic.
    StockMessage, crate::topics::STOCK, {
        StockReserved(StockReserved),
        StockReservationFailed(StockReservationFailed),
        StockReleased(StockReleased),
    }
);

/// Every line of the order's `revision` is reserved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReserved {
    pub order_id: Uuid,
    pub revision: u32,
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
