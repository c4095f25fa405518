//! Kafka's part in readiness: a probe that asks the cluster for its metadata every second and
//! keeps the last answer in a [`Condition`] named `kafka`, which [`crate::health::readiness`]
//! lists with a component's other dependencies.
//!
//! Sampling in the background (rather than asking on each `/health/ready`) keeps readiness
//! answers instant and bounded even while the broker hangs, at the price of being up to one
//! interval late.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};

use crate::health::{Condition, Dependency};
use crate::settings::KafkaSettings;
use crate::shutdown::Shutdown;

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
        let client: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
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
