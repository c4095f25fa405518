//! The integration messages the order's events publish. Domain events stay private to the
//! service; what other services see is the versioned contract in `contracts::orders`.

use contracts::orders::{OrderCompleted, OrderFailed, OrderLinesChanged, OrderPlaced};
use messaging::outbox::{Metadata, OutgoingMessage};

use crate::domain::{Event, Line, Order, OrderId};

/// One message per event, built from the order's state right after that event (a retired
/// event, never decided any more, has none).
pub fn for_events(
    order_id: OrderId,
    before: &Order,
    events: &[(Event, Metadata)],
) -> Vec<OutgoingMessage> {
    let mut order = before.clone();
    let id = order_id.0;
    events
        .iter()
        .filter_map(|(event, metadata)| {
            order = order.clone().apply(event);
            let metadata = metadata.clone();
            let lines = || order.lines.iter().map(contract_line).collect::<Vec<_>>();
            Some(match event {
                Event::OrderPlaced { customer_id, .. } => OutgoingMessage::new(
                    id,
                    &OrderPlaced {
                        order_id: id,
                        customer_id: customer_id.0,
                        revision: order.revision,
                        lines: lines(),
                        total: order.total().amount(),
                    },
                    metadata,
                ),
                Event::ItemAdded(_) | Event::ItemRemoved { .. } => OutgoingMessage::new(
                    id,
                    &OrderLinesChanged {
                        order_id: id,
                        customer_id: order.customer_id.0,
                        revision: order.revision,
                        lines: lines(),
                        total: order.total().amount(),
                    },
                    metadata,
                ),
                Event::OrderCompleted { payment_id } => OutgoingMessage::new(
                    id,
                    &OrderCompleted {
                        order_id: id,
                        customer_id: order.customer_id.0,
                        payment_id: *payment_id,
                        lines: lines(),
                        total: order.total().amount(),
                    },
                    metadata,
                ),
                Event::OrderFailed { reason } => OutgoingMessage::new(
                    id,
                    &OrderFailed {
                        order_id: id,
                        customer_id: order.customer_id.0,
                        reason: *reason,
                        lines: lines(),
                        total: order.total().amount(),
                    },
                    metadata,
                ),
                Event::PaymentRequested { .. } => return None,
            })
        })
        .collect()
}

pub fn contract_line(line: &Line) -> contracts::Line {
    contracts::Line {
        product_id: line.product_id.get(),
        quantity: line.quantity.get(),
        unit_price: line.unit_price.money().amount(),
    }
}

/// Reads the event store as other services read the order's topic: each stored event becomes
/// the contract message it published (`OrderMessage`, decoded and validated as a consumer
/// decodes it), so a reader that rebuilds from the store derives what it derives live. Orders
/// are held in memory only while pending.
#[derive(Debug, Default)]
pub struct Replay {
    pending: std::collections::HashMap<uuid::Uuid, Order>,
}

/// A stored event that does not replay into a message.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Corrupt(#[from] crate::view::CorruptEvent),
    #[error(
        "event {version} of order {order_id} published a message that does not decode: {source}"
    )]
    Contract {
        order_id: uuid::Uuid,
        version: i32,
        source: contracts::DecodeError,
    },
}

impl Replay {
    /// The message `recorded` published, if any (a retired event published none).
    pub fn next(
        &mut self,
        recorded: &crate::event_store::RecordedEvent,
    ) -> Result<Option<contracts::orders::OrderMessage>, ReplayError> {
        let event = crate::view::domain_event(recorded)?;
        let id = recorded.stream_id;
        let before = self.pending.remove(&id).unwrap_or_default();
        let stored = &recorded.metadata.0;
        let metadata = Metadata {
            message_id: stored.message_id,
            correlation_id: stored.correlation_id,
            causation_id: stored.causation_id,
            traceparent: stored.traceparent.clone(),
            occurred_at: recorded.recorded_at,
        };
        let outgoing = for_events(OrderId(id), &before, &[(event.clone(), metadata)]);
        let after = before.apply(&event);
        if after.status == crate::domain::Status::Pending {
            self.pending.insert(id, after);
        }
        outgoing
            .first()
            .map(|m| {
                contracts::orders::OrderMessage::decode(
                    m.message_type,
                    m.schema_version,
                    m.payload.as_bytes(),
                )
                .map_err(|source| ReplayError::Contract {
                    order_id: id,
                    version: recorded.version,
                    source,
                })
            })
            .transpose()
    }

    /// Orders seen and not yet settled.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
