//! Writing to the outbox. Callers pass their open transaction: the messages commit or roll back
//! with the state change that caused them, and nothing is ever published from memory.

use chrono::{DateTime, Utc};
use contracts::Contract;
use sqlx::PgConnection;
use uuid::Uuid;

/// Where a message comes from and what it belongs to. Carried in Kafka headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub message_id: Uuid,
    /// Shared by every message of one saga.
    pub correlation_id: Uuid,
    /// The message that caused this one; `None` for a saga's first message.
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the span that wrote the message.
    pub traceparent: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl Metadata {
    /// Metadata for a message caused by `cause` (same correlation, cause as causation).
    pub fn caused_by(cause: &Metadata, occurred_at: DateTime<Utc>) -> Self {
        Self {
            message_id: Uuid::now_v7(),
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.message_id),
            // The span writing this message (the consumer's) continues the cause's trace.
            traceparent: platform::trace::current_traceparent()
                .or_else(|| cause.traceparent.clone()),
            occurred_at,
        }
    }
}

/// A message ready for the outbox: a contract serialised, with its routing and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub topic: &'static str,
    pub key: String,
    pub message_type: &'static str,
    pub schema_version: u16,
    pub payload: String,
    pub metadata: Metadata,
}

impl OutgoingMessage {
    /// Serialises `message`, keyed by `key` (always an order id in this system).
    pub fn new<C: Contract>(key: Uuid, message: &C, metadata: Metadata) -> Self {
        Self {
            topic: C::TOPIC,
            key: key.to_string(),
            message_type: C::TYPE,
            schema_version: C::VERSION,
            // A contract is plain data (strings, numbers, vectors): serialising cannot fail.
            payload: serde_json::to_string(message).unwrap_or_else(|_| "null".to_owned()),
            metadata,
        }
    }
}

/// Inserts `messages` in one statement, in order, inside the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    messages: &[OutgoingMessage],
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut message_ids = Vec::with_capacity(messages.len());
    let mut topics = Vec::with_capacity(messages.len());
    let mut keys = Vec::with_capacity(messages.len());
    let mut types = Vec::with_capacity(messages.len());
    let mut versions = Vec::with_capacity(messages.len());
    let mut payloads = Vec::with_capacity(messages.len());
    let mut correlations = Vec::with_capacity(messages.len());
    let mut causations = Vec::with_capacity(messages.len());
    let mut traceparents = Vec::with_capacity(messages.len());
    let mut occurred = Vec::with_capacity(messages.len());
    for m in messages {
        message_ids.push(m.metadata.message_id);
        topics.push(m.topic);
        keys.push(m.key.as_str());
        types.push(m.message_type);
        versions.push(i16::try_from(m.schema_version).unwrap_or(i16::MAX));
        payloads.push(m.payload.as_str());
        correlations.push(m.metadata.correlation_id);
        causations.push(m.metadata.causation_id);
        traceparents.push(m.metadata.traceparent.as_deref());
        occurred.push(m.metadata.occurred_at);
    }
    // `WITH ORDINALITY` + `ORDER BY` keeps the ids in the order the caller gave.
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, message_key, message_type, schema_version, payload,
                             correlation_id, causation_id, traceparent, occurred_at)
         SELECT m, t, k, ty, v, p::json, c, ca, tp, o
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::text[],
                     $7::uuid[], $8::uuid[], $9::text[], $10::timestamptz[])
              WITH ORDINALITY AS u(m, t, k, ty, v, p, c, ca, tp, o, n)
         ORDER BY n",
    )
    .bind(&message_ids)
    .bind(&topics)
    .bind(&keys)
    .bind(&types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&correlations)
    .bind(&causations)
    .bind(&traceparents)
    .bind(&occurred)
    .execute(conn)
    .await?;
    Ok(())
}
