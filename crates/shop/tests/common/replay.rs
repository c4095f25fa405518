//! I7 on a stack: the consumer groups caught up with their topics, and every message of the
//! saga delivered a second time (the groups deleted, so they start again from the beginning of
//! every topic) changing no order, no stock, no payment and no outbox.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use test_support::stack::{Stack, component_of};

use crate::common::invariants::{Snapshot, check, snapshot};

/// The consumers and the topics each reads.
const GROUPS: [(&str, &[&str]); 3] = [
    (
        "order",
        &[contracts::topics::STOCK, contracts::topics::PAYMENTS],
    ),
    (
        "stock",
        &[contracts::topics::ORDERS, contracts::topics::PAYMENTS],
    ),
    ("payment", &[contracts::topics::STOCK]),
];

/// Whether `group` has committed offsets at the end of each of its topics' partitions.
fn caught_up(brokers: &str, prefix: &str, group: &str, topics: &[&str]) -> anyhow::Result<bool> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{prefix}{group}"))
        .create()?;
    let timeout = Duration::from_secs(5);
    let mut list = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let topic = format!("{prefix}{topic}");
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        for partition in metadata.topics()[0].partitions() {
            let (_, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
            list.add_partition(&topic, partition.id());
            ends.push((topic.clone(), partition.id(), high));
        }
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    Ok(ends.iter().all(|(topic, partition, high)| {
        let offset = committed
            .find_partition(topic, *partition)
            .map(|e| e.offset());
        *high == 0 || offset == Some(Offset::Offset(*high))
    }))
}

/// Waits until every consumer group of the stack has committed the end of its topics.
pub async fn all_caught_up(stack: &Stack) {
    let brokers = stack.brokers().to_owned();
    test_support::eventually(
        Duration::from_secs(60),
        "consumers to reach the end of their topics",
        || async {
            for (group, topics) in GROUPS {
                if !caught_up(&brokers, &stack.prefix, group, topics)? {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .unwrap();
}

async fn outbox_rows(stack: &Stack) -> Vec<i64> {
    let mut counts = Vec::new();
    for component in ["order", "stock", "payment"] {
        let pool = stack.pool(component).await;
        counts.push(
            sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&pool)
                .await
                .unwrap(),
        );
    }
    counts
}

/// I1–I4 over `orders` (every order the stack saw, all settled), then I7: the processes
/// `services` (every instance of order, stock and payment) stop, their groups are forgotten,
/// and they start again, so every message of every topic is delivered a second time; the
/// state after equals the state before, and no new message was written. Returns the state.
pub async fn check_then_replay_everything(
    stack: &mut Stack,
    orders: &[String],
    services: &[&'static str],
) -> Snapshot {
    all_caught_up(stack).await;
    let before = snapshot(stack, orders).await;
    check(&before);
    let outbox_before = outbox_rows(stack).await;

    for service in services {
        stack.stop(service).await;
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", stack.brokers())
        .create()
        .unwrap();
    let groups: Vec<String> = GROUPS
        .iter()
        .filter(|(group, _)| services.iter().any(|s| component_of(s) == *group))
        .map(|(group, _)| format!("{}{group}", stack.prefix))
        .collect();
    let group_refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    for result in admin
        .delete_groups(&group_refs, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
    stack.spawn_all(services).await;
    all_caught_up(stack).await;

    let after = snapshot(stack, orders).await;
    assert_eq!(after, before, "a full replay changed state");
    assert_eq!(
        outbox_rows(stack).await,
        outbox_before,
        "a replayed message produced a new message"
    );
    after
}
