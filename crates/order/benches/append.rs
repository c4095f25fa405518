//! Append throughput of the order event store, side by side in one run with `postgres-es` (the
//! cqrs-es PostgreSQL store) and a plain single-row `INSERT` loop as the ceiling, at 1, 8 and 32
//! concurrent writers against the same PostgreSQL.
//!
//! `cargo bench -p order --bench append` (servers from `./dev up`). `BENCH_SECONDS` sets the
//! duration of each cell (default 5).
//!
//! Each writer appends one event per round trip to a stream of its own, starting a new stream
//! every ten events, so all three stores do the same work: one durable commit per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use order::event_store::{self, EventMetadata, NewEvent};
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

const WRITERS: [usize; 3] = [1, 8, 32];
const EVENTS_PER_STREAM: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Store {
    Ours,
    PostgresEs,
    PlainInsert,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Ours => "order event store",
            Store::PostgresEs => "postgres-es 0.5",
            Store::PlainInsert => "plain INSERT (ceiling)",
        }
    }
}

fn payload() -> serde_json::Value {
    serde_json::json!({
        "productId": 2, "quantity": 3, "unitPrice": "12.50",
        "note": "a payload of about the size of an order line event"
    })
}

fn metadata() -> EventMetadata {
    EventMetadata {
        message_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

/// One event appended by `store` at `version` of `stream`.
async fn append_one(
    store: Store,
    pool: &PgPool,
    es: &PostgresEventRepository,
    stream: Uuid,
    version: u32,
) -> anyhow::Result<()> {
    match store {
        Store::Ours => {
            // One statement is atomic on its own; a command adds its outbox rows in the same
            // transaction, which the saga benchmark measures.
            let mut conn = pool.acquire().await?;
            let event = NewEvent {
                event_type: "ItemAdded",
                schema_version: 1,
                payload: payload(),
                metadata: metadata(),
            };
            event_store::append(&mut *conn, stream, version - 1, &[event], &[]).await?;
        }
        Store::PostgresEs => {
            let event = SerializedEvent::new(
                stream.to_string(),
                version as usize,
                BenchAggregate::TYPE.to_owned(),
                "ItemAdded".to_owned(),
                "1.0".to_owned(),
                payload(),
                serde_json::to_value(metadata())?,
            );
            es.persist::<BenchAggregate>(&[event], None).await?;
        }
        Store::PlainInsert => {
            sqlx::query(
                "INSERT INTO plain_events (stream_id, version, payload) VALUES ($1, $2, $3)",
            )
            .bind(stream)
            .bind(version as i32)
            .bind(payload())
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

async fn measure(
    store: Store,
    writers: usize,
    pool: &PgPool,
    es: &Arc<PostgresEventRepository>,
    duration: Duration,
) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (pool, es, count) = (pool.clone(), es.clone(), count.clone());
            tokio::spawn(async move {
                let (mut stream, mut version) = (Uuid::now_v7(), 0);
                while Instant::now() < deadline {
                    if version == EVENTS_PER_STREAM {
                        (stream, version) = (Uuid::now_v7(), 0);
                    }
                    version += 1;
                    append_one(store, &pool, &es, stream, version).await?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let settings = platform::Settings::load()?;
    let database = format!("bench_append_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let pool = platform::postgres::connect(
        &platform::settings::PostgresSettings {
            max_connections: 40,
            ..settings.postgres.clone()
        },
        &database,
    )
    .await?;
    order::migrate(&pool).await?;
    // postgres-es' own schema (its db/init.sql) and the plain table: same shape, no indexes.
    sqlx::raw_sql(
        "CREATE TABLE es_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
            sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
            event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
            PRIMARY KEY (aggregate_type, aggregate_id, sequence));
         CREATE TABLE es_snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
            last_sequence bigint NOT NULL, current_snapshot bigint NOT NULL, payload json NOT NULL,
            PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
         CREATE TABLE plain_events (stream_id uuid NOT NULL, version int NOT NULL, payload jsonb NOT NULL);",
    )
    .execute(&pool)
    .await?;
    let es = Arc::new(
        PostgresEventRepository::new(pool.clone()).with_tables("es_events", "es_snapshots"),
    );

    println!("append throughput, events/s ({seconds} s per cell, one commit per event)");
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "store", "1 writer", "8", "32"
    );
    // Cells are interleaved (each writer count runs every store, in a rotating order), so no
    // store always runs first on a fresh table or last after the others filled the WAL.
    let stores = [Store::Ours, Store::PostgresEs, Store::PlainInsert];
    let mut results = vec![vec![0.0; WRITERS.len()]; stores.len()];
    for (column, writers) in WRITERS.into_iter().enumerate() {
        for turn in 0..stores.len() {
            let row = (turn + column) % stores.len();
            results[row][column] = measure(
                stores[row],
                writers,
                &pool,
                &es,
                Duration::from_secs(seconds),
            )
            .await?;
        }
    }
    for (store, row) in stores.iter().zip(&results) {
        println!(
            "{:<24} {:>10.0} {:>10.0} {:>10.0}",
            store.name(),
            row[0],
            row[1],
            row[2]
        );
    }
    let ratio = |a: &[f64], b: &[f64]| -> Vec<String> {
        a.iter()
            .zip(b)
            .map(|(x, y)| format!("{:.2}", x / y))
            .collect()
    };
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "ours / postgres-es",
        ratio(&results[0], &results[1])[0],
        ratio(&results[0], &results[1])[1],
        ratio(&results[0], &results[1])[2]
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "ours / plain INSERT",
        ratio(&results[0], &results[2])[0],
        ratio(&results[0], &results[2])[1],
        ratio(&results[0], &results[2])[2]
    );

    pool.close().await;
    platform::postgres::drop_database(&settings.postgres, &database).await?;
    Ok(())
}

/// postgres-es persists by aggregate type only; this is the least `Aggregate` that names one.
#[derive(Default, Serialize, Deserialize)]
struct BenchAggregate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct BenchEvent;

impl DomainEvent for BenchEvent {
    fn event_type(&self) -> String {
        "ItemAdded".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for BenchAggregate {
    const TYPE: &'static str = "order";
    type Command = ();
    type Event = BenchEvent;
    type Error = Never;
    type Services = ();

    async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), Never> {
        Ok(())
    }

    fn apply(&mut self, _: BenchEvent) {}
}
