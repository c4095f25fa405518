//! PostgreSQL as `./dev` serves it to the role `shop_tls`, which it lets in only over TLS and
//! with its password (`postgres_tls` in `./dev`), against the local certificate authority in
//! `.local/tls`.

use std::path::Path;
use std::time::Duration;

use platform::settings::PostgresSettings;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use test_support::stack::{Stack, item};
use uuid::Uuid;

use super::tls_dir;
use crate::common::SHOP;

fn password() -> String {
    let file = tls_dir().join("postgres-password");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; `./dev start postgres` (or `./dev test`) makes it",
                file.display()
            )
        })
        .trim()
        .to_owned()
}

/// The URL of the server `./dev` started, over TCP as `shop_tls`, verifying the server against
/// `root` as a managed PostgreSQL is verified.
fn url(password: &str, sslmode: &str, root: &Path) -> String {
    let local: PgConnectOptions = test_support::settings().postgres.url.parse().unwrap();
    format!(
        "postgres://shop_tls:{password}@localhost:{}/postgres?sslmode={sslmode}&sslrootcert={}",
        local.get_port(),
        root.display()
    )
}

fn settings(url: String) -> PostgresSettings {
    PostgresSettings {
        url,
        ..test_support::settings().postgres
    }
}

/// What the server (or the client's verification) says to a connection attempt.
async fn refusal(url: String) -> sqlx::Error {
    let database = test_support::unique("test");
    match platform::postgres::connect(&settings(url), &database).await {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn postgres_lets_the_tls_role_in_only_over_verified_tls_with_its_password() {
    // The fault drills restart this PostgreSQL.
    let _turn = test_support::shared().await;
    let ca = tls_dir().join("ca.pem");
    let password = password();

    // Verified against the local CA, with the password: in, and the session is encrypted.
    let database = test_support::unique("test");
    let good = settings(url(&password, "verify-full", &ca));
    let pool = platform::postgres::connect(&good, &database).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(encrypted, "the session should be over TLS");
    pool.close().await;
    platform::postgres::drop_database(&good, &database)
        .await
        .unwrap();

    // Without TLS: the server refuses the role (pg_hba.conf, SQLSTATE 28000).
    let plain = refusal(url(&password, "disable", &ca)).await;
    assert_eq!(
        plain.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("28000"),
        "{plain}"
    );

    // Over TLS with a wrong password: refused (SQLSTATE 28P01).
    let wrong = refusal(url("not-the-password", "verify-full", &ca)).await;
    assert_eq!(
        wrong.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("28P01"),
        "{wrong}"
    );

    // A server whose certificate does not chain to the trusted roots (here the system's public
    // roots, not the local CA) is refused by the client before any password is sent.
    let untrusted = refusal(url(
        &password,
        "verify-full",
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
    ))
    .await;
    assert!(
        untrusted.to_string().contains("invalid peer certificate"),
        "{untrusted}"
    );
}

/// The URL the services use: the role `shop_tls` over TLS verified against the local CA.
pub(super) fn services_url() -> String {
    url(&password(), "verify-full", &tls_dir().join("ca.pem"))
}

/// The whole saga with every service connecting to PostgreSQL over verified TLS with a password,
/// changed by configuration only (`SHOP_POSTGRES__URL`).
#[tokio::test]
async fn the_saga_completes_with_every_service_on_postgres_over_tls() {
    let url = services_url();
    let stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "gateway"],
        &[("SHOP_POSTGRES__URL", &url)],
    )
    .await;
    let order = stack.place(Uuid::new_v4(), json!([item(1, 1)])).await;
    let id = order["orderId"].as_str().unwrap();
    let order = stack.settled(id, Duration::from_secs(10)).await;
    assert_eq!(order["status"], "completed");
    assert_every_session_is_tls(&stack).await;
    stack.remove().await.unwrap();
}

/// Every session of order, stock and payment to their databases is the TLS role's, encrypted.
pub(super) async fn assert_every_session_is_tls(stack: &Stack) {
    for service in ["order", "stock", "payment"] {
        let (tls, plain): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = current_database() AND a.usename = 'shop_tls'",
        )
        .fetch_one(&stack.pool(service).await)
        .await
        .unwrap();
        assert!(
            tls > 0 && plain == 0,
            "{service}: {tls} TLS sessions, {plain} plain"
        );
    }
}
