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
pub mod startup;
pub mod view;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The service's own tables (events, idempotency keys); outbox and inbox come from `messaging`.
static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The database this service owns on the shared server.
pub const DATABASE: &str = "shop_order";

/// Creates or updates every table the service needs.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    messaging::migrator(&MIGRATIONS).run(pool).await
}
