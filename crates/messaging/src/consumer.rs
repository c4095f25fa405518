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
//! at once (by default, one per core). More concurrent transactions than cores only add context
//! switches and lock queues: on this project's two-core machine, going from six at once to two
//! halved the saga's p99 latency at 272 orders/s. Batches of partitions waiting for their turn
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
//! # Names
//!
//! The consumer's *name* is logical (e.g. `stock`): it is what the inbox records, so the inbox
//! stays valid whatever the deployment's topic prefix. The Kafka group id is `{prefix}{name}`,
//! like the topics, so several copies of the system (or tests) can share one cluster without
//! sharing consumer groups.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::DecodeError;
use contracts::headers as h;
use futures::FutureExt as _;
use platform::health::Condition;
use platform::settings::KafkaSettings;
use platform::shutdown::Shutdown;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, TopicPartitionList};
use rdkafka::{ClientContext, Statistics};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::dead_letters::{DeadLetters, Record, Stopped};
use crate::doorbell::Doorbell;
use crate::inbox;
use crate::outbox::Metadata;

/// A message as a handler sees it: routing, contract name and version, payload and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    /// The logical topic (without the deployment's prefix), e.g. `shop.orders`.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key: an order id, or a product id on the catalog topic.
    pub key: Option<String>,
    pub message_type: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
    pub metadata: Metadata,
}

impl IncomingMessage {
    /// Decodes the payload with a topic's `decode` (e.g. `OrderMessage::decode`). A payload that
    /// does not decode is permanent: retrying cannot fix it.
    pub fn decode<T>(
        &self,
        decode: impl FnOnce(&str, u16, &[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, HandlerError> {
        decode(&self.message_type, self.schema_version, &self.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))
    }
}

/// Why a handler did not apply a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later (database down, serialisation failure): retried with backoff.
    #[error("transient: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Will never succeed (unknown type, invalid content): dead-lettered with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Database errors are transient here; the consumer loop then classifies them by their
/// SQLSTATE (see the module docs): a data exception or a violated constraint is permanent
/// whatever the handler called it.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(Box::new(e))
    }
}

/// Applies messages inside the consumer's transaction.
///
/// `conn` is that transaction: everything the handler writes through it (state, outbox rows)
/// commits together with the messages' inbox rows, or not at all. A handler must not commit.
pub trait Handler: Send + Sync + 'static {
    /// Applies a micro-batch: `messages`, in their partitions' order, inside one transaction.
    /// Under load a batch carries many messages, which usually contend for the same rows: read
    /// them once, decide each message in memory, write once (stock, payment and the order saga
    /// do). When a batch fails it is rolled back and each of its messages replayed alone, as a
    /// batch of one, so a handler must not assume it sees a message once. Entering a message's
    /// `span` while deciding it keeps its trace.
    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        messages: &'a [Traced<'a>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Whether the message is of a *known* type this handler has nothing to do with (a topic
    /// carries more facts than each reader needs). Such messages are passed over without a
    /// transaction or an inbox row: there is no effect to apply once. Unknown types must not be
    /// ignored here, so that they still reach the handler and the dead-letter topic.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        let _ = message;
        false
    }
}

/// A message of a batch, with the span it is applied in (continuing its producer's trace).
#[derive(Debug)]
pub struct Traced<'a> {
    pub message: &'a IncomingMessage,
    pub span: tracing::Span,
}

impl<'a> Traced<'a> {
    /// What `parse` makes of each message of `batch`, paired with the message; messages it has
    /// nothing for (`Ok(None)`) are left out. The first error fails the whole batch, whose
    /// messages are then replayed one by one, so that only the bad one is parked.
    pub fn parse_each<T>(
        batch: &[Self],
        mut parse: impl FnMut(&IncomingMessage) -> Result<Option<T>, HandlerError>,
    ) -> Result<Vec<(T, &Self)>, HandlerError> {
        let mut parsed = Vec::with_capacity(batch.len());
        for traced in batch {
            if let Some(item) = parse(traced.message)? {
                parsed.push((item, traced));
            }
        }
        Ok(parsed)
    }
}

/// In-process counters of one consumer, mirrored by the `messages_*_total{consumer}` metrics.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    processed: AtomicU64,
    duplicates: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    stuck: AtomicU64,
    pauses: AtomicU64,
}

impl ConsumerStats {
    /// Messages applied (their inbox row committed).
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
    /// Messages skipped because their inbox row already existed.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Attempts that failed transiently and were retried.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Messages parked in the dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
    /// Times a partition was paused because its task fell behind (see the module docs).
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }
    /// Partitions stuck at the last check (see [`ConsumerConfig::stuck_after`]).
    pub fn stuck_partitions(&self) -> u64 {
        self.stuck.load(Ordering::Relaxed)
    }
}

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
    kafka: Arc<KafkaConsumer>,
    shared: Arc<Shared<H>>,
}

struct Shared<H> {
    /// The connections its transactions run on (see [`crate::inbox`]).
    connections: inbox::Connections,
    /// Rung after each commit: the handlers write outbox rows.
    doorbell: Doorbell,
    handler: H,
    config: ConsumerConfig,
    topic_prefix: String,
    dead_letters: DeadLetters,
    stats: Arc<ConsumerStats>,
    /// This consumer's part in readiness: which partitions are stuck.
    readiness: Condition,
    /// One permit per transaction that may run at once.
    permits: Arc<Semaphore>,
    /// Partitions' batches waiting for a transaction; whoever gets a permit applies them all.
    waiting: std::sync::Mutex<Vec<Submission>>,
    submissions: AtomicU64,
}

/// A partition's batch handed to whichever task next holds a permit. It comes back, with
/// whether its transaction committed, on `done`.
struct Submission {
    id: u64,
    envelopes: Vec<Envelope>,
    done: oneshot::Sender<(Vec<Envelope>, bool)>,
}

/// A received record, copied out of librdkafka so a partition task can own it.
struct Envelope {
    record: Record,
    /// The message, or why it is poison before any handler sees it.
    parsed: Result<IncomingMessage, String>,
}

/// Why a message was not applied, as the retry rules see it (see the module docs).
#[derive(Debug)]
enum Failure {
    /// Dead-letter it now, with this reason.
    Permanent(String),
    /// Retry it, a bounded number of times.
    Retryable(String),
    /// The database is unavailable: retry without counting.
    Unavailable(String),
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
        let consumer: KafkaConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
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
            kafka: Arc::new(consumer),
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

/// How often partitions are checked for being stuck: often enough to notice within a quarter
/// of the threshold, at most once a second.
fn check_interval(stuck_after: Duration) -> Duration {
    (stuck_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// A partition as the receive loop sees it: where its records go, and how its task is doing.
struct Partition {
    sender: mpsc::UnboundedSender<Envelope>,
    flow: Arc<Flow>,
}

/// A partition's queue and progress, shared by the receive loop and the partition's task.
struct Flow {
    kafka_topic: String,
    partition: i32,
    /// Records queued at which the partition is paused; resumed at half that.
    pause_at: usize,
    state: std::sync::Mutex<FlowState>,
}

#[derive(Default)]
struct FlowState {
    /// Records sent to the task and not yet taken by it.
    queued: usize,
    /// Whether this consumer paused the partition in librdkafka.
    paused: bool,
    /// Since when the task has been on its current batch; `None` while it waits for records.
    busy_since: Option<Instant>,
    /// Whether the last check found it stuck.
    stuck: bool,
}

impl Flow {
    fn new(record: &Record, pause_at: usize) -> Self {
        Self {
            kafka_topic: record.kafka_topic.clone(),
            partition: record.partition,
            pause_at,
            state: std::sync::Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FlowState> {
        // Held only for a few assignments and a pause or resume request: a panic cannot leave
        // the state half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn partition_list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.kafka_topic, self.partition);
        list
    }

    /// One more record queued for the task; pauses the partition when the queue is full.
    fn queued(&self, kafka: &KafkaConsumer, stats: &ConsumerStats) {
        let mut state = self.state();
        state.queued = state.queued.saturating_add(1);
        if state.queued >= self.pause_at && !state.paused {
            match kafka.pause(&self.partition_list()) {
                Ok(()) => {
                    state.paused = true;
                    stats.pauses.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                        queued = state.queued, "partition paused");
                }
                // Revoked meanwhile: nothing more comes from it anyway. Otherwise the next
                // record tries again.
                Err(e) => tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                    error = %e, "pausing the partition failed"),
            }
        }
    }

    /// The task took `n` records; resumes the partition once half of its queue is free.
    fn taken(&self, kafka: &KafkaConsumer, n: usize) {
        let mut state = self.state();
        state.queued = state.queued.saturating_sub(n);
        if state.paused && state.queued <= self.pause_at / 2 {
            // A failure means the partition was revoked: a new assignment starts unpaused.
            if let Err(e) = kafka.resume(&self.partition_list()) {
                tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                    error = %e, "resuming the partition failed");
            }
            state.paused = false;
            tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                "partition resumed");
        }
    }

    fn busy(&self, busy: bool) {
        self.state().busy_since = busy.then(Instant::now);
    }
}

/// Applies one partition's messages in order, in micro-batches, until the channel closes or
/// shutdown is requested.
async fn partition_task<H: Handler>(
    shared: Arc<Shared<H>>,
    kafka: Arc<KafkaConsumer>,
    flow: Arc<Flow>,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    mut shutdown: Shutdown,
) {
    let max = shared.config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max);
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.requested() => return,
            first = rx.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        flow.taken(&kafka, batch.len());
        flow.busy(true);
        let outcome = shared
            .process(std::mem::take(&mut batch), &kafka, &mut shutdown)
            .await;
        flow.busy(false);
        if outcome.is_err() {
            return;
        }
    }
}

impl<H: Handler> Shared<H> {
    /// Marks the partitions whose task has been on one batch for longer than `stuck_after`:
    /// the gauge, the stats and readiness.
    fn check_stuck(&self, partitions: &HashMap<(String, i32), Partition>) {
        let threshold = self.config.stuck_after;
        let mut problems = Vec::new();
        for partition in partitions.values() {
            let flow = &partition.flow;
            let mut state = flow.state();
            let busy_for = state.busy_since.map(|since| since.elapsed());
            let stuck = busy_for.is_some_and(|busy| busy >= threshold);
            if stuck != state.stuck {
                state.stuck = stuck;
                if stuck {
                    tracing::warn!(consumer = %self.config.name, topic = %flow.kafka_topic,
                        partition = flow.partition, ?busy_for, "partition stuck");
                } else {
                    tracing::info!(consumer = %self.config.name, topic = %flow.kafka_topic,
                        partition = flow.partition, "partition moving again");
                }
            }
            drop(state);
            metrics::gauge!("consumer_partition_stuck",
                "consumer" => self.config.name.clone(),
                "topic" => flow.kafka_topic.clone(),
                "partition" => flow.partition.to_string())
            .set(if stuck { 1.0 } else { 0.0 });
            if let (true, Some(busy)) = (stuck, busy_for) {
                problems.push(format!(
                    "consumer {} is stuck on partition {} of {} for {} s",
                    self.config.name,
                    flow.partition,
                    flow.kafka_topic,
                    busy.as_secs()
                ));
            }
        }
        self.stats
            .stuck
            .store(problems.len() as u64, Ordering::Relaxed);
        self.readiness
            .set((!problems.is_empty()).then(|| problems.join("; ")));
    }

    /// Applies a partition's batch: in one transaction together with whatever other partitions
    /// have waiting (see [`Shared::commit_together`]); if that transaction rolls back, one
    /// message per transaction. Messages applied one by one take a permit per attempt, so a
    /// message waiting out a retry's backoff blocks only its own partition.
    async fn process(
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
    async fn handle(&self, conn: &mut PgConnection, batch: &[Traced<'_>]) -> Result<(), Failure> {
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

    /// Applies one message in its own transaction, retrying failures as the module docs say
    /// and parking a message that is poison or keeps failing. Returns only once the message is
    /// settled, or when stopping.
    async fn process_one(
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
    async fn dead_letter(
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

    /// The span a handler runs in: a child of the message's trace, so what the handler writes
    /// to its outbox continues that trace.
    fn span(&self, message: &IncomingMessage) -> tracing::Span {
        platform::trace::message_span(
            &self.config.name,
            &message.topic,
            &message.message_type,
            message.key.as_deref(),
            message.metadata.traceparent.as_deref(),
        )
    }

    fn count_processed(&self, n: u64) {
        if n > 0 {
            self.stats.processed.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("messages_processed_total", "consumer" => self.config.name.clone())
                .increment(n);
        }
    }

    fn count_duplicates(&self, n: u64) {
        if n > 0 {
            self.stats.duplicates.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("messages_duplicate_total", "consumer" => self.config.name.clone())
                .increment(n);
        }
    }
}

type KafkaConsumer = StreamConsumer<LagContext>;

/// Turns librdkafka's periodic statistics into `consumer_lag{consumer,topic,partition}`: the
/// messages of each assigned partition not yet processed (high watermark − stored offset, or
/// the committed offset before anything was stored here).
struct LagContext {
    consumer: String,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                let lag = if !p.desired {
                    0 // not assigned here (any more): another member reports it
                } else if p.consumer_lag_stored >= 0 {
                    p.consumer_lag_stored
                } else if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else {
                    continue; // nothing known yet
                };
                metrics::gauge!("consumer_lag",
                    "consumer" => self.consumer.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string())
                .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// Marks everything up to `envelope` as done for the next offset commit. Fails only when the
/// partition was revoked meanwhile; its new owner redelivers and the inbox skips the work.
fn store_offset(kafka: &KafkaConsumer, envelope: &Envelope) {
    let record = &envelope.record;
    // librdkafka stores `offset + 1`, the next offset to read.
    if let Err(e) = kafka.store_offset(&record.kafka_topic, record.partition, record.offset) {
        tracing::debug!(topic = %record.kafka_topic, partition = record.partition, error = %e,
            "offset not stored (partition revoked?)");
    }
}

impl Envelope {
    fn new(message: &BorrowedMessage<'_>, topic_prefix: &str) -> Self {
        let record = Record::copy(message);
        let parsed = parse(
            record
                .kafka_topic
                .strip_prefix(topic_prefix)
                .unwrap_or(&record.kafka_topic),
            record.partition,
            record.offset,
            record.key.as_deref(),
            record.payload.as_deref(),
            &record.headers,
        );
        Self { record, parsed }
    }
}

impl From<HandlerError> for Failure {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Permanent(reason) => Failure::Permanent(reason),
            HandlerError::Transient(source) => Failure::of(&*source),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::of(&e)
    }
}

impl Failure {
    /// Classifies an error by the first database error (or I/O error) in its source chain;
    /// an error without one (a typed conflict, a guard that failed) is retryable. The reason
    /// is the error's message with its causes, and the SQLSTATE when there is one.
    fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let reason = describe(error);
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(e) = e.downcast_ref::<sqlx::Error>() {
                return match e {
                    sqlx::Error::Database(db) => Self::of_sqlstate(db.code().as_deref(), reason),
                    sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed => Self::Unavailable(reason),
                    // The message's values do not fit their SQL types: they never will.
                    sqlx::Error::Encode(_) => Self::Permanent(reason),
                    _ => Self::Retryable(reason),
                };
            }
            // A handler's error that wraps an `sqlx::Error` transparently (thiserror's
            // `#[error(transparent)]`) skips it in the chain and shows its source directly:
            // the boxed database error.
            if let Some(db) = e.downcast_ref::<Box<dyn sqlx::error::DatabaseError>>() {
                return Self::of_sqlstate(db.code().as_deref(), reason);
            }
            if let Some(db) = e.downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return Self::of_sqlstate(Some(db.code()), reason);
            }
            if e.is::<std::io::Error>() {
                return Self::Unavailable(reason);
            }
            next = e.source();
        }
        Self::Retryable(reason)
    }

    fn of_sqlstate(code: Option<&str>, reason: String) -> Self {
        let Some(code) = code else {
            return Self::Retryable(reason);
        };
        let reason = format!("{reason} (SQLSTATE {code})");
        match code {
            // Another transaction won a race on the same key; a retry reads again.
            "23505" | "23P01" => Self::Retryable(reason),
            _ if code.starts_with("22") || code.starts_with("23") => Self::Permanent(reason),
            "57P01" | "57P02" | "57P03" => Self::Unavailable(reason),
            _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("58") => {
                Self::Unavailable(reason)
            }
            _ => Self::Retryable(reason),
        }
    }
}

/// Runs `work`, turning a panic anywhere in it into a permanent failure. The handler's own
/// panics are caught closer ([`Shared::handle`], which rolls back and keeps the connection);
/// this catches the rest, e.g. in the code that names a message's span. An open transaction
/// dropped by the unwinding closes its connection, so the server rolls it back.
async fn catch_panic<T>(work: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let reason = format!("consumer panicked: {}", panic_message(panic.as_ref()));
            tracing::error!(%reason, "panic while applying messages; rolled back");
            Err(Failure::Permanent(reason))
        })
}

/// An error's message followed by those of its causes that it does not already include.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        next = cause.source();
    }
    text
}

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}

fn parse(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[(String, Option<Vec<u8>>)],
) -> Result<IncomingMessage, String> {
    let metadata = Metadata {
        message_id: parse_header(headers, h::MESSAGE_ID, Uuid::parse_str)?,
        correlation_id: parse_header(headers, h::CORRELATION_ID, Uuid::parse_str)?,
        causation_id: optional_header(headers, h::CAUSATION_ID, Uuid::parse_str)?,
        traceparent: optional_header(headers, h::TRACEPARENT, |s| {
            Ok::<_, std::convert::Infallible>(s.to_owned())
        })?,
        occurred_at: parse_header(headers, h::OCCURRED_AT, |s| {
            DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
        })?,
    };
    let key = key
        .map(|k| String::from_utf8(k.to_vec()).map_err(|_| "record key is not UTF-8".to_owned()))
        .transpose()?;
    Ok(IncomingMessage {
        topic: topic.to_owned(),
        partition,
        offset,
        key,
        message_type: parse_header(headers, h::MESSAGE_TYPE, |s| {
            Ok::<_, std::convert::Infallible>(s.to_owned())
        })?,
        schema_version: parse_header(headers, h::SCHEMA_VERSION, str::parse::<u16>)?,
        payload: payload.ok_or("record has no payload")?.to_vec(),
        metadata,
    })
}

fn parse_header<T, E: std::fmt::Display>(
    headers: &[(String, Option<Vec<u8>>)],
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, String> {
    optional_header(headers, name, parse)?.ok_or_else(|| format!("missing header {name}"))
}

fn optional_header<T, E: std::fmt::Display>(
    headers: &[(String, Option<Vec<u8>>)],
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, String> {
    // The last occurrence wins, as in Kafka's own header lookup.
    let Some((_, Some(value))) = headers.iter().rev().find(|(k, _)| k == name) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value).map_err(|_| format!("header {name} is not UTF-8"))?;
    parse(text)
        .map(Some)
        .map_err(|e| format!("invalid header {name} {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Option<Vec<u8>>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some(v.as_bytes().to_vec())))
            .collect()
    }

    fn valid() -> Vec<(&'static str, String)> {
        vec![
            (h::MESSAGE_ID, Uuid::now_v7().to_string()),
            (h::MESSAGE_TYPE, "OrderPlaced".to_owned()),
            (h::SCHEMA_VERSION, "1".to_owned()),
            (h::CORRELATION_ID, Uuid::now_v7().to_string()),
            (h::OCCURRED_AT, "2024-05-01T10:00:00+00:00".to_owned()),
        ]
    }

    /// A handler's own error type around `sqlx::Error`, as stock's and payment's are.
    #[derive(Debug, thiserror::Error)]
    enum Wrapped {
        #[error(transparent)]
        Database(#[from] sqlx::Error),
    }

    fn class(failure: &Failure) -> &'static str {
        match failure {
            Failure::Permanent(_) => "permanent",
            Failure::Retryable(_) => "retryable",
            Failure::Unavailable(_) => "unavailable",
        }
    }

    #[tokio::test]
    async fn database_errors_are_classified_by_sqlstate_however_wrapped() {
        let db = test_support::TestDatabase::create().await.unwrap();
        sqlx::query(
            "CREATE TABLE t (k int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), s numeric(4,2))",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO t VALUES (1, 1, 1)")
            .execute(&db.pool)
            .await
            .unwrap();
        let cases = [
            ("SELECT 1 / 0", "permanent"),
            ("SELECT 'x'::int", "permanent"),
            ("INSERT INTO t VALUES (2, 1, 100)", "permanent"),
            ("INSERT INTO t VALUES (2, -1, 1)", "permanent"),
            ("INSERT INTO t VALUES (2, NULL, 1)", "permanent"),
            ("INSERT INTO t VALUES (1, 1, 1)", "retryable"),
            ("SELECT * FROM missing", "retryable"),
        ];
        for (sql, expected) in cases {
            let e = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
            let wrapped = HandlerError::Transient(Box::new(Wrapped::from(
                sqlx::query(sql).execute(&db.pool).await.unwrap_err(),
            )));
            let direct = Failure::from(e);
            assert_eq!(class(&direct), expected, "{sql}: {direct:?}");
            let wrapped = Failure::from(wrapped);
            assert_eq!(class(&wrapped), expected, "{sql} wrapped: {wrapped:?}");
        }
        let Failure::Permanent(reason) = Failure::from(
            sqlx::query("SELECT 1 / 0")
                .execute(&db.pool)
                .await
                .unwrap_err(),
        ) else {
            panic!("division by zero is permanent")
        };
        assert!(
            reason.contains("division by zero (SQLSTATE 22012)"),
            "{reason}"
        );
        db.drop_now().await.unwrap();
    }

    #[test]
    fn other_errors_are_classified_by_kind() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases = [
            (Failure::from(sqlx::Error::PoolTimedOut), "unavailable"),
            (Failure::from(sqlx::Error::Io(io())), "unavailable"),
            (
                Failure::from(HandlerError::Transient(Box::new(Wrapped::from(
                    sqlx::Error::Io(io()),
                )))),
                "unavailable",
            ),
            (
                Failure::from(sqlx::Error::Encode("out of range".into())),
                "permanent",
            ),
            (
                Failure::from(HandlerError::Transient("lost a race".into())),
                "retryable",
            ),
            (
                Failure::from(HandlerError::Permanent("bad".into())),
                "permanent",
            ),
        ];
        for (failure, expected) in cases {
            assert_eq!(class(&failure), expected, "{failure:?}");
        }
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let text = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(text.as_ref()), "static");
        let n = 7;
        let formatted = std::panic::catch_unwind(|| panic!("n = {n}")).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "n = 7");
    }

    #[test]
    fn parses_the_relay_headers() {
        let pairs = valid();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let m = parse(
            "shop.orders",
            2,
            7,
            Some(b"k"),
            Some(b"{}"),
            &headers(&refs),
        )
        .expect("valid headers parse");
        assert_eq!(m.message_type, "OrderPlaced");
        assert_eq!(m.schema_version, 1);
        assert_eq!(m.key.as_deref(), Some("k"));
        assert_eq!(m.metadata.causation_id, None);
    }

    #[test]
    fn missing_or_invalid_headers_are_poison() {
        let pairs = valid();
        let without_id: Vec<(&str, &str)> =
            pairs[1..].iter().map(|(k, v)| (*k, v.as_str())).collect();
        let err = parse("t", 0, 0, None, Some(b"{}"), &headers(&without_id)).expect_err("no id");
        assert_eq!(err, "missing header message-id");

        let mut bad: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        bad.push((h::SCHEMA_VERSION, "one"));
        let err = parse("t", 0, 0, None, Some(b"{}"), &headers(&bad)).expect_err("bad version");
        assert!(err.starts_with("invalid header schema-version"), "{err}");
    }
}
