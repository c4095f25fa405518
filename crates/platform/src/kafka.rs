//! Kafka clients' common configuration, and Kafka's part in readiness.
//!
//! [`client_config`] is where every Kafka client of the system starts: the bootstrap servers
//! and the security settings (TLS, SASL) of [`KafkaSettings`], so no client can connect without
//! them. Each client adds only what is its own (group, acks, timeouts).
//!
//! The readiness probe asks the cluster for its metadata every second and keeps the last answer
//! in a [`Condition`] named `kafka`, which [`crate::health::readiness`] lists with a
//! component's other dependencies. Sampling in the background (rather than asking on each
//! `/health/ready`) keeps readiness answers instant and bounded even while the broker hangs,
//! at the price of being up to one interval late.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};

use crate::health::{Condition, Dependency};
use crate::settings::{KafkaSettings, Secret};
use crate::shutdown::Shutdown;

/// The base configuration of a Kafka client: bootstrap servers, then each security setting
/// that is set (librdkafka's own default, plaintext, for those that are not).
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    let security = [
        ("security.protocol", settings.security_protocol.as_deref()),
        ("sasl.mechanism", settings.sasl_mechanism.as_deref()),
        ("sasl.username", settings.username.as_deref()),
        (
            "sasl.password",
            settings.password.as_ref().map(Secret::expose),
        ),
        ("ssl.ca.location", settings.ca_file.as_deref()),
    ];
    for (key, value) in security {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            config.set(key, value);
        }
    }
    config
}

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(2);

/// A metadata request to the cluster, repeated; its last answer is readiness's `kafka`.
pub struct KafkaProbe {
    client: Arc<BaseProducer>,
    condition: Condition,
}

impl KafkaProbe {
    /// Creates the client and marks Kafka as not yet checked (down) until the first answer.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let client: BaseProducer = client_config(settings)
            // Notice a returning broker within a second or two, not librdkafka's default 10 s.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .create()?;
        let condition = Condition::register("kafka");
        condition.set(Some("not checked yet".to_owned()));
        Ok(Self {
            client: Arc::new(client),
            condition,
        })
    }

    /// Asks for the cluster's metadata within [`TIMEOUT`].
    pub async fn check(&self) -> Dependency {
        let client = self.client.clone();
        let result = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(None, TIMEOUT)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    if m.brokers().is_empty() {
                        Err("no broker in the cluster metadata".to_owned())
                    } else {
                        Ok(())
                    }
                })
        })
        .await
        .unwrap_or_else(|e| Err(format!("probe task failed: {e}")));
        Dependency::from_result("kafka", result)
    }

    /// Probes every [`INTERVAL`] until shutdown, publishing each result for readiness.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.condition.set(self.check().await.error),
                () = shutdown.requested() => return,
            }
        }
    }
}

/// How long dropping a [`Closing`] consumer waits for librdkafka to close it.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A Kafka consumer whose close cannot hang the one who drops it. Dropping a consumer of a
/// group makes librdkafka leave the group: it revokes the member's partitions and waits for the
/// revocation to be served. A revocation that meets an assignment still being served (a member
/// closed right after it joined, or during a rebalance) can wait forever inside librdkafka, and
/// with it the thread that dropped the consumer: a service's shutdown, or a test's runtime.
/// So the consumer is closed on a thread of its own, waited for at most [`CLOSE_WAIT`]: a
/// normal close (a few milliseconds) still leaves the group before the process goes on, and
/// one that hangs is left behind.
pub struct Closing<C: Send + 'static> {
    consumer: Option<C>,
    wait: Duration,
}

impl<C: Send + 'static> Closing<C> {
    pub fn new(consumer: C) -> Self {
        Self::waiting(consumer, CLOSE_WAIT)
    }

    /// Waits `wait` instead of [`CLOSE_WAIT`] when dropped.
    pub fn waiting(consumer: C, wait: Duration) -> Self {
        Self {
            consumer: Some(consumer),
            wait,
        }
    }
}

impl<C: Send + 'static> std::ops::Deref for Closing<C> {
    type Target = C;

    fn deref(&self) -> &C {
        match &self.consumer {
            Some(consumer) => consumer,
            // Only `drop` takes it, and nothing derefs a value being dropped.
            None => unreachable!("a Closing consumer is used after its drop"),
        }
    }
}

impl<C: Send + 'static> Drop for Closing<C> {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let (closed, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".to_owned())
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        if spawned.is_ok() && wait.recv_timeout(self.wait).is_err() {
            tracing::warn!(
                waited = ?self.wait,
                "a Kafka consumer did not close in time and is left closing; the group sees it \
                 leave when its session times out"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets its flag when dropped, after `hold` (forever when `None`).
    struct SlowToClose {
        closed: Arc<std::sync::atomic::AtomicBool>,
        hold: Option<Duration>,
    }

    impl Drop for SlowToClose {
        fn drop(&mut self) {
            match self.hold {
                Some(hold) => std::thread::sleep(hold),
                None => std::thread::park(),
            }
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_close_in_time_is_waited_for_and_one_that_hangs_is_left_behind() {
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        drop(Closing::waiting(
            SlowToClose {
                closed: closed.clone(),
                hold: Some(Duration::from_millis(50)),
            },
            Duration::from_secs(5),
        ));
        assert!(
            closed.load(std::sync::atomic::Ordering::SeqCst),
            "not waited for"
        );

        let hung = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let began = std::time::Instant::now();
        drop(Closing::waiting(
            SlowToClose {
                closed: hung.clone(),
                hold: None,
            },
            Duration::from_millis(100),
        ));
        assert!(began.elapsed() < Duration::from_secs(5), "the drop hung");
        assert!(!hung.load(std::sync::atomic::Ordering::SeqCst));
    }

    fn plain() -> KafkaSettings {
        KafkaSettings {
            brokers: "127.0.0.1:9092".to_owned(),
            topic_prefix: String::new(),
            partitions: 2,
            replication: 1,
            min_insync_replicas: None,
            security_protocol: None,
            sasl_mechanism: None,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
        }
    }

    #[test]
    fn unset_security_leaves_librdkafka_on_plaintext() {
        let config = client_config(&plain());
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        for key in [
            "security.protocol",
            "sasl.mechanism",
            "sasl.username",
            "sasl.password",
            "ssl.ca.location",
        ] {
            assert_eq!(config.get(key), None, "{key}");
        }
    }

    #[test]
    fn every_security_setting_reaches_the_client() {
        let settings = KafkaSettings {
            security_protocol: Some("sasl_ssl".to_owned()),
            sasl_mechanism: Some("SCRAM-SHA-512".to_owned()),
            username: Some("order".to_owned()),
            password: Some(Secret::new("s3cret")),
            // An empty value (an exported but empty variable) counts as unset.
            ca_file: Some(" ".to_owned()),
            ..plain()
        };
        let config = client_config(&settings);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("order"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(config.get("ssl.ca.location"), None);
        assert_eq!(format!("{:?}", settings.password), "Some(***)");
    }

    #[test]
    fn the_password_file_is_read_into_the_password() {
        let file = std::env::temp_dir().join(format!("kafka-password-{}", std::process::id()));
        std::fs::write(&file, "from-a-file\n").unwrap();
        let mut settings = KafkaSettings {
            password_file: Some(file.display().to_string()),
            ..plain()
        };
        settings.read_password_file().unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            settings.password.as_ref().map(Secret::expose),
            Some("from-a-file")
        );

        settings.password_file = Some("/nonexistent/kafka-password".to_owned());
        let error = settings.read_password_file().unwrap_err().to_string();
        assert!(error.contains("SHOP_KAFKA__PASSWORD_FILE"), "{error}");
    }
}
