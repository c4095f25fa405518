//! Redis as `./dev` serves it on `redis-secure` (`start_redis-secure` in `./dev`): TLS only, and
//! the ACL user `shop` with the password in `.local/tls/redis-password`; the default user is off.
//! Every client here is made by `platform::redis::client`, the one the services use.

use std::path::Path;
use std::time::Duration;

use platform::settings::RedisSettings;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};

use super::tls_dir;

/// Where `./dev` runs redis-secure (`REDIS_SECURE_PORT` of dev.env; `./dev test` exports it).
pub fn port() -> u16 {
    std::env::var("REDIS_SECURE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6380)
}

pub fn password() -> String {
    let file = tls_dir().join("redis-password");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; `./dev start redis-secure` (or `./dev test`) makes it",
                file.display()
            )
        })
        .trim()
        .to_owned()
}

/// `SHOP_REDIS__URL` for redis-secure: `scheme://{credentials}127.0.0.1:PORT`.
pub fn url(scheme: &str, credentials: &str) -> String {
    format!("{scheme}://{credentials}127.0.0.1:{}", port())
}

fn settings(url: String, ca_file: Option<&Path>) -> RedisSettings {
    RedisSettings {
        url,
        ca_file: ca_file.map(|p| p.display().to_string()),
        ..test_support::settings().redis
    }
}

/// A connection as the services make it: TLS handshake and `AUTH` happen here.
async fn connect(settings: &RedisSettings) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    platform::redis::client(settings)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn ping(con: &mut MultiplexedConnection) -> Result<String, RedisError> {
    redis::cmd("PING").query_async(con).await
}

#[tokio::test]
async fn redis_lets_shop_in_only_over_verified_tls_with_its_password() {
    let ca = tls_dir().join("ca.pem");
    let password = password();
    let shop = format!("shop:{password}@");

    // Verified against the local CA, as `shop` with its password: in, and it reads and writes.
    let good = settings(url("rediss", &shop), Some(&ca));
    let mut con = connect(&good).await.unwrap();
    assert_eq!(ping(&mut con).await.unwrap(), "PONG");
    let key = test_support::unique("test:secure");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("over tls")
        .query_async(&mut con)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "over tls");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();

    // Plaintext to the TLS port: the server drops the connection (there is no plaintext port).
    let plain = connect(&settings(url("redis", &shop), None)).await;
    assert!(
        plain.is_err(),
        "a plaintext client should not get a connection"
    );

    // Over TLS without credentials: the connection opens as no user, and every command is
    // refused until AUTH.
    let mut anonymous = connect(&settings(url("rediss", ""), Some(&ca)))
        .await
        .unwrap();
    let refused = ping(&mut anonymous).await.unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");

    // A wrong password, and the right password for the default user (which is off): the
    // server answers AUTH with WRONGPASS, which the client reports as failed authentication.
    for credentials in ["shop:not-the-password@".to_owned(), format!(":{password}@")] {
        let wrong = connect(&settings(url("rediss", &credentials), Some(&ca)))
            .await
            .err()
            .unwrap_or_else(|| panic!("{credentials:?} should have been refused"));
        assert_eq!(wrong.kind(), ErrorKind::AuthenticationFailed, "{wrong}");
        assert!(!wrong.to_string().contains(&password), "{wrong}");
    }

    // A server whose certificate does not chain to the trusted roots (here the system's public
    // roots, not the local CA) is refused by the client before the password is sent.
    let untrusted = connect(&settings(
        url("rediss", &shop),
        Some(Path::new("/etc/ssl/certs/ca-certificates.crt")),
    ))
    .await
    .expect_err("a server the roots do not vouch for should be refused");
    assert!(
        untrusted.to_string().contains("invalid peer certificate"),
        "{untrusted}"
    );
}
