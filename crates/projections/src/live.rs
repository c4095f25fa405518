//! The live projection loop: one Kafka consumer group per store, Kafka → store, effectively
//! once (see the crate docs for the argument).
//!
//! The loop takes whatever piled up (up to [`ProjectionConfig::max_batch`] records, any
//! partitions) and hands it to the store as one batch. Only after the store acknowledged the
//! batch are the records' offsets stored for librdkafka's auto-commit (every second, on
//! rebalance, and synchronously at shutdown); a store error retries the same batch with capped
//! backoff, indefinitely, so a store that is down holds back only its own group.
//!
//! A **poison** record (missing or invalid headers, an unknown type, a payload that does not
//! decode or whose values are out of range) cannot be projected whatever is retried: it is
//! counted in `projection_poison_total{store}` and parked in `{prefix}shop.dead-letters` by
//! [`messaging::dead_letters`], like the services' consumers park theirs (same headers,
//! `dead-letter-consumer` being the projection's name, counted in
//! `messages_dead_lettered_total{consumer}`). Its offset, like those of the batch it came in,
//! is stored only after the broker acknowledged the dead letter; the later records are applied
//! as usual (a projection counts terminal facts by message id, so it has nothing to hold back
//! behind a record it cannot read).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use messaging::dead_letters::{DeadLetters, Record};
use platform::settings::KafkaSettings;
use platform::shutdown::Shutdown;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset};

use crate::facts::{self, Fact};

/// What a store did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Terminal facts counted now.
    pub counted: u64,
    /// Terminal facts already counted before (redelivered, replayed, published twice).
    pub duplicates: u64,
}

/// Why a store did not apply a batch. All are retried: a projection cannot skip a fact.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("mongodb: {0}")]
    Mongo(#[source] Box<mongodb::error::Error>),
    #[error("a concurrent writer moved {0}")]
    Contended(String),
    #[error("stored data does not have the expected shape: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn redis(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
    pub(crate) fn mongo(e: mongodb::error::Error) -> Self {
        Self::Mongo(Box::new(e))
    }
}

/// A read model the live loop feeds.
pub trait ReadModel: Send + Sync + 'static {
    /// The `store` label of metrics and logs.
    const STORE: &'static str;

    /// Applies a batch atomically per fact (or per partition), recording what was applied so
    /// that the same facts applied again change nothing.
    fn apply(&self, facts: &[Fact]) -> impl Future<Output = Result<Applied, StoreError>> + Send;
}

#[derive(Debug, Clone)]
pub struct ProjectionConfig {
    /// Consumer name; the Kafka group is `{topic prefix}{name}`.
    pub name: String,
    pub max_batch: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How often the lag gauge is refreshed.
    pub lag_interval: Duration,
}

impl ProjectionConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_batch: 1000,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            lag_interval: Duration::from_secs(2),
        }
    }
}

/// Live counters of one projection.
#[derive(Debug, Default)]
pub struct ProjectionStats {
    processed: AtomicU64,
    counted: AtomicU64,
    duplicates: AtomicU64,
    poison: AtomicU64,
    retried: AtomicU64,
    /// Latest lag per partition, as last measured.
    lag: Mutex<HashMap<i32, i64>>,
}

impl ProjectionStats {
    /// Records settled (applied, skipped or poison) and whose offsets were stored.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
    /// Terminal facts counted into the read model.
    pub fn counted(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
    }
    /// Terminal facts found already counted.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    pub fn poison(&self) -> u64 {
        self.poison.load(Ordering::Relaxed)
    }
    /// Batch attempts that failed (store down) and were retried.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Events behind, per partition, as last measured (high watermark − committed offset).
    pub fn lag(&self) -> HashMap<i32, i64> {
        self.lag.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// One store's consumer group member.
pub struct Projection<M: ReadModel> {
    consumer: Arc<platform::kafka::Closing<StreamConsumer>>,
    topic: String,
    model: M,
    config: ProjectionConfig,
    stats: Arc<ProjectionStats>,
    dead_letters: DeadLetters,
}

impl<M: ReadModel> Projection<M> {
    /// Joins `{prefix}{config.name}` on the orders topic. A new group starts at the earliest
    /// offset: a projection that starts late (or a replay) sees every message.
    pub fn new(
        kafka: &KafkaSettings,
        config: ProjectionConfig,
        model: M,
    ) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = platform::kafka::client_config(kafka)
            .set("group.id", format!("{}{}", kafka.topic_prefix, config.name))
            // A member that died without leaving (SIGKILL) keeps its partitions until its
            // session expires; librdkafka's 45 s default would break "settled within 30 s of
            // recovery". 10 s is well above the broker's 6 s minimum and a heartbeat's jitter.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the store acknowledged the batch.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()?;
        let topic = format!("{}{}", kafka.topic_prefix, contracts::topics::ORDERS);
        consumer.subscribe(&[&topic])?;
        let dead_letters =
            DeadLetters::new(kafka, &config.name, config.retry_initial, config.retry_max)?;
        // Exported at 0 from the start, so that an alert on their increase sees the first one.
        for family in [
            "projection_counted_total",
            "projection_duplicates_total",
            "projection_poison_total",
            "projection_retried_total",
        ] {
            metrics::counter!(family, "store" => M::STORE).increment(0);
        }
        Ok(Self {
            consumer: Arc::new(platform::kafka::Closing::new(consumer)),
            topic,
            model,
            config,
            stats: Arc::default(),
            dead_letters,
        })
    }

    pub fn stats(&self) -> Arc<ProjectionStats> {
        self.stats.clone()
    }

    /// Projects until shutdown, then commits the stored offsets synchronously.
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let lag = tokio::spawn(measure_lag(
            self.consumer.clone(),
            self.topic.clone(),
            M::STORE,
            self.config.lag_interval,
            self.stats.clone(),
            shutdown.clone(),
        ));
        let max = self.config.max_batch.max(1);
        let mut batch: Vec<Fact> = Vec::with_capacity(max);
        let mut poison: Vec<(Record, String)> = Vec::new();
        let mut last: HashMap<i32, i64> = HashMap::new();
        loop {
            let first = tokio::select! {
                () = shutdown.requested() => break,
                received = self.consumer.recv() => received,
            };
            let mut records = u64::from(self.take(first, &mut batch, &mut poison, &mut last));
            for _ in 1..max {
                match self.consumer.recv().now_or_never() {
                    Some(received) => {
                        records +=
                            u64::from(self.take(received, &mut batch, &mut poison, &mut last))
                    }
                    None => break,
                }
            }
            if !self.apply_until_done(&batch, &mut shutdown).await {
                break;
            }
            if !self.park(&mut poison, &mut shutdown).await {
                break;
            }
            for (partition, offset) in last.drain() {
                // librdkafka stores `offset + 1`, the next offset to read. Fails only if the
                // partition was revoked meanwhile; its new owner redelivers and dedupes.
                if let Err(e) = self.consumer.store_offset(&self.topic, partition, offset) {
                    tracing::debug!(store = M::STORE, partition, error = %e, "offset not stored");
                }
            }
            self.stats.processed.fetch_add(records, Ordering::Relaxed);
            batch.clear();
        }
        lag.abort();
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit, or Kafka is down: a restart redelivers.
            tracing::debug!(store = M::STORE, error = %e, "final offset commit failed");
        }
        Ok(())
    }

    /// Adds a received record to the batch, or to `poison` with why it cannot be projected;
    /// `true` if it was a record (not a client error).
    fn take(
        &self,
        received: Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>,
        batch: &mut Vec<Fact>,
        poison: &mut Vec<(Record, String)>,
        last: &mut HashMap<i32, i64>,
    ) -> bool {
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                // Broker and transport errors surface here while librdkafka recovers.
                tracing::warn!(store = M::STORE, error = %e, "Kafka consumer error");
                return false;
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        let entry = last.entry(partition).or_insert(offset);
        *entry = (*entry).max(offset);
        match facts::from_kafka(&message) {
            Ok(fact) => batch.push(fact),
            Err(reason) => {
                self.stats.poison.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("projection_poison_total", "store" => M::STORE).increment(1);
                tracing::warn!(store = M::STORE, partition, offset, %reason,
                    "a record the projection cannot read; parking it");
                poison.push((Record::copy(&message), reason));
            }
        }
        true
    }

    /// Parks the batch's poison records in the dead-letter topic, in order; `false` when
    /// stopping before the broker acknowledged them all (the batch's offsets stay unstored,
    /// and a restart parks them again).
    async fn park(&self, poison: &mut Vec<(Record, String)>, shutdown: &mut Shutdown) -> bool {
        for (record, reason) in poison.iter() {
            if self
                .dead_letters
                .park(record, reason, shutdown)
                .await
                .is_err()
            {
                return false;
            }
        }
        poison.clear();
        true
    }

    /// `false` when stopping before the store accepted the batch (its offsets stay unstored).
    async fn apply_until_done(&self, batch: &[Fact], shutdown: &mut Shutdown) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut delay = self.config.retry_initial;
        loop {
            match self.model.apply(batch).await {
                Ok(applied) => {
                    self.stats
                        .counted
                        .fetch_add(applied.counted, Ordering::Relaxed);
                    self.stats
                        .duplicates
                        .fetch_add(applied.duplicates, Ordering::Relaxed);
                    metrics::counter!("projection_counted_total", "store" => M::STORE)
                        .increment(applied.counted);
                    metrics::counter!("projection_duplicates_total", "store" => M::STORE)
                        .increment(applied.duplicates);
                    return true;
                }
                Err(e) => {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("projection_retried_total", "store" => M::STORE).increment(1);
                    tracing::warn!(store = M::STORE, error = %e, ?delay,
                        "store did not apply the batch; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.requested() => return false,
                    }
                    delay = (delay * 2).min(self.config.retry_max);
                }
            }
        }
    }
}

/// Sets `projection_lag{store, partition}` = high watermark − committed offset for each
/// assigned partition, every `interval`, and 0 for a partition this instance measured before and
/// no longer has: another instance reports it now, and the console adds the instances' figures.
/// librdkafka's calls block, so they run off the runtime.
async fn measure_lag(
    consumer: Arc<platform::kafka::Closing<StreamConsumer>>,
    topic: String,
    store: &'static str,
    interval: Duration,
    stats: Arc<ProjectionStats>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.requested() => return,
        }
        let consumer = consumer.clone();
        let topic = topic.clone();
        let measured = tokio::task::spawn_blocking(move || lag_now(&consumer, &topic)).await;
        let Ok(Ok(lags)) = measured else { continue };
        for (partition, lag) in &lags {
            metrics::gauge!("projection_lag", "store" => store, "partition" => partition.to_string())
                .set(*lag as f64);
        }
        if let Ok(mut current) = stats.lag.lock() {
            for partition in current.keys().filter(|p| !lags.contains_key(p)) {
                metrics::gauge!("projection_lag", "store" => store, "partition" => partition.to_string())
                    .set(0.0);
            }
            *current = lags;
        }
    }
}

fn lag_now(consumer: &StreamConsumer, topic: &str) -> Result<HashMap<i32, i64>, KafkaError> {
    let timeout = Duration::from_secs(2);
    let committed = consumer.committed(timeout)?;
    let mut lags = HashMap::new();
    for element in committed.elements_for_topic(topic) {
        let partition = element.partition();
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        let position = match element.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lags.insert(partition, (high - position).max(0));
    }
    Ok(lags)
}

/// A read model's generations (see the crate docs): the one reports read and, while a rebuild
/// runs, the one it builds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Generations {
    /// `0` before any rebuild.
    pub current: String,
    pub building: Option<String>,
}
