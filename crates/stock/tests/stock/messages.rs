//! Messages as the stock consumer receives them, and the handler run on them, for the handler
//! tests.

use contracts::Contract;
use messaging::consumer::{HandlerError, IncomingMessage};
use messaging::outbox::{Metadata, OutgoingMessage};
use sqlx::PgPool;
use stock::handler::StockHandler;
use uuid::Uuid;

/// A message of order `order_id`'s saga as a service writes it to its outbox, the first of
/// its saga (no cause).
pub fn outgoing<C: Contract>(order_id: Uuid, message: &C) -> OutgoingMessage {
    let metadata = Metadata {
        message_id: Uuid::now_v7(),
        correlation_id: order_id,
        causation_id: None,
        traceparent: None,
        occurred_at: chrono::Utc::now(),
    };
    OutgoingMessage::new(order_id, message, metadata)
}

/// An order message as the consumer hands it over.
pub fn incoming<C: Contract>(order_id: Uuid, message: &C) -> IncomingMessage {
    let outgoing = outgoing(order_id, message);
    IncomingMessage {
        topic: outgoing.topic.to_owned(),
        partition: 0,
        offset: 0,
        key: Some(outgoing.key),
        message_type: outgoing.message_type.to_owned(),
        schema_version: outgoing.schema_version,
        payload: outgoing.payload.into_bytes(),
        metadata: outgoing.metadata,
    }
}

/// A batch through the stock handler, in a transaction of its own, committed if it succeeds.
pub async fn handle(pool: &PgPool, messages: &[IncomingMessage]) -> Result<(), HandlerError> {
    test_support::handler::handle(&StockHandler, pool, messages).await
}
