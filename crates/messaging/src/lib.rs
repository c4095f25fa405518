//! Reliable messaging between the services, shared by all of them:
//!
//! - [`outbox`]: write the messages a state change causes in the same transaction as the change;
//! - [`relay`]: publish committed outbox rows to Kafka, marking a row only after the broker
//!   acknowledged it (at least once, per-key order, one active relay per outbox), woken by the
//!   writers' [`doorbell`];
//! - [`consumer`]: apply each message exactly once (an inbox row in the handler's transaction),
//!   committing the Kafka offset only after that transaction committed;
//! - [`dead_letters`]: park a record no one can apply (the consumers' and the projections');
//! - [`headers`]: the one codec of a message's Kafka headers, written by the relay and read by
//!   the consumers and the projections;
//! - [`audit`]: the audit trail of operator actions, written in the transaction of the action.
//!
//! Together: a message exists only if its state change committed, is published at least once,
//! and is applied by each consumer exactly once ("effectively once", SYSTEM.md I7).

pub mod audit;
mod backoff;
pub mod consumer;
pub mod dead_letters;
pub mod doorbell;
pub mod headers;
mod inbox;
pub mod ops;
pub mod outbox;
pub mod relay;
pub mod topics;

pub use consumer::{
    Consumer, ConsumerConfig, ConsumerError, ConsumerStats, Handler, HandlerError, IncomingMessage,
    Traced,
};
pub use doorbell::Doorbell;
pub use relay::{BatchReport, Relay, RelayConfig, RelayError};

use sqlx::migrate::Migrator;

/// The outbox, inbox and audit tables. Their versions are 1–99; a service's own migrations start at 100,
/// and [`migrator`] runs both sets against the service's database.
static MESSAGING_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The messaging tables followed by a service's own migrations, as one migrator.
pub fn migrator(service: &Migrator) -> Migrator {
    let mut migrations: Vec<_> = MESSAGING_MIGRATIONS
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    migrations.sort_by_key(|m| m.version);
    Migrator {
        migrations: migrations.into(),
        ..Migrator::DEFAULT
    }
}
