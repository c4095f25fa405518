//! Kafka as `./dev start kafka-secure` serves it: SASL_SSL with SCRAM-SHA-512 only, a server
//! certificate of the local CA in `.local/tls`, and ACLs that give each component's principal its
//! own topics and consumer groups (`kafka_secure_spec` in `./dev`). The ACLs name topics and
//! groups exactly, with the deployment's prefix in front, so each test asks `./dev kafka-acls`
//! for its own prefix's set and revokes it after.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::settings::{KafkaSettings, Secret};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{Value, json};
use test_support::stack::{Stack, item};
use uuid::Uuid;

use super::tls_dir;
use crate::common::SHOP;

const TIMEOUT: Duration = Duration::from_secs(20);

/// The node's client port (dev.env's `KAFKA_SECURE_PORT`).
fn brokers() -> String {
    let port = std::env::var("KAFKA_SECURE_PORT").unwrap_or_else(|_| "9094".to_owned());
    format!("127.0.0.1:{port}")
}

/// The node's controller port (dev.env's `KAFKA_SECURE_CONTROLLER_PORT`).
fn controller() -> String {
    let port = std::env::var("KAFKA_SECURE_CONTROLLER_PORT").unwrap_or_else(|_| "9095".to_owned());
    format!("127.0.0.1:{port}")
}

/// The password `./dev` made for `user` (`ensure_kafka_secrets`).
fn password_file(user: &str) -> String {
    let file = tls_dir().join(format!("kafka-{user}-password"));
    assert!(
        file.exists(),
        "{}: missing; `./dev start kafka-secure` (or `./dev test`) makes it",
        file.display()
    );
    file.display().to_string()
}

/// Settings of a client that logs in as `user` with `password`, over TLS verified against the
/// local CA, on the prefix `prefix`.
fn as_user(user: &str, password: &str, prefix: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers(),
        topic_prefix: prefix.to_owned(),
        security_protocol: Some("sasl_ssl".to_owned()),
        sasl_mechanism: Some("SCRAM-SHA-512".to_owned()),
        username: Some(user.to_owned()),
        password: Some(Secret::new(password)),
        password_file: None,
        ca_file: Some(tls_dir().join("ca.pem").display().to_string()),
        ..test_support::settings().kafka
    }
}

/// `user`'s settings with the password `./dev` made for it.
pub(super) fn principal(user: &str, prefix: &str) -> KafkaSettings {
    let mut settings = KafkaSettings {
        password_file: Some(password_file(user)),
        ..as_user(user, "", prefix)
    };
    settings.read_password_file().unwrap();
    settings
}

/// Runs `./dev kafka-acls ARGS`: the ACLs of a prefix, made or revoked as the node's admin.
fn acls(args: &[&str]) {
    let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dev");
    let output = Command::new(dev)
        .arg("kafka-acls")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "./dev kafka-acls {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A prefix of the test's own, with its ACLs; `revoke` takes them away.
pub(super) struct Prefix(pub(super) String);

impl Prefix {
    pub(super) fn granted() -> Self {
        let prefix = format!("{}.", test_support::unique("test"));
        acls(&[&prefix]);
        Self(prefix)
    }

    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }

    pub(super) async fn remove(self) {
        let topics: Vec<String> = messaging::topics::ALL
            .iter()
            .map(|t| self.topic(t))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let admin = platform::Settings {
            kafka: principal("admin", &self.0),
            ..test_support::settings()
        };
        test_support::delete_topics(&admin, &topics).await.unwrap();
        acls(&["--revoke", &self.0]);
    }
}

/// What librdkafka reports besides results: connection, TLS and authentication failures, as
/// errors and as `FAIL` log lines (a connection closed during the first request is only logged,
/// at level info).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn log(&self, _: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "FAIL" {
            self.0.lock().unwrap().push(format!("{fac}: {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// Asks for the cluster's metadata as `settings` say: `Ok` when the node answered, else the
/// errors librdkafka reported on the way.
async fn metadata(settings: KafkaSettings) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let errors = Errors::default();
        let client: BaseConsumer<Errors> = platform::kafka::client_config(&settings)
            .set_log_level(RDKafkaLogLevel::Info)
            .create_with_context(errors.clone())
            .unwrap();
        let error = match client.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // The errors reach the context as the application polls; the connection's own error
        // (not only "all brokers down") is the one that says why.
        let deadline = Instant::now() + Duration::from_secs(5);
        let said_why = |errors: &[String]| errors.iter().any(|e| e.starts_with("FAIL"));
        while !said_why(&errors.0.lock().unwrap()) && Instant::now() < deadline {
            let _ = client.poll(Duration::from_millis(100));
        }
        Err(format!("{error}; {}", errors.0.lock().unwrap().join("; ")))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn kafka_lets_in_only_clients_with_credentials_that_trust_its_ca() {
    let admin = principal("admin", "");
    metadata(admin.clone())
        .await
        .expect("admin, over verified TLS with its password, gets the metadata");

    // Plaintext to the SASL_SSL port: the node speaks TLS only, and closes the connection
    // without answering the client's first request (its API versions).
    let plain = KafkaSettings {
        security_protocol: None,
        sasl_mechanism: None,
        username: None,
        password: None,
        ca_file: None,
        ..admin.clone()
    };
    let refused = metadata(plain).await.unwrap_err();
    assert!(
        refused.contains("Disconnected") && refused.contains("APIVERSION_QUERY"),
        "{refused}"
    );

    // Verified TLS, a known user, a wrong password: authentication fails.
    let refused = metadata(as_user("order", "not-the-password", ""))
        .await
        .unwrap_err();
    assert!(refused.contains("Authentication failed"), "{refused}");

    // A client that trusts the system's public roots, not the local CA, refuses the node's
    // certificate before it sends any credential.
    let untrusted = KafkaSettings {
        ca_file: Some("/etc/ssl/certs/ca-certificates.crt".to_owned()),
        ..admin
    };
    let refused = metadata(untrusted).await.unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");

    // The controller listener wants a client certificate of the local CA: a TLS client that
    // trusts the node but has none is refused during the handshake.
    let no_certificate = KafkaSettings {
        brokers: controller(),
        security_protocol: Some("ssl".to_owned()),
        sasl_mechanism: None,
        username: None,
        password: None,
        ..principal("admin", "")
    };
    let refused = metadata(no_certificate).await.unwrap_err();
    assert!(refused.contains("bad certificate"), "{refused}");
}

/// Publishes one record to `topic` as `settings` say and waits for the broker's answer.
async fn produce(settings: &KafkaSettings, topic: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = platform::kafka::client_config(settings)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let record: FutureRecord<'_, str, str> = FutureRecord::to(topic).key("k").payload("{}");
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Joins `group` on `topic` as `settings` say and polls: `Ok` with the first record's payload,
/// or the first error, within [`TIMEOUT`].
async fn consume(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
) -> Result<Vec<u8>, KafkaError> {
    let consumer: BaseConsumer = platform::kafka::client_config(settings)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    use rdkafka::Message as _;
                    return Ok(message.payload().unwrap_or_default().to_vec());
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        panic!("no record and no error from {topic} within {TIMEOUT:?}")
    })
    .await
    .unwrap()
}

fn code(result: Result<impl std::fmt::Debug, KafkaError>) -> Option<RDKafkaErrorCode> {
    result.unwrap_err().rdkafka_error_code()
}

#[tokio::test]
async fn a_service_principal_reaches_only_its_own_topics_and_groups() {
    let prefix = Prefix::granted();
    let p = &prefix.0;
    messaging::topics::ensure(&principal("admin", p), &messaging::topics::ALL)
        .await
        .unwrap();
    let (payment, stock) = (principal("payment", p), principal("stock", p));
    let (payments, orders) = (prefix.topic("shop.payments"), prefix.topic("shop.orders"));
    let stock_topic = prefix.topic("shop.stock");

    // Its own: payment publishes payments and reads stock's facts in its group.
    produce(&payment, &payments).await.unwrap();
    produce(&stock, &stock_topic).await.unwrap();
    let read = consume(&payment, &format!("{p}payment"), &stock_topic).await;
    assert_eq!(read.unwrap(), b"{}");

    // Another's topic: payment may neither publish orders nor read them.
    assert_eq!(
        code(produce(&payment, &orders).await),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    assert_eq!(
        code(consume(&payment, &format!("{p}payment"), &orders).await),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // Another's group, on a topic payment may read: it may not join it.
    assert_eq!(
        code(consume(&payment, &format!("{p}order"), &stock_topic).await),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed)
    );
    // Nor may it make topics that are not its own.
    let other = prefix.topic("shop.catalog");
    let created = messaging::topics::ensure(&payment, &[contracts::topics::CATALOG]).await;
    assert!(created.is_err(), "payment created {other}");

    prefix.remove().await;
}

/// The whole saga, and the read models, with every component logged in to the SASL_SSL node as
/// its own principal, changed by configuration only (`SHOP_KAFKA__*`).
#[tokio::test]
async fn the_saga_completes_with_each_component_as_its_own_kafka_principal() {
    let prefix = Prefix::granted();
    let env = services_env(&prefix);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "projections", "gateway"],
        &env,
    )
    .await;
    stack.set_kafka(principal("admin", &prefix.0));

    let order = stack.place(Uuid::new_v4(), json!([item(1, 1)])).await;
    let id = order["orderId"].as_str().unwrap();
    let order = stack.settled(id, Duration::from_secs(30)).await;
    assert_eq!(order["status"], "completed");

    // The projections read the orders topic in their groups.
    let report = test_support::eventually(TIMEOUT, "the orders report to count it", || async {
        let report = stack.ops_get("/api/reports/orders").await;
        Ok((report["completed"] == 1).then_some(report))
    })
    .await
    .unwrap();
    assert_eq!(report["failed"], 0, "{report}");
    // The console, as its principal, reads every group's committed offsets.
    let lag = test_support::eventually(TIMEOUT, "payment's committed offsets", || async {
        let lag: Value = stack.ops_get("/api/ops/lag").await;
        let committed = lag.as_array().into_iter().flatten().any(|row| {
            row["group"] == "payment" && row["committed"].as_i64().is_some_and(|c| c > 0)
        });
        Ok(committed.then_some(lag))
    })
    .await;
    assert!(lag.is_ok(), "{lag:?}");

    stack.remove().await.unwrap();
    prefix.remove().await;
}

/// The settings that put every component on the SASL_SSL node as its own principal, on
/// `prefix`'s topics (per component: `COMPONENT:SHOP_…`, see `Stack::start_with`).
pub(super) fn services_env(prefix: &Prefix) -> Vec<(String, String)> {
    let ca = tls_dir().join("ca.pem").display().to_string();
    let brokers = brokers();
    let mut env: Vec<(String, String)> = [
        ("SHOP_KAFKA__TOPIC_PREFIX", prefix.0.as_str()),
        ("SHOP_KAFKA__BROKERS", &brokers),
        ("SHOP_KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
        ("SHOP_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512"),
        ("SHOP_KAFKA__CA_FILE", &ca),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    // The console runs in the gateway process.
    for (component, user) in [
        ("order", "order"),
        ("stock", "stock"),
        ("payment", "payment"),
        ("projections", "projections"),
        ("gateway", "console"),
    ] {
        env.push((format!("{component}:SHOP_KAFKA__USERNAME"), user.to_owned()));
        env.push((
            format!("{component}:SHOP_KAFKA__PASSWORD_FILE"),
            password_file(user),
        ));
    }
    env
}
