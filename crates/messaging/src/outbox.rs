//! Writing to the outbox. Callers pass their open transaction: the messages commit or roll back
//! with the state change that caused them, and nothing is ever published from memory.

use chrono::{DateTime, Utc};
use contracts::Contract;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
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
    /// Serialises `message`, keyed by an order id (the key of every saga message).
    pub fn new<C: Contract>(key: Uuid, message: &C, metadata: Metadata) -> Self {
        Self::keyed(key.to_string(), message, metadata)
    }

    /// Serialises `message`, keyed by any string: a topic keyed by something other than an
    /// order (the catalog's, by `contracts::catalog::product_key`). The relay treats keys as
    /// opaque strings; per key it keeps the order of the rows.
    pub fn keyed<C: Contract>(key: String, message: &C, metadata: Metadata) -> Self {
        Self {
            topic: C::TOPIC,
            key,
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
    let mut args = PgArguments::default();
    add_rows(&mut args, messages).map_err(sqlx::Error::Encode)?;
    sqlx::query_with(&insert_rows_sql(1), args)
        .execute(conn)
        .await?;
    Ok(())
}

/// `INSERT INTO outbox …` whose rows come from ten array parameters, `$first` onwards, bound by
/// [`add_rows`]. For a caller that folds the outbox write into a statement of its own (as a
/// data-modifying `WITH`), so that a state change and its messages cost one round trip.
pub fn insert_rows_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 10).map(|n| format!("${n}")).collect();
    // `WITH ORDINALITY` + `ORDER BY` keeps the ids in the order the caller gave.
    format!(
        "INSERT INTO outbox (message_id, topic, message_key, message_type, schema_version, payload,
                             correlation_id, causation_id, traceparent, occurred_at)
         SELECT m, t, k, ty, v, p::json, c, ca, tp, o
         FROM UNNEST({}::uuid[], {}::text[], {}::text[], {}::text[], {}::int2[], {}::text[],
                     {}::uuid[], {}::uuid[], {}::text[], {}::timestamptz[])
              WITH ORDINALITY AS u(m, t, k, ty, v, p, c, ca, tp, o, n)
         ORDER BY n",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
    )
}

/// For a statement that queues `messages` from a data-modifying `WITH` of its own: binds them
/// after the parameters already in `args` and returns the `WITH` item to append to the
/// statement's own, `, queued AS (INSERT INTO outbox …)`; empty when there are no messages.
pub fn queue_in_with(
    args: &mut PgArguments,
    messages: &[OutgoingMessage],
) -> Result<String, BoxDynError> {
    if messages.is_empty() {
        return Ok(String::new());
    }
    let first = args.len() + 1;
    add_rows(args, messages)?;
    Ok(format!(", queued AS ({})", insert_rows_sql(first)))
}

/// Binds `messages` as the ten arrays [`insert_rows_sql`] reads, one per column.
pub fn add_rows(args: &mut PgArguments, messages: &[OutgoingMessage]) -> Result<(), BoxDynError> {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.metadata.message_id).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.message_type).collect();
    let versions: Vec<i16> = messages
        .iter()
        .map(|m| i16::try_from(m.schema_version).unwrap_or(i16::MAX))
        .collect();
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    let correlations: Vec<Uuid> = messages.iter().map(|m| m.metadata.correlation_id).collect();
    let causations: Vec<Option<Uuid>> = messages.iter().map(|m| m.metadata.causation_id).collect();
    let traceparents: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.metadata.traceparent.as_deref())
        .collect();
    let occurred: Vec<DateTime<Utc>> = messages.iter().map(|m| m.metadata.occurred_at).collect();
    args.add(ids)?;
    args.add(topics)?;
    args.add(keys)?;
    args.add(types)?;
    args.add(versions)?;
    args.add(payloads)?;
    args.add(correlations)?;
    args.add(causations)?;
    args.add(traceparents)?;
    args.add(occurred)?;
    Ok(())
}
