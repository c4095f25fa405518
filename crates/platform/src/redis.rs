//! The Redis client of [`RedisSettings`]: every Redis client of the system is made here, so a
//! `rediss://` URL and a CA file reach all of them.
//!
//! - `redis://host:port`: plaintext, no password (the local default).
//! - `rediss://user:password@host:port`: TLS, the server verified against the system's roots,
//!   then `AUTH user password`, as a managed Redis requires.
//! - the same with `ca_file`: the server verified against that CA only (`./dev`'s
//!   `redis-secure` server, or a managed service with a private CA).
//!
//! Nothing connects here: the client connects on first use.

use ::redis::{Client, IntoConnectionInfo, TlsCertificates};

use crate::settings::RedisSettings;

/// Why the Redis settings make no client. The messages name the setting to change and never
/// repeat the URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error(
        "SHOP_REDIS__URL is not a Redis URL; write redis://host:port, or \
         rediss://user:password@host:port for TLS"
    )]
    Url(#[source] ::redis::RedisError),
    #[error(
        "SHOP_REDIS__CA_FILE is set but SHOP_REDIS__URL is not rediss://: use a rediss:// URL \
         for TLS, or unset SHOP_REDIS__CA_FILE"
    )]
    CaWithoutTls,
    #[error(
        "cannot read SHOP_REDIS__CA_FILE {path}; point it at the PEM certificate of the \
         authority that signed the Redis server's certificate"
    )]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "SHOP_REDIS__CA_FILE {path} holds no usable PEM certificate; point it at the PEM \
         certificate of the authority that signed the Redis server's certificate"
    )]
    CaInvalid {
        path: String,
        #[source]
        source: ::redis::RedisError,
    },
}

/// The client for `settings.url`, trusting only `settings.ca_file` when it is set.
pub fn client(settings: &RedisSettings) -> Result<Client, RedisConfigError> {
    install_crypto_provider();
    let info = settings
        .url
        .as_str()
        .into_connection_info()
        .map_err(RedisConfigError::Url)?;
    let Some(path) = settings.ca_file.as_deref().filter(|p| !p.is_empty()) else {
        return Client::open(info).map_err(RedisConfigError::Url);
    };
    if !settings.url.starts_with("rediss://") {
        return Err(RedisConfigError::CaWithoutTls);
    }
    let root_cert = std::fs::read(path).map_err(|source| RedisConfigError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    Client::build_with_tls(info, certificates).map_err(|source| RedisConfigError::CaInvalid {
        path: path.to_owned(),
        source,
    })
}

/// The redis crate builds its rustls configuration with the process's default provider. ring is
/// the one this workspace compiles (sqlx and the MongoDB driver use it too); naming it here
/// keeps a second provider, should a dependency ever bring one, from leaving rustls unable to
/// choose at the first `rediss://` connection. A provider installed before stays.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, ca_file: Option<&str>) -> RedisSettings {
        RedisSettings {
            url: url.to_owned(),
            key_prefix: "shop:".to_owned(),
            ca_file: ca_file.map(str::to_owned),
        }
    }

    #[test]
    fn plain_and_tls_urls_make_clients() {
        assert!(client(&settings("redis://127.0.0.1:6379", None)).is_ok());
        assert!(client(&settings("rediss://shop:secret@127.0.0.1:6380", None)).is_ok());
    }

    #[test]
    fn a_ca_file_needs_a_tls_url_and_a_readable_certificate() {
        let plain = client(&settings("redis://127.0.0.1:6379", Some("/etc/hostname")));
        assert!(
            matches!(plain, Err(RedisConfigError::CaWithoutTls)),
            "{:?}",
            plain.err()
        );

        let missing = client(&settings(
            "rediss://shop:secret@127.0.0.1:6380",
            Some("/nonexistent/ca.pem"),
        ));
        let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("/nonexistent/ca.pem") && message.contains("PEM certificate"),
            "{message}"
        );
        // The password stays out of what an operator reads.
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn a_bad_url_says_what_to_write() {
        let message = client(&settings("http://127.0.0.1:6379", None))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("rediss://user:password@"), "{message}");
    }
}
