//! What a consumer reports about itself: its counters and the lag of its partitions.

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::{ClientContext, Statistics};

/// In-process counters of one consumer, mirrored by the `messages_*_total{consumer}` metrics.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub(super) processed: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) stuck: AtomicU64,
    pub(super) pauses: AtomicU64,
}

impl ConsumerStats {
    /// Messages applied (their inbox row committed).
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
    /// Messages skipped because their inbox row already existed.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Attempts that failed transiently and were retried.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Messages parked in the dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
    /// Times a partition was paused because its task fell behind (see the module docs).
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }
    /// Partitions stuck at the last check (see [`ConsumerConfig::stuck_after`]).
    pub fn stuck_partitions(&self) -> u64 {
        self.stuck.load(Ordering::Relaxed)
    }
}

pub(super) type KafkaConsumer = StreamConsumer<LagContext>;

/// Turns librdkafka's periodic statistics into `consumer_lag{consumer,topic,partition}`: the
/// messages of each assigned partition not yet processed (high watermark − stored offset, or
/// the committed offset before anything was stored here).
pub(super) struct LagContext {
    pub(super) consumer: String,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                let lag = if !p.desired {
                    0 // not assigned here (any more): another member reports it
                } else if p.consumer_lag_stored >= 0 {
                    p.consumer_lag_stored
                } else if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else {
                    continue; // nothing known yet
                };
                metrics::gauge!("consumer_lag",
                    "consumer" => self.consumer.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string())
                .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagContext {}
