//! Consumer lag per group and partition, in messages and in seconds, read from Kafka itself.
//!
//! For each consumer group of the system and each partition of the topics it reads: the offset
//! the group committed, the partition's end (high watermark), their difference in messages, and
//! the age of the first record not yet committed, in seconds: how far behind the group is in
//! time, which is what a customer waiting on an order feels. Committed offsets trail the
//! consumers' progress by their commit interval (a few seconds), so a small lag on a busy
//! partition is normal; a growing one is not.
//!
//! The groups and their topics are the services' (`{prefix}{consumer}`); `crates/shop`'s
//! boundary tests check this table against the services' own definitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use contracts::topics;
use platform::settings::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Message as _, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

/// Each consumer group of the system (without the deployment's prefix) and the topics it reads.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("order", &[topics::STOCK, topics::PAYMENTS, topics::CATALOG]),
    ("stock", &[topics::ORDERS, topics::PAYMENTS]),
    ("payment", &[topics::STOCK]),
    ("projections-redis", &[topics::ORDERS]),
    ("projections-mongodb", &[topics::ORDERS]),
];

/// How long one reading waits for Kafka's answers.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The lag of one group on one partition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// The group without the deployment's prefix: the consumer's name.
    pub group: String,
    /// The topic without the deployment's prefix.
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will read (committed); `None` before it committed any.
    pub committed: Option<i64>,
    /// The partition's end: the offset the next record will get.
    pub end: i64,
    /// Records not yet committed by the group.
    pub messages: i64,
    /// Age of the oldest of them; 0 when there is none, `None` when it could not be read.
    pub seconds: Option<f64>,
}

/// Reads lag from Kafka: one client per group (to read its committed offsets, without joining
/// it) and one to read watermarks and the records at the committed offsets. Cheap to clone.
#[derive(Clone)]
pub struct LagReader {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    groups: Vec<(&'static str, &'static [&'static str], BaseConsumer)>,
    /// Serialised: it assigns partitions to read one record from each.
    reader: std::sync::Mutex<BaseConsumer>,
}

impl LagReader {
    pub fn new(kafka: &KafkaSettings) -> anyhow::Result<Self> {
        let config = |group: &str| {
            let mut config = platform::kafka::client_config(kafka);
            config
                .set("group.id", format!("{}{group}", kafka.topic_prefix))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false");
            config
        };
        let groups = GROUPS
            .iter()
            .map(|(group, topics)| Ok((*group, *topics, config(group).create()?)))
            .collect::<Result<Vec<_>, rdkafka::error::KafkaError>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                prefix: kafka.topic_prefix.clone(),
                groups,
                // librdkafka wants a group for an assignment, though this client never joins
                // it nor commits: a name of its own, shared by no consumer.
                reader: std::sync::Mutex::new(config("console-lag-reader").create()?),
            }),
        })
    }

    /// Every group's lag on every partition of its topics, by group, topic and partition. The
    /// calls to Kafka block, so they run on the blocking pool.
    pub async fn read(&self) -> anyhow::Result<Vec<PartitionLag>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.read()).await?
    }
}

impl Inner {
    fn read(&self) -> anyhow::Result<Vec<PartitionLag>> {
        let reader = self
            .reader
            .lock()
            .map_err(|_| anyhow::anyhow!("the lag reader panicked before"))?;
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        let mut lags = Vec::new();
        for (group, group_topics, consumer) in &self.groups {
            let mut wanted = TopicPartitionList::new();
            for topic in *group_topics {
                let kafka_topic = format!("{}{topic}", self.prefix);
                let metadata = reader.fetch_metadata(Some(&kafka_topic), TIMEOUT)?;
                for t in metadata.topics() {
                    for p in t.partitions() {
                        wanted.add_partition(&kafka_topic, p.id());
                    }
                }
            }
            let committed = consumer.committed_offsets(wanted, TIMEOUT)?;
            for element in committed.elements() {
                let key = (element.topic().to_owned(), element.partition());
                let end = match ends.get(&key) {
                    Some(end) => *end,
                    None => {
                        let (_, high) = reader.fetch_watermarks(
                            element.topic(),
                            element.partition(),
                            TIMEOUT,
                        )?;
                        ends.insert(key, high);
                        high
                    }
                };
                let committed = match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                let messages = end.saturating_sub(committed.unwrap_or(0)).max(0);
                lags.push(PartitionLag {
                    group: (*group).to_owned(),
                    topic: element
                        .topic()
                        .strip_prefix(&self.prefix)
                        .unwrap_or(element.topic())
                        .to_owned(),
                    partition: element.partition(),
                    committed,
                    end,
                    messages,
                    seconds: (messages == 0).then_some(0.0),
                });
            }
        }
        self.ages(&reader, &mut lags);
        Ok(lags)
    }

    /// Fills in the age of the first uncommitted record of each lagging partition: the record
    /// at the group's committed offset, read on its own (a distinct offset at a time, within
    /// one overall timeout: a reading never waits on Kafka for long).
    fn ages(&self, reader: &BaseConsumer, lags: &mut [PartitionLag]) {
        let mut at: HashMap<(String, i32, i64), Vec<usize>> = HashMap::new();
        for (i, lag) in lags.iter().enumerate() {
            if lag.messages > 0 {
                let topic = format!("{}{}", self.prefix, lag.topic);
                let key = (topic, lag.partition, lag.committed.unwrap_or(0));
                at.entry(key).or_default().push(i);
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        let deadline = std::time::Instant::now() + TIMEOUT;
        for ((topic, partition, offset), indices) in at {
            let mut one = TopicPartitionList::new();
            if one
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .is_err()
                || reader.assign(&one).is_err()
            {
                continue;
            }
            let millis = loop {
                if std::time::Instant::now() >= deadline {
                    break None;
                }
                match reader.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) if message.offset() >= offset => {
                        break match message.timestamp() {
                            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                            Timestamp::NotAvailable => None,
                        };
                    }
                    _ => {}
                }
            };
            if let Some(t) = millis {
                let seconds = now.saturating_sub(t).max(0) as f64 / 1000.0;
                for i in indices {
                    if let Some(lag) = lags.get_mut(i) {
                        lag.seconds = Some(seconds);
                    }
                }
            }
        }
        let _ = reader.unassign();
    }
}
