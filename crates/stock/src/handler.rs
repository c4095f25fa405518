//! What the stock service does with each message. Runs inside the idempotent consumer's
//! transaction: the reservation changes, the replies in the outbox and the inbox rows commit
//! together.
//!
//! Every message of a micro-batch is decided against one [`Ledger`]: the batch reads its
//! reservations and products once, under the stock lock, and writes once. All stock messages
//! contend for the same few product rows, so this keeps the serialised part of each transaction
//! to a handful of round trips however many messages it carries.
//!
//! An order that fails, for any reason (out of stock, declined, timed out), is released: what it
//! holds goes back, no later revision of it is held again, and `StockReleased` tells payment to
//! refund whatever it captured for the order and to capture nothing more for it. A message whose
//! counts would overflow fails the batch permanently (it is dead-lettered), never with a panic.

use contracts::orders::OrderMessage;
use contracts::payments::PaymentMessage;
use contracts::stock::{StockReleased, StockReservationFailed, StockReserved};
use contracts::topics;
use messaging::consumer::{Handler, HandlerError, IncomingMessage, Traced};
use messaging::outbox::{Metadata, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::reservations::{Error, Held, Ledger};

pub struct StockHandler;

/// What a message asks of stock.
enum Action {
    /// Hold the order's lines; once they are held, payment is asked to capture `total` from
    /// the customer.
    Hold {
        order_id: Uuid,
        customer_id: Uuid,
        revision: u32,
        lines: Vec<contracts::Line>,
        total: Decimal,
    },
    Release(Uuid),
    Commit(Uuid),
}

impl Action {
    fn of(message: &IncomingMessage) -> Result<Option<Self>, HandlerError> {
        Ok(match message.topic.as_str() {
            topics::ORDERS => match message.decode(OrderMessage::decode)? {
                OrderMessage::OrderPlaced(m) => Some(Self::Hold {
                    order_id: m.order_id,
                    customer_id: m.customer_id,
                    revision: m.revision,
                    lines: m.lines,
                    total: m.total,
                }),
                OrderMessage::OrderLinesChanged(m) => Some(Self::Hold {
                    order_id: m.order_id,
                    customer_id: m.customer_id,
                    revision: m.revision,
                    lines: m.lines,
                    total: m.total,
                }),
                OrderMessage::OrderCompleted(m) => Some(Self::Commit(m.order_id)),
                // Whatever the reason (a timed-out order may hold stock; one that failed its
                // reservation holds nothing): the order is over.
                OrderMessage::OrderFailed(m) => Some(Self::Release(m.order_id)),
            },
            topics::PAYMENTS => match message.decode(PaymentMessage::decode)? {
                // Compensation: the payment failed, so the order will; its stock goes back.
                PaymentMessage::PaymentDeclined(m) => Some(Self::Release(m.order_id)),
                PaymentMessage::PaymentCaptured(_) => None,
            },
            other => {
                return Err(HandlerError::Permanent(format!(
                    "stock does not consume {other}"
                )));
            }
        })
    }

    fn order_id(&self) -> Uuid {
        match self {
            Self::Hold { order_id, .. } | Self::Release(order_id) | Self::Commit(order_id) => {
                *order_id
            }
        }
    }

    /// Decides the action in `ledger`; returns the reply to publish, if any.
    fn apply(
        &self,
        ledger: &mut Ledger,
        cause: &Metadata,
    ) -> Result<Option<OutgoingMessage>, Error> {
        let meta = || Metadata::caused_by(cause, chrono::Utc::now());
        Ok(match self {
            Self::Hold {
                order_id,
                customer_id,
                revision,
                lines,
                total,
            } => {
                let (order_id, revision) = (*order_id, *revision);
                match ledger.hold(order_id, revision, lines)? {
                    Held::Ignored => None,
                    Held::Reserved => Some(OutgoingMessage::new(
                        order_id,
                        &StockReserved {
                            order_id,
                            customer_id: *customer_id,
                            revision,
                            amount: *total,
                        },
                        meta(),
                    )),
                    Held::Failed {
                        reason,
                        product_ids,
                    } => Some(OutgoingMessage::new(
                        order_id,
                        &StockReservationFailed {
                            order_id,
                            revision,
                            reason,
                            product_ids,
                        },
                        meta(),
                    )),
                }
            }
            // Announced whenever this released the order, held or not: payment refunds on it
            // and marks the order final, so that a reservation of the order redriven later is
            // never paid for.
            Self::Release(order_id) => ledger.release(*order_id)?.then(|| {
                OutgoingMessage::new(
                    *order_id,
                    &StockReleased {
                        order_id: *order_id,
                    },
                    meta(),
                )
            }),
            Self::Commit(order_id) => {
                ledger.commit(*order_id)?;
                None
            }
        })
    }
}

impl Handler for StockHandler {
    /// Captures change nothing in stock.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        use contracts::Contract;
        message.message_type == contracts::payments::PaymentCaptured::TYPE
    }

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
        let products: Vec<i64> = actions
            .iter()
            .filter_map(|(a, _)| match a {
                Action::Hold { lines, .. } => Some(lines.iter().map(|l| l.product_id)),
                _ => None,
            })
            .flatten()
            .collect();
        let mut ledger = Ledger::load(conn, &orders, &products).await?;
        let mut replies = Vec::new();
        for (action, traced) in &actions {
            // Decided in the message's span, so that its reply continues the message's trace.
            let _entered = traced.span.enter();
            replies.extend(action.apply(&mut ledger, &traced.message.metadata)?);
        }
        ledger.save(conn, &replies).await?;
        Ok(())
    }
}
