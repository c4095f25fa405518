//! Kafka's part in readiness: a probe that asks the cluster for its metadata every second and
//! keeps the last answer, which [`crate::health::readiness`] adds to a component's dependencies.
//!
//! Sampling in the background (rather than asking on each `/health/ready`) keeps readiness
//! answers instant and bounded even while the broker hangs, at the price of being up to one
//! interval late.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};

use crate::health::Dependency;
use crate::settings::KafkaSettings;
use crate::shutdown::Shutdown;

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(2);

/// The last probe result of this process; `None` if it runs no probe (it needs no Kafka).
static LATEST: Mutex<Option<Dependency>> = Mutex::new(None);

/// The last state of Kafka seen by this process's probe, if it runs one.
pub fn latest() -> Option<Dependency> {
    LATEST.lock().ok().and_then(|l| l.clone())
}

fn store(dependency: Dependency) {
    if let Ok(mut latest) = LATEST.lock() {
        *latest = Some(dependency);
    }
}

/// A metadata request to the cluster, repeated.
pub struct KafkaProbe {
    client: Arc<BaseProducer>,
}

impl KafkaProbe {
    /// Creates the client and marks Kafka as not yet checked (down) until the first answer.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let client: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            // Notice a returning broker within a second or two, not librdkafka's default 10 s.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .create()?;
        store(Dependency::from_result(
            "kafka",
            Err::<(), _>("not checked yet"),
        ));
        Ok(Self {
            client: Arc::new(client),
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
                _ = tick.tick() => store(self.check().await),
                () = shutdown.requested() => return,
            }
        }
    }
}
