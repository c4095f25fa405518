//! A service process of this system: its HTTP routes, the relay of its outbox and its consumer,
//! run side by side until shutdown (see `platform::run_until_stopped`).

use anyhow::Context;
use platform::Settings;
use platform::http::Server;
use platform::shutdown::Shutdown;
use platform::supervise::Part;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

use messaging::consumer::{Consumer, ConsumerConfig, ConsumerStats, Handler};
use messaging::doorbell::Doorbell;
use messaging::relay::{Relay, RelayConfig};

/// What makes one service: its database, migrations, routes, and what it consumes.
pub struct Definition<H: Handler> {
    pub database: String,
    pub migrations: &'static Migrator,
    pub port: u16,
    /// The HTTP routes, given the database and the doorbell to ring after committing outbox rows.
    pub routes: fn(PgPool, Doorbell) -> axum::Router,
    /// The tuning of the outbox relay.
    pub relay: RelayConfig,
    /// The topics the relay publishes the outbox to (logical names). With the consumer's topics
    /// and the dead letters, they are all the topics the service touches, and the only ones it
    /// creates: a cluster with ACLs lets each service create only its own.
    pub publishes: &'static [&'static str],
    pub consumer: ConsumerConfig,
    pub handler: H,
}

impl<H: Handler> Definition<H> {
    /// Every topic the service reads or writes: what it consumes, what it publishes, and the
    /// dead letters its consumer parks.
    pub fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = (self.consumer.topics.iter().map(String::as_str))
            .chain(self.publishes.iter().copied())
            .chain([messaging::topics::DEAD_LETTERS])
            .collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }
}

pub struct Service<H: Handler> {
    pub pool: PgPool,
    server: Server,
    relay: Relay,
    consumer: Consumer<H>,
    kafka_probe: platform::kafka::KafkaProbe,
}

impl<H: Handler> Service<H> {
    /// Connects (creating the database if needed), migrates, binds the port and joins the
    /// consumer group. Nothing runs until [`Service::run`].
    pub async fn build(settings: &Settings, definition: Definition<H>) -> anyhow::Result<Self> {
        let database = &definition.database;
        let pool = platform::postgres::connect(&settings.postgres, database)
            .await
            .with_context(|| format!("connecting to PostgreSQL database {database}"))?;
        messaging::migrator(definition.migrations)
            .run(&pool)
            .await
            .with_context(|| format!("migrating {database}"))?;
        let topics = definition.topics();
        messaging::topics::ensure(&settings.kafka, &topics)
            .await
            .with_context(|| format!("creating the Kafka topics {topics:?}"))?;
        let relay = Relay::new(&settings.kafka, pool.clone(), definition.relay)?;
        // Every route that takes an `Identity` verifies the caller's token with this
        // (`platform::auth`); the health route takes none.
        let verifier = platform::auth::Verifier::from_settings(&settings.auth)
            .context("loading the token verification keys")?;
        let inbox = messaging::ops::InboxState {
            pool: pool.clone(),
            consumer: definition.consumer.name.clone(),
        };
        let routes = (definition.routes)(pool.clone(), relay.doorbell())
            .route(
                "/api/ops/inbox",
                axum::routing::get(messaging::ops::inbox).with_state(inbox),
            )
            .layer(axum::Extension(verifier))
            .route(
                "/health/ready",
                axum::routing::get(ready).with_state(pool.clone()),
            );
        let server = Server::bind(&settings.http, definition.port, routes).await?;
        let consumer = Consumer::new(
            &settings.kafka,
            pool.clone(),
            relay.doorbell(),
            definition.consumer,
            definition.handler,
        )?;
        let kafka_probe = platform::kafka::KafkaProbe::new(&settings.kafka)
            .context("creating the Kafka readiness probe")?;
        Ok(Self {
            pool,
            server,
            relay,
            consumer,
            kafka_probe,
        })
    }

    pub fn address(&self) -> std::io::Result<std::net::SocketAddr> {
        self.server.address()
    }

    pub fn consumer_stats(&self) -> std::sync::Arc<ConsumerStats> {
        self.consumer.stats()
    }

    /// Serves, relays and consumes until shutdown; a part that fails stops the others.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            server,
            relay,
            consumer,
            kafka_probe,
            ..
        } = self;
        platform::run_until_stopped(shutdown, |stop| {
            let http: Part = Box::pin({
                let stop = stop.clone();
                async move { Ok(server.run(stop).await?) }
            });
            let relay: Part = Box::pin({
                let stop = stop.clone();
                async move {
                    relay.run(stop).await;
                    Ok(())
                }
            });
            let probe: Part = Box::pin({
                let stop = stop.clone();
                async move {
                    kafka_probe.run(stop).await;
                    Ok(())
                }
            });
            let consumer: Part = Box::pin(async move { Ok(consumer.run(stop).await?) });
            vec![
                ("http", http),
                ("relay", relay),
                ("consumer", consumer),
                ("kafka probe", probe),
            ]
        })
        .await
    }
}

/// A service is ready when its database answers (`platform::health` adds the Kafka probe's state).
async fn ready(
    axum::extract::State(pool): axum::extract::State<PgPool>,
) -> axum::response::Response {
    platform::health::readiness(&[platform::health::postgres(&pool).await])
}
