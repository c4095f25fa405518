//! The order's part in the choreography: stock and payment outcomes become commands on the
//! order, executed in the idempotent consumer's transaction (events, outbox and inbox row
//! commit together). The rules that make late, repeated or stale replies harmless live in the
//! aggregate (`Order::decide`).

use contracts::payments::PaymentMessage;
use contracts::stock::{ReservationFailure, StockMessage};
use contracts::{orders::FailureReason, topics};
use messaging::consumer::{Handler, HandlerError, IncomingMessage};
use sqlx::PgConnection;

use crate::commands::{self, CommandError, Context};
use crate::domain::{Command, OrderId};

pub struct SagaHandler;

impl Handler for SagaHandler {
    /// A reservation is payment's to act on, and a released one is the end of a compensation
    /// the order already failed for.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        use contracts::Contract;
        use contracts::stock::{StockReleased, StockReserved};
        [StockReserved::TYPE, StockReleased::TYPE].contains(&message.message_type.as_str())
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        message: &IncomingMessage,
    ) -> Result<(), HandlerError> {
        let (order_id, command) = match message.topic.as_str() {
            topics::STOCK => match message.decode(StockMessage::decode)? {
                StockMessage::StockReservationFailed(m) => (
                    m.order_id,
                    Command::RejectStock {
                        revision: m.revision,
                        reason: match m.reason {
                            ReservationFailure::OutOfStock => FailureReason::OutOfStock,
                            ReservationFailure::UnknownProduct => FailureReason::UnknownProduct,
                        },
                    },
                ),
                StockMessage::StockReserved(_) | StockMessage::StockReleased(_) => return Ok(()),
            },
            topics::PAYMENTS => match message.decode(PaymentMessage::decode)? {
                PaymentMessage::PaymentCaptured(m) => (
                    m.order_id,
                    Command::ConfirmPayment {
                        revision: m.revision,
                        payment_id: m.payment_id,
                    },
                ),
                PaymentMessage::PaymentDeclined(m) => (
                    m.order_id,
                    Command::DeclinePayment {
                        revision: m.revision,
                    },
                ),
            },
            other => {
                return Err(HandlerError::Permanent(format!(
                    "order does not consume {other}"
                )));
            }
        };
        let context = Context {
            correlation_id: message.metadata.correlation_id,
            causation_id: Some(message.metadata.message_id),
            traceparent: message.metadata.traceparent.clone(),
            now: chrono::Utc::now(),
        };
        match commands::execute_in(conn, OrderId(order_id), command, &context).await {
            Ok(_) => Ok(()),
            // Lost a race with an HTTP command: the batch rolls back and is retried, and the
            // command is decided again against the new state.
            Err(CommandError::Conflict(e)) => Err(HandlerError::Transient(Box::new(e))),
            Err(CommandError::Database(e)) => Err(e.into()),
            Err(e @ (CommandError::Domain(_) | CommandError::Corrupt(_))) => {
                Err(HandlerError::Permanent(e.to_string()))
            }
            Err(e @ (CommandError::Contended | CommandError::KeyReused)) => {
                Err(HandlerError::Transient(Box::new(e)))
            }
        }
    }
}
