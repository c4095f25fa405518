//! A received record as the consumer keeps it: copied out of librdkafka, with its headers
//! read into an [`IncomingMessage`] or the reason it is poison; and storing its offset once it
//! is settled.

use rdkafka::consumer::Consumer as _;
use rdkafka::message::BorrowedMessage;

use crate::dead_letters::Record;
use crate::headers;

use super::IncomingMessage;
use super::stats::KafkaConsumer;

/// A received record, copied out of librdkafka so a partition task can own it.
pub(super) struct Envelope {
    pub(super) record: Record,
    /// The message, or why it is poison before any handler sees it.
    pub(super) parsed: Result<IncomingMessage, String>,
}

/// Marks everything up to `envelope` as done for the next offset commit. Fails only when the
/// partition was revoked meanwhile; its new owner redelivers and the inbox skips the work.
pub(super) fn store_offset(kafka: &KafkaConsumer, envelope: &Envelope) {
    let record = &envelope.record;
    // librdkafka stores `offset + 1`, the next offset to read.
    if let Err(e) = kafka.store_offset(&record.kafka_topic, record.partition, record.offset) {
        tracing::debug!(topic = %record.kafka_topic, partition = record.partition, error = %e,
            "offset not stored (partition revoked?)");
    }
}

impl Envelope {
    pub(super) fn new(message: &BorrowedMessage<'_>, topic_prefix: &str) -> Self {
        let record = Record::copy(message);
        let topic = record
            .kafka_topic
            .strip_prefix(topic_prefix)
            .unwrap_or(&record.kafka_topic);
        let parsed = parse(topic, &record);
        Self { record, parsed }
    }
}

/// The message a record carries, or why it is poison before any handler sees it.
fn parse(topic: &str, record: &Record) -> Result<IncomingMessage, String> {
    let decoded = headers::decode(&record.headers)?;
    let key = record
        .key
        .as_deref()
        .map(|k| String::from_utf8(k.to_vec()).map_err(|_| "record key is not UTF-8".to_owned()))
        .transpose()?;
    Ok(IncomingMessage {
        topic: topic.to_owned(),
        partition: record.partition,
        offset: record.offset,
        key,
        message_type: decoded.message_type,
        schema_version: decoded.schema_version,
        payload: record
            .payload
            .as_deref()
            .ok_or("record has no payload")?
            .to_vec(),
        metadata: decoded.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Metadata;

    fn record(key: Option<&[u8]>, payload: Option<&[u8]>) -> Record {
        let metadata = Metadata {
            message_id: uuid::Uuid::now_v7(),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        };
        let headers = headers::encode("OrderPlaced", 1, &metadata);
        Record {
            kafka_topic: "p.shop.orders".to_owned(),
            partition: 2,
            offset: 7,
            key: key.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            headers: rdkafka::message::Headers::iter(&headers)
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        }
    }

    #[test]
    fn a_record_with_the_relay_headers_is_a_message() {
        let m = parse("shop.orders", &record(Some(b"k"), Some(b"{}"))).unwrap();
        assert_eq!(
            (m.topic.as_str(), m.partition, m.offset),
            ("shop.orders", 2, 7)
        );
        assert_eq!(m.message_type, "OrderPlaced");
        assert_eq!(m.key.as_deref(), Some("k"));
    }

    #[test]
    fn a_record_without_payload_or_with_a_key_that_is_not_text_is_poison() {
        assert_eq!(
            parse("t", &record(None, None)).unwrap_err(),
            "record has no payload"
        );
        assert_eq!(
            parse("t", &record(Some(&[0xff]), Some(b"{}"))).unwrap_err(),
            "record key is not UTF-8"
        );
    }
}
