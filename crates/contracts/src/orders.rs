//! Facts published by the order service on [`topics::ORDERS`](crate::topics::ORDERS).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate::{self, Invalid, Validate};
use crate::{Line, topic_messages};

topic_messages!(
    /// Every message of the orders topic.
    OrderMessage, crate::topics::ORDERS, {
        // Version 2 added `total` (and `customerId` to a change), which payment needs through
        // stock: a version 1 message is dead-lettered as unknown.
        OrderPlaced(OrderPlaced) = 2,
        OrderLinesChanged(OrderLinesChanged) = 2,
        OrderCompleted(OrderCompleted),
        OrderFailed(OrderFailed),
    }
);

/// A customer placed an order; the saga starts. `revision` numbers the order's lines: it grows
/// by one with every change, and replies name the revision they answer. `total` is what the
/// lines cost; stock passes it on to payment with its reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    pub lines: Vec<Line>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

/// The lines of a pending order changed; `lines` is the whole new set, so a reservation can be
/// set to it idempotently, and `total` what they cost now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLinesChanged {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    pub lines: Vec<Line>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub payment_id: Uuid,
    pub lines: Vec<Line>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFailed {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub reason: FailureReason,
    pub lines: Vec<Line>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

/// Why an order failed; machine-readable, exposed as the order's `failureReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    OutOfStock,
    UnknownProduct,
    PaymentDeclined,
    /// The saga did not settle within the order service's deadline.
    TimedOut,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::UnknownProduct => "unknown_product",
            Self::PaymentDeclined => "payment_declined",
            Self::TimedOut => "timed_out",
        }
    }
}

impl Validate for OrderPlaced {
    fn validate(&self) -> Result<(), Invalid> {
        validate::revision(self.revision)?;
        validate::order_lines(&self.lines, self.total)
    }
}

impl Validate for OrderLinesChanged {
    fn validate(&self) -> Result<(), Invalid> {
        validate::revision(self.revision)?;
        validate::order_lines(&self.lines, self.total)
    }
}

impl Validate for OrderCompleted {
    fn validate(&self) -> Result<(), Invalid> {
        validate::order_lines(&self.lines, self.total)
    }
}

impl Validate for OrderFailed {
    fn validate(&self) -> Result<(), Invalid> {
        validate::order_lines(&self.lines, self.total)
    }
}
