//! Facts published by the payment service on [`topics::PAYMENTS`](crate::topics::PAYMENTS).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_messages;
use crate::validate::{self, Invalid, MAX_MONEY, MAX_TOTAL, Validate};

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

impl Validate for PaymentCaptured {
    fn validate(&self) -> Result<(), Invalid> {
        validate::revision(self.revision)?;
        validate::money("amount", self.amount, MAX_TOTAL)
    }
}

impl Validate for PaymentDeclined {
    fn validate(&self) -> Result<(), Invalid> {
        validate::revision(self.revision)?;
        validate::money("amount", self.amount, MAX_TOTAL)?;
        validate::money("availableCredit", self.available_credit, MAX_MONEY)
    }
}
