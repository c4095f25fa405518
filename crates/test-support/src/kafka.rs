//! Raw Kafka access for tests: publish a record that bypasses every outbox (to fake
//! redeliveries and hostile messages) and read a topic back from its beginning.

use std::time::Duration;

use anyhow::Context;
use platform::Settings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::unique;

/// A record as a test publishes it or reads it back.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// `None` lets the producer's partitioner choose.
    pub partition: Option<i32>,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A producer that sends records as they are, with no outbox and no relay.
pub struct RawProducer {
    producer: FutureProducer,
}

impl RawProducer {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let producer = platform::kafka::client_config(&settings.kafka)
            .set("message.max.bytes", "2000000")
            .create()
            .context("creating a test producer")?;
        Ok(Self { producer })
    }

    /// Publishes `record` to `topic` and waits for the broker's acknowledgement; returns the
    /// partition and offset it got.
    pub async fn send(&self, topic: &str, record: &Record) -> anyhow::Result<(i32, i64)> {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_str()),
            });
        }
        let mut out: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key.as_str());
        }
        if let Some(payload) = &record.payload {
            out = out.payload(payload.as_slice());
        }
        if let Some(partition) = record.partition {
            out = out.partition(partition);
        }
        let delivery = self
            .producer
            .send(out, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("publishing to {topic}"))?;
        Ok((delivery.partition, delivery.offset))
    }
}

/// Reads `topic` from its beginning with a fresh consumer group until `done` says the records
/// read so far are enough, or `timeout` passed; returns what it read either way, for the caller
/// to assert on (and to say what was missing).
pub async fn read_until(
    settings: &Settings,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> anyhow::Result<Vec<Record>> {
    let consumer: StreamConsumer = platform::kafka::client_config(&settings.kafka)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a test consumer")?;
    consumer.subscribe(&[topic])?;
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&records) {
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let message = message.with_context(|| format!("reading {topic}"))?;
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            partition: Some(message.partition()),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    Ok(records)
}

/// How many partitions `topic` has.
pub fn partitions(settings: &Settings, topic: &str) -> anyhow::Result<i32> {
    let consumer: rdkafka::consumer::BaseConsumer =
        platform::kafka::client_config(&settings.kafka).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let count = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    Ok(i32::try_from(count)?)
}
