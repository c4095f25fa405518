//! What the API shows of an order: the fold of its stored events, with times from the store.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{Event, Money, Order, Price, ProductId, Quantity, Status};
use crate::event_store::RecordedEvent;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: Status,
    pub failure_reason: Option<&'static str>,
    pub items: Vec<ItemView>,
    pub total: Money,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Price,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub version: i32,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A stored event that no longer deserialises: a bug or a schema change without an upcaster.
#[derive(Debug, thiserror::Error)]
#[error("stored event {stream_id}@{version} ({event_type}) does not deserialise: {source}")]
pub struct CorruptEvent {
    pub stream_id: Uuid,
    pub version: i32,
    pub event_type: String,
    pub source: serde_json::Error,
}

/// The domain event of a stored row.
pub fn domain_event(recorded: &RecordedEvent) -> Result<Event, CorruptEvent> {
    let tagged = serde_json::json!({ "type": recorded.event_type, "data": recorded.payload });
    serde_json::from_value(tagged).map_err(|source| CorruptEvent {
        stream_id: recorded.stream_id,
        version: recorded.version,
        event_type: recorded.event_type.clone(),
        source,
    })
}

/// Folds a stream; `None` if it has no events.
pub fn fold(stream: &[RecordedEvent]) -> Result<Option<Order>, CorruptEvent> {
    if stream.is_empty() {
        return Ok(None);
    }
    let mut order = Order::default();
    for recorded in stream {
        order = order.apply(&domain_event(recorded)?);
    }
    Ok(Some(order))
}

impl OrderView {
    pub fn of(order: &Order, stream: &[RecordedEvent]) -> Option<Self> {
        let (first, last) = (stream.first()?, stream.last()?);
        Some(Self {
            order_id: first.stream_id,
            customer_id: order.customer_id.0,
            status: order.status,
            failure_reason: order.failure_reason.map(|r| r.as_str()),
            items: order
                .lines
                .iter()
                .map(|l| ItemView {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            total: order.total(),
            version: order.version,
            created_at: first.recorded_at,
            updated_at: last.recorded_at,
        })
    }
}

impl From<&RecordedEvent> for EventView {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            version: e.version,
            event_type: e.event_type.clone(),
            data: e.payload.clone(),
            recorded_at: e.recorded_at,
        }
    }
}
