//! The one-by-one path: a message of a batch that rolled back is applied alone, retried as the
//! module docs of [`super`] say, and parked in the dead-letter topic when it is poison or keeps
//! failing.

use std::sync::atomic::Ordering;

use platform::shutdown::Shutdown;
use tokio::time::Instant;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::dead_letters::Stopped;
use crate::inbox;

use super::envelope::Envelope;
use super::failure::{Failure, catch_panic};
use super::group_commit::Shared;
use super::{Handler, IncomingMessage, Traced};

impl<H: Handler> Shared<H> {
    /// Applies one message in its own transaction, retrying failures as the module docs say
    /// and parking a message that is poison or keeps failing. Returns only once the message is
    /// settled, or when stopping.
    pub(super) async fn process_one(
        &self,
        envelope: &Envelope,
        shutdown: &mut Shutdown,
    ) -> Result<(), Stopped> {
        let message = match &envelope.parsed {
            Ok(message) => message,
            Err(reason) => return self.dead_letter(envelope, reason, shutdown).await,
        };
        let mut backoff = Backoff::new(self.config.retry_initial, self.config.retry_max);
        let mut attempts: u32 = 0;
        let mut first_failure: Option<Instant> = None;
        loop {
            let failure = match catch_panic(self.apply_one(message)).await {
                Ok(true) => {
                    self.count_processed(1);
                    return Ok(());
                }
                Ok(false) => {
                    self.count_duplicates(1);
                    return Ok(());
                }
                Err(failure) => failure,
            };
            let delay = backoff.next_delay();
            match failure {
                Failure::Permanent(reason) => {
                    return self.dead_letter(envelope, &reason, shutdown).await;
                }
                Failure::Retryable(reason) => {
                    attempts = attempts.saturating_add(1);
                    let failing_for = first_failure.get_or_insert_with(Instant::now).elapsed();
                    if attempts >= self.config.max_attempts
                        || failing_for >= self.config.max_retry_time
                    {
                        let reason = format!(
                            "{reason} (gave up after {attempts} attempts in {:.1} s)",
                            failing_for.as_secs_f64()
                        );
                        return self.dead_letter(envelope, &reason, shutdown).await;
                    }
                    tracing::warn!(consumer = %self.config.name, message_id = %message.metadata.message_id,
                        error = %reason, attempts, ?delay, "transient failure; retrying");
                }
                Failure::Unavailable(reason) => {
                    tracing::warn!(consumer = %self.config.name, message_id = %message.metadata.message_id,
                        error = %reason, ?delay, "database unavailable; retrying");
                }
            }
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("messages_retried_total", "consumer" => self.config.name.clone())
                .increment(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.requested() => return Err(Stopped),
            }
        }
    }

    /// `Ok(false)`: already applied (its inbox row exists).
    async fn apply_one(&self, message: &IncomingMessage) -> Result<bool, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let id = message.metadata.message_id;
        let mut tx = inbox::Transaction::begin(&self.connections, &self.config.name, &[id]).await?;
        if !tx.fresh.contains(&id) {
            tx.rollback().await;
            return Ok(false);
        }
        let alone = [Traced {
            message,
            span: self.span(message),
        }];
        let handled = self
            .handle(tx.conn(), &alone)
            .instrument(alone[0].span.clone())
            .await;
        // A commit error is ambiguous (it may have committed): the retry finds out via the inbox.
        tx.end_with(handled).await?;
        self.doorbell.ring();
        Ok(true)
    }

    /// Publishes a poison message to the dead-letter topic and waits for the acknowledgement,
    /// retrying while Kafka is unavailable.
    pub(super) async fn dead_letter(
        &self,
        envelope: &Envelope,
        reason: &str,
        shutdown: &mut Shutdown,
    ) -> Result<(), Stopped> {
        self.dead_letters
            .park(&envelope.record, reason, shutdown)
            .await?;
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
