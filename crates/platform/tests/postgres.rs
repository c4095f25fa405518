//! The service pools against the real PostgreSQL of `./dev up`.

use platform::Settings;

/// A pool is opened whole before `connect` returns, so the first burst of work finds warm
/// connections instead of waiting for new backends.
#[tokio::test]
async fn connect_opens_the_minimum_of_connections_before_returning() {
    let mut settings = Settings::load().expect("settings");
    settings.postgres.min_connections = 5;
    settings.postgres.max_connections = 8;
    let database = format!("test_pool_{}", std::process::id());
    let pool = platform::postgres::connect(&settings.postgres, &database)
        .await
        .expect("connect");

    let backends: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&database)
            .fetch_one(&pool)
            .await
            .expect("count backends");
    pool.close().await;
    platform::postgres::drop_database(&settings.postgres, &database)
        .await
        .expect("drop");
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
