//! The order service's read models, fed by the `shop.orders` topic:
//!
//! - [`products`] (Redis): for each product, the quantity ordered at each unit price, over
//!   completed orders;
//! - [`orders`] (MongoDB): how many orders completed and how many failed.
//!
//! Each store has its own consumer group ([`live`]), so a store that is down holds back only
//! its own projection; the other one, the write side and the saga go on. [`rebuild`] wipes and
//! rebuilds a read model from the PostgreSQL event store while the system runs, and [`http`]
//! serves the reports from the read models alone.
//!
//! # Effectively once, without a transaction shared with Kafka
//!
//! Kafka delivers at least once: the relay may publish a message twice (two offsets, one
//! message id), a consumer may crash before it commits its offset, a topic may be replayed from
//! offset 0. Neither Redis nor MongoDB can join a transaction with Kafka or PostgreSQL, so each
//! store records *what it applied* atomically with *the effect itself*, and the Kafka offset is
//! committed only after the store acknowledged both. A crash anywhere therefore leads to a
//! redelivery, and the redelivery finds the record and changes nothing.
//!
//! - **Redis**: one Lua script applies a batch. For each message it `SADD`s the message id to
//!   the read model's `seen` set and only if that added it does it `HINCRBY` the quantities. A
//!   script runs atomically, so "counted" and "recorded as seen" are one step: no duplicate, no
//!   redelivery and no replay can count twice. (Redis' AOF with `appendfsync everysec` may lose
//!   the last second on a Redis *crash*; offsets committed meanwhile would make that loss
//!   permanent. `appendfsync always` closes that gap at a throughput cost.)
//! - **MongoDB**: a document update is atomic only for one document, and FerretDB (the local
//!   stand-in) does not even serialise concurrent updates of one document (measured: 400
//!   concurrent `$inc` left 71). So every counter document has exactly **one writer**: the
//!   owner of a Kafka partition keeps a counter document per partition, holding `completed`,
//!   `failed` and the `offset` of the last message it counted, and updates it with one
//!   `$inc` + `$set offset` guarded by the offset it read (`{_id, offset: read}`). Offsets at
//!   or below the stored one are skipped: redelivery and replay are no-ops. A message the relay
//!   published twice has two offsets, so the checkpoint alone cannot see it: a *ledger*
//!   collection keyed by message id (a unique `_id` insert, atomic on any server) records which
//!   `(partition, offset)` owns the message, and only the owner counts it. A crash between the
//!   ledger insert and the counter update is harmless: the redelivered message has the same
//!   offset, finds itself as the owner, and is counted then.
//!
//! # Rebuild and hand-over
//!
//! Each read model lives in a *generation* (keys `…:{gen}:…` in Redis, collections
//! `…_{gen}` in MongoDB) named by a small meta record: `current` (what reports read) and, during
//! a rebuild, `building`. The live projection reads the meta record **after** it received a
//! batch and applies the batch to `current` and to `building` when there is one (in Redis
//! inside the same script, atomically). A rebuild:
//!
//! 1. sets `building` to a fresh generation (no reader sees it yet);
//! 2. notes PostgreSQL's `xmax` *after* that: every transaction that committed before the flag
//!    was visible has an id below it;
//! 3. reads the event store with `read_all` from the start until it returned nothing at a
//!    moment when every transaction below that `xmax` had ended, folding each order and
//!    applying its terminal event (same message id as its Kafka message) to `building`;
//! 4. switches `current` to the new generation and deletes the old one.
//!
//! No event is lost: a message the live projection applied without seeing the flag was
//! received before the flag was set, hence its event committed before that, hence the rebuild
//! reads it (step 3). A message applied after the flag was set is written to `building` by the
//! live projection itself. Nothing counts twice: both writers dedupe on the same message id in
//! the new generation (Redis `seen` set, Mongo ledger), so the overlap is harmless. The old
//! generation stays complete and readable until the atomic switch, so reports never see a
//! half-built model. One rebuild runs at a time: a newer one supersedes (and deletes) an older
//! one's unfinished generation, and the older one's writes fail.

pub mod facts;
pub mod http;
pub mod live;
pub mod ops;
pub mod orders;
pub mod products;
pub mod rebuild;

use std::sync::Arc;

use anyhow::Context;
use platform::Settings;
use platform::http::Server;
use platform::shutdown::Shutdown;
use platform::supervise::Part;

pub use facts::{Change, Fact};
pub use live::{Projection, ProjectionConfig, ProjectionStats, ReadModel};
pub use orders::{OrdersModel, OrdersReport};
pub use products::{PriceQuantity, ProductReport, ProductsModel};

/// Consumer names (the Kafka group is `{topic prefix}{name}`).
pub const REDIS_CONSUMER: &str = "projections-redis";
pub const MONGO_CONSUMER: &str = "projections-mongodb";

/// The projections component: both live projections and the reports API, side by side.
pub struct Projections {
    server: Server,
    products: Projection<ProductsModel>,
    orders: Projection<OrdersModel>,
}

impl Projections {
    /// Connects lazily to Redis and MongoDB (either may be down at start), creates the topics,
    /// joins both consumer groups and binds `port` (0 in tests).
    pub async fn build(settings: &Settings, port: u16) -> anyhow::Result<Self> {
        let products_model = ProductsModel::new(&settings.redis)?;
        let orders_model = OrdersModel::new(&settings.mongodb).await?;
        Self::build_with(
            settings,
            port,
            products_model,
            orders_model,
            ProjectionConfig::new(REDIS_CONSUMER),
            ProjectionConfig::new(MONGO_CONSUMER),
        )
        .await
    }

    /// [`Projections::build`] with explicit models and consumer configurations (tests replay a
    /// topic into the same stores under another group name).
    pub async fn build_with(
        settings: &Settings,
        port: u16,
        products_model: ProductsModel,
        orders_model: OrdersModel,
        products_config: ProjectionConfig,
        orders_config: ProjectionConfig,
    ) -> anyhow::Result<Self> {
        messaging::topics::ensure(
            &settings.kafka,
            &[contracts::topics::ORDERS, contracts::topics::DEAD_LETTERS],
        )
        .await
        .context("creating the orders and dead-letter topics")?;
        let verifier = platform::auth::Verifier::from_settings(&settings.auth)
            .context("loading the token verification keys")?;
        let ops = ops::OpsState::new(settings, products_model.clone(), orders_model.clone());
        let routes = http::routes(http::AppState {
            products: Arc::new(products_model.clone()),
            orders: Arc::new(orders_model.clone()),
        })
        .merge(
            axum::Router::new()
                .route("/api/ops/read-models", axum::routing::get(ops::read_models))
                .route(
                    "/api/ops/read-models/rebuild",
                    axum::routing::post(ops::rebuild),
                )
                .with_state(ops),
        )
        .layer(axum::Extension(verifier));
        let server = Server::bind(&settings.http, port, routes).await?;
        let products = Projection::new(&settings.kafka, products_config, products_model)?;
        let orders = Projection::new(&settings.kafka, orders_config, orders_model)?;
        Ok(Self {
            server,
            products,
            orders,
        })
    }

    pub fn address(&self) -> std::io::Result<std::net::SocketAddr> {
        self.server.address()
    }

    /// Live counters of the Redis and the MongoDB projection.
    pub fn stats(&self) -> (Arc<ProjectionStats>, Arc<ProjectionStats>) {
        (self.products.stats(), self.orders.stats())
    }

    /// Serves and projects until shutdown; a part that fails stops the others.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            server,
            products,
            orders,
        } = self;
        platform::run_until_stopped(shutdown, |stop| {
            let http: Part = Box::pin({
                let stop = stop.clone();
                async move { Ok(server.run(stop).await?) }
            });
            let products: Part = Box::pin({
                let stop = stop.clone();
                async move { products.run(stop).await }
            });
            let orders: Part = Box::pin(async move { orders.run(stop).await });
            vec![
                ("http", http),
                ("redis projection", products),
                ("mongodb projection", orders),
            ]
        })
        .await
    }
}
