//! Shared scaffolding of the messaging tests: a fresh database with the messaging tables and an
//! `effects` table, a random topic prefix, a test handler that records one effect row per
//! applied message, and readers for topics and effects.
#![allow(dead_code)]
// Test scaffolding outside a `#[test]` fn, where clippy's allow-unwrap-in-tests does not reach.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use messaging::outbox::{self, Metadata, OutgoingMessage};
use messaging::{
    Consumer, ConsumerConfig, ConsumerStats, Doorbell, Handler, HandlerError, IncomingMessage,
    Relay, RelayConfig, Traced,
};
use platform::Settings;
use platform::shutdown::Trigger;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers, Message};
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};
use test_support::{TestDatabase, create_topics, eventually, unique};
use uuid::Uuid;

pub const TOPIC: &str = contracts::topics::ORDERS;
pub const TEST_TYPE: &str = "TestMessage";

/// One test's world: its own database and topic prefix.
pub struct World {
    pub db: TestDatabase,
    pub settings: Settings,
    _turn: test_support::Turn,
}

impl World {
    /// A world beside other tests' worlds.
    pub async fn new() -> World {
        Self::start(test_support::shared().await).await
    }

    /// A world while no other test runs, for a drill that stops a shared server or a process.
    pub async fn alone() -> World {
        Self::start(test_support::alone().await).await
    }

    async fn start(turn: test_support::Turn) -> World {
        let db = TestDatabase::create().await.unwrap();
        messaging::migrator(&Migrator::DEFAULT)
            .run(&db.pool)
            .await
            .unwrap();
        // No unique constraint on purpose: a message applied twice shows up as two rows. The
        // CHECK makes `n` of a million or more a message whose effect breaks a constraint.
        sqlx::query(
            "CREATE TABLE effects (
                 seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 consumer text NOT NULL,
                 message_id uuid NOT NULL,
                 message_key text,
                 n bigint NOT NULL CHECK (n < 1000000),
                 txid bigint NOT NULL DEFAULT txid_current())",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let mut settings = test_support::settings();
        settings.kafka.topic_prefix = format!("{}.", unique("t"));
        create_topics(
            &settings,
            &[
                &self_topic(&settings, TOPIC),
                &self_topic(&settings, contracts::topics::DEAD_LETTERS),
            ],
            6,
        )
        .await
        .unwrap();
        World {
            db,
            settings,
            _turn: turn,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// A relay of this world's outbox, configured with `config`.
    pub fn relay_with(&self, config: RelayConfig) -> Relay {
        Relay::new(&self.settings.kafka, self.db.pool.clone(), config).unwrap()
    }

    /// A relay of this world's outbox, with the default configuration.
    pub fn relay(&self) -> Relay {
        self.relay_with(RelayConfig::default())
    }

    pub fn topic(&self, logical: &str) -> String {
        self_topic(&self.settings, logical)
    }

    /// Produces `m` to [`TOPIC`] with its key and the headers the relay would give it, as a
    /// redelivery or a message from another producer would arrive.
    pub async fn produce(&self, m: &OutgoingMessage) {
        let topic = self.topic(TOPIC);
        produce(
            &self.settings,
            &topic,
            &m.key,
            m.payload.as_bytes(),
            &headers_of(m),
        )
        .await;
    }

    /// Starts a consumer of [`TOPIC`] running [`EffectHandler`] in the background.
    pub fn start_consumer(&self, name: &str) -> Running {
        self.start_consumer_with(
            ConsumerConfig::new(name, &[TOPIC]),
            EffectHandler::default(),
        )
    }

    /// A consumer whose doorbell no relay answers (the tests' relays drain the outbox by hand).
    pub fn start_consumer_with(&self, config: ConsumerConfig, handler: EffectHandler) -> Running {
        let doorbell = Doorbell::new(self.db.pool.clone());
        self.start_consumer_ringing(config, handler, doorbell)
    }

    /// A consumer that rings `doorbell` after each commit, as a service's consumer rings its
    /// relay's.
    pub fn start_consumer_ringing(
        &self,
        config: ConsumerConfig,
        handler: EffectHandler,
        doorbell: Doorbell,
    ) -> Running {
        let consumer = Consumer::new(
            &self.settings.kafka,
            self.db.pool.clone(),
            doorbell,
            config,
            handler,
        )
        .unwrap();
        let stats = consumer.stats();
        let (trigger, shutdown) = platform::shutdown::channel();
        let task = tokio::spawn(async move { consumer.run(shutdown).await });
        Running {
            stats,
            trigger,
            task,
        }
    }

    /// The applied effects, in application order.
    pub async fn effects(&self) -> Vec<Effect> {
        sqlx::query_as::<_, (Uuid, Option<String>, i64)>(
            "SELECT message_id, message_key, n FROM effects ORDER BY seq",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(message_id, key, n)| Effect { message_id, key, n })
        .collect()
    }

    /// Waits until every id in `ids` has an effect, then asserts each has exactly one.
    pub async fn assert_applied_exactly_once(&self, ids: &[Uuid], timeout: Duration) {
        let pool = self.db.pool.clone();
        let expected = ids.to_vec();
        let applied = eventually(timeout, "every message applied", || {
            let pool = pool.clone();
            let expected = expected.clone();
            async move {
                let applied: i64 = sqlx::query_scalar(
                    "SELECT count(DISTINCT message_id) FROM effects WHERE message_id = ANY($1)",
                )
                .bind(&expected)
                .fetch_one(&pool)
                .await?;
                Ok((applied == expected.len() as i64).then_some(()))
            }
        })
        .await;
        if let Err(e) = applied {
            let unpublished = self.unpublished().await;
            let applied: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT message_id) FROM effects WHERE message_id = ANY($1)",
            )
            .bind(ids)
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
            panic!(
                "{e:#}: {applied} of {} applied, {unpublished} outbox rows unpublished",
                ids.len()
            );
        }
        let mut per_message: HashMap<Uuid, usize> = HashMap::new();
        for e in self.effects().await {
            *per_message.entry(e.message_id).or_default() += 1;
        }
        let twice: Vec<_> = per_message.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "messages applied more than once: {twice:?}"
        );
    }

    pub async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

fn self_topic(settings: &Settings, logical: &str) -> String {
    format!("{}{logical}", settings.kafka.topic_prefix)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub message_id: Uuid,
    pub key: Option<String>,
    pub n: i64,
}

pub struct Running {
    pub stats: Arc<ConsumerStats>,
    pub trigger: Trigger,
    pub task: tokio::task::JoinHandle<Result<(), messaging::ConsumerError>>,
}

impl Running {
    /// Requests shutdown and waits for the loop to return (bounded).
    pub async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("consumer stops within 20 s")
            .unwrap()
            .unwrap();
    }
}

/// A test message for the outbox: `n` in a JSON payload, keyed by `key`.
pub fn message(key: &str, n: i64) -> OutgoingMessage {
    let id = Uuid::now_v7();
    OutgoingMessage {
        topic: TOPIC,
        key: key.to_owned(),
        message_type: TEST_TYPE,
        schema_version: 1,
        payload: serde_json::json!({ "n": n }).to_string(),
        metadata: Metadata {
            message_id: id,
            correlation_id: id,
            causation_id: None,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            occurred_at: chrono::Utc::now(),
        },
    }
}

/// Commits `messages` to the outbox in one transaction; returns their ids.
pub async fn commit(pool: &PgPool, messages: &[OutgoingMessage]) -> Vec<Uuid> {
    let mut tx = pool.begin().await.unwrap();
    outbox::enqueue(&mut tx, messages).await.unwrap();
    tx.commit().await.unwrap();
    messages.iter().map(|m| m.metadata.message_id).collect()
}

/// `count` messages spread over `keys` keys, `n` counting up per key from 0.
pub fn messages(count: usize, keys: usize) -> Vec<OutgoingMessage> {
    let mut next: HashMap<usize, i64> = HashMap::new();
    (0..count)
        .map(|i| {
            let k = i % keys;
            let n = next.entry(k).or_default();
            *n += 1;
            message(&format!("key-{k}"), *n - 1)
        })
        .collect()
}

/// Records one effect row per applied message. `n < 0` is a permanent failure (a poison message
/// the headers do not reveal); the first `transient_failures` calls fail transiently. The row's
/// `n` goes through an `int4` (`n` of 2³¹ or more overflows it) and a CHECK (`n` of a million
/// or more breaks it).
#[derive(Default)]
pub struct EffectHandler {
    pub transient_failures: AtomicU32,
    /// The handler panics on a message with this `n`.
    pub panics_on: Option<i64>,
    /// A message with this `n` fails transiently while the flag is set.
    pub stalls_on: Option<(i64, Arc<AtomicBool>)>,
    /// How long each message takes to apply (to make concurrent transactions overlap).
    pub delay: Duration,
    in_flight: AtomicU32,
    /// The most messages ever being applied at the same moment.
    pub most_in_flight: Arc<AtomicU32>,
    /// Where to send a reply for each message, through the outbox (none if `None`).
    pub replies_to: Option<&'static str>,
}

impl EffectHandler {
    pub fn failing_transiently(times: u32) -> Self {
        Self {
            transient_failures: AtomicU32::new(times),
            ..Self::default()
        }
    }

    pub fn taking(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    pub fn panicking_on(n: i64) -> Self {
        Self {
            panics_on: Some(n),
            ..Self::default()
        }
    }

    /// Fails a message with `n` transiently while `flag` is set.
    pub fn stalling_on(n: i64, flag: Arc<AtomicBool>) -> Self {
        Self {
            stalls_on: Some((n, flag)),
            ..Self::default()
        }
    }

    /// Also writes a reply for each message to the outbox, for `topic`, in the same transaction.
    pub fn replying_to(topic: &'static str) -> Self {
        Self {
            replies_to: Some(topic),
            ..Self::default()
        }
    }
}

impl Handler for EffectHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        messages: &[Traced<'_>],
    ) -> Result<(), HandlerError> {
        for traced in messages {
            self.apply(conn, traced.message).await?;
        }
        Ok(())
    }
}

impl EffectHandler {
    /// One message's effect: fails as told, then records `n` (and replies, if told to).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        message: &IncomingMessage,
    ) -> Result<(), HandlerError> {
        if self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandlerError::Transient("simulated outage".into()));
        }
        if message.message_type != TEST_TYPE {
            return Err(HandlerError::Permanent(format!(
                "unknown message type {}",
                message.message_type
            )));
        }
        let payload: serde_json::Value = serde_json::from_slice(&message.payload)
            .map_err(|e| HandlerError::Permanent(format!("malformed payload: {e}")))?;
        let n = payload["n"]
            .as_i64()
            .ok_or_else(|| HandlerError::Permanent("payload has no n".into()))?;
        if self.panics_on == Some(n) {
            panic!("cannot handle n = {n}");
        }
        if let Some((stalled, flag)) = &self.stalls_on {
            if *stalled == n && flag.load(Ordering::SeqCst) {
                return Err(HandlerError::Transient("stalled on purpose".into()));
            }
        }
        if n < 0 {
            return Err(HandlerError::Permanent(format!(
                "n must not be negative: {n}"
            )));
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        sqlx::query(
            "INSERT INTO effects (consumer, message_id, message_key, n)
             VALUES ('test', $1, $2, $3::int4)",
        )
        .bind(message.metadata.message_id)
        .bind(&message.key)
        .bind(n)
        .execute(&mut *conn)
        .await?;
        if let Some(topic) = self.replies_to {
            let reply = OutgoingMessage {
                topic,
                ..self::message(message.key.as_deref().unwrap_or(""), n)
            };
            outbox::enqueue(conn, &[reply]).await?;
        }
        Ok(())
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads `count` records of `topic` from the beginning (fresh group), within `timeout`.
pub async fn read_topic(
    settings: &Settings,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while records.len() < count {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| format!("read {} of {count} records of {topic}", records.len()))
            .unwrap()
            .unwrap();
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            partition: message.partition(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    records
}

/// Publishes batches until the outbox is empty; returns how many rows were published.
pub async fn drain(relay: &mut messaging::Relay) -> usize {
    let mut total = 0;
    loop {
        let report = relay.publish_batch().await.unwrap();
        assert!(report.lease_held, "the relay under test holds the lease");
        total += report.published;
        if report.published == 0 {
            return total;
        }
    }
}

pub fn fast_relay_config() -> messaging::RelayConfig {
    messaging::RelayConfig {
        poll_interval: Duration::from_millis(200),
        lease_retry: Duration::from_millis(100),
        ..messaging::RelayConfig::default()
    }
}

/// The headers the relay would put on `m`.
pub fn headers_of(m: &OutgoingMessage) -> Vec<(String, String)> {
    use rdkafka::message::Headers as _;
    let encoded = messaging::headers::encode(m.message_type, m.schema_version, &m.metadata);
    encoded
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
            (h.key.to_owned(), value)
        })
        .collect()
}

pub async fn produce_to(
    settings: &Settings,
    topic: &str,
    partition: i32,
    messages: &[&OutgoingMessage],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for m in messages {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers_of(m) {
            owned = owned.insert(Header {
                key: k.as_str(),
                value: Some(v.as_str()),
            });
        }
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&m.key)
                    .payload(&m.payload)
                    .headers(owned),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Publishes one raw record, bypassing the outbox (to fake redeliveries and poison messages).
pub async fn produce(
    settings: &Settings,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &[(String, String)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .create()
        .unwrap();
    let mut owned = OwnedHeaders::new();
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k.as_str(),
            value: Some(v.as_str()),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}
