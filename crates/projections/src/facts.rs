//! What the read models need of an order event, whichever way it arrives: a Kafka message on
//! the orders topic (live) or a stored event folded with its order (rebuild). Both carry the
//! same message id for the same fact, which is what lets rebuild and live overlap.

use contracts::orders::OrderMessage;
use rdkafka::message::{BorrowedMessage, Message};
use rust_decimal::Decimal;
use uuid::Uuid;

/// One message of the orders topic as the projections see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub message_id: Uuid,
    /// Kafka partition and offset; a rebuild uses partition `-1` and a running sequence.
    pub partition: i32,
    pub offset: i64,
    pub change: Change,
}

/// What a fact changes in the read models.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An order completed with these final lines.
    Completed(Vec<LineKey>),
    /// An order failed.
    Failed,
    /// Placed, lines changed: nothing a report counts.
    Nothing,
}

/// A line as the products report keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineKey {
    pub product_id: i64,
    /// The canonical price text, two places: `"12.50"`.
    pub unit_price: String,
    pub quantity: u32,
}

impl Change {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Change::Nothing)
    }
}

/// `12.5` and `12.50` must be one hash field: always exactly two places.
pub fn price_key(price: Decimal) -> String {
    let mut p = price;
    p.rescale(2);
    p.to_string()
}

impl From<&contracts::Line> for LineKey {
    fn from(l: &contracts::Line) -> Self {
        Self {
            product_id: l.product_id,
            unit_price: price_key(l.unit_price),
            quantity: l.quantity,
        }
    }
}

impl From<&OrderMessage> for Change {
    fn from(m: &OrderMessage) -> Self {
        match m {
            OrderMessage::OrderCompleted(c) => {
                Change::Completed(c.lines.iter().map(LineKey::from).collect())
            }
            OrderMessage::OrderFailed(_) => Change::Failed,
            OrderMessage::OrderPlaced(_) | OrderMessage::OrderLinesChanged(_) => Change::Nothing,
        }
    }
}

/// Reads a Kafka record of the orders topic. `Err` is why it is poison (missing headers, an
/// unknown type, a payload that does not decode).
pub fn from_kafka(message: &BorrowedMessage<'_>) -> Result<Fact, String> {
    let decoded = messaging::headers::decode(&messaging::headers::pairs_of(message))?;
    let (message_id, message_type, version) = (
        decoded.metadata.message_id,
        decoded.message_type,
        decoded.schema_version,
    );
    let payload = message.payload().ok_or("record has no payload")?;
    let decoded =
        OrderMessage::decode(&message_type, version, payload).map_err(|e| e.to_string())?;
    Ok(Fact {
        message_id,
        partition: message.partition(),
        offset: message.offset(),
        change: Change::from(&decoded),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_have_two_places() {
        assert_eq!(price_key(Decimal::new(125, 1)), "12.50");
        assert_eq!(price_key(Decimal::new(1250, 2)), "12.50");
        assert_eq!(price_key(Decimal::new(7, 0)), "7.00");
    }
}
