//! Creating the system's topics before anything uses them. A consumer subscribed to a topic that
//! does not exist yet would only notice it at its next metadata refresh, and a broker's
//! auto-created topics get whatever partition count it defaults to.
//!
//! The catalog topic is compacted: it is keyed by product and each record carries the whole
//! product, so the latest record of each key is all a new reader needs, and the topic never
//! loses a product to retention.

use std::time::Duration;

use platform::settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Every topic of the system, by logical name.
pub const ALL: [&str; 5] = [
    contracts::topics::ORDERS,
    contracts::topics::STOCK,
    contracts::topics::PAYMENTS,
    contracts::topics::DEAD_LETTERS,
    contracts::topics::CATALOG,
];

/// Where every reader parks the records it cannot process ([`crate::dead_letters`]): one of the
/// topics each service touches.
pub const DEAD_LETTERS: &str = contracts::topics::DEAD_LETTERS;

/// The topic-level configuration a topic is created with: `cleanup.policy` and its value.
pub fn config(name: &str) -> &'static [(&'static str, &'static str)] {
    if name == contracts::topics::CATALOG {
        &[("cleanup.policy", "compact")]
    } else {
        &[]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka admin request failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Creates the `{prefix}{name}` topics that do not exist yet, each with its [`config`], the
/// configured partitions and replication, and `min.insync.replicas` when the settings name it;
/// existing ones are left alone.
pub async fn ensure(kafka: &KafkaSettings, names: &[&str]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        platform::kafka::client_config(kafka).create()?;
    let full: Vec<String> = names
        .iter()
        .map(|n| format!("{}{n}", kafka.topic_prefix))
        .collect();
    let min_insync = kafka.min_insync_replicas.map(|n| n.to_string());
    let new: Vec<NewTopic<'_>> = (names.iter().zip(&full))
        .map(|(name, t)| {
            let topic = config(name).iter().fold(
                NewTopic::new(
                    t,
                    kafka.partitions,
                    TopicReplication::Fixed(kafka.replication),
                ),
                |topic, (key, value)| topic.set(key, value),
            );
            match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    Ok(())
}
