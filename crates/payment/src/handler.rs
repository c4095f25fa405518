//! What the payment service does with each message, inside the idempotent consumer's
//! transaction.

use contracts::orders::OrderMessage;
use contracts::payments::{PaymentCaptured, PaymentDeclined};
use messaging::consumer::{Handler, HandlerError, IncomingMessage};
use messaging::outbox::{Metadata, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use crate::payments::{self, Payment};

pub struct PaymentHandler {
    /// Credit of a customer seen for the first time.
    pub starting_credit: Decimal,
}

impl Handler for PaymentHandler {
    /// Of the orders topic, only payment requests concern payment.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        use contracts::Contract;
        use contracts::orders::{OrderCompleted, OrderFailed, OrderLinesChanged, OrderPlaced};
        [
            OrderPlaced::TYPE,
            OrderLinesChanged::TYPE,
            OrderCompleted::TYPE,
            OrderFailed::TYPE,
        ]
        .contains(&message.message_type.as_str())
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        message: &IncomingMessage,
    ) -> Result<(), HandlerError> {
        // The payment service listens to the orders topic but acts only on payment requests.
        let OrderMessage::PaymentRequested(request) = message.decode(OrderMessage::decode)? else {
            return Ok(());
        };
        let (order_id, customer_id, revision, amount) = (
            request.order_id,
            request.customer_id,
            request.revision,
            request.amount,
        );
        let meta = Metadata::caused_by(&message.metadata, chrono::Utc::now());
        let reply = |payment: &Payment| match *payment {
            Payment::Captured { payment_id } => OutgoingMessage::new(
                order_id,
                &PaymentCaptured {
                    order_id,
                    payment_id,
                    customer_id,
                    revision,
                    amount,
                },
                meta,
            ),
            Payment::Declined {
                available_credit, ..
            } => OutgoingMessage::new(
                order_id,
                &PaymentDeclined {
                    order_id,
                    customer_id,
                    revision,
                    amount,
                    available_credit,
                },
                meta,
            ),
        };
        let request = payments::Request {
            order_id,
            customer_id,
            amount,
        };
        payments::capture(conn, request, self.starting_credit, reply).await?;
        Ok(())
    }
}
