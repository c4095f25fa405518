//! The payment service: owns customer credit and captures or declines each order's payment.
//!
//! - [`payments`]: capture, decline or refund, per revision of an order, over PostgreSQL;
//! - [`handler`]: `StockReserved` in, `PaymentCaptured`/`PaymentDeclined` out;
//!   `StockReservationFailed` in, the order's capture refunded; `StockReleased` in, the
//!   capture refunded and the order final (nothing late or redriven is paid for it);
//! - [`http`]: `GET /api/payments`.

pub mod handler;
pub mod http;
pub mod payments;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The consumer name (inbox key and, prefixed, the Kafka group).
pub const CONSUMER: &str = "payment";

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    messaging::migrator(&MIGRATIONS).run(pool).await
}

/// The service as a process of the system: its database, routes and consumer.
pub fn definition(
    settings: &platform::Settings,
    database: &str,
    port: u16,
) -> service::Definition<handler::PaymentHandler> {
    service::Definition {
        database: database.to_owned(),
        migrations: &MIGRATIONS,
        port,
        routes: http::routes,
        relay: messaging::RelayConfig::default(),
        publishes: &[contracts::topics::PAYMENTS],
        consumer: messaging::consumer::ConsumerConfig::new(CONSUMER, &[contracts::topics::STOCK]),
        handler: handler::PaymentHandler {
            starting_credit: settings.payment.starting_credit,
        },
    }
}
