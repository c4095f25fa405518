//! The service pools against the real PostgreSQL of `./dev up`.

use platform::Settings;
use sqlx::PgPool;

/// A service pool of `min`..`max` connections on a database of its own.
struct TestPool {
    settings: Settings,
    database: String,
    pool: PgPool,
}

impl TestPool {
    async fn connect(name: &str, min: u32, max: u32) -> Self {
        let mut settings = Settings::load().expect("settings");
        settings.postgres.min_connections = min;
        settings.postgres.max_connections = max;
        let database = format!("test_{name}_{}", std::process::id());
        let pool = platform::postgres::connect(&settings.postgres, &database)
            .await
            .expect("connect");
        Self {
            settings,
            database,
            pool,
        }
    }

    /// Closes the pool and drops its database.
    async fn remove(self) {
        self.pool.close().await;
        platform::postgres::drop_database(&self.settings.postgres, &self.database)
            .await
            .expect("drop");
    }
}

/// A pool is opened whole before `connect` returns, so the first burst of work finds warm
/// connections instead of waiting for new backends.
#[tokio::test]
async fn connect_opens_the_minimum_of_connections_before_returning() {
    let test = TestPool::connect("pool", 5, 8).await;

    let backends: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&test.database)
            .fetch_one(&test.pool)
            .await
            .expect("count backends");
    test.remove().await;
    assert_eq!(backends, 5);
}

/// Unless configured otherwise, a service's pool is fixed-size: all of it opened at start.
#[test]
fn the_default_pool_is_fixed_size() {
    let settings = Settings::load().expect("settings");
    assert_eq!(
        settings.postgres.min_connections,
        settings.postgres.max_connections
    );
}

/// A connection whose session ended while it sat in the pool (as in a PostgreSQL restart) is
/// not handed out: one idle for longer than `PING_IF_IDLE_FOR` is pinged first, and a dead one
/// is replaced by a new connection.
#[tokio::test]
async fn a_connection_that_lost_its_session_while_idle_is_replaced() {
    use sqlx::ConnectOptions;

    let test = TestPool::connect("pool_dead", 1, 1).await;
    let backend = || async {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&test.pool)
            .await
    };
    let first = backend().await.expect("the first backend");

    let server: sqlx::postgres::PgConnectOptions = test.settings.postgres.url.parse().expect("url");
    let mut admin = server.database("postgres").connect().await.expect("admin");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(ended, "the pooled session ended");
    tokio::time::sleep(
        platform::postgres::PING_IF_IDLE_FOR + std::time::Duration::from_millis(200),
    )
    .await;

    let second = backend().await;
    test.remove().await;
    let second = second.expect("a query after the session ended");
    assert_ne!(first, second);
}

/// A statement that must scan a table with no usable index is priced at 10^10 with sequential
/// scans off; with JIT on, PostgreSQL would compile it on every call (tens of milliseconds).
#[tokio::test]
async fn a_forced_scan_is_not_compiled() {
    let test = TestPool::connect("jit", 1, 1).await;
    sqlx::query("CREATE TABLE one_row (epoch bigint NOT NULL)")
        .execute(&test.pool)
        .await
        .expect("create");
    sqlx::query("INSERT INTO one_row VALUES (1)")
        .execute(&test.pool)
        .await
        .expect("insert");
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN ANALYZE SELECT FROM one_row WHERE epoch = 1")
            .fetch_all(&test.pool)
            .await
            .expect("explain");
    test.remove().await;
    assert!(
        plan.iter().any(|line| line.contains("Seq Scan on one_row")),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|line| line.contains("JIT")),
        "the statement was compiled: {plan:?}"
    );
}
