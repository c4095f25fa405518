//! The stock service: owns product quantities and holds them for orders while their saga runs.
//!
//! - [`reservations`]: the reservation rules over PostgreSQL — hold all of an order's lines or
//!   none, follow changes to a pending order, release a failed order (declined, out of stock,
//!   timed out) for good, commit on completion;
//! - [`handler`]: which message triggers which rule (the idempotent consumer applies it);
//! - [`catalog`]: products' names and prices, added, changed and restocked by operators, each
//!   change announced on the catalog topic and audited;
//! - [`http`]: `/api/products`, `/api/stock` and the audit trail, `/api/ops/audit`.

pub mod catalog;
pub mod handler;
pub mod http;
pub mod reservations;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The consumer name (inbox key and, prefixed, the Kafka group).
pub const CONSUMER: &str = "stock";

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    messaging::migrator(&MIGRATIONS).run(pool).await
}

/// The service as a process of the system: its database, routes and consumer.
pub fn definition(
    _settings: &platform::Settings,
    database: &str,
    port: u16,
) -> service::Definition<handler::StockHandler> {
    service::Definition {
        database: database.to_owned(),
        migrations: &MIGRATIONS,
        port,
        routes: http::routes,
        relay: messaging::RelayConfig::default(),
        publishes: &[contracts::topics::STOCK, contracts::topics::CATALOG],
        consumer: messaging::consumer::ConsumerConfig::new(
            CONSUMER,
            &[contracts::topics::ORDERS, contracts::topics::PAYMENTS],
        ),
        handler: handler::StockHandler,
    }
}
