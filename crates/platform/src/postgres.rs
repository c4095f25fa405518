//! PostgreSQL connections. Each service owns a database on a shared server; the database is
//! created on first start so a fresh local stack needs no manual step.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::settings::PostgresSettings;

/// Connects to `database` on the configured server, creating the database if it is missing.
///
/// Every session runs with `enable_seqscan = off`. Each statement of a service reads or writes
/// by key, so a sequential scan there is a planning accident: sqlx prepares statements, after
/// five runs PostgreSQL may keep a generic plan, and one made while a new table was small
/// scans it, on every call, as it grows. Off, the planner takes any index over a scan (and
/// still scans a table that has no usable index). Unnamed statements would be planned on each
/// call instead, but sqlx sends those in two round trips.
pub async fn connect(settings: &PostgresSettings, database: &str) -> Result<PgPool, sqlx::Error> {
    let server: PgConnectOptions = settings.url.parse()?;
    create_database_if_missing(&server, database).await?;
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections.min(settings.max_connections))
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(
            server
                .database(database)
                .options([("enable_seqscan", "off")]),
        )
        .await
}

/// `CREATE DATABASE` has no `IF NOT EXISTS`; two processes racing here is harmless because the
/// loser's duplicate error (42P04) is ignored.
pub async fn create_database_if_missing(
    server: &PgConnectOptions,
    database: &str,
) -> Result<(), sqlx::Error> {
    let mut admin: PgConnection = server.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
        match sqlx::query(&create).execute(&mut admin).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e),
        }
    }
    admin.close().await
}

/// Drops a database, disconnecting whoever still uses it. For tests and `./dev reset`.
pub async fn drop_database(settings: &PostgresSettings, database: &str) -> Result<(), sqlx::Error> {
    let server: PgConnectOptions = settings.url.parse()?;
    let mut admin: PgConnection = server.database("postgres").connect().await?;
    let drop = format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        database.replace('"', "\"\"")
    );
    sqlx::query(&drop).execute(&mut admin).await?;
    admin.close().await
}
