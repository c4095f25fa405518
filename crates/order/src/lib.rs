//! The order service. Its write side is event-sourced: an order is the fold of its events in
//! PostgreSQL, and every event's integration message is written to the outbox in the same
//! transaction.
//!
//! - [`domain`]: the aggregate and its rules (pure);
//! - [`event_store`]: append/load/read-all over PostgreSQL;
//! - [`commands`]: load → decide → append + outbox, in one transaction, with retries on conflict;
//! - [`consumer`]: the consumer's handler: saga replies to [`saga`], catalog changes to
//!   [`catalog`];
//! - [`saga`]: stock and payment replies → commands;
//! - [`catalog`]: the local replica of the catalog (stock's), which prices every line;
//! - [`deadline`]: fails the orders whose saga outlived the deadline (`timed_out`);
//! - [`messages`]: which integration message each event publishes;
//! - [`listing`]: pages of orders for `GET /api/orders`;
//! - [`http`]: the `/api/orders` routes.

pub mod catalog;
pub mod commands;
pub mod consumer;
pub mod deadline;
pub mod domain;
pub mod event_store;
pub mod http;
mod idempotency;
pub mod listing;
pub mod messages;
pub mod saga;
pub mod stuck;
pub mod view;

use platform::Settings;
use platform::shutdown::Shutdown;
use platform::supervise::Part;
use service::{Definition, Service};
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The service's own tables (events, idempotency keys, open sagas, catalog replica); outbox and
/// inbox come from `messaging`.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The consumer name (inbox key and, prefixed, the Kafka group).
pub const CONSUMER: &str = "order";

/// The service as a process of the system: its database, routes and saga consumer.
pub fn definition(database: &str, port: u16) -> service::Definition<consumer::OrderHandler> {
    service::Definition {
        database: database.to_owned(),
        migrations: &MIGRATIONS,
        port,
        routes: http::routes,
        relay: messaging::RelayConfig::default(),
        publishes: &[contracts::topics::ORDERS],
        consumer: messaging::consumer::ConsumerConfig::new(
            CONSUMER,
            &[
                contracts::topics::STOCK,
                contracts::topics::PAYMENTS,
                contracts::topics::CATALOG,
            ],
        ),
        handler: consumer::OrderHandler,
    }
}

/// Creates or updates every table the service needs.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    messaging::migrator(&MIGRATIONS).run(pool).await
}

/// The order service as a process: the service of [`definition`] (HTTP, relay, saga consumer)
/// and the saga deadline beside it, under one shutdown.
pub struct Component {
    service: Service<consumer::OrderHandler>,
    deadlines: deadline::Deadlines,
}

impl Component {
    /// Builds the service (see `service::Service::build`) and its deadline keeper.
    pub async fn build(
        settings: &Settings,
        definition: Definition<consumer::OrderHandler>,
        deadline: deadline::DeadlineConfig,
    ) -> anyhow::Result<Self> {
        let service = Service::build(settings, definition).await?;
        let deadlines = deadline::Deadlines::new(service.pool.clone(), deadline);
        Ok(Self { service, deadlines })
    }

    pub fn address(&self) -> std::io::Result<std::net::SocketAddr> {
        self.service.address()
    }

    pub fn pool(&self) -> &PgPool {
        &self.service.pool
    }

    /// Runs until shutdown; either part ending on its own stops the other.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self { service, deadlines } = self;
        commands::export_outcomes();
        platform::run_until_stopped(shutdown, |stop| {
            let deadline: Part = Box::pin({
                let stop = stop.clone();
                async move {
                    deadlines.run(stop).await;
                    Ok(())
                }
            });
            let service: Part = Box::pin(service.run(stop));
            vec![("service", service), ("saga deadline", deadline)]
        })
        .await
    }
}
