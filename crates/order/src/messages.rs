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
