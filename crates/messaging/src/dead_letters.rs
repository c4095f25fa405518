//! Parking poison records in `{prefix}shop.dead-letters`, for every reader of the system's
//! topics: the services' consumers ([`crate::consumer`]) and the projections.
//!
//! A dead letter is the original record (key, payload, headers) plus three headers:
//! `dead-letter-reason` (why it was parked), `dead-letter-consumer` (who parked it) and
//! `dead-letter-origin` (`topic/partition/offset`). [`DeadLetters::park`] returns only once the
//! broker acknowledged it, retrying while Kafka is unavailable, so a reader stores the record's
//! offset only after that: a crash in between parks the record again (at least once).
//!
//! Readers publish dead letters themselves rather than through an outbox: a dead letter is an
//! operational record, not a fact of the domain, and a poison payload may not even be JSON.

use std::time::Duration;

use contracts::headers as h;
use platform::settings::KafkaSettings;
use platform::shutdown::Shutdown;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::backoff::Backoff;

/// A record received from Kafka, copied out of librdkafka so that it outlives the poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The Kafka topic, with the deployment's prefix.
    pub kafka_topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// In the record's order; a header may occur more than once.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn copy(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|hd| (hd.key.to_owned(), hd.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            kafka_topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// `topic/partition/offset`, the `dead-letter-origin` header.
    pub fn origin(&self) -> String {
        format!("{}/{}/{}", self.kafka_topic, self.partition, self.offset)
    }
}

/// Shutdown was requested before the broker acknowledged the dead letter: the record's offset
/// must not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// The dead-letter publisher of one reader (consumer or projection).
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    /// The `dead-letter-consumer` header and the `consumer` label of
    /// `messages_dead_lettered_total`.
    consumer: String,
    retry_initial: Duration,
    retry_max: Duration,
}

impl DeadLetters {
    /// A publisher to `{prefix}shop.dead-letters` for the reader named `consumer`. Registers
    /// `messages_dead_lettered_total{consumer}` at 0, so that an alert on its increase sees the
    /// first dead letter.
    pub fn new(
        kafka: &KafkaSettings,
        consumer: &str,
        retry_initial: Duration,
        retry_max: Duration,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = platform::kafka::client_config(kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .create()?;
        metrics::counter!("messages_dead_lettered_total", "consumer" => consumer.to_owned())
            .increment(0);
        Ok(Self {
            producer,
            topic: format!("{}{}", kafka.topic_prefix, contracts::topics::DEAD_LETTERS),
            consumer: consumer.to_owned(),
            retry_initial,
            retry_max,
        })
    }

    /// Publishes `record` with `reason` and waits for the broker's acknowledgement, retrying
    /// with backoff while Kafka is unavailable; counts it in `messages_dead_lettered_total`.
    pub async fn park(
        &self,
        record: &Record,
        reason: &str,
        shutdown: &mut Shutdown,
    ) -> Result<(), Stopped> {
        let origin = record.origin();
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 3);
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_deref(),
                });
            }
            let headers = headers
                .insert(text_header(h::DEAD_LETTER_REASON, reason))
                .insert(text_header(h::DEAD_LETTER_CONSUMER, &self.consumer))
                .insert(text_header(h::DEAD_LETTER_ORIGIN, &origin));
            let mut out: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = &record.key {
                out = out.key(key.as_slice());
            }
            if let Some(payload) = &record.payload {
                out = out.payload(payload.as_slice());
            }
            let error = match self.producer.send_result(out) {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => {
                        metrics::counter!("messages_dead_lettered_total", "consumer" => self.consumer.clone())
                            .increment(1);
                        tracing::warn!(consumer = %self.consumer, %origin, %reason,
                            "message parked in the dead-letter topic");
                        return Ok(());
                    }
                    Ok(Err((e, _))) => e,
                    Err(_) => KafkaError::Canceled,
                },
                Err((e, _)) => e,
            };
            let delay = backoff.next_delay();
            tracing::warn!(consumer = %self.consumer, %origin, error = %error, ?delay,
                "dead-letter publish failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.requested() => return Err(Stopped),
            }
        }
    }
}

fn text_header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value.as_bytes()),
    }
}
