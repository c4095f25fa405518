//! What the payment service does with each message, inside the idempotent consumer's
//! transaction. Payment follows stock: it pays for what stock holds, and refunds what it
//! captured once stock holds nothing for the order any more (a failed reservation, a release).
//!
//! Every message of a micro-batch is decided against one [`Accounts`]: the batch reads its
//! orders' payments and locks its customers once, and writes once, however many messages it
//! carries.

use contracts::payments::{PaymentCaptured, PaymentDeclined};
use contracts::stock::StockMessage;
use messaging::consumer::{Handler, HandlerError, IncomingMessage, Traced};
use messaging::outbox::{Metadata, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::payments::{Accounts, Payment, Request};

pub struct PaymentHandler {
    /// Credit of a customer seen for the first time.
    pub starting_credit: Decimal,
}

/// What a message asks of payment.
enum Action {
    /// Stock holds the order's lines: capture their total.
    Pay(Request),
    /// Stock holds nothing for the order's `revision`: neither is its money held.
    Refund { order_id: Uuid, revision: u32 },
    /// Stock released the order, which failed: refund, and never pay for it again.
    Release(Uuid),
}

impl Action {
    fn of(message: &IncomingMessage) -> Result<Option<Self>, HandlerError> {
        Ok(match message.decode(StockMessage::decode)? {
            StockMessage::StockReserved(reserved) => Some(Self::Pay(Request {
                order_id: reserved.order_id,
                customer_id: reserved.customer_id,
                revision: reserved.revision,
                amount: reserved.amount,
            })),
            StockMessage::StockReservationFailed(failed) => Some(Self::Refund {
                order_id: failed.order_id,
                revision: failed.revision,
            }),
            StockMessage::StockReleased(released) => Some(Self::Release(released.order_id)),
        })
    }

    fn order_id(&self) -> Uuid {
        match self {
            Self::Pay(request) => request.order_id,
            Self::Refund { order_id, .. } | Self::Release(order_id) => *order_id,
        }
    }

    /// Decides the action in `accounts`; returns the reply to publish, if any.
    fn apply(
        &self,
        accounts: &mut Accounts,
        cause: &Metadata,
    ) -> Result<Option<OutgoingMessage>, HandlerError> {
        let request = match *self {
            Self::Pay(request) => request,
            Self::Refund { order_id, revision } => {
                accounts.reservation_failed(order_id, revision)?;
                return Ok(None);
            }
            Self::Release(order_id) => {
                accounts.release(order_id)?;
                return Ok(None);
            }
        };
        let meta = Metadata::caused_by(cause, chrono::Utc::now());
        // Ids are minted here, at the edge: the rules take them as given.
        let reply = match accounts.capture(request, Uuid::now_v7())? {
            None => return Ok(None),
            Some(Payment::Captured { payment_id }) => OutgoingMessage::new(
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
            Some(Payment::Declined {
                available_credit, ..
            }) => OutgoingMessage::new(
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
        Ok(Some(reply))
    }
}

impl Handler for PaymentHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        messages: &[Traced<'_>],
    ) -> Result<(), HandlerError> {
        let actions = Traced::parse_each(messages, Action::of)?;
        if actions.is_empty() {
            return Ok(());
        }
        let orders: Vec<Uuid> = actions.iter().map(|(a, _)| a.order_id()).collect();
        let customers: Vec<Uuid> = (actions.iter())
            .filter_map(|(a, _)| match a {
                Action::Pay(request) => Some(request.customer_id),
                Action::Refund { .. } | Action::Release(_) => None,
            })
            .collect();
        let mut accounts = Accounts::load(conn, &orders, &customers, self.starting_credit).await?;
        let mut replies = Vec::new();
        for (action, traced) in &actions {
            // Decided in the message's span, so that its reply continues the message's trace.
            let _entered = traced.span.enter();
            replies.extend(action.apply(&mut accounts, &traced.message.metadata)?);
        }
        accounts.save(conn, &replies).await?;
        Ok(())
    }
}
