//! Group commit: a partition's batch is applied in one transaction together with every batch
//! other partitions have waiting when a transaction permit frees up, with one multi-row inbox
//! insert; a group that rolls back sends each of its batches to the one-by-one path
//! ([`super::one_by_one`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt as _;
use platform::health::Condition;
use platform::shutdown::Shutdown;
use sqlx::PgConnection;
use tokio::sync::{Semaphore, oneshot};
use uuid::Uuid;

use crate::dead_letters::{DeadLetters, Stopped};
use crate::doorbell::Doorbell;
use crate::inbox;

use super::envelope::{Envelope, store_offset};
use super::failure::{Failure, catch_panic, panic_message};
use super::stats::{ConsumerStats, KafkaConsumer};
use super::{ConsumerConfig, Handler, IncomingMessage, Traced};

pub(super) struct Shared<H> {
    /// The connections its transactions run on (see [`crate::inbox`]).
    pub(super) connections: inbox::Connections,
    /// Rung after each commit: the handlers write outbox rows.
    pub(super) doorbell: Doorbell,
    pub(super) handler: H,
    pub(super) config: ConsumerConfig,
    pub(super) topic_prefix: String,
    pub(super) dead_letters: DeadLetters,
    pub(super) stats: Arc<ConsumerStats>,
    /// This consumer's part in readiness: which partitions are stuck.
    pub(super) readiness: Condition,
    /// One permit per transaction that may run at once.
    pub(super) permits: Arc<Semaphore>,
    /// Partitions' batches waiting for a transaction; whoever gets a permit applies them all.
    pub(super) waiting: std::sync::Mutex<Vec<Submission>>,
    pub(super) submissions: AtomicU64,
}

/// A partition's batch handed to whichever task next holds a permit. It comes back, with
/// whether its transaction committed, on `done`.
pub(super) struct Submission {
    id: u64,
    envelopes: Vec<Envelope>,
    done: oneshot::Sender<(Vec<Envelope>, bool)>,
}

impl<H: Handler> Shared<H> {
    /// Applies a partition's batch: in one transaction together with whatever other partitions
    /// have waiting (see [`Shared::commit_together`]); if that transaction rolls back, one
    /// message per transaction. Messages applied one by one take a permit per attempt, so a
    /// message waiting out a retry's backoff blocks only its own partition.
    pub(super) async fn process(
        &self,
        all: Vec<Envelope>,
        kafka: &KafkaConsumer,
        shutdown: &mut Shutdown,
    ) -> Result<(), Stopped> {
        if !all.iter().any(|e| self.wanted(e)) {
            if let Some(last) = all.last() {
                store_offset(kafka, last);
            }
            return Ok(());
        }
        let (all, committed) = self.commit_together(all, shutdown).await?;
        let batch: Vec<&Envelope> = all.iter().filter(|e| self.wanted(e)).collect();
        if committed {
            for envelope in &batch {
                if let Err(reason) = &envelope.parsed {
                    self.dead_letter(envelope, reason, shutdown).await?;
                }
            }
        } else {
            tracing::debug!(consumer = %self.config.name, size = batch.len(),
                "batch rolled back; applying its messages one by one");
            for envelope in &batch {
                self.process_one(envelope, shutdown).await?;
                store_offset(kafka, envelope);
            }
        }
        // Ignored messages after the last applied one.
        if let Some(last) = all.last() {
            store_offset(kafka, last);
        }
        Ok(())
    }

    /// Group commit: queues `batch`, then either takes a permit and applies every batch
    /// waiting (its own among them) in one transaction, or finds that another task holding a
    /// permit took it. Either way returns the batch and whether its transaction committed.
    /// While partitions wait for a permit their batches pile up, so the busier the consumer,
    /// the more messages one commit carries.
    async fn commit_together(
        &self,
        batch: Vec<Envelope>,
        shutdown: &mut Shutdown,
    ) -> Result<(Vec<Envelope>, bool), Stopped> {
        let id = self.submissions.fetch_add(1, Ordering::Relaxed);
        let (done, mut outcome) = oneshot::channel();
        self.waiting().push(Submission {
            id,
            envelopes: batch,
            done,
        });
        let permit = tokio::select! {
            biased;
            outcome = &mut outcome => return outcome.map_err(|_| Stopped),
            () = shutdown.requested() => {
                // Not taken yet: withdraw it (nothing applied, no offset stored). Taken: its
                // transaction is under way, wait for it.
                if self.withdraw(id) {
                    return Err(Stopped);
                }
                return outcome.await.map_err(|_| Stopped);
            }
            permit = self.permits.acquire() => permit.map_err(|_| Stopped)?,
        };
        let taken = std::mem::take(&mut *self.waiting());
        if !taken.is_empty() {
            self.apply_submissions(taken).await;
        }
        drop(permit);
        outcome.await.map_err(|_| Stopped)
    }

    /// Whether the handler has anything to do with `envelope` (poison included: it is parked).
    /// An `ignores` that panics counts as "wanted": the handler then decides, or panics too
    /// and the message is parked.
    fn wanted(&self, envelope: &Envelope) -> bool {
        let Ok(message) = &envelope.parsed else {
            return true;
        };
        let ignored = std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.ignores(message)));
        !ignored.unwrap_or(false)
    }

    /// Takes a submission back out of the queue; `false` if a transaction already took it.
    fn withdraw(&self, id: u64) -> bool {
        let mut waiting = self.waiting();
        let at = waiting.iter().position(|s| s.id == id);
        at.map(|at| waiting.swap_remove(at)).is_some()
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Submission>> {
        // The lock is only held to push or take: a panic cannot leave the list half-changed.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One transaction for several partitions' batches, then each batch back to its task.
    async fn apply_submissions(&self, taken: Vec<Submission>) {
        let batch: Vec<&IncomingMessage> = taken
            .iter()
            .flat_map(|s| &s.envelopes)
            .filter(|e| self.wanted(e))
            .filter_map(|e| e.parsed.as_ref().ok())
            .collect();
        let committed = match catch_panic(self.apply_batch(&batch)).await {
            Ok(()) => true,
            Err(failure) => {
                tracing::debug!(consumer = %self.config.name, ?failure, size = batch.len(),
                    partitions = taken.len(), "group transaction rolled back");
                false
            }
        };
        for submission in taken {
            // A task that stopped waiting no longer needs the answer.
            let _ = submission.done.send((submission.envelopes, committed));
        }
    }

    /// Applies valid messages in one transaction; any handler or database error, or a panic,
    /// rolls everything back. (Poison, invalid before any handler ran, is its task's to
    /// dead-letter.)
    async fn apply_batch(&self, batch: &[&IncomingMessage]) -> Result<(), Failure> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = batch.iter().map(|m| m.metadata.message_id).collect();
        let mut tx = inbox::Transaction::begin(&self.connections, &self.config.name, &ids).await?;
        let mut fresh = std::mem::take(&mut tx.fresh);
        let mut apply = Vec::with_capacity(fresh.len());
        let mut duplicates = 0;
        for &message in batch {
            // `remove`: a message twice in one batch is applied only the first time.
            if fresh.remove(&message.metadata.message_id) {
                apply.push(Traced {
                    message,
                    span: self.span(message),
                });
            } else {
                duplicates += 1;
            }
        }
        let processed = apply.len() as u64;
        let handled = self.handle(tx.conn(), &apply).await;
        tx.end_with(handled).await?;
        self.doorbell.ring();
        self.count_processed(processed);
        self.count_duplicates(duplicates);
        Ok(())
    }

    /// Runs the handler, turning a panic into a permanent failure: the transaction is then
    /// rolled back like after any other failure, and the task goes on.
    pub(super) async fn handle(
        &self,
        conn: &mut PgConnection,
        batch: &[Traced<'_>],
    ) -> Result<(), Failure> {
        // Unwind safety: a panicking handler leaves behind only its own state (it is `Sync`
        // and shares nothing mutable with the loop) and the transaction, which is rolled back.
        match AssertUnwindSafe(self.handler.handle(conn, batch))
            .catch_unwind()
            .await
        {
            Ok(handled) => handled.map_err(Failure::from),
            Err(panic) => {
                let reason = format!("handler panicked: {}", panic_message(panic.as_ref()));
                tracing::error!(consumer = %self.config.name, size = batch.len(), %reason,
                    "handler panicked; rolled back");
                Err(Failure::Permanent(reason))
            }
        }
    }

    /// The span a handler runs in: a child of the message's trace, so what the handler writes
    /// to its outbox continues that trace.
    pub(super) fn span(&self, message: &IncomingMessage) -> tracing::Span {
        platform::trace::message_span(
            &self.config.name,
            &message.topic,
            &message.message_type,
            message.key.as_deref(),
            message.metadata.traceparent.as_deref(),
        )
    }

    pub(super) fn count_processed(&self, n: u64) {
        if n > 0 {
            self.stats.processed.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("messages_processed_total", "consumer" => self.config.name.clone())
                .increment(n);
        }
    }

    pub(super) fn count_duplicates(&self, n: u64) {
        if n > 0 {
            self.stats.duplicates.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("messages_duplicate_total", "consumer" => self.config.name.clone())
                .increment(n);
        }
    }
}
