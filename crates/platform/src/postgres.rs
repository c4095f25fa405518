//! PostgreSQL connections. Each service owns a database on a shared server; the database is
//! created on first start so a fresh local stack needs no manual step.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::settings::PostgresSettings;

/// Connects to `database` on the configured server, creating the database if it is missing.
///
/// Every session runs with `enable_seqscan = off`, `plan_cache_mode = force_generic_plan` and
/// `jit = off`.
/// sqlx prepares each statement once per connection; by default PostgreSQL then plans it again
/// on every call (a *custom* plan for the call's values) until it trusts a generic plan, and for
/// the services' `= ANY($1)` and `UNNEST($1)` statements it apparently never does (it cannot
/// know how long the arrays are). Planning was a seventh of the database's CPU time in the saga
/// bench at 60 orders/s (`perf`, `GetCachedPlan`); a forced generic plan is made once per
/// connection.
/// Each statement of a service reads or writes by key, so a sequential scan in a generic plan is
/// a planning accident: one made while a new table was small would scan it, on every call, as it
/// grows. With sequential scans off the planner takes any index over a scan (and still scans a
/// table that has no usable index). Unnamed statements would be planned on each call instead,
/// but sqlx sends those in two round trips.
///
/// JIT compilation is off because sequential scans are: the planner prices a scan it must still
/// make (a table with no usable index, like the relay's one-row lease) at 10^10, far past the
/// JIT thresholds, and PostgreSQL would then compile that statement on every call. Statements by
/// key never gain from JIT (docs/decisions/0001-postgres-sessions-without-jit.md).
///
/// A pooled connection is pinged before it is handed out only if it sat idle for more than
/// [`PING_IF_IDLE_FOR`]. sqlx already pings each connection as it goes back to the pool, so a
/// connection used a moment ago is known to be alive; one that sat idle may have lost its
/// server (a PostgreSQL restart) and is replaced. Under load this saves a round trip on every
/// transaction's way, each hop of the saga included.
pub async fn connect(settings: &PostgresSettings, database: &str) -> Result<PgPool, sqlx::Error> {
    let server: PgConnectOptions = settings.url.parse()?;
    create_database_if_missing(&server, database).await?;
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections.min(settings.max_connections))
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                // A connection that does not answer is closed, and another one handed out.
                Ok(meta.idle_for <= PING_IF_IDLE_FOR || conn.ping().await.is_ok())
            })
        })
        .connect_with(server.database(database).options([
            ("enable_seqscan", "off"),
            ("plan_cache_mode", "force_generic_plan"),
            ("jit", "off"),
        ]))
        .await
}

/// How long a pooled connection may sit idle and still be handed out without a ping.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

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
