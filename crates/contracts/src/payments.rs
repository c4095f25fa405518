//! Facts published by the payment service on [`topics::PAYMENTS`](crate::topics::PAYMENTS).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_messages;

topic_messages!(
    /// Every message of the payments topic.
    PaymentMessage, crate::topics::PAYMENTS, {
        PaymentCaptured(PaymentCaptured),
        PaymentDeclined(PaymentDeclined),
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCaptured {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// Credit the customer had left when the payment was declined.
    #[serde(with = "rust_decimal::serde::str")]
    pub available_credit: Decimal,
}
