//! The message relay: publishes committed outbox rows to Kafka.
//!
//! # Delivery guarantee
//!
//! At least once, in per-key order. A row is marked published only after the broker
//! acknowledged it (`acks=all`, idempotent producer), so a crash, a Kafka outage or a lost
//! connection at any point leads to a row being published again, never to a row being lost.
//! Consumers dedupe on the `message-id` header (see [`crate::consumer`]), which turns this into
//! effectively-once processing.
//!
//! A row only exists once its transaction committed, so a rolled-back change never publishes
//! anything. Rows are read in `id` order: ids of one key are allocated by transactions that are
//! serialised per key (see `1_outbox.sql`), so per key this is commit order. No high-water mark
//! is kept: every batch reads the oldest *unpublished* rows, so a row whose transaction
//! committed late (with a smaller id than rows already published) is still picked up.
//!
//! # Per-key order when a delivery fails
//!
//! A batch hands its rows to the producer in id order, then awaits every delivery. For each key
//! it marks the acknowledged rows only up to the key's first row that was not acknowledged
//! (failed, or not sent); that row and every later row of its key stay unpublished, even the
//! ones Kafka acknowledged, and go out again after it in a later batch. ("Key" is the message
//! key across topics, which is stricter than Kafka's per-partition order needs.)
//!
//! Marking alone would not keep a key's order on its topic: a later row that Kafka *wrote*
//! before the failed one was republished would reach a consumer first, and deduplication by
//! message id keeps the first copy. What keeps the order in the log is that the producer never
//! writes a message of a partition after one of that partition it failed:
//!
//! - The producer is idempotent: librdkafka writes each partition's messages in produce order
//!   and retries transient failures in place, under the same sequence numbers, so the broker
//!   drops what it already has.
//! - A *permanent* failure in the middle of a partition's in-flight sequence (a record too large
//!   for the topic, a refused authorisation) leaves a hole in the sequence numbers. The requests
//!   after it then fail with `OUT_OF_ORDER_SEQUENCE_NUMBER`, and librdkafka would bump the
//!   producer epoch and resend them renumbered: the later messages written, the failed one not.
//!   With `enable.gapless.guarantee` it raises a fatal error instead and sends nothing more. The
//!   relay then purges what the producer still holds (so every delivery of the batch resolves),
//!   and creates a new producer for the next batch.
//! - Messages never time out inside librdkafka (`message.timeout.ms=0`): a queued message that
//!   timed out is skipped the same way, renumbering the ones behind it, and the gap-less
//!   guarantee does not cover that. A batch instead waits for Kafka as long as it takes (what
//!   commits meanwhile waits in the outbox); shutdown abandons it after
//!   [`RelayConfig::shutdown_grace`].
//! - A row the producer refuses before numbering it (larger than the producer accepts, say) is
//!   not sent, and neither are the batch's later rows of its key.
//!
//! So per partition, what one producer writes of the rows it was given is an in-order prefix of
//! them, and each batch gives it every key from the key's first unmarked row on, all earlier
//! rows being marked, that is acknowledged, that is in the log. By induction the first copy of
//! each row comes after the first copies of all earlier rows of its key, however many copies a
//! failure, a restart or a second relay (below) added: a consumer that dedupes by message id
//! applies one key's messages in outbox order.
//!
//! A row Kafka refuses for good (too large for its topic, a topic that does not exist) blocks
//! its key, and only its key: the relay leaves that key out of its batches for
//! [`RelayConfig::poison_retry`], then tries again (a retry that fails the producer again makes
//! the other unacknowledged rows of its batch go out once more). The row is logged each time,
//! and `outbox_oldest_pending_age_seconds` grows until someone fixes the topic or the row.
//!
//! # One active relay per outbox: the lease
//!
//! Several relay instances may run against one database, but only the holder of the *lease*
//! publishes; the others stand by and retry. Why not let them share the work with
//! `FOR UPDATE SKIP LOCKED`? Because two instances would then publish *different rows of the
//! same key* concurrently, and Kafka keeps per-key order only within one producer: row 2 of an
//! order could land before row 1. With a single active publisher every row normally goes out
//! once, and the order of a key on its partition is the outbox order.
//!
//! The lease is a row, `outbox_lease` (`6_outbox_lease.sql`), with an epoch and an expiry that
//! its holder renews, not a lock held by a session. A session lock lives as long as the server
//! believes the session alive: if the holder's host vanishes (power loss, a cut network: no FIN,
//! no RST), the server keeps the session, and the lock, until TCP gives up, hours with the
//! default keepalive settings, and the outbox stalls. Server-side keepalives or
//! `tcp_user_timeout` on that session would shorten that, but they prove the *connection*
//! alive, not the relay: a holder that is stopped, starved or wedged keeps a healthy connection
//! and its lock. A lease the relay's own loop must renew proves the relay is working, and needs
//! nothing from the network or a connection pooler in between.
//!
//! - **Taking**: a stand-by tries every [`RelayConfig::lease_retry`] to bump the epoch of an
//!   expired lease row (`… WHERE expires_at <= now()`). Concurrent attempts serialise on the
//!   row; one wins.
//! - **Renewing**: the holder's loop renews every third of [`RelayConfig::lease_ttl`]: between
//!   batches, while idle and while a batch waits for Kafka, always under its own epoch. Finding
//!   another epoch means another relay took over: this one stands by.
//! - **Fencing**: before sending each row the holder checks that its lease is still valid, i.e.
//!   that less than the TTL passed since it sent its last successful renewal (on the monotonic
//!   clock, which keeps running while a process is stopped); and its mark statement updates rows
//!   only while the lease row still carries its epoch. A holder stopped past its TTL (SIGSTOP, a
//!   pause, a cut network) that wakes up therefore marks nothing and sends nothing new. Only
//!   what it had handed to its producer before it stopped may still go out: copies of rows the
//!   new holder publishes too, with the same message ids, which by the argument above never put
//!   a row before an earlier one of its key.
//! - **Releasing**: a relay that stops expires its lease, so a stand-by takes over at once; one
//!   that dies or vanishes is replaced after at most the TTL plus the retry interval.
//!
//! Expiry is judged by the server's clock alone (`now()`), so the relays' clocks need not agree.
//! A holder whose renewals fail (PostgreSQL unreachable) goes on until its lease would have
//! expired and then stops; its marks need PostgreSQL anyway. A holder paused for longer than
//! the TTL (a starved CPU) loses the lease, which costs duplicates, never a loss or disorder.
//!
//! A batch's reads and marks, the renewals and the clean-ups run on one dedicated connection
//! (prepared statements, `synchronous_commit = off`). Losing it (a PostgreSQL restart) does not
//! lose the lease: the relay reconnects and renews under its epoch if it is still in time.
//!
//! # Latency without busy polling
//!
//! Whoever commits outbox rows rings the [`Doorbell`] (see [`crate::doorbell`]): in memory when
//! this process's relay holds the lease, as a `NOTIFY outbox` after the commit otherwise, which
//! [`Relay::run`] hears on `LISTEN outbox`. A slow poll is the safety net for a lost ring (e.g.
//! across a reconnect, or rows written by hand). A full batch is followed immediately by the
//! next one.
//!
//! Published rows are kept for [`RelayConfig::retention`] (to inspect what went out) and then
//! deleted by the lease holder.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use platform::settings::KafkaSettings;
use platform::shutdown::Shutdown;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::doorbell::{self, Doorbell};
use crate::outbox::Metadata;

/// How often a batch waiting for Kafka looks for a fatal producer error.
const FATAL_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// `application_name` of the relay's own session, to tell it apart in `pg_stat_activity`.
pub const SESSION_NAME: &str = "outbox-relay";

/// Tuning of a relay. The defaults suit a service; tests shorten the intervals.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read, published and marked together.
    pub batch_size: i64,
    /// Safety-net poll when no ring arrives.
    pub poll_interval: Duration,
    /// How often a stand-by relay tries to take the lease.
    pub lease_retry: Duration,
    /// How long the lease lasts unless renewed (it is renewed every third of it): how long the
    /// outbox waits when its relay vanished, and how long a relay may stall before another
    /// takes over.
    pub lease_ttl: Duration,
    /// How long the rows of a key are left out of batches after Kafka refused one of them for
    /// good (too large for its topic, an unknown topic), before they are tried again.
    pub poison_retry: Duration,
    /// How long published rows are kept before deletion.
    pub retention: Duration,
    /// How often the lease holder deletes expired rows.
    pub cleanup_interval: Duration,
    /// Most rows one clean-up deletes. It runs between two batches, so a bound on it is a
    /// bound on how long publishing waits; a full clean-up is followed by another soon after.
    pub cleanup_batch: u32,
    /// How long a batch in flight at shutdown may take to finish before it is abandoned (its
    /// rows stay unpublished and go out again later, possibly twice).
    pub shutdown_grace: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            lease_retry: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(5),
            poison_retry: Duration::from_secs(30),
            retention: Duration::from_secs(10 * 60),
            cleanup_interval: Duration::from_secs(5),
            cleanup_batch: 1000,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("creating the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
    #[error("{failed} of {attempted} messages were not acknowledged by Kafka: {first}")]
    Delivery {
        attempted: usize,
        failed: usize,
        #[source]
        first: KafkaError,
    },
    #[error("another relay took the lease; standing by")]
    LeaseLost,
}

/// What one [`Relay::publish_batch`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows acknowledged by Kafka and marked published.
    pub published: usize,
    /// Whether the batch was full, i.e. more rows may be waiting.
    pub full: bool,
    /// Whether this relay holds the lease. A stand-by publishes nothing.
    pub lease_held: bool,
}

/// The lease as its holder knows it.
#[derive(Debug, Clone, Copy)]
struct Lease {
    epoch: i64,
    /// When to renew next.
    renew_at: Instant,
    /// Until when no other relay can have taken the lease: the TTL after the last successful
    /// renewal was sent (the server's expiry is the TTL after it received it, which is later).
    valid_until: Instant,
}

impl Lease {
    fn renewed(epoch: i64, sent: Instant, ttl: Duration) -> Self {
        Self {
            epoch,
            // An absurd TTL makes the lease worthless rather than the arithmetic panic.
            renew_at: sent.checked_add(ttl / 3).unwrap_or(sent),
            valid_until: sent.checked_add(ttl).unwrap_or(sent),
        }
    }
}

/// What became of one row of a batch.
enum Outcome {
    NotSent,
    Acknowledged,
    Failed(KafkaError),
}

/// Publishes one database's outbox. See the module docs for the guarantees.
pub struct Relay {
    pool: PgPool,
    /// To create a new producer after a fatal error of the current one.
    producer_config: ClientConfig,
    producer: FutureProducer,
    topic_prefix: String,
    config: RelayConfig,
    /// Names this instance in the lease row, for operators.
    holder: String,
    /// `None` while standing by.
    lease: Option<Lease>,
    /// The relay's own session (see the module docs); opened when first needed.
    conn: Option<PgConnection>,
    /// Keys left out of batches until the given instant, after Kafka refused one of their rows
    /// for good.
    poisoned: HashMap<String, Instant>,
    /// Rung by this process's writers; told whether this relay holds the lease.
    doorbell: Doorbell,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    message_id: Uuid,
    topic: String,
    message_key: String,
    message_type: String,
    schema_version: i16,
    payload: String,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    traceparent: Option<String>,
    occurred_at: DateTime<Utc>,
}

impl Relay {
    pub fn new(
        kafka: &KafkaSettings,
        pool: PgPool,
        config: RelayConfig,
    ) -> Result<Self, RelayError> {
        let mut producer_config = platform::kafka::client_config(kafka);
        producer_config
            // Idempotence implies acks=all and in-order, duplicate-free retries per partition;
            // gap-less and no timeout make it never write a message after one it failed (see
            // the module docs). Per-key order depends on all three. (librdkafka warns at start
            // that the gap-less property is experimental.)
            .set("enable.idempotence", "true")
            .set("enable.gapless.guarantee", "true")
            .set("message.timeout.ms", "0")
            .set("acks", "all")
            // A batch is handed over whole and then awaited, so lingering for more messages
            // only delays its acknowledgement; what is queued still goes out together
            // (docs/decisions/0003-relay-publishes-without-linger.md).
            .set("linger.ms", "0")
            .set("compression.type", "lz4");
        let producer = producer_config.create().map_err(RelayError::Producer)?;
        // Documented families exist from the start (docs/operations.md), so that an alert on an
        // increase sees the first one.
        metrics::counter!("relay_published_total").increment(0);
        metrics::counter!("relay_publish_errors_total").increment(0);
        metrics::gauge!("outbox_pending").increment(0.0);
        metrics::gauge!("outbox_oldest_pending_age_seconds").increment(0.0);
        Ok(Self {
            doorbell: Doorbell::new(pool.clone()),
            pool,
            producer_config,
            producer,
            topic_prefix: kafka.topic_prefix.clone(),
            config,
            holder: holder_name(),
            lease: None,
            conn: None,
            poisoned: HashMap::new(),
        })
    }

    /// The doorbell this relay answers: ring it after committing outbox rows.
    pub fn doorbell(&self) -> Doorbell {
        self.doorbell.clone()
    }

    /// Whether this instance currently holds a valid lease.
    pub fn holds_lease(&self) -> bool {
        self.lease
            .is_some_and(|lease| Instant::now() < lease.valid_until)
    }

    /// The relay's own session, (re)opened if needed.
    async fn connection(&mut self) -> Result<&mut PgConnection, RelayError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                // Detached: the session's settings must not leak into the pool.
                let mut conn = self.pool.acquire().await?.detach();
                // It marks rows published, renews the lease and deletes old rows. None of this
                // needs to wait for the WAL flush: a mark lost in a crash only republishes its
                // row, which consumers dedupe; a lost renewal can at worst let a stand-by take
                // over early, which the fence handles; a lost delete is done again.
                sqlx::query("SELECT set_config('synchronous_commit', 'off', false), set_config('application_name', $1, false)")
                    .bind(SESSION_NAME)
                    .execute(&mut conn)
                    .await?;
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Takes the lease if it is free, renews it if a renewal is due; whether this relay holds
    /// it now.
    async fn hold_lease(&mut self) -> Result<bool, RelayError> {
        match self.lease {
            None => self.acquire_lease().await,
            Some(lease) if Instant::now() < lease.renew_at => Ok(true),
            Some(_) => self.renew_lease().await,
        }
    }

    /// Takes the lease if it expired; `Ok(false)` if another relay holds it.
    async fn acquire_lease(&mut self) -> Result<bool, RelayError> {
        let sent = Instant::now();
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE outbox_lease
             SET epoch = epoch + 1, holder = $1, acquired_at = now(),
                 expires_at = now() + make_interval(secs => $2)
             WHERE expires_at <= now()
             RETURNING epoch",
        )
        .bind(&self.holder)
        .bind(self.config.lease_ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let Some(epoch) = epoch else {
            return Ok(false);
        };
        self.lease = Some(Lease::renewed(epoch, sent, self.config.lease_ttl));
        self.doorbell.set_relay_here(true);
        tracing::info!(epoch, "outbox relay took the lease");
        Ok(true)
    }

    /// Renews the lease under its epoch. `Ok(false)`: another relay took it, and this one now
    /// stands by. On an error the lease is kept (until it would have expired) and the renewal
    /// is retried soon.
    async fn renew_lease(&mut self) -> Result<bool, RelayError> {
        let Some(lease) = self.lease else {
            return Ok(false);
        };
        let ttl = self.config.lease_ttl;
        let sent = Instant::now();
        let renewed = async {
            let conn = self.connection().await?;
            let renewed: Option<i32> = sqlx::query_scalar(
                "UPDATE outbox_lease SET expires_at = now() + make_interval(secs => $2)
                 WHERE epoch = $1 RETURNING 1",
            )
            .bind(lease.epoch)
            .bind(ttl.as_secs_f64())
            .fetch_optional(conn)
            .await?;
            Ok::<_, RelayError>(renewed.is_some())
        }
        .await;
        match renewed {
            Ok(true) => {
                self.lease = Some(Lease::renewed(lease.epoch, sent, ttl));
                self.doorbell.set_relay_here(true);
                Ok(true)
            }
            Ok(false) => {
                self.lose_lease();
                Ok(false)
            }
            Err(e) => {
                self.conn = None;
                let retry = (ttl / 10).max(Duration::from_millis(50));
                self.lease = Some(Lease {
                    renew_at: Instant::now().checked_add(retry).unwrap_or(sent),
                    ..lease
                });
                Err(e)
            }
        }
    }

    /// Forgets a lease another relay took.
    fn lose_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.doorbell.set_relay_here(false);
            tracing::warn!(
                epoch = lease.epoch,
                "outbox relay lost the lease to another relay; standing by"
            );
        }
    }

    /// Gives up the lease, expiring it so that a stand-by takes over at once, and closes the
    /// relay's session.
    async fn release_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.doorbell.set_relay_here(false);
            if let Err(e) = expire(&self.pool, lease.epoch).await {
                tracing::warn!(error = %e, "releasing the outbox lease failed; it expires on its own");
            }
            tracing::info!(epoch = lease.epoch, "outbox relay released the lease");
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Publishes the oldest unpublished rows (at most one batch) and marks, per key, the
    /// acknowledged ones before the key's first failure (see the module docs).
    ///
    /// Sends every row of the batch, then awaits every delivery, then marks in one `UPDATE`
    /// fenced by the lease's epoch. Rows not marked stay unpublished and are retried by the
    /// next call; if some failed, the call returns [`RelayError::Delivery`].
    pub async fn publish_batch(&mut self) -> Result<BatchReport, RelayError> {
        if !self.hold_lease().await? {
            return Ok(BatchReport {
                published: 0,
                full: false,
                lease_held: false,
            });
        }
        let result = self.publish_with_lease().await;
        match &result {
            // The session may be broken: open a new one next time. The lease stays as valid
            // as it was; the next renewal says whether it is still ours.
            Err(RelayError::Database(_)) => self.conn = None,
            Err(RelayError::LeaseLost) => self.lose_lease(),
            _ => {}
        }
        if self.producer.client().fatal_error().is_some() {
            self.replace_producer()?;
        }
        result
    }

    async fn publish_with_lease(&mut self) -> Result<BatchReport, RelayError> {
        let Some(Lease { epoch, .. }) = self.lease else {
            return Err(RelayError::LeaseLost);
        };
        let now = Instant::now();
        self.poisoned.retain(|_, until| *until > now);
        let left_out: Vec<String> = self.poisoned.keys().cloned().collect();
        let batch_size = self.config.batch_size;
        let started = Instant::now();
        let conn = self.connection().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, message_id, topic, message_key, message_type, schema_version,
                    payload::text AS payload, correlation_id, causation_id, traceparent,
                    occurred_at
             FROM outbox WHERE published_at IS NULL AND message_key <> ALL($2)
             ORDER BY id LIMIT $1",
        )
        .bind(batch_size)
        .bind(&left_out)
        .fetch_all(conn)
        .await?;
        let full = rows.len() as i64 >= batch_size;
        let read = Instant::now();
        record_phase("read", started, read);
        if rows.is_empty() {
            return Ok(BatchReport {
                published: 0,
                full,
                lease_held: true,
            });
        }

        let mut outcomes: Vec<Outcome> = rows.iter().map(|_| Outcome::NotSent).collect();
        let mut pending: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(rows.len());
        let mut topics: HashMap<&str, String> = HashMap::new();
        // Keys with a row the producer refused outright: their later rows are not sent.
        let mut refused: HashSet<&str> = HashSet::new();
        for (i, row) in rows.iter().enumerate() {
            if !self.holds_lease() {
                // Stopped or starved past the lease: another relay may be publishing by now.
                break;
            }
            let key = row.message_key.as_str();
            if refused.contains(key) {
                continue;
            }
            let topic = topics
                .entry(row.topic.as_str())
                .or_insert_with(|| format!("{}{}", self.topic_prefix, row.topic));
            let mut record = FutureRecord::to(topic.as_str())
                .key(key)
                .payload(row.payload.as_str())
                .headers(headers_of(row));
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: wait for what is in flight, then go on.
                        record = back;
                        self.await_deliveries(std::mem::take(&mut pending), &mut outcomes)
                            .await?;
                    }
                    Err((e, _)) => {
                        if let Some(outcome) = outcomes.get_mut(i) {
                            *outcome = Outcome::Failed(e);
                        }
                        refused.insert(key);
                        break;
                    }
                }
            }
        }
        self.await_deliveries(pending, &mut outcomes).await?;
        let acknowledged = Instant::now();
        record_phase("acknowledge", read, acknowledged);

        // Per key, the acknowledged rows before its first row that was not acknowledged.
        let now = Instant::now();
        let mut blocked: HashSet<&str> = HashSet::new();
        let mut marked: Vec<i64> = Vec::with_capacity(rows.len());
        let mut held_back = 0usize;
        let mut failed = 0usize;
        let mut first_error: Option<KafkaError> = None;
        for (row, outcome) in rows.iter().zip(outcomes) {
            let key = row.message_key.as_str();
            match outcome {
                Outcome::Acknowledged if blocked.contains(key) => held_back += 1,
                Outcome::Acknowledged => marked.push(row.id),
                Outcome::NotSent => {
                    blocked.insert(key);
                }
                Outcome::Failed(e) => {
                    blocked.insert(key);
                    failed += 1;
                    if refused_for_good(&e) && !self.poisoned.contains_key(key) {
                        tracing::error!(
                            row = row.id, key, topic = %row.topic, error = %e,
                            "Kafka refused an outbox row; its key waits, the others go on"
                        );
                        let until = now.checked_add(self.config.poison_retry).unwrap_or(now);
                        self.poisoned.insert(key.to_owned(), until);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }

        if !marked.is_empty() {
            let conn = self.connection().await?;
            let lease_held: bool = sqlx::query_scalar(
                "WITH lease AS (SELECT FROM outbox_lease WHERE epoch = $2),
                      marked AS (
                          UPDATE outbox SET published_at = now(), published_epoch = $2
                          WHERE id = ANY($1) AND EXISTS (SELECT FROM lease))
                 SELECT EXISTS (SELECT FROM lease)",
            )
            .bind(&marked)
            .bind(epoch)
            .fetch_one(conn)
            .await?;
            if !lease_held {
                return Err(RelayError::LeaseLost);
            }
            record_phase("mark", acknowledged, Instant::now());
        }
        metrics::counter!("relay_published_total").increment(marked.len() as u64);
        if held_back > 0 {
            tracing::debug!(
                held_back,
                "acknowledged rows after a failed row of their key go out again after it"
            );
        }
        if let Some(first) = first_error {
            metrics::counter!("relay_publish_errors_total").increment(failed as u64);
            return Err(RelayError::Delivery {
                attempted: rows.len(),
                failed,
                first,
            });
        }
        Ok(BatchReport {
            published: marked.len(),
            full,
            lease_held: true,
        })
    }

    /// Awaits `pending` deliveries into `outcomes`. Meanwhile renews the lease when due (a
    /// batch may wait for Kafka for long) and, once the producer has a fatal error, purges what
    /// it still holds, so that every delivery resolves (nothing times out on its own). Returns
    /// [`RelayError::LeaseLost`] early if another relay took the lease meanwhile.
    async fn await_deliveries(
        &mut self,
        pending: Vec<(usize, DeliveryFuture)>,
        outcomes: &mut [Outcome],
    ) -> Result<(), RelayError> {
        if pending.is_empty() {
            return Ok(());
        }
        let (indices, futures): (Vec<usize>, Vec<DeliveryFuture>) = pending.into_iter().unzip();
        let deliveries = join_all(futures);
        tokio::pin!(deliveries);
        let mut fatal_check = tokio::time::interval(FATAL_CHECK_INTERVAL);
        let results = loop {
            let renew_at = self.lease.map(|lease| lease.renew_at);
            let renew = tokio::select! {
                results = &mut deliveries => break results,
                _ = fatal_check.tick() => false,
                () = sleep_until(renew_at) => true,
            };
            if renew {
                match self.renew_lease().await {
                    Ok(true) => {}
                    Ok(false) => return Err(RelayError::LeaseLost),
                    Err(e) => tracing::warn!(error = %e, "renewing the outbox lease failed"),
                }
            } else if let Some((code, reason)) = self.producer.client().fatal_error() {
                // Repeated on every check: a request answered after a purge can put its
                // messages back in the queue, where nothing would ever send them.
                tracing::warn!(%code, %reason, "the Kafka producer failed; purging it");
                self.producer
                    .purge(PurgeConfig::default().queue().inflight());
            }
        };
        for (i, result) in indices.into_iter().zip(results) {
            if let Some(outcome) = outcomes.get_mut(i) {
                *outcome = match result {
                    Ok(Ok(_)) => Outcome::Acknowledged,
                    Ok(Err((e, _))) => Outcome::Failed(e),
                    Err(_canceled) => Outcome::Failed(KafkaError::Canceled),
                };
            }
        }
        Ok(())
    }

    /// Replaces a producer that had a fatal error (it sends nothing more) with a new one.
    fn replace_producer(&mut self) -> Result<(), RelayError> {
        let fresh: FutureProducer = self
            .producer_config
            .create()
            .map_err(RelayError::Producer)?;
        let failed = std::mem::replace(&mut self.producer, fresh);
        // Dropping a producer purges and flushes it, which blocks.
        tokio::task::spawn_blocking(move || drop(failed));
        tracing::info!("a new Kafka producer replaces the failed one");
        Ok(())
    }

    /// Deletes published rows older than the retention, the oldest first and at most
    /// [`RelayConfig::cleanup_batch`] of them. Only the lease holder does it, so stand-bys add no
    /// load. Returns the rows deleted.
    pub async fn clean_up(&mut self) -> Result<u64, RelayError> {
        if !self.holds_lease() {
            return Ok(0);
        }
        let retention = self.config.retention.as_secs_f64();
        let limit = i64::from(self.config.cleanup_batch);
        let result = async {
            let conn = self.connection().await?;
            // Reads only the expired rows, through `outbox_published`
            // (`5_outbox_published_index.sql`), then deletes them by key. (`IN (SELECT …)` let
            // the planner join against the whole primary key index instead: 42 ms of 60 for
            // 5,000 rows of 88,000, against 9 ms.)
            let deleted = sqlx::query(
                "DELETE FROM outbox WHERE id = ANY(ARRAY(
                     SELECT id FROM outbox
                     WHERE published_at IS NOT NULL
                       AND published_at < now() - make_interval(secs => $1)
                     ORDER BY published_at LIMIT $2))",
            )
            .bind(retention)
            .bind(limit)
            .execute(conn)
            .await?
            .rows_affected();
            Ok::<_, RelayError>(deleted)
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Publishes until shutdown: wakes on a ring or the poll interval, drains the
    /// outbox batch by batch, renews the lease while it holds it, stands by while another
    /// relay holds it, and backs off (capped, exponential) on errors. Returns after an
    /// in-flight batch finished (or the grace period ran out), the producer flushed and the
    /// lease was released.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let sampler = tokio::spawn(sample_outbox(self.pool.clone(), shutdown.clone()));
        let forwarder = tokio::spawn(self.doorbell.clone().forward(shutdown.clone()));
        let doorbell = self.doorbell.clone();
        let mut listener: Option<PgListener> = None;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut next_cleanup = Instant::now();
        while !shutdown.is_requested() {
            if listener.is_none() {
                // Listening before reading the outbox means no commit can slip in between.
                listener = match PgListener::connect_with(&self.pool).await {
                    Ok(mut l) => match l.listen(doorbell::CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN outbox failed; polling");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "no connection for LISTEN outbox; polling");
                        None
                    }
                };
            }

            let grace = self.config.shutdown_grace;
            let batch = {
                let publish = self.publish_batch();
                tokio::pin!(publish);
                tokio::select! {
                    result = &mut publish => Some(result),
                    () = shutdown.requested() => {
                        tokio::time::timeout(grace, publish).await.ok()
                    }
                }
            };
            let Some(batch) = batch else { break };
            if shutdown.is_requested() {
                break;
            }

            let wait = match batch {
                Ok(report) if !report.lease_held => self.config.lease_retry,
                Ok(report) => {
                    backoff.reset();
                    if report.full {
                        Duration::ZERO
                    } else {
                        self.config.poll_interval
                    }
                }
                Err(RelayError::LeaseLost) => self.config.lease_retry,
                Err(e) => {
                    tracing::error!(error = %e, "outbox relay batch failed");
                    backoff.next_delay()
                }
            };

            if self.holds_lease() && Instant::now() >= next_cleanup {
                next_cleanup = match self.clean_up().await {
                    // More may be expired: go on after the next batch.
                    Ok(deleted) if deleted >= u64::from(self.config.cleanup_batch) => {
                        Instant::now()
                    }
                    Ok(_) => Instant::now() + self.config.cleanup_interval,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox clean-up failed");
                        Instant::now() + self.config.cleanup_interval
                    }
                };
            }

            if wait.is_zero() {
                continue;
            }
            // Only a healthy lease holder is woken by rings; a stand-by or a relay backing off
            // waits its full delay. A holder renews its lease meanwhile, without publishing.
            let woken_early = self.holds_lease() && wait == self.config.poll_interval;
            let deadline = Instant::now() + wait;
            loop {
                let renew_at = self.lease.map(|lease| lease.renew_at);
                let renew = tokio::select! {
                    () = tokio::time::sleep_until(deadline) => false,
                    () = shutdown.requested() => false,
                    () = doorbell.rung(), if woken_early => false,
                    notified = wait_notification(&mut listener), if woken_early => {
                        if let Err(e) = notified {
                            tracing::warn!(error = %e, "LISTEN outbox connection lost; reconnecting");
                            listener = None;
                        }
                        false
                    }
                    () = sleep_until(renew_at) => true,
                };
                if !renew {
                    break;
                }
                match self.renew_lease().await {
                    Ok(true) => {}
                    // Another relay holds it: the next turn stands by.
                    Ok(false) => break,
                    Err(e) => tracing::warn!(error = %e, "renewing the outbox lease failed"),
                }
            }
        }
        // Deliveries still queued were either awaited by their batch or belong to an abandoned
        // batch whose rows are republished later; flushing just avoids needless duplicates.
        let _ = self.producer.flush(Duration::from_secs(2));
        self.release_lease().await;
        sampler.abort();
        forwarder.abort();
    }
}

impl Drop for Relay {
    /// A relay dropped while holding the lease (not stopped through [`Relay::run`]) expires it
    /// in the background, if a runtime is there to do it; otherwise it lapses after its TTL.
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.doorbell.set_relay_here(false);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pool = self.pool.clone();
                runtime.spawn(async move {
                    let _ = expire(&pool, lease.epoch).await;
                });
            }
        }
    }
}

/// Records how long one phase of a batch took: `read` (the outbox query), `acknowledge` (handing
/// the rows to the producer until Kafka acknowledged or refused each one) or `mark` (the
/// fenced update). A slow outbox is then Kafka's doing or PostgreSQL's at a glance.
fn record_phase(phase: &'static str, from: Instant, to: Instant) {
    metrics::histogram!("relay_batch_seconds", "phase" => phase)
        .record(to.saturating_duration_since(from).as_secs_f64());
}

/// Expires the lease of `epoch` (if it still is), so that a stand-by takes it at once.
async fn expire(pool: &PgPool, epoch: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox_lease SET expires_at = '-infinity' WHERE epoch = $1")
        .bind(epoch)
        .execute(pool)
        .await?;
    Ok(())
}

/// Sleeps until `at`, or forever if there is none.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether a failed delivery is the row's own fault, one retrying soon will not cure (as
/// opposed to the purge of a producer that failed because of another row).
fn refused_for_good(error: &KafkaError) -> bool {
    match error {
        KafkaError::MessageProduction(code) => !matches!(
            code,
            RDKafkaErrorCode::PurgeQueue
                | RDKafkaErrorCode::PurgeInflight
                | RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::GaplessGuarantee
                | RDKafkaErrorCode::QueueFull
        ),
        _ => false,
    }
}

/// The lease row's `holder`: where this relay runs.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{host} pid {} ({})", std::process::id(), Uuid::new_v4())
}

/// How often the outbox gauges are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples `outbox_pending` and `outbox_oldest_pending_age_seconds` every few seconds, on a
/// task of its own so the gauges keep moving while a batch hangs on an unreachable Kafka, which
/// is exactly when they matter.
async fn sample_outbox(pool: PgPool, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.requested() => return,
        }
        let sampled: Result<(i64, f64), sqlx::Error> = sqlx::query_as(
            "SELECT count(*),
                    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&pool)
        .await;
        match sampled {
            Ok((pending, oldest_age)) => {
                metrics::gauge!("outbox_pending").set(pending as f64);
                metrics::gauge!("outbox_oldest_pending_age_seconds").set(oldest_age.max(0.0));
            }
            Err(e) => tracing::debug!(error = %e, "sampling the outbox failed"),
        }
    }
}

/// Waits for the next notification: a ring forwarded by another process (see
/// [`crate::doorbell`]).
async fn wait_notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => {
            l.recv().await?;
            // Fold the notifications that piled up while publishing: one batch serves all.
            // (`try_recv` would wait for the next one; `next_buffered` does not.)
            while l.next_buffered().is_some() {}
            Ok(())
        }
        None => std::future::pending().await,
    }
}

fn headers_of(row: &Row) -> OwnedHeaders {
    // A row's version is a `smallint` written from a contract's `u16`.
    let version = u16::try_from(row.schema_version).unwrap_or_default();
    crate::headers::encode(
        &row.message_type,
        version,
        &Metadata {
            message_id: row.message_id,
            correlation_id: row.correlation_id,
            causation_id: row.causation_id,
            traceparent: row.traceparent.clone(),
            occurred_at: row.occurred_at,
        },
    )
}
