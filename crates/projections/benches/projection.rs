//! Projection throughput into each store, side by side with a raw ceiling for that store:
//!
//! - Redis: the live projection (Lua script per batch: dedupe + `HINCRBY`) vs raw pipelined
//!   `HINCRBY` from Rust, the same writes without the dedupe;
//! - MongoDB: the live projection (checkpoint + ledger + `$inc`) vs a raw `insert_one` loop and
//!   `insert_many` batches of 1000.
//!
//! `cargo bench -p projections --bench projection` against the local stack (`./dev up`).
//! `BENCH_EVENTS` (default 20000) sets how many `OrderCompleted` messages are projected.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::headers as h;
use contracts::orders::OrderCompleted;
use futures::future::join_all;
use mongodb::bson::doc;
use platform::settings::KafkaSettings;
use projections::{
    OrdersModel, ProductsModel, Projection, ProjectionConfig, ProjectionStats, ReadModel,
};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rust_decimal::Decimal;
use test_support::unique;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let mut settings = test_support::isolated_settings();
    settings.redis.key_prefix = format!("{}:", unique("bench"));
    settings.mongodb.database = unique("bench");
    messaging::topics::ensure(&settings.kafka, &[contracts::topics::ORDERS]).await?;
    publish(&settings.kafka, events).await?;
    println!(
        "{events} OrderCompleted messages (2 lines each) on {} partitions",
        settings.kafka.partitions
    );

    let products = ProductsModel::new(&settings.redis)?;
    let redis_rate = project(&settings.kafka, products, events).await?;
    let redis_raw = raw_redis(&settings.redis, events).await?;
    report("redis", redis_rate, &[("pipelined HINCRBY", redis_raw)]);

    let orders = OrdersModel::new(&settings.mongodb).await?;
    let mongo_rate = project(&settings.kafka, orders, events).await?;
    let (one, many) = raw_mongo(&settings.mongodb.url, events).await?;
    report(
        "mongodb",
        mongo_rate,
        &[("insert_one loop", one), ("insert_many x1000", many)],
    );

    // Leave nothing behind in the shared servers.
    let client = platform::redis::client(&settings.redis)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", settings.redis.key_prefix))
        .query_async(&mut con)
        .await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut con).await?;
    }
    mongodb::Client::with_uri_str(&settings.mongodb.url)
        .await?
        .database(&settings.mongodb.database)
        .drop()
        .await?;
    Ok(())
}

fn report(store: &str, projection: f64, ceilings: &[(&str, f64)]) {
    println!("{store:8} projection            {projection:>10.0} events/s");
    for (name, rate) in ceilings {
        println!(
            "{store:8} raw {name:18} {rate:>10.0} events/s  (projection = {:.0}% of it)",
            100.0 * projection / rate
        );
    }
}

async fn publish(kafka: &KafkaSettings, events: u64) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("linger.ms", "5")
        .create()?;
    let topic = format!("{}{}", kafka.topic_prefix, contracts::topics::ORDERS);
    let mut pending = Vec::new();
    for i in 0..events {
        let order_id = uuid::Uuid::now_v7();
        let message = OrderCompleted {
            order_id,
            customer_id: uuid::Uuid::new_v4(),
            payment_id: uuid::Uuid::new_v4(),
            lines: vec![
                line((i % 5) as i64 + 1, Decimal::new(1250, 2)),
                line(7, Decimal::new(99, 2)),
            ],
            total: Decimal::new(2698, 2),
        };
        let payload = serde_json::to_vec(&message)?;
        let (id, key) = (uuid::Uuid::now_v7().to_string(), order_id.to_string());
        let headers = OwnedHeaders::new()
            .insert(text(h::MESSAGE_ID, &id))
            .insert(text(h::MESSAGE_TYPE, "OrderCompleted"))
            .insert(text(h::SCHEMA_VERSION, "1"))
            .insert(text(h::CORRELATION_ID, &key))
            .insert(text(h::OCCURRED_AT, "2025-01-01T00:00:00+00:00"));
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if pending.len() >= 5000 {
            for r in join_all(pending.drain(..)).await {
                r?.map_err(|(e, _)| e)?;
            }
        }
    }
    for r in join_all(pending).await {
        r?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn line(product_id: i64, unit_price: Decimal) -> contracts::Line {
    contracts::Line {
        product_id,
        quantity: 2,
        unit_price,
    }
}

fn text<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value.as_bytes()),
    }
}

/// Runs one projection over the topic with a fresh group. The rate is measured from its first
/// applied batch to the last, so the group join does not count.
async fn project<M: ReadModel>(
    kafka: &KafkaSettings,
    model: M,
    events: u64,
) -> anyhow::Result<f64> {
    let projection = Projection::new(kafka, ProjectionConfig::new(unique("bench")), model)?;
    let stats: Arc<ProjectionStats> = projection.stats();
    let (trigger, shutdown) = platform::shutdown::channel();
    let task = tokio::spawn(projection.run(shutdown));
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.processed() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the projection never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (start, first) = (Instant::now(), stats.processed());
    while stats.processed() < events {
        anyhow::ensure!(Instant::now() < deadline, "the projection did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = (events - first) as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        stats.counted() == events,
        "counted {} of {events}",
        stats.counted()
    );
    trigger.fire();
    task.await??;
    Ok(rate)
}

async fn raw_redis(
    settings: &platform::settings::RedisSettings,
    events: u64,
) -> anyhow::Result<f64> {
    let client = platform::redis::client(settings)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let prefix = unique("bench-raw");
    let start = Instant::now();
    let mut done = 0;
    while done < events {
        let mut pipe = redis::pipe();
        for i in done..(done + 1000).min(events) {
            pipe.cmd("HINCRBY")
                .arg(format!("{prefix}:p:{}", i % 5 + 1))
                .arg("12.50")
                .arg(2)
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(format!("{prefix}:p:7"))
                .arg("0.99")
                .arg(2)
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await?;
        done = (done + 1000).min(events);
    }
    let rate = events as f64 / start.elapsed().as_secs_f64();
    let keys: Vec<String> = (1..=7).map(|p| format!("{prefix}:p:{p}")).collect();
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut con).await?;
    Ok(rate)
}

async fn raw_mongo(url: &str, events: u64) -> anyhow::Result<(f64, f64)> {
    let client = mongodb::Client::with_uri_str(url).await?;
    let db = client.database(&unique("bench-raw"));
    let one = db.collection::<mongodb::bson::Document>("one");
    let start = Instant::now();
    for _ in 0..events {
        one.insert_one(doc! { "_id": uuid::Uuid::now_v7().to_string(), "p": 0, "o": 1_i64 })
            .await?;
    }
    let one_rate = events as f64 / start.elapsed().as_secs_f64();
    let many = db.collection::<mongodb::bson::Document>("many");
    let start = Instant::now();
    let mut done = 0;
    while done < events {
        let batch: Vec<_> = (done..(done + 1000).min(events))
            .map(|i| doc! { "_id": uuid::Uuid::now_v7().to_string(), "p": 0, "o": i as i64 })
            .collect();
        many.insert_many(batch).await?;
        done = (done + 1000).min(events);
    }
    let many_rate = events as f64 / start.elapsed().as_secs_f64();
    db.drop().await?;
    Ok((one_rate, many_rate))
}
