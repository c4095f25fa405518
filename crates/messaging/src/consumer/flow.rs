//! One partition's flow: the receive loop queues its records for the partition's task, pauses
//! the partition in librdkafka while the queue is full and resumes it at half, and the task
//! applies them in order; a task that stays on one batch too long is reported stuck.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use platform::shutdown::Shutdown;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::dead_letters::Record;

use super::Handler;
use super::envelope::Envelope;
use super::group_commit::Shared;
use super::stats::{ConsumerStats, KafkaConsumer};

/// How often partitions are checked for being stuck: often enough to notice within a quarter
/// of the threshold, at most once a second.
pub(super) fn check_interval(stuck_after: Duration) -> Duration {
    (stuck_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// A partition as the receive loop sees it: where its records go, and how its task is doing.
pub(super) struct Partition {
    pub(super) sender: mpsc::UnboundedSender<Envelope>,
    pub(super) flow: Arc<Flow>,
}

/// A partition's queue and progress, shared by the receive loop and the partition's task.
pub(super) struct Flow {
    kafka_topic: String,
    partition: i32,
    /// Records queued at which the partition is paused; resumed at half that.
    pause_at: usize,
    state: std::sync::Mutex<FlowState>,
}

#[derive(Default)]
pub(super) struct FlowState {
    /// Records sent to the task and not yet taken by it.
    queued: usize,
    /// Whether this consumer paused the partition in librdkafka.
    paused: bool,
    /// Since when the task has been on its current batch; `None` while it waits for records.
    busy_since: Option<Instant>,
    /// Whether the last check found it stuck.
    stuck: bool,
}

impl Flow {
    pub(super) fn new(record: &Record, pause_at: usize) -> Self {
        Self {
            kafka_topic: record.kafka_topic.clone(),
            partition: record.partition,
            pause_at,
            state: std::sync::Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FlowState> {
        // Held only for a few assignments and a pause or resume request: a panic cannot leave
        // the state half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn partition_list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.kafka_topic, self.partition);
        list
    }

    /// One more record queued for the task; pauses the partition when the queue is full.
    pub(super) fn queued(&self, kafka: &KafkaConsumer, stats: &ConsumerStats) {
        let mut state = self.state();
        state.queued = state.queued.saturating_add(1);
        if state.queued >= self.pause_at && !state.paused {
            match kafka.pause(&self.partition_list()) {
                Ok(()) => {
                    state.paused = true;
                    stats.pauses.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                        queued = state.queued, "partition paused");
                }
                // Revoked meanwhile: nothing more comes from it anyway. Otherwise the next
                // record tries again.
                Err(e) => tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                    error = %e, "pausing the partition failed"),
            }
        }
    }

    /// The task took `n` records; resumes the partition once half of its queue is free.
    pub(super) fn taken(&self, kafka: &KafkaConsumer, n: usize) {
        let mut state = self.state();
        state.queued = state.queued.saturating_sub(n);
        if state.paused && state.queued <= self.pause_at / 2 {
            // A failure means the partition was revoked: a new assignment starts unpaused.
            if let Err(e) = kafka.resume(&self.partition_list()) {
                tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                    error = %e, "resuming the partition failed");
            }
            state.paused = false;
            tracing::debug!(topic = %self.kafka_topic, partition = self.partition,
                "partition resumed");
        }
    }

    pub(super) fn busy(&self, busy: bool) {
        self.state().busy_since = busy.then(Instant::now);
    }
}

/// Applies one partition's messages in order, in micro-batches, until the channel closes or
/// shutdown is requested.
pub(super) async fn partition_task<H: Handler>(
    shared: Arc<Shared<H>>,
    kafka: Arc<platform::kafka::Closing<KafkaConsumer>>,
    flow: Arc<Flow>,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    mut shutdown: Shutdown,
) {
    let max = shared.config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max);
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.requested() => return,
            first = rx.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        flow.taken(&kafka, batch.len());
        flow.busy(true);
        let outcome = shared
            .process(std::mem::take(&mut batch), &kafka, &mut shutdown)
            .await;
        flow.busy(false);
        if outcome.is_err() {
            return;
        }
    }
}

impl<H: Handler> Shared<H> {
    /// Marks the partitions whose task has been on one batch for longer than `stuck_after`:
    /// the gauge, the stats and readiness.
    pub(super) fn check_stuck(&self, partitions: &HashMap<(String, i32), Partition>) {
        let threshold = self.config.stuck_after;
        let mut problems = Vec::new();
        for partition in partitions.values() {
            let flow = &partition.flow;
            let mut state = flow.state();
            let busy_for = state.busy_since.map(|since| since.elapsed());
            let stuck = busy_for.is_some_and(|busy| busy >= threshold);
            if stuck != state.stuck {
                state.stuck = stuck;
                if stuck {
                    tracing::warn!(consumer = %self.config.name, topic = %flow.kafka_topic,
                        partition = flow.partition, ?busy_for, "partition stuck");
                } else {
                    tracing::info!(consumer = %self.config.name, topic = %flow.kafka_topic,
                        partition = flow.partition, "partition moving again");
                }
            }
            drop(state);
            metrics::gauge!("consumer_partition_stuck",
                "consumer" => self.config.name.clone(),
                "topic" => flow.kafka_topic.clone(),
                "partition" => flow.partition.to_string())
            .set(if stuck { 1.0 } else { 0.0 });
            if let (true, Some(busy)) = (stuck, busy_for) {
                problems.push(format!(
                    "consumer {} is stuck on partition {} of {} for {} s",
                    self.config.name,
                    flow.partition,
                    flow.kafka_topic,
                    busy.as_secs()
                ));
            }
        }
        self.stats
            .stuck
            .store(problems.len() as u64, Ordering::Relaxed);
        self.readiness
            .set((!problems.is_empty()).then(|| problems.join("; ")));
    }
}
