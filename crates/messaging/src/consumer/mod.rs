//! The idempotent consumer loop: Kafka → handler → PostgreSQL, effectively once.
//!
//! # Delivery guarantee
//!
//! Kafka delivers at least once (the relay may publish a row twice, a consumer may crash before
//! its offset is committed, a topic may be replayed). Each message is applied **exactly once**
//! anyway: the handler's effects, the outbox rows it writes and an inbox row
//! `(consumer, message_id)` commit in **one PostgreSQL transaction**, and a message whose inbox
//! row exists is skipped (and counted as a duplicate). The Kafka offset is stored only after that
//! transaction committed, so a crash loses no message; at worst it redelivers some, which the
//! inbox absorbs. The inbox insert is `ON CONFLICT DO NOTHING`: if two instances race on one
//! message during a rebalance, the second waits for the first's transaction and then skips.
//!
//! Offsets are stored with `rd_kafka_offset_store` after each committed transaction and
//! committed by librdkafka's auto-commit every second, on rebalance, and synchronously when the
//! loop shuts down. Only offsets of committed work are ever stored, so auto-commit never
//! commits past unprocessed messages.
//!
//! # Throughput and order
//!
//! One task per assigned partition processes its messages in offset order, so per-key order
//! (keys are order ids, or product ids on the catalog topic; one key lives on one partition) is
//! kept; partitions run concurrently.
//! A task takes whatever piled up for its partition (up to [`ConsumerConfig::max_batch`]) and
//! applies it in **one transaction** with one multi-row inbox insert: at low load that is a
//! batch of one (lowest latency), under load it amortises the commit over many messages. If that
//! transaction fails because a handler failed, the batch is rolled back and replayed one message
//! per transaction, so a poison message is isolated and the rest commit.
//!
//! Partitions are the unit of scale-out, and a topic may have more of them than one process
//! has cores. Within a process, at most [`ConsumerConfig::max_concurrency`] transactions run
//! at once (by default, one per core): more concurrent transactions than cores only add context
//! switches and lock queues, and they lengthen the saga's tail latency. Batches of partitions
//! waiting for their turn
//! are **committed together**: the task that gets a permit applies every batch queued at that
//! moment in one transaction (each batch still in its partition's order) and hands each back
//! to its task, which stores its offsets. A rolled-back group sends every batch to the
//! one-by-one path.
//!
//! # Failures
//!
//! Every failure of a message is contained to that message: it is applied, or parked in the
//! dead-letter topic, and its partition goes on. Nothing a message carries can crash the
//! consumer or stop a partition for good.
//!
//! A failed micro-batch (a handler error, a panic, a database error) is rolled back and its
//! messages replayed one per transaction; there each failure falls into one of three classes:
//!
//! - **Permanent**: retrying cannot help, so the message is dead-lettered at once.
//!   [`HandlerError::Permanent`]; missing or invalid headers and no payload (*poison*, found
//!   before any handler ran); a **panic** of the handler (caught with `catch_unwind`, reason
//!   `handler panicked: …`; one in the loop's own code around it is caught too, reason
//!   `consumer panicked: …`); and the database errors a message's own values cause, whatever
//!   the handler called them: SQLSTATE class 22 (data exception: numeric overflow, invalid
//!   text, division by zero…), class 23 (integrity constraint violation: `CHECK`, `NOT NULL`,
//!   foreign key) except the two below, and a value sqlx cannot encode. The classes are found
//!   anywhere in the error's source chain, so a handler's own error type wrapping an
//!   `sqlx::Error` (stock's and payment's) is classified the same way.
//! - **Retryable**: any other [`HandlerError::Transient`] or database error: a lost race
//!   (order's typed conflict on `(stream_id, version)`, stock's and payment's guarded writes),
//!   a serialisation failure or deadlock, and a **unique or exclusion violation** (SQLSTATE
//!   23505, 23P01), which in this system means another transaction won a race on the same rows
//!   (payment's one-payment-per-revision indexes during a rebalance) and a retry reads again.
//!   Retried with capped exponential backoff until [`ConsumerConfig::max_attempts`] attempts
//!   failed, or until [`ConsumerConfig::max_retry_time`] passed since the first of them; then
//!   dead-lettered with the last error as its reason. A message that fails the same way on
//!   every attempt is poison that no one can name in advance.
//! - **Unavailable**: the database or the way to it is gone: an I/O or TLS error, a pool or
//!   worker that closed, SQLSTATE class 08 (connection exception), 53 (insufficient resources),
//!   57P01–57P03 (shutdown, starting up) and 58 (system error). Retried with backoff **without
//!   limit** and without counting toward the bound: during a PostgreSQL restart every message
//!   fails this way, and none of them is at fault. The partition waits (the stuck-partition
//!   signal below says so if it lasts), and every message is applied once the database is
//!   back. A message that failed retryably before an outage may be given up on at its next
//!   retryable failure after it, once `max_retry_time` has passed.
//!
//! A retried message's offset is not stored, so it is not lost even if the process stops
//! meanwhile; its partition waits (order is kept), other partitions go on. A message applied one
//! by one takes a transaction permit per attempt, so its backoff holds no permit.
//!
//! A dead letter is published to `{prefix}shop.dead-letters` ([`crate::dead_letters`]) with its
//! original key, payload and headers plus `dead-letter-reason`, `dead-letter-consumer` and
//! `dead-letter-origin`; only after the broker acknowledged it is its offset stored, and the
//! consumer goes on. The consumer publishes to Kafka itself only for dead letters (see that
//! module for why).
//!
//! The dead-letter queue is **not sequenced**: later messages of the same key are processed
//! even though an earlier one was parked. Holding them back would stall an order forever behind
//! one bad message. It is acceptable because the saga's handlers are idempotent and guarded by
//! the order's `revision`: a handler applies a message only if it is newer than what it already
//! applied, so a later message never depends on the parked one having been applied first, and a
//! parked message that is fixed and republished later is either applied (still relevant) or
//! ignored as stale — it can never roll state back. Dead letters are at least once (a crash
//! between the dead-letter publish and the offset commit parks the message again), and a parked
//! message gets no inbox row, so republishing a fixed version is possible.
//!
//! # One partition never holds back another
//!
//! One receive loop reads every assigned partition and hands each record to its partition's
//! task through an unbounded queue; the loop itself never waits for a task. Instead, when a
//! partition has `2 × max_batch` records queued (its task is slow, or retrying), the loop
//! **pauses** that partition in librdkafka, and the task resumes it once it has taken the queue
//! down to half that. librdkafka fetches a resumed partition from the last record it handed
//! out, so nothing is skipped and the order is kept; the other partitions flow meanwhile.
//!
//! A partition whose task has been on the same batch for longer than
//! [`ConsumerConfig::stuck_after`] (retrying, or waiting for the database or the dead-letter
//! topic) is **stuck**: `consumer_partition_stuck{consumer,topic,partition}` is 1 and the
//! process's readiness answers 503 with a `consumer` dependency naming the consumer, topic and
//! partition, until the batch is settled. A handler that never returns is not cut off (there
//! is no timeout on a transaction): its partition, and those whose batches were committed
//! together with it, stay stuck and are reported so.
//!
//! # Where it lives
//!
//! The receive loop and the consumer's set-up are here; [`handler`] is what a handler sees,
//! `flow` a partition's queue, pause and stuck check, `group_commit` the shared transaction,
//! `one_by_one` retries and dead letters, `failure` the classification of errors, `envelope`
//! a received record and its offset, `stats` the counters and the lag gauge. Headers are read
//! with [`crate::headers`].
//!
//! # Names
//!
//! The consumer's *name* is logical (e.g. `stock`): it is what the inbox records, so the inbox
//! stays valid whatever the deployment's topic prefix. The Kafka group id is `{prefix}{name}`,
//! like the topics, so several copies of the system (or tests) can share one cluster without
//! sharing consumer groups.

mod envelope;
mod failure;
mod flow;
mod group_commit;
mod handler;
mod one_by_one;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use platform::health::Condition;
use platform::kafka::Closing;
use platform::settings::KafkaSettings;
use platform::shutdown::Shutdown;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::dead_letters::DeadLetters;
use crate::doorbell::Doorbell;
use crate::inbox;

use envelope::Envelope;
use flow::{Flow, Partition, check_interval, partition_task};
use group_commit::Shared;
pub use handler::{Handler, HandlerError, IncomingMessage, Traced};
pub use stats::ConsumerStats;
use stats::{KafkaConsumer, LagContext};

/// What a consumer reads and how.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Logical consumer name: the inbox's `consumer` column; the group id is `{prefix}{name}`.
    pub name: String,
    /// Logical topic names, e.g. [`contracts::topics::ORDERS`].
    pub topics: Vec<String>,
    /// Most messages of one partition applied in one transaction.
    pub max_batch: usize,
    /// Most transactions of this consumer running at once (across its partitions).
    pub max_concurrency: usize,
    /// First and largest delay between retries of a transient failure.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Most attempts of one message that may fail retryably before it is dead-lettered
    /// (failures of an unavailable database do not count: see the module docs).
    pub max_attempts: u32,
    /// Longest time a message is retried after its first retryable failure before it is
    /// dead-lettered (checked at each retryable failure).
    pub max_retry_time: Duration,
    /// A partition whose task has been on one batch for this long is reported stuck.
    pub stuck_after: Duration,
}

impl ConsumerConfig {
    pub fn new(name: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            name: name.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            max_batch: 256,
            max_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            // With the backoff above, ten attempts take about 16 s: a lost race is retried
            // well past any rebalance, and a message that always fails is parked before the
            // partition counts as stuck.
            max_attempts: 10,
            max_retry_time: Duration::from_secs(120),
            stuck_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("creating the Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("a partition worker of consumer {0} panicked")]
    WorkerPanicked(String),
}

/// A consumer group member running a [`Handler`]. Build with [`Consumer::new`], then
/// [`Consumer::run`] until shutdown.
pub struct Consumer<H: Handler> {
    kafka: Arc<Closing<KafkaConsumer>>,
    shared: Arc<Shared<H>>,
}

impl<H: Handler> Consumer<H> {
    /// Joins the group `{prefix}{config.name}` and subscribes to the configured topics. A new
    /// group starts from the earliest offset: a service that starts late must still see every
    /// message. `doorbell` is rung after every committed transaction, for the outbox rows its
    /// handler wrote.
    pub fn new(
        kafka: &KafkaSettings,
        pool: PgPool,
        doorbell: Doorbell,
        config: ConsumerConfig,
        handler: H,
    ) -> Result<Self, ConsumerError> {
        let group = format!("{}{}", kafka.topic_prefix, config.name);
        let consumer: KafkaConsumer = platform::kafka::client_config(kafka)
            .set("group.id", &group)
            // A member that died without leaving (SIGKILL) keeps its partitions until its
            // session expires; librdkafka's 45 s default would break "settled within 30 s of
            // recovery". 10 s is well above the broker's 6 s minimum and a heartbeat's jitter.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the transaction committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Feeds the `consumer_lag` gauge (see `LagContext`).
            .set("statistics.interval.ms", "5000")
            .create_with_context(LagContext {
                consumer: config.name.clone(),
            })?;
        let topics: Vec<String> = config
            .topics
            .iter()
            .map(|t| format!("{}{t}", kafka.topic_prefix))
            .collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;
        let dead_letters =
            DeadLetters::new(kafka, &config.name, config.retry_initial, config.retry_max)?;
        // Exported at 0 from the start, so that an alert on their increase sees the first one.
        for family in [
            "messages_processed_total",
            "messages_duplicate_total",
            "messages_retried_total",
        ] {
            metrics::counter!(family, "consumer" => config.name.clone()).increment(0);
        }
        let permits = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        Ok(Self {
            kafka: Arc::new(Closing::new(consumer)),
            shared: Arc::new(Shared {
                connections: inbox::Connections::new(pool),
                doorbell,
                handler,
                config,
                topic_prefix: kafka.topic_prefix.clone(),
                dead_letters,
                stats: Arc::default(),
                readiness: Condition::register("consumer"),
                permits,
                waiting: std::sync::Mutex::default(),
                submissions: AtomicU64::new(0),
            }),
        })
    }

    /// The live counters of this consumer.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.shared.stats.clone()
    }

    /// Consumes until shutdown. Then every partition task finishes the transaction it is in (a
    /// message stuck in transient retries is rolled back instead), the offsets of everything
    /// committed are committed to Kafka synchronously, and the consumer leaves its group.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), ConsumerError> {
        let mut partitions: HashMap<(String, i32), Partition> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut panicked = false;
        let pause_at = self.shared.config.max_batch.max(1) * 2;
        let mut check = tokio::time::interval(check_interval(self.shared.config.stuck_after));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                () = shutdown.requested() => break,
                _ = check.tick() => {
                    self.shared.check_stuck(&partitions);
                    continue;
                }
                received = self.kafka.recv() => received,
            };
            let envelope = match received {
                Ok(message) => Envelope::new(&message, &self.shared.topic_prefix),
                Err(e) => {
                    // Broker and transport errors are reported here while librdkafka recovers
                    // on its own; nothing to undo.
                    tracing::warn!(consumer = %self.shared.config.name, error = %e, "Kafka consumer error");
                    continue;
                }
            };
            let record = &envelope.record;
            let partition = partitions
                .entry((record.kafka_topic.clone(), record.partition))
                .or_insert_with(|| {
                    let flow = Arc::new(Flow::new(record, pause_at));
                    metrics::gauge!("consumer_partition_stuck",
                        "consumer" => self.shared.config.name.clone(),
                        "topic" => record.kafka_topic.clone(),
                        "partition" => record.partition.to_string())
                    .set(0.0);
                    let (tx, rx) = mpsc::unbounded_channel();
                    tasks.spawn(partition_task(
                        self.shared.clone(),
                        self.kafka.clone(),
                        flow.clone(),
                        rx,
                        shutdown.clone(),
                    ));
                    Partition { sender: tx, flow }
                });
            // Counted before it is sent, so that the task never takes more than was counted.
            partition.flow.queued(&self.kafka, &self.shared.stats);
            if partition.sender.send(envelope).is_err() {
                panicked = true;
                break;
            }
        }
        drop(partitions);
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(consumer = %self.shared.config.name, error = %e, "partition task failed");
                panicked = true;
            }
        }
        match self.kafka.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                // Not fatal: the inbox absorbs what is redelivered from the older offset.
                tracing::warn!(consumer = %self.shared.config.name, error = %e, "final offset commit failed");
            }
        }
        if panicked {
            return Err(ConsumerError::WorkerPanicked(
                self.shared.config.name.clone(),
            ));
        }
        Ok(())
    }
}
