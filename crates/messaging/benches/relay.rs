//! Relay throughput against a raw producer (the ceiling), and outbox-commit → consumer latency.
//!
//! `cargo bench -p messaging --bench relay` against the local stack (`./dev up`). Environment:
//! `BENCH_MESSAGES` (throughput run, default 50000), `BENCH_RATE` (latency run, messages/s,
//! default 500) and `BENCH_SECONDS` (latency run, default 5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use messaging::outbox::{self, Metadata, OutgoingMessage};
use messaging::{Consumer, ConsumerConfig, Handler, HandlerError, Relay, RelayConfig, Traced};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgConnection;
use sqlx::migrate::Migrator;
use test_support::{TestDatabase, create_topics, unique};
use uuid::Uuid;

const TOPIC: &str = contracts::topics::ORDERS;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A message shaped like `OrderPlaced` with two lines (about 250 bytes of JSON).
fn message(i: u64) -> OutgoingMessage {
    let order = Uuid::now_v7();
    let payload = serde_json::json!({
        "orderId": order, "customerId": Uuid::now_v7(), "revision": 1,
        "lines": [{"productId": 1, "quantity": 2, "unitPrice": "12.50"},
                  {"productId": (i % 3) + 1, "quantity": 1, "unitPrice": "99.00"}]
    });
    OutgoingMessage {
        topic: TOPIC,
        key: order.to_string(),
        message_type: "OrderPlaced",
        schema_version: 1,
        payload: payload.to_string(),
        metadata: Metadata {
            message_id: Uuid::now_v7(),
            correlation_id: order,
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        },
    }
}

/// The ceiling: the same records with the same headers and producer settings, straight from
/// memory into Kafka (send all, await all).
async fn raw_producer(
    settings: &platform::Settings,
    messages: &[OutgoingMessage],
) -> anyhow::Result<f64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("compression.type", "lz4")
        .create()?;
    let topic = format!("{}{TOPIC}", settings.kafka.topic_prefix);
    let start = Instant::now();
    let mut deliveries = Vec::with_capacity(messages.len());
    for m in messages {
        let id = m.metadata.message_id.to_string();
        let correlation = m.metadata.correlation_id.to_string();
        let occurred = m.metadata.occurred_at.to_rfc3339();
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: contracts::headers::MESSAGE_ID,
                value: Some(&id),
            })
            .insert(Header {
                key: contracts::headers::MESSAGE_TYPE,
                value: Some(m.message_type),
            })
            .insert(Header {
                key: contracts::headers::SCHEMA_VERSION,
                value: Some("1"),
            })
            .insert(Header {
                key: contracts::headers::CORRELATION_ID,
                value: Some(&correlation),
            })
            .insert(Header {
                key: contracts::headers::OCCURRED_AT,
                value: Some(&occurred),
            });
        let record = FutureRecord::to(&topic)
            .key(&m.key)
            .payload(&m.payload)
            .headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for d in futures::future::join_all(deliveries).await {
        d.context("delivery canceled")?.map_err(|(e, _)| e)?;
    }
    Ok(messages.len() as f64 / start.elapsed().as_secs_f64())
}

/// The relay draining an outbox that already holds every message.
async fn relay_drain(
    settings: &platform::Settings,
    db: &TestDatabase,
    messages: &[OutgoingMessage],
) -> anyhow::Result<f64> {
    for chunk in messages.chunks(1000) {
        let mut tx = db.pool.begin().await?;
        outbox::enqueue(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    let mut relay = Relay::new(&settings.kafka, db.pool.clone(), RelayConfig::default())?;
    let start = Instant::now();
    let mut published = 0;
    while published < messages.len() {
        let report = relay.publish_batch().await?;
        anyhow::ensure!(report.lease_held, "bench relay lost the lease");
        published += report.published;
    }
    Ok(published as f64 / start.elapsed().as_secs_f64())
}

/// Records, for each message, the time from its outbox commit to its handler call.
struct Probe {
    committed: Arc<Mutex<HashMap<Uuid, Instant>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Handler for Probe {
    async fn handle(&self, _: &mut PgConnection, batch: &[Traced<'_>]) -> Result<(), HandlerError> {
        let now = Instant::now();
        let (Ok(committed), Ok(mut latencies)) = (self.committed.lock(), self.latencies.lock())
        else {
            return Ok(());
        };
        for traced in batch {
            if let Some(at) = committed.get(&traced.message.metadata.message_id) {
                latencies.push(now - *at);
            }
        }
        Ok(())
    }
}

struct Latency {
    rate: f64,
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// One writer commits one message per transaction at `rate`/s while a relay and a consumer run.
async fn hop_latency(
    settings: &platform::Settings,
    db: &TestDatabase,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Latency> {
    let committed = Arc::new(Mutex::new(HashMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe {
        committed: committed.clone(),
        latencies: latencies.clone(),
    };
    let relay = Relay::new(&settings.kafka, db.pool.clone(), RelayConfig::default())?;
    let doorbell = relay.doorbell();
    let consumer = Consumer::new(
        &settings.kafka,
        db.pool.clone(),
        doorbell.clone(),
        ConsumerConfig::new(unique("bench"), &[TOPIC]),
        probe,
    )?;
    let (trigger, shutdown) = platform::shutdown::channel();
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
    let relay_task = tokio::spawn(relay.run(shutdown));

    // One message through the whole path first, so the group join is not measured.
    let warm_up = message(0);
    committed
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(warm_up.metadata.message_id, Instant::now());
    let mut tx = db.pool.begin().await?;
    outbox::enqueue(&mut tx, std::slice::from_ref(&warm_up)).await?;
    tx.commit().await?;
    doorbell.ring();
    wait_for(&latencies, 1).await?;
    latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    let total = rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let m = message(i);
        let mut tx = db.pool.begin().await?;
        outbox::enqueue(&mut tx, std::slice::from_ref(&m)).await?;
        // Stamped just before COMMIT (it includes the commit itself): the row is invisible to
        // the relay until the commit returns, so the handler can never see it unstamped.
        committed
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(m.metadata.message_id, Instant::now());
        tx.commit().await?;
        doorbell.ring();
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    wait_for(&latencies, total as usize).await?;
    trigger.fire();
    relay_task.await?;
    consumer_task.await??;
    let mut all = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok(Latency {
        rate: achieved,
        count: all.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    })
}

async fn wait_for(latencies: &Mutex<Vec<Duration>>, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .len()
        < count
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every message reached the consumer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_or("BENCH_MESSAGES", 50_000);
    let rate = env_or("BENCH_RATE", 500);
    let seconds = env_or("BENCH_SECONDS", 5);
    let mut settings = test_support::settings();
    settings.kafka.topic_prefix = format!("{}.", unique("bench"));
    create_topics(
        &settings,
        &[&format!("{}{TOPIC}", settings.kafka.topic_prefix)],
        6,
    )
    .await?;
    let db = TestDatabase::create().await?;
    messaging::migrator(&Migrator::DEFAULT)
        .run(&db.pool)
        .await?;

    let messages: Vec<OutgoingMessage> = (0..n).map(message).collect();
    // Warm up connections and metadata so neither side pays for them in the timing.
    raw_producer(&settings, &messages[..100]).await?;
    let raw = raw_producer(&settings, &messages).await?;
    let relay = relay_drain(&settings, &db, &messages).await?;
    let latency = hop_latency(&settings, &db, rate, seconds).await?;

    let rows = [
        (
            format!("raw rdkafka producer, {n} msgs"),
            format!("{raw:.0} msgs/s"),
        ),
        (
            format!("relay outbox → Kafka, {n} msgs"),
            format!("{relay:.0} msgs/s ({:.0}% of raw)", 100.0 * relay / raw),
        ),
        (
            format!(
                "commit → handler, {} msgs at {:.0} msgs/s",
                latency.count, latency.rate
            ),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                latency.p50.as_secs_f64() * 1e3,
                latency.p99.as_secs_f64() * 1e3,
                latency.max.as_secs_f64() * 1e3
            ),
        ),
    ];
    println!();
    println!("| {:<42} | {:<40} |", "measure", "result");
    println!("|{}|{}|", "-".repeat(44), "-".repeat(42));
    for (measure, result) in rows {
        println!("| {measure:<42} | {result:<40} |");
    }
    db.drop_now().await?;
    Ok(())
}
