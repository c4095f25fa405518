//! What the payment service does with each message, inside the idempotent consumer's
//! transaction. Payment follows stock: it pays for what stock holds.

use contracts::payments::{PaymentCaptured, PaymentDeclined};
use contracts::stock::StockMessage;
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
    /// A released reservation follows a declined payment: nothing is left to pay or refund.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        use contracts::Contract;
        message.message_type == contracts::stock::StockReleased::TYPE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        message: &IncomingMessage,
    ) -> Result<(), HandlerError> {
        let reserved = match message.decode(StockMessage::decode)? {
            StockMessage::StockReserved(reserved) => reserved,
            // Stock holds nothing for the order any more: neither is its money held.
            StockMessage::StockReservationFailed(failed) => {
                payments::refund_earlier(conn, failed.order_id, failed.revision).await?;
                return Ok(());
            }
            StockMessage::StockReleased(_) => return Ok(()),
        };
        let request = payments::Request {
            order_id: reserved.order_id,
            customer_id: reserved.customer_id,
            revision: reserved.revision,
            amount: reserved.amount,
        };
        let meta = Metadata::caused_by(&message.metadata, chrono::Utc::now());
        let reply = |payment: &Payment| match *payment {
            Payment::Captured { payment_id } => OutgoingMessage::new(
                request.order_id,
                &PaymentCaptured {
                    order_id: request.order_id,
                    payment_id,
                    customer_id: request.customer_id,
                    revision: request.revision,
                    amount: request.amount,
                },
                meta,
            ),
            Payment::Declined {
                available_credit, ..
            } => OutgoingMessage::new(
                request.order_id,
                &PaymentDeclined {
                    order_id: request.order_id,
                    customer_id: request.customer_id,
                    revision: request.revision,
                    amount: request.amount,
                    available_credit,
                },
                meta,
            ),
        };
        payments::capture(conn, request, self.starting_credit, reply).await?;
        Ok(())
    }
}
