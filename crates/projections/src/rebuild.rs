//! Rebuilding a read model from the order event store while the system runs. The hand-over
//! argument is in the crate docs; the steps are in [`rebuild`].

use std::time::Duration;

use anyhow::Context;
use order::event_store::{self, Position};
use order::messages::Replay;
use sqlx::PgPool;

use crate::facts::{Change, Fact};
use crate::{OrdersModel, ProductsModel};

/// Which read models to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub redis: bool,
    pub mongodb: bool,
}

impl Targets {
    pub const BOTH: Targets = Targets {
        redis: true,
        mongodb: true,
    };

    /// `redis`, `mongodb`, or nothing for both.
    pub fn parse(arg: Option<&str>) -> anyhow::Result<Self> {
        match arg {
            None | Some("all") => Ok(Self::BOTH),
            Some("redis") => Ok(Self {
                redis: true,
                mongodb: false,
            }),
            Some("mongodb") => Ok(Self {
                redis: false,
                mongodb: true,
            }),
            Some(other) => anyhow::bail!("unknown read model {other:?}: redis, mongodb or all"),
        }
    }
}

/// How far a running rebuild got, for whoever watches it (`ops`). Counted as each page of
/// events is written.
#[derive(Debug, Default)]
pub struct Progress {
    pub events_read: std::sync::atomic::AtomicU64,
    pub completed: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub fn now(&self) -> Rebuilt {
        use std::sync::atomic::Ordering::Relaxed;
        Rebuilt {
            events_read: self.events_read.load(Relaxed),
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }

    fn set(&self, done: &Rebuilt) {
        use std::sync::atomic::Ordering::Relaxed;
        self.events_read.store(done.events_read, Relaxed);
        self.completed.store(done.completed, Relaxed);
        self.failed.store(done.failed, Relaxed);
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rebuilt {
    pub events_read: u64,
    pub completed: u64,
    pub failed: u64,
}

const PAGE: i64 = 2000;

/// Rebuilds the chosen read models from the event store in `order_pool`:
///
/// 1. each store starts a fresh generation and marks it `building` (from then on the live
///    projection writes every batch into it too);
/// 2. PostgreSQL's `xmax` is noted: every transaction committed before the mark has an id
///    below it;
/// 3. `read_all` is followed from the start until a page comes back empty at a moment when no
///    transaction below that `xmax` is still running, so every event committed before the mark
///    was read. Each order is folded as its events pass; its terminal event becomes a fact with
///    the event's message id (the id its Kafka message carries);
/// 4. each store switches `current` to the new generation and deletes the old one.
pub async fn rebuild(
    order_pool: &PgPool,
    products: Option<&ProductsModel>,
    orders: Option<&OrdersModel>,
    progress: &Progress,
) -> anyhow::Result<Rebuilt> {
    let redis_generation = match products {
        Some(m) => Some(
            m.begin_rebuild()
                .await
                .context("starting the Redis rebuild")?,
        ),
        None => None,
    };
    let mongo_generation = match orders {
        Some(m) => Some(
            m.begin_rebuild()
                .await
                .context("starting the MongoDB rebuild")?,
        ),
        None => None,
    };
    let target: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")
            .fetch_one(order_pool)
            .await?;
    tracing::info!(
        ?redis_generation,
        ?mongo_generation,
        target,
        "rebuilding read models"
    );

    let mut done = Rebuilt::default();
    let mut replay = Replay::default();
    let mut after = Position::START;
    let mut sequence = 0_i64;
    loop {
        let horizon: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8")
                .fetch_one(order_pool)
                .await?;
        let page = event_store::read_all(order_pool, after, PAGE).await?;
        if page.is_empty() {
            if horizon >= target {
                break;
            }
            // A transaction older than the mark is still running: its events are not readable
            // yet, and they must be in the rebuild.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut facts = Vec::new();
        for recorded in &page {
            done.events_read += 1;
            // The message each event published, read as the live projection reads it.
            let change = replay.next(recorded)?.map(|message| Change::from(&message));
            if let Some(change) = change.filter(|c| !matches!(c, Change::Nothing)) {
                sequence += 1;
                match change {
                    Change::Completed(_) => done.completed += 1,
                    Change::Failed => done.failed += 1,
                    Change::Nothing => {}
                }
                facts.push(Fact {
                    message_id: recorded.metadata.0.message_id,
                    partition: -1,
                    offset: sequence,
                    change,
                });
            }
        }
        if let (Some(m), Some(g)) = (products, &redis_generation) {
            m.apply_rebuild(g, &facts)
                .await
                .context("writing to Redis")?;
        }
        if let (Some(m), Some(g)) = (orders, &mongo_generation) {
            m.apply_rebuild(g, &facts)
                .await
                .context("writing to MongoDB")?;
        }
        if let Some(last) = page.last() {
            after = last.position();
        }
        progress.set(&done);
    }

    if let (Some(m), Some(g)) = (products, &redis_generation) {
        m.finish_rebuild(g)
            .await
            .context("switching the Redis read model")?;
    }
    if let (Some(m), Some(g)) = (orders, &mongo_generation) {
        m.finish_rebuild(g)
            .await
            .context("switching the MongoDB read model")?;
    }
    tracing::info!(?done, "read models rebuilt");
    Ok(done)
}

/// `shop projections rebuild`: connects with the process' settings and rebuilds.
pub async fn run(
    settings: &platform::Settings,
    order_database: &str,
    targets: Targets,
) -> anyhow::Result<Rebuilt> {
    let pool = platform::postgres::connect(&settings.postgres, order_database)
        .await
        .with_context(|| format!("connecting to {order_database}"))?;
    let products = if targets.redis {
        Some(ProductsModel::new(&settings.redis)?)
    } else {
        None
    };
    let orders = if targets.mongodb {
        Some(OrdersModel::new(&settings.mongodb).await?)
    } else {
        None
    };
    rebuild(
        &pool,
        products.as_ref(),
        orders.as_ref(),
        &Progress::default(),
    )
    .await
}
