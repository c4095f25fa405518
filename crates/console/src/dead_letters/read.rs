//! Reading the dead-letter topic on demand: where each partition starts and ends
//! ([`Inner::window`]), and a bounded read of ranges of it ([`Scan`]).
//!
//! A read never joins a consumer group: it assigns itself the partitions at the offsets it
//! wants, so it needs no rebalance, commits nothing, and shows up in no group's lag. It ends at
//! the high watermark taken before it started: letters parked meanwhile wait for the next call.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use messaging::dead_letters::Record;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Error, Inner, KAFKA_TIMEOUT, LetterId};

/// A letter as read: the record and its timestamp.
pub(super) struct Raw {
    pub record: Record,
    /// The record's timestamp (when it was parked); 1970 if the record has none.
    pub parked_at: DateTime<Utc>,
}

impl Raw {
    pub fn id(&self) -> LetterId {
        LetterId {
            partition: self.record.partition,
            offset: self.record.offset,
        }
    }

    /// The order of listings: by the time parked, then by id; newest first is descending.
    pub fn sort_key(&self) -> (DateTime<Utc>, LetterId) {
        (self.parked_at, self.id())
    }

    /// The last header named `name` (as Kafka's own lookup, and `messaging::headers`, read
    /// a repeated one), as text; bytes that are not UTF-8 become U+FFFD.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let (_, value) = self.record.headers.iter().rev().find(|(k, _)| k == name)?;
        value.as_deref().map(String::from_utf8_lossy)
    }
}

/// One partition of the topic: its low and high watermarks, and where the read starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Partition {
    pub partition: i32,
    pub low: i64,
    pub start: i64,
    pub high: i64,
}

/// The partitions of the topic at the start of a call.
#[derive(Debug, Clone, Default)]
pub(super) struct Window {
    pub partitions: Vec<Partition>,
}

impl Window {
    /// Letters before the window's start: not read.
    pub fn unread(&self) -> u64 {
        (self.partitions.iter())
            .map(|p| u64::try_from(p.start.saturating_sub(p.low)).unwrap_or(0))
            .sum()
    }

    /// Letters in the window.
    pub fn letters(&self) -> u64 {
        (self.partitions.iter())
            .map(|p| u64::try_from(p.high.saturating_sub(p.start)).unwrap_or(0))
            .sum()
    }

    /// What a scan of the whole window reads: `(partition, start, end)`.
    pub fn ranges(&self) -> Vec<(i32, i64, i64)> {
        (self.partitions.iter())
            .map(|p| (p.partition, p.start, p.high))
            .collect()
    }
}

impl Inner {
    /// Every partition of the dead-letter topic with its watermarks, each window starting at
    /// most `per_partition` letters before the high watermark. A topic that does not exist yet
    /// has no partition.
    pub(super) async fn window(&self, per_partition: i64) -> Result<Window, Error> {
        let metadata = self.metadata.clone();
        let topic = self.topic.clone();
        let watermarks = tokio::task::spawn_blocking(move || {
            let found = metadata.fetch_metadata(Some(&topic), KAFKA_TIMEOUT)?;
            let partitions: Vec<i32> = (found.topics().iter())
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            partitions
                .into_iter()
                .map(|p| {
                    let (low, high) = metadata.fetch_watermarks(&topic, p, KAFKA_TIMEOUT)?;
                    Ok((p, low, high))
                })
                .collect::<Result<Vec<_>, KafkaError>>()
        })
        .await
        .map_err(|e| Error::Interrupted(e.to_string()))??;
        let partitions = watermarks
            .into_iter()
            .map(|(partition, low, high)| Partition {
                partition,
                low,
                start: high.saturating_sub(per_partition).max(low),
                high,
            })
            .collect();
        Ok(Window { partitions })
    }

    /// The record at `id`, if the topic holds it.
    pub(super) async fn read_at(&self, id: LetterId) -> Result<Option<Raw>, Error> {
        let window = self.window(i64::MAX).await?;
        let holds = (window.partitions.iter())
            .any(|p| p.partition == id.partition && (p.low..p.high).contains(&id.offset));
        if !holds {
            return Ok(None);
        }
        let end = id.offset.saturating_add(1);
        let mut scan = Scan::start(self, &[(id.partition, id.offset, end)])?;
        Ok(scan.next().await?.filter(|raw| raw.id() == id))
    }
}

/// A read of ranges of the dead-letter topic, record by record, in each partition's order.
pub(super) struct Scan {
    /// `None` when there is nothing to read.
    consumer: Option<StreamConsumer>,
    /// The end (exclusive) of each partition not read to its end yet.
    ends: HashMap<i32, i64>,
}

impl Scan {
    /// Starts reading `(partition, start, end)` ranges; empty ranges are left out.
    pub fn start(inner: &Inner, ranges: &[(i32, i64, i64)]) -> Result<Scan, Error> {
        if ranges.iter().all(|&(_, start, end)| start >= end) {
            return Ok(Scan {
                consumer: None,
                ends: HashMap::new(),
            });
        }
        let consumer: StreamConsumer = inner
            .client
            .clone()
            .set("group.id", &inner.reader_group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // The end of a partition is told as an event, so a partition whose last offsets
            // hold no record (none today, but a transactional writer's markers would) ends too.
            .set("enable.partition.eof", "true")
            // A start that retention removed meanwhile reads from the oldest letter left.
            .set("auto.offset.reset", "earliest")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for &(partition, start, end) in ranges {
            if start < end {
                assignment.add_partition_offset(&inner.topic, partition, Offset::Offset(start))?;
                ends.insert(partition, end);
            }
        }
        consumer.assign(&assignment)?;
        Ok(Scan {
            consumer: Some(consumer),
            ends,
        })
    }

    /// The next letter, or `None` once every range was read.
    pub async fn next(&mut self) -> Result<Option<Raw>, Error> {
        loop {
            let Some(consumer) = self.consumer.as_ref().filter(|_| !self.ends.is_empty()) else {
                return Ok(None);
            };
            let received = tokio::time::timeout(KAFKA_TIMEOUT, consumer.recv()).await;
            let message = match received {
                Err(_) => return Err(Error::Timeout(KAFKA_TIMEOUT)),
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    self.ends.remove(&partition);
                    continue;
                }
                Ok(Err(error)) => return Err(Error::Kafka(error)),
                Ok(Ok(message)) => message,
            };
            let partition = message.partition();
            let Some(&end) = self.ends.get(&partition) else {
                continue;
            };
            if message.offset().saturating_add(1) >= end {
                self.ends.remove(&partition);
            }
            if message.offset() >= end {
                continue;
            }
            let parked_at = (message.timestamp().to_millis())
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            return Ok(Some(Raw {
                record: Record::copy(&message),
                parked_at,
            }));
        }
    }
}

impl Drop for Scan {
    /// librdkafka closes a consumer that has a group id by polling until it is closed, which
    /// blocks: that happens on a blocking thread, not on one of the runtime's workers.
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}
