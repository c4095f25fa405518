//! The operator console (SYSTEM.md §11) and the part of the operator API (`/api/ops`, §8) that
//! belongs to no single service: the overview, lag per consumer group, dead letters.
//!
//! It runs in the gateway's process, so the console is served by the one entry point, but it
//! is a crate of its own: the gateway forwards and owns no data, while the console keeps a small
//! database (`shop_console`: its sessions, what became of each dead letter, and the audit trail
//! of its own actions) and reads Kafka and the components' metrics.
//!
//! Where each figure comes from, and why there:
//!
//! - **Saga outcomes and latency, outbox backlog, consumer lag in messages**: the components'
//!   own `/metrics`, read only while someone looks ([`scrape`]). Nothing on the saga's path
//!   works for the console, so a console nobody has open costs nothing.
//! - **Lag in seconds**: Kafka itself ([`lag`]): for each consumer group and partition, the
//!   committed offset, the high watermark and the time of the first record not yet committed.
//! - **Stuck sagas**: the order service's `open_sagas` table, through its `/api/ops/orders/stuck`.
//! - **Dead letters**: the `shop.dead-letters` topic itself ([`dead_letters`]), with what became
//!   of each letter in the console's database.
//!
//! Two ways in, one set of rules: scripts call `/api/ops` with a bearer token, people use the
//! pages under `/console` with a session cookie ([`session`]). Both end in the same functions,
//! and both check the same roles (`viewer` reads, `ops` acts; `platform::auth`).

pub mod dead_letters;

use std::sync::Arc;

use anyhow::Context as _;
use platform::Settings;
use platform::auth::Verifier;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The console's database schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Everything the console's routes share.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    verifier: Verifier,
    settings: Settings,
    dead_letters: dead_letters::DeadLetters,
}

impl Console {
    /// Connects to the console's database (creating and migrating it) and to Kafka.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let database = &settings.postgres.databases.console;
        let pool = platform::postgres::connect(&settings.postgres, database)
            .await
            .with_context(|| format!("connecting to PostgreSQL database {database}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("migrating {database}"))?;
        let verifier = Verifier::from_settings(&settings.auth)
            .context("loading the token verification keys")?;
        let dead_letters = dead_letters::DeadLetters::new(&settings.kafka, pool.clone())
            .context("connecting the dead-letter reader to Kafka")?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                verifier,
                settings: settings.clone(),
                dead_letters,
            }),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn dead_letters(&self) -> &dead_letters::DeadLetters {
        &self.inner.dead_letters
    }

    /// `/api/ops/...` owned by the console, and `/console/...`.
    pub fn routes(&self) -> axum::Router {
        dead_letters::api(self.inner.dead_letters.clone())
            .layer(axum::Extension(self.inner.verifier.clone()))
    }
}
