//! What the stock service does with each message. Runs inside the idempotent consumer's
//! transaction: the reservation change, the reply in the outbox and the inbox row commit
//! together.

use contracts::orders::OrderMessage;
use contracts::payments::PaymentMessage;
use contracts::stock::{StockReleased, StockReservationFailed, StockReserved};
use contracts::topics;
use messaging::consumer::{Handler, HandlerError, IncomingMessage};
use messaging::outbox::{self, Metadata, OutgoingMessage};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::reservations::{self, Held};

pub struct StockHandler;

impl Handler for StockHandler {
    /// Payment requests and captures change nothing in stock.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        use contracts::Contract;
        use contracts::orders::PaymentRequested;
        use contracts::payments::PaymentCaptured;
        [PaymentRequested::TYPE, PaymentCaptured::TYPE].contains(&message.message_type.as_str())
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        message: &IncomingMessage,
    ) -> Result<(), HandlerError> {
        let meta = Metadata::caused_by(&message.metadata, chrono::Utc::now());
        let reply = match message.topic.as_str() {
            topics::ORDERS => match message.decode(OrderMessage::decode)? {
                OrderMessage::OrderPlaced(m) => {
                    hold(conn, m.order_id, m.revision, &m.lines, meta).await?
                }
                OrderMessage::OrderLinesChanged(m) => {
                    hold(conn, m.order_id, m.revision, &m.lines, meta).await?
                }
                OrderMessage::OrderCompleted(m) => {
                    reservations::commit(conn, m.order_id).await?;
                    None
                }
                // Defensive: a failed order holds nothing, whatever the reason.
                OrderMessage::OrderFailed(m) => release(conn, m.order_id, meta).await?,
                OrderMessage::PaymentRequested(_) => None,
            },
            topics::PAYMENTS => match message.decode(PaymentMessage::decode)? {
                // Compensation: the payment failed, so the order will; its stock goes back.
                PaymentMessage::PaymentDeclined(m) => release(conn, m.order_id, meta).await?,
                PaymentMessage::PaymentCaptured(_) => None,
            },
            other => {
                return Err(HandlerError::Permanent(format!(
                    "stock does not consume {other}"
                )));
            }
        };
        if let Some(reply) = reply {
            outbox::enqueue(conn, &[reply]).await?;
        }
        Ok(())
    }
}

async fn hold(
    conn: &mut PgConnection,
    order_id: Uuid,
    revision: u32,
    lines: &[contracts::Line],
    meta: Metadata,
) -> Result<Option<OutgoingMessage>, HandlerError> {
    Ok(
        match reservations::hold(conn, order_id, revision, lines).await? {
            Held::Ignored => None,
            Held::Reserved => Some(OutgoingMessage::new(
                order_id,
                &StockReserved { order_id, revision },
                meta,
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
                meta,
            )),
        },
    )
}

async fn release(
    conn: &mut PgConnection,
    order_id: Uuid,
    meta: Metadata,
) -> Result<Option<OutgoingMessage>, HandlerError> {
    let released = reservations::release(conn, order_id).await?;
    Ok(released.then(|| OutgoingMessage::new(order_id, &StockReleased { order_id }, meta)))
}
