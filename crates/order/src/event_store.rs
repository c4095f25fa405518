//! An append-only event store in PostgreSQL, for any stream of JSON events.
//!
//! - `append` writes a batch of events at `expected_version + 1 …`, and the messages they
//!   cause to the outbox in the same statement; a clash on `(stream_id, version)` is a typed
//!   [`AppendError::Conflict`]. The same statement keeps the `open_sagas` table (orders whose
//!   saga has not settled, read by the deadline) in step: see [`Saga`].
//! - `load` returns one stream in version order, `load_page` a page of it.
//! - `read_all` follows the whole store in a global order that never skips a late commit: rows
//!   are ordered by `(transaction_id, global_position)` and only rows written by transactions
//!   older than the oldest one still running are returned (transaction-id snapshot filtering).
//!   The price is that one long transaction holds readers back until it ends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use messaging::outbox::{self, OutgoingMessage};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgExecutor};
use uuid::Uuid;

/// Metadata stored with every event, and copied into the messages it causes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub message_id: Uuid,
    pub correlation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub schema_version: i16,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RecordedEvent {
    pub stream_id: Uuid,
    pub version: i32,
    pub event_type: String,
    pub schema_version: i16,
    pub payload: serde_json::Value,
    pub metadata: sqlx::types::Json<EventMetadata>,
    pub recorded_at: DateTime<Utc>,
    pub global_position: i64,
    pub transaction_id: i64,
}

impl RecordedEvent {
    /// Where a global reader continues after this event.
    pub fn position(&self) -> Position {
        Position {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// A place in the global order of the store. `Position::START` is before every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl Position {
    pub const START: Position = Position {
        transaction_id: 0,
        global_position: 0,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} moved past version {expected_version}")]
    Conflict {
        stream_id: Uuid,
        expected_version: u32,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Appends `events` at versions `expected_version + 1 ..` and returns them as recorded.
///
/// `messages`, the integration messages the events cause, go to the outbox in the **same
/// statement**: the append is atomic and costs one round trip even outside a transaction.
pub async fn append(
    executor: impl PgExecutor<'_>,
    stream_id: Uuid,
    expected_version: u32,
    events: &[NewEvent],
    messages: &[OutgoingMessage],
) -> Result<Vec<RecordedEvent>, AppendError> {
    let append = StreamAppend {
        stream_id,
        expected_version,
        events,
        saga: Saga::Continues,
    };
    append_many(executor, std::slice::from_ref(&append), messages).await
}

/// New events for one stream, to go at versions `expected_version + 1 ..`.
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub stream_id: Uuid,
    pub expected_version: u32,
    pub events: &'a [NewEvent],
    pub saga: Saga,
}

/// What an append does to the stream's saga, kept in `open_sagas` by the append's statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Saga {
    /// Neither starts nor settles it.
    #[default]
    Continues,
    /// The saga starts now; its deadline counts from this statement.
    Starts,
    /// The saga settled (completed or failed): it no longer has a deadline.
    Settles,
}

/// [`append`] for several streams in one statement (a consumer's micro-batch): all of them and
/// the `messages` are written, or none. Each stream is checked against its own expected
/// version; a [`AppendError::Conflict`] names a stream that moved. Streams must be distinct.
pub async fn append_many(
    executor: impl PgExecutor<'_>,
    appends: &[StreamAppend<'_>],
    messages: &[OutgoingMessage],
) -> Result<Vec<RecordedEvent>, AppendError> {
    let events: Vec<(Uuid, i32, &NewEvent)> = appends
        .iter()
        .flat_map(|append| {
            let first = i64::from(append.expected_version) + 1;
            (append.events.iter().enumerate()).map(move |(i, event)| {
                let version = i32::try_from(first + i as i64).unwrap_or(i32::MAX);
                (append.stream_id, version, event)
            })
        })
        .collect();
    let streams: Vec<Uuid> = events.iter().map(|(stream, ..)| *stream).collect();
    let versions: Vec<i32> = events.iter().map(|(_, version, _)| *version).collect();
    let types: Vec<&str> = events.iter().map(|(.., e)| e.event_type).collect();
    let schema_versions: Vec<i16> = events.iter().map(|(.., e)| e.schema_version).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|(.., e)| &e.payload).collect();
    let metadata: Vec<serde_json::Value> = events
        .iter()
        .map(|(.., e)| serde_json::to_value(&e.metadata).unwrap_or_default())
        .collect();
    let sagas = |which: Saga| -> Vec<Uuid> {
        (appends.iter())
            .filter(|a| a.saga == which)
            .map(|a| a.stream_id)
            .collect()
    };
    let (starting, settling) = (sagas(Saga::Starts), sagas(Saga::Settles));

    let mut args = PgArguments::default();
    let bound = (|| {
        args.add(&streams)?;
        args.add(&versions)?;
        args.add(&types)?;
        args.add(&schema_versions)?;
        args.add(&payloads)?;
        args.add(&metadata)?;
        if !starting.is_empty() {
            args.add(&starting)?;
        }
        if !settling.is_empty() {
            args.add(&settling)?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        outbox::add_rows(&mut args, messages)
    })();
    bound.map_err(sqlx::Error::Encode)?;
    // Each part is a data-modifying `WITH`: it runs whether or not it is referenced. A part with
    // nothing to do is left out (the outbox's trigger would wake the relay for nothing), so the
    // usual appends keep their plain statement.
    let mut parts = Vec::new();
    let mut next = 7;
    if !starting.is_empty() {
        // A placed order is new, but an id placed twice must fail on the events' key (a typed
        // conflict), not here.
        parts.push(format!(
            "started AS (INSERT INTO open_sagas (order_id) SELECT UNNEST(${next}::uuid[])
                         ON CONFLICT (order_id) DO NOTHING)"
        ));
        next += 1;
    }
    if !settling.is_empty() {
        // A row the deadline holds locked is skipped, not waited for: that poller is about to
        // fail this very order, and waiting here while it waits for this append's version of
        // the stream would deadlock. The loser of that race rolls back; a row it leaves behind
        // names a settled order, which the deadline's next poll deletes.
        parts.push(format!(
            "settled AS (DELETE FROM open_sagas WHERE order_id = ANY(ARRAY(
                         SELECT order_id FROM open_sagas WHERE order_id = ANY(${next}::uuid[])
                         FOR UPDATE SKIP LOCKED)))"
        ));
        next += 1;
    }
    if !messages.is_empty() {
        parts.push(format!("queued AS ({})", outbox::insert_rows_sql(next)));
    }
    let with = if parts.is_empty() {
        String::new()
    } else {
        format!("WITH {}", parts.join(",\n"))
    };
    // Rows go in as given (each stream in version order), so global positions follow.
    let sql = format!(
        "{with}
         INSERT INTO events (stream_id, version, event_type, schema_version, payload, metadata)
         SELECT st, v, t, s, p, m
         FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::int2[], $5::jsonb[], $6::jsonb[])
              WITH ORDINALITY AS u(st, v, t, s, p, m, n)
         ORDER BY n
         RETURNING stream_id, version, recorded_at, global_position, transaction_id::text::int8"
    );
    // Only what the database decides comes back; the rest is what we sent.
    let result: Result<Vec<Assigned>, sqlx::Error> =
        sqlx::query_as_with(&sql, args).fetch_all(executor).await;
    let assigned = match result {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("events_stream_version") => {
            // The key that exists, e.g. `Key (stream_id, version)=(…, 3) already exists.`
            let detail = (e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
                .and_then(|e| e.detail())
                .unwrap_or_default();
            let moved = (appends.iter())
                .find(|a| detail.contains(&a.stream_id.to_string()))
                .or(appends.first());
            return Err(AppendError::Conflict {
                stream_id: moved.map_or(Uuid::nil(), |a| a.stream_id),
                expected_version: moved.map_or(0, |a| a.expected_version),
            });
        }
        Err(e) => return Err(e.into()),
    };
    // RETURNING makes no promise about row order.
    let by_key: HashMap<(Uuid, i32), (DateTime<Utc>, i64, i64)> = assigned
        .into_iter()
        .map(|(stream, version, at, position, transaction)| {
            ((stream, version), (at, position, transaction))
        })
        .collect();
    Ok(events
        .into_iter()
        .filter_map(|(stream_id, version, event)| {
            let (recorded_at, global_position, transaction_id) =
                *by_key.get(&(stream_id, version))?;
            Some(RecordedEvent {
                stream_id,
                version,
                event_type: event.event_type.to_owned(),
                schema_version: event.schema_version,
                payload: event.payload.clone(),
                metadata: sqlx::types::Json(event.metadata.clone()),
                recorded_at,
                global_position,
                transaction_id,
            })
        })
        .collect())
}

/// What the database assigns to an appended row, with its key: stream, version, recorded_at,
/// global position and transaction id.
type Assigned = (Uuid, i32, DateTime<Utc>, i64, i64);

pub(crate) const COLUMNS: &str = "stream_id, version, event_type, schema_version, payload, metadata, \
                       recorded_at, global_position, transaction_id::text::int8 AS transaction_id";

/// One stream, in version order; empty if the stream does not exist.
pub async fn load(
    executor: impl PgExecutor<'_>,
    stream_id: Uuid,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    load_many(executor, &[stream_id]).await
}

/// Several streams, each in version order, one stream after another.
pub async fn load_many(
    executor: impl PgExecutor<'_>,
    stream_ids: &[Uuid],
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = ANY($1) ORDER BY stream_id, version"
    ))
    .bind(stream_ids)
    .fetch_all(executor)
    .await
}

/// Up to `limit` events of one stream after version `after`, in version order: a page of its
/// history.
pub async fn load_page(
    executor: impl PgExecutor<'_>,
    stream_id: Uuid,
    after: i32,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND version > $2
         ORDER BY version LIMIT $3"
    ))
    .bind(stream_id)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// Whether a stream has any event.
pub async fn exists(executor: impl PgExecutor<'_>, stream_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND version = 1)")
        .bind(stream_id)
        .fetch_one(executor)
        .await
}

/// Up to `limit` events after `after`, in global order, from transactions that can no longer
/// be joined by a late commit. Call again with the last event's [`RecordedEvent::position`].
pub async fn read_all(
    executor: impl PgExecutor<'_>,
    after: Position,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY transaction_id, global_position
         LIMIT $3"
    ))
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// The customer of an order: the `customerId` of its first event (`OrderPlaced`); `None` for a
/// stream that does not exist.
pub async fn customer_of(
    executor: impl PgExecutor<'_>,
    stream_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let customer: Option<Option<String>> = sqlx::query_scalar(
        "SELECT payload->>'customerId' FROM events WHERE stream_id = $1 AND version = 1",
    )
    .bind(stream_id)
    .fetch_optional(executor)
    .await?;
    Ok(customer.flatten().and_then(|c| Uuid::parse_str(&c).ok()))
}
