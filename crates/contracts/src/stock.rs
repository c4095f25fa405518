//! Facts published by the stock service on [`topics::STOCK`](crate::topics::STOCK).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_messages;
use crate::validate::{self, Invalid, MAX_LINES, MAX_TOTAL, Validate};

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

/// The order is over for stock, without a sale: its payment was declined or the order failed
/// (for any reason, a deadline included). Whatever it held was given back, and no later
/// revision of the order is held again. Payment refunds a standing capture of the order and
/// captures nothing for it any more (compensation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    pub order_id: Uuid,
}

impl Validate for StockReserved {
    fn validate(&self) -> Result<(), Invalid> {
        validate::revision(self.revision)?;
        validate::money("amount", self.amount, MAX_TOTAL)
    }
}

/// Names at most one product per line of the order, each a positive id.
impl Validate for StockReservationFailed {
    fn validate(&self) -> Result<(), Invalid> {
        validate::revision(self.revision)?;
        if self.product_ids.len() > MAX_LINES {
            return Err(Invalid {
                field: "productIds".into(),
                reason: format!("{} products exceed {MAX_LINES}", self.product_ids.len()),
            });
        }
        match self
            .product_ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id <= 0)
        {
            Some((i, id)) => validate::product_id(&format!("productIds[{i}]"), *id),
            None => Ok(()),
        }
    }
}

impl Validate for StockReleased {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
