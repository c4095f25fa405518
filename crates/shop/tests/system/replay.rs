//! I7: every message of the saga delivered a second time (the consumer groups reset to the
//! beginning of every topic) changes no order, no stock and no payment.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use uuid::Uuid;

use crate::common::invariants::{check, snapshot};
use crate::common::stack::{Stack, item};

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
pub(crate) async fn all_caught_up(stack: &Stack) {
    let brokers = test_support::settings().kafka.brokers;
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

#[tokio::test]
async fn replaying_every_topic_from_the_start_changes_nothing() {
    let mut stack = Stack::start().await;
    let rich = Uuid::new_v4();
    let mut ids = Vec::new();
    for i in 0..30 {
        let items = match i % 4 {
            0 => json!([item(3, 30)]),            // out of stock
            1 => json!([item(3, 23)]),            // declined: 10,350.00
            _ => json!([item(1, 1), item(2, 1)]), // completes: 65.00
        };
        let customer = if i % 4 == 1 { Uuid::new_v4() } else { rich };
        let order = stack.place(customer, items).await;
        ids.push(order["orderId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        stack.settled(id, Duration::from_secs(10)).await;
    }
    all_caught_up(&stack).await;
    let before = snapshot(&stack, &ids).await;
    check(&before);
    let outbox_before = outbox_rows(&stack).await;

    // Stop the services, forget where their groups were, and start them again: every message
    // of every topic is delivered a second time.
    for component in ["order", "stock", "payment"] {
        stack.stop(component).await;
    }
    let settings = test_support::settings();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .create()
        .unwrap();
    let groups: Vec<String> = GROUPS
        .iter()
        .map(|(g, _)| format!("{}{g}", stack.prefix))
        .collect();
    let group_refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    for result in admin
        .delete_groups(&group_refs, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
    for component in ["order", "stock", "payment"] {
        stack.spawn(component).await;
    }
    all_caught_up(&stack).await;

    let after = snapshot(&stack, &ids).await;
    assert_eq!(after, before, "a full replay changed state");
    assert_eq!(
        outbox_rows(&stack).await,
        outbox_before,
        "a replayed message produced a new message"
    );
}
