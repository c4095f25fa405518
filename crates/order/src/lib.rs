//! The order service. Its write side is event-sourced: an order is the fold of its events in
//! PostgreSQL, and every event's integration message is written to the outbox in the same
//! transaction.
//!
//! - [`domain`]: the aggregate and its rules (pure);
//! - [`event_store`]: append/load/read-all over PostgreSQL;
//! - [`commands`]: load → decide → append + outbox, in one transaction, with retries on conflict;
//! - [`messages`]: which integration message each event publishes;
//! - [`http`]: the `/api/orders` routes.

pub mod commands;
pub mod domain;
pub mod event_store;
pub mod http;
mod idempotency;
pub mod messages;
pub mod saga;
pub mod view;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The service's own tables (events, idempotency keys); outbox and inbox come from `messaging`.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The consumer name (inbox key and, prefixed, the Kafka group).
pub const CONSUMER: &str = "order";

/// The service as a process of the system: its database, routes and saga consumer.
pub fn definition(database: &str, port: u16) -> messaging::service::Definition<saga::SagaHandler> {
    messaging::service::Definition {
        database: database.to_owned(),
        migrations: &MIGRATIONS,
        port,
        routes: http::routes,
        relay: messaging::RelayConfig::default(),
        consumer: messaging::consumer::ConsumerConfig::new(
            CONSUMER,
            &[contracts::topics::STOCK, contracts::topics::PAYMENTS],
        ),
        handler: saga::SagaHandler,
    }
}

/// Creates or updates every table the service needs.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    messaging::migrator(&MIGRATIONS).run(pool).await
}
