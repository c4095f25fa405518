//! The saga deadline (SYSTEM.md §4): an order whose saga has not settled within the deadline
//! fails with `timed_out`; stock releases its reservation on that `OrderFailed`, and payment
//! refunds a capture on stock's release, as for any failure.
//!
//! Durable. The statement that places an order inserts its row in `open_sagas` (with the time
//! it was placed), and the append that completes or fails it deletes the row
//! (`event_store::Saga`). A poll reads the rows older than the deadline, oldest first, `FOR
//! UPDATE SKIP LOCKED` (so several instances share the work and never take the same order),
//! decides `TimeOut` on each order through the usual path (`commands::decide`: a settled order
//! yields nothing) and appends the failures, their `OrderFailed` messages and the deletion of
//! their rows in one transaction. A restart loses nothing (the rows are in PostgreSQL) and
//! repeats nothing (a failed order has no row; a second failure would clash with the first on
//! the stream's version). The deadline counts from the stored start, so a changed setting
//! applies to sagas already running.
//!
//! A reply that settles the order while a poll holds its row is not blocked by that poll (see
//! `event_store::append_many`); whichever append comes second loses on the stream's version,
//! and a row a lost poll leaves behind names a settled order, which the next poll deletes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use messaging::outbox::OutgoingMessage;
use platform::settings::SagaSettings;
use platform::shutdown::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

use crate::commands::{self, CommandError, Context};
use crate::domain::{Command, DomainError, OrderId};
use crate::event_store::{self, NewEvent, RecordedEvent, StreamAppend};
use crate::view;

/// The poll: up to `$2` orders placed at least `$1` seconds ago, oldest first, each locked by
/// this transaction or skipped if another holds it. `now()` is the transaction's start. Public
/// so that a test can check its generic plan reads `open_sagas_by_age`, never the whole table.
pub const POLL: &str = "SELECT order_id FROM open_sagas
     WHERE placed_at <= now() - make_interval(secs => $1)
     ORDER BY placed_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED";

/// How the deadline is kept. Tests shorten it.
#[derive(Debug, Clone)]
pub struct DeadlineConfig {
    /// A saga older than this fails with `timed_out`.
    pub deadline: Duration,
    /// How often the rows are polled: the most a timeout comes late.
    pub poll_interval: Duration,
    /// Orders failed in one transaction.
    pub batch_size: i64,
}

impl DeadlineConfig {
    pub fn from_settings(settings: &SagaSettings) -> Self {
        Self {
            deadline: Duration::from_secs(settings.deadline_seconds),
            poll_interval: Duration::from_millis(settings.deadline_poll_millis.max(10)),
            batch_size: 100,
        }
    }
}

/// What one [`time_out_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutReport {
    /// Orders failed with `timed_out`.
    pub timed_out: usize,
    /// Rows deleted without a failure: their orders had settled meanwhile.
    pub cleared: usize,
    /// Whether the batch was full, i.e. more may be due.
    pub full: bool,
    /// Whether another writer moved one of the orders first: nothing was written, and the next
    /// pass decides again against the new state.
    pub conflicted: bool,
}

/// One pass: fails every order (up to a batch) whose saga is older than the deadline, in one
/// transaction with its `OrderFailed` message and the deletion of its row.
pub async fn time_out_due(
    pool: &PgPool,
    config: &DeadlineConfig,
) -> Result<TimeoutReport, CommandError> {
    let mut tx = pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(POLL)
        .bind(config.deadline.as_secs_f64())
        .bind(config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
    if due.is_empty() {
        return Ok(TimeoutReport::default());
    }
    let mut report = TimeoutReport {
        full: i64::try_from(due.len()).unwrap_or(i64::MAX) >= config.batch_size,
        ..TimeoutReport::default()
    };

    let mut streams: HashMap<Uuid, Vec<RecordedEvent>> = HashMap::new();
    for event in event_store::load_many(&mut *tx, &due).await? {
        streams.entry(event.stream_id).or_default().push(event);
    }
    let mut failing: Vec<(Uuid, u32, Vec<NewEvent>)> = Vec::new();
    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut decided = Vec::new();
    let mut stale: Vec<Uuid> = Vec::new();
    for order_id in due {
        let stream = streams.remove(&order_id).unwrap_or_default();
        let order = match view::fold(&stream) {
            Ok(order) => order.unwrap_or_default(),
            Err(e) => {
                // No command can be decided on it; its row would stay first in line forever.
                tracing::error!(%order_id, error = %e, "cannot time out an order whose stream does not load; dropping its deadline");
                stale.push(order_id);
                continue;
            }
        };
        // The timeout continues the order's trace (`traceparent` of its first event).
        let context = Context {
            correlation_id: order_id,
            causation_id: None,
            traceparent: stream.first().and_then(|e| e.metadata.traceparent.clone()),
            now: Utc::now(),
            customer: None,
        };
        match commands::decide(OrderId(order_id), &order, Command::TimeOut, &context) {
            Ok(decision) if !decision.events.is_empty() => {
                failing.push((order_id, order.version, decision.new_events));
                messages.extend(decision.messages);
                decided.extend(decision.events);
            }
            // Settled meanwhile (or never placed): only the row is left to delete.
            Ok(_) | Err(CommandError::Domain(DomainError::NotPlaced)) => stale.push(order_id),
            Err(e) => return Err(e),
        }
    }

    let appends: Vec<StreamAppend<'_>> = (failing.iter())
        .map(|(order_id, version, events)| StreamAppend {
            stream_id: *order_id,
            expected_version: *version,
            events,
            saga: event_store::Saga::Settles,
        })
        .collect();
    if !appends.is_empty() {
        match event_store::append_many(&mut *tx, &appends, &messages).await {
            Ok(_) => {}
            Err(event_store::AppendError::Conflict { .. }) => {
                tx.rollback().await?;
                return Ok(TimeoutReport {
                    conflicted: true,
                    ..TimeoutReport::default()
                });
            }
            Err(event_store::AppendError::Database(e)) => return Err(e.into()),
        }
    }
    if !stale.is_empty() {
        sqlx::query("DELETE FROM open_sagas WHERE order_id = ANY($1)")
            .bind(&stale)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    commands::count_outcomes(&decided);
    report.timed_out = appends.len();
    report.cleared = stale.len();
    if report.timed_out > 0 {
        tracing::info!(orders = report.timed_out, "sagas timed out");
        ring_relay(pool).await;
    }
    Ok(report)
}

/// Wakes the outbox relay, wherever it runs, after the failures committed: the relay listens
/// on the `outbox` channel besides its own process's doorbell (`messaging::doorbell`), which
/// this task has no handle on. Only a hint: the relay's poll finds the rows anyway.
async fn ring_relay(pool: &PgPool) {
    let sent = sqlx::query(
        "SELECT pg_notify('outbox', ''), set_config('synchronous_commit', 'off', true)",
    )
    .execute(pool)
    .await;
    if let Err(e) = sent {
        tracing::debug!(error = %e, "ringing the relay failed; its poll will find the rows");
    }
}

/// Keeps the deadline until shutdown: a pass every poll interval, at once again while passes
/// find full batches.
pub struct Deadlines {
    pool: PgPool,
    config: DeadlineConfig,
}

impl Deadlines {
    pub fn new(pool: PgPool, config: DeadlineConfig) -> Self {
        Self { pool, config }
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        let mut failing = false;
        while !shutdown.is_requested() {
            let wait = match time_out_due(&self.pool, &self.config).await {
                Ok(report) => {
                    failing = false;
                    if report.full || report.conflicted {
                        Duration::ZERO
                    } else {
                        self.config.poll_interval
                    }
                }
                Err(e) => {
                    // Logged once per outage, not once per poll.
                    if !failing {
                        tracing::warn!(error = %e, "saga deadline pass failed; retrying every poll");
                    }
                    failing = true;
                    self.config.poll_interval
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.requested() => return,
            }
        }
    }
}
