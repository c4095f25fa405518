//! The MongoDB-wire server as `./dev` serves it on `mongodb-secure` (`start_mongodb-secure` in
//! `./dev`): FerretDB with a TLS listener only, which requires a client certificate signed by
//! the local CA (`.local/tls/client.pem`, CN `shop`). FerretDB's SQLite handler has no users, so
//! the certificate is the credential. The client is the projections' own (`OrdersModel`),
//! configured by its URL only.

use std::path::{Path, PathBuf};
use std::process::Command;

use platform::settings::MongoSettings;
use projections::OrdersModel;

use super::tls_dir;

/// Where `./dev` runs mongodb-secure (`MONGO_SECURE_PORT` of dev.env; `./dev test` exports it).
fn port() -> u16 {
    std::env::var("MONGO_SECURE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(27018)
}

fn client_certificate() -> PathBuf {
    let file = tls_dir().join("client.pem");
    assert!(
        file.exists(),
        "{}: missing; `./dev start mongodb-secure` (or `./dev test`) makes it",
        file.display()
    );
    file
}

/// `SHOP_MONGODB__URL` for mongodb-secure with the query `options`.
fn url(options: &str) -> String {
    format!("mongodb://127.0.0.1:{}/?{options}", port())
}

/// The URL the services use: TLS, the server verified against `roots`, and `certificate`
/// presented.
pub fn tls_url(roots: &Path, certificate: &Path) -> String {
    url(&format!(
        "tls=true&tlsCAFile={}&tlsCertificateKeyFile={}",
        roots.display(),
        certificate.display()
    ))
}

/// The URL of the services, against the local CA with `./dev`'s client certificate.
pub fn services_url() -> String {
    tls_url(&tls_dir().join("ca.pem"), &client_certificate())
}

/// What a `ping` through the projections' client says (it gives up on a server after 3 s).
async fn ping(url: String) -> Result<(), String> {
    let settings = MongoSettings {
        url,
        database: test_support::unique("test"),
    };
    let model = OrdersModel::new(&settings)
        .await
        .map_err(|e| format!("settings refused: {e}"))?;
    model.ping().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn mongodb_lets_in_only_verified_tls_clients_with_a_certificate_of_the_local_ca() {
    let ca = tls_dir().join("ca.pem");
    let certificate = client_certificate();

    // Verified against the local CA, presenting the client certificate: in, and the read
    // model answers.
    ping(tls_url(&ca, &certificate)).await.unwrap();
    let settings = MongoSettings {
        url: tls_url(&ca, &certificate),
        database: test_support::unique("test"),
    };
    let report = OrdersModel::new(&settings)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.total, 0);

    // Plaintext: the TLS listener drops it, and there is no plaintext listener.
    let plain = ping(url("")).await.unwrap_err();
    assert!(plain.contains("ServerSelection"), "{plain}");

    // TLS without a client certificate: the server ends the handshake.
    let anonymous = ping(url(&format!("tls=true&tlsCAFile={}", ca.display())))
        .await
        .unwrap_err();
    assert!(anonymous.contains("CertificateRequired"), "{anonymous}");

    // A client certificate the local CA did not sign: the server refuses it.
    let stranger = self_signed_client_certificate();
    let unknown = ping(tls_url(&ca, &stranger)).await.unwrap_err();
    assert!(unknown.contains("UnknownCA"), "{unknown}");
    std::fs::remove_dir_all(stranger.parent().unwrap()).unwrap();

    // A server whose certificate does not chain to the trusted roots (here the system's public
    // roots, not the local CA) is refused by the client before it shows its certificate.
    let untrusted = ping(tls_url(
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        &certificate,
    ))
    .await
    .unwrap_err();
    assert!(
        untrusted.contains("invalid peer certificate"),
        "{untrusted}"
    );
}

/// A client certificate and key (one PEM file) that signs itself, in a fresh directory.
fn self_signed_client_certificate() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test_support::unique("stranger"));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("client.key"), dir.join("client.crt"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=shop",
            "-addext",
            "extendedKeyUsage=clientAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {made:?}");
    let pem = dir.join("client.pem");
    let mut both = std::fs::read(&cert).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    pem
}
