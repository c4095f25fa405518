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

mod api;
mod assets;
pub mod dead_letters;
pub mod journey;
pub mod lag;
pub mod overview;
mod pages;
pub mod scrape;
pub mod session;
mod upstream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::{get, post};
use platform::Settings;
use platform::auth::Verifier;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The console's database schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Everything the console's routes share. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    verifier: Verifier,
    settings: Settings,
    http: reqwest::Client,
    lag: lag::LagReader,
    dead_letters: dead_letters::DeadLetters,
    /// The last reading of the components' metrics anybody took: the previous reading of the
    /// next page that is rendered, so that its first view shows rates too.
    last_reading: Mutex<Option<overview::Readings>>,
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
        Self::with_pool(settings, pool)
    }

    /// Over a database that is already migrated (tests make their own).
    pub fn with_pool(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let verifier = Verifier::from_settings(&settings.auth)
            .context("loading the token verification keys")?;
        let dead_letters = dead_letters::DeadLetters::new(&settings.kafka, pool.clone())
            .context("connecting the dead-letter reader to Kafka")?;
        let lag = lag::LagReader::new(&settings.kafka).context("connecting the lag reader")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(1))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                verifier,
                settings: settings.clone(),
                http,
                lag,
                dead_letters,
                last_reading: Mutex::new(None),
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

    pub fn lag(&self) -> &lag::LagReader {
        &self.inner.lag
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The base URLs of a component's instances (`order`, `stock`, `payment`, `projections`),
    /// where the gateway finds them too.
    pub fn instances(&self, component: &str) -> Vec<String> {
        let settings = &self.inner.settings;
        settings.gateway.urls(&settings.http, component)
    }

    /// The overview with rates against the last reading anybody took.
    pub async fn overview_now(&self, authorization: &str) -> overview::Overview {
        let previous = self
            .inner
            .last_reading
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default();
        let (overview, reading) = overview::overview(self, authorization, previous.as_ref()).await;
        if let Ok(mut last) = self.inner.last_reading.lock() {
            *last = Some(reading);
        }
        overview
    }

    /// The oldest sagas pending for `older_than` seconds (at most `limit`), from the order
    /// service, asked with the caller's `authorization`; and whether there are more.
    pub async fn stuck(
        &self,
        authorization: &str,
        older_than: u32,
        limit: u32,
    ) -> Result<(Vec<serde_json::Value>, bool), String> {
        let path = format!("/api/ops/orders/stuck?olderThan={older_than}&limit={limit}");
        let response = upstream::request(self, "order", &path, |client, url| {
            client
                .get(url)
                .header(axum::http::header::AUTHORIZATION, authorization)
        })
        .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the order service answered {status}"));
        }
        let more = response.headers().contains_key(axum::http::header::LINK);
        let orders = response
            .json()
            .await
            .map_err(|e| format!("the order service's answer is unreadable ({e})"))?;
        Ok((orders, more))
    }

    /// `/api/ops/...` owned by the console, and `/console/...`.
    pub fn routes(&self) -> axum::Router {
        let hosts = session::Hosts::from_settings(&self.inner.settings);
        let pages = axum::Router::new()
            .route("/console", get(pages::overview))
            .route("/console/login", get(pages::login_form).post(pages::login))
            .route("/console/logout", post(pages::logout))
            .route("/console/orders", get(pages::orders))
            .route("/console/orders/{order_id}", get(pages::journey))
            .route("/console/dead-letters", get(pages::dead_letters))
            .route("/console/dead-letters/{letter_id}", get(pages::dead_letter))
            .route("/console/dead-letters/redrive", post(pages::redrive))
            .route("/console/dead-letters/discard", post(pages::discard))
            .route("/console/catalog", get(pages::catalog))
            .route("/console/catalog/{product}/price", post(pages::reprice))
            .route("/console/catalog/{product}/restock", post(pages::restock))
            .route("/console/read-models", get(pages::read_models))
            .route("/console/read-models/rebuild", post(pages::rebuild))
            .route("/console/audit", get(pages::audit))
            .route("/console/events", get(pages::events))
            .route("/console/assets/{file}", get(assets::serve))
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(hosts, session::guard));
        let api = axum::Router::new()
            .route("/api/ops/overview", get(api::overview))
            .route("/api/ops/lag", get(api::lag))
            .route("/api/ops/orders/{order_id}/journey", get(api::journey))
            .with_state(self.clone())
            .merge(dead_letters::api(self.inner.dead_letters.clone()))
            .layer(axum::Extension(self.inner.verifier.clone()));
        pages.merge(api)
    }

    /// The OpenAPI document of the console's `/api/ops` routes.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        let mut doc = api::openapi();
        doc.merge(dead_letters::openapi());
        doc
    }
}
