//! Building and running the order service: `build` connects, migrates and binds (port 0 in
//! tests) and `run` serves until shutdown.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::get;
use platform::Settings;
use platform::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::http::{self, AppState};

pub struct Application {
    listener: TcpListener,
    router: Router,
    pub pool: PgPool,
}

impl Application {
    /// Connects to `database` (created if missing), migrates it and binds `port`.
    pub async fn build(settings: &Settings, database: &str, port: u16) -> anyhow::Result<Self> {
        let pool = platform::postgres::connect(&settings.postgres, database)
            .await
            .with_context(|| format!("connecting to PostgreSQL database {database}"))?;
        crate::migrate(&pool)
            .await
            .context("migrating the order database")?;

        let address: SocketAddr = format!("{}:{port}", settings.http.host)
            .parse()
            .context("parsing the HTTP bind address")?;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;

        let router = http::routes(AppState { pool: pool.clone() })
            .route("/health/live", get(platform::health::live))
            .route("/health/ready", get(ready).with_state(pool.clone()))
            .fallback(platform::http::no_route)
            .layer(DefaultBodyLimit::max(settings.http.body_limit));
        Ok(Self {
            listener,
            router,
            pool,
        })
    }

    pub fn address(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves HTTP until `shutdown` is requested, then finishes in-flight requests.
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await
            .context("serving HTTP")
    }
}

async fn ready(State(pool): State<PgPool>) -> Response {
    platform::health::readiness(&[platform::health::postgres(&pool).await])
}
