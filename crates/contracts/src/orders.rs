//! Facts published by the order service on [`topics::ORDERS`](crate::topics::ORDERS).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Line, topic_messages};

topic_messages!(
    /// Every message of the orders topic.
    OrderMessage, crate::topics::ORDERS, {
        OrderPlaced(OrderPlaced),
        OrderLinesChanged(OrderLinesChanged),
        PaymentRequested(PaymentRequested),
        OrderCompleted(OrderCompleted),
        OrderFailed(OrderFailed),
    }
);

/// A customer placed an order; the saga starts. `revision` numbers the order's lines: it grows
/// by one with every change, and replies name the revision they answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    pub lines: Vec<Line>,
}

/// The lines of a pending order changed; `lines` is the whole new set, so a reservation can be
/// set to it idempotently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLinesChanged {
    pub order_id: Uuid,
    pub revision: u32,
    pub lines: Vec<Line>,
}

/// Stock holds the order's final lines; the order no longer accepts changes and asks for
/// `amount` to be captured. This is the saga's cut-off point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequested {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
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
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::UnknownProduct => "unknown_product",
            Self::PaymentDeclined => "payment_declined",
        }
    }
}
