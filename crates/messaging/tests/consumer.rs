//! The consumer applies each message exactly once, whatever Kafka redelivers, and parks poison
//! messages in the dead-letter topic without stopping.

mod common;

use std::time::Duration;

use common::{EffectHandler, World, commit, drain, headers_of, message, produce, read_topic};
use contracts::headers as h;
use messaging::ConsumerConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use test_support::{eventually, unique};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_same_message_delivered_twice_is_applied_once_and_counted() {
    let world = World::new().await;
    let m = message("order-1", 1);
    let topic = world.topic(common::TOPIC);
    produce(
        &world.settings,
        &topic,
        "order-1",
        m.payload.as_bytes(),
        &headers_of(&m),
    )
    .await;
    produce(
        &world.settings,
        &topic,
        "order-1",
        m.payload.as_bytes(),
        &headers_of(&m),
    )
    .await;
    // A later message on the same partition: once it is applied, both copies were seen.
    let after = message("order-1", 2);
    produce(
        &world.settings,
        &topic,
        "order-1",
        after.payload.as_bytes(),
        &headers_of(&after),
    )
    .await;

    let consumer = world.start_consumer(&unique("c"));
    world
        .assert_applied_exactly_once(&[m.metadata.message_id, after.metadata.message_id], WAIT)
        .await;
    assert_eq!(world.effects().await.len(), 2);
    assert_eq!(consumer.stats.duplicates(), 1);
    assert_eq!(consumer.stats.processed(), 2);
    consumer.stop().await;
}

#[tokio::test]
async fn replaying_a_whole_topic_from_offset_zero_changes_nothing() {
    let world = World::new().await;
    let name = unique("c");
    let mut relay = world.relay();
    let ids = commit(world.pool(), &common::messages(300, 20)).await;
    assert_eq!(drain(&mut relay).await, 300);

    let first = world.start_consumer(&name);
    world.assert_applied_exactly_once(&ids, WAIT).await;
    let before = world.effects().await;
    first.stop().await;

    // Forget the group's offsets: the next member of the same group starts from offset 0.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &world.settings.kafka.brokers)
        .create()
        .unwrap();
    let group = format!("{}{name}", world.settings.kafka.topic_prefix);
    let deleted = admin
        .delete_groups(&[&group], &AdminOptions::new())
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");

    let replay = world.start_consumer(&name);
    let stats = replay.stats.clone();
    eventually(WAIT, "every message redelivered", || {
        let stats = stats.clone();
        async move { Ok((stats.duplicates() == 300).then_some(())) }
    })
    .await
    .unwrap();
    assert_eq!(replay.stats.processed(), 0);
    assert_eq!(world.effects().await, before);
    replay.stop().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_partition_goes_on() {
    let world = World::new().await;
    let topic = world.topic(common::TOPIC);
    let name = unique("c");
    // 1: no headers at all; 2: valid headers, a type nobody knows; 3: a good message.
    produce(&world.settings, &topic, "order-p", b"not json", &[]).await;
    let mut unknown = message("order-p", 2);
    unknown.message_type = "Bogus";
    let unknown_headers = headers_of(&unknown);
    produce(
        &world.settings,
        &topic,
        "order-p",
        unknown.payload.as_bytes(),
        &unknown_headers,
    )
    .await;
    let good = message("order-p", 3);
    produce(
        &world.settings,
        &topic,
        "order-p",
        good.payload.as_bytes(),
        &headers_of(&good),
    )
    .await;

    let consumer = world.start_consumer(&name);
    world
        .assert_applied_exactly_once(&[good.metadata.message_id], WAIT)
        .await;
    assert_eq!(world.effects().await.len(), 1);
    assert_eq!(consumer.stats.dead_lettered(), 2);

    let mut parked = read_topic(
        &world.settings,
        &world.topic(contracts::topics::DEAD_LETTERS),
        2,
        WAIT,
    )
    .await;
    parked.sort_by_key(|r| r.header(h::DEAD_LETTER_ORIGIN).map(str::to_owned));
    let [no_headers, bogus] = &parked[..] else {
        panic!("two dead letters: {parked:?}")
    };
    assert_eq!(
        no_headers.header(h::DEAD_LETTER_REASON),
        Some("missing header message-id")
    );
    assert_eq!(no_headers.payload.as_deref(), Some(&b"not json"[..]));
    assert_eq!(no_headers.key.as_deref(), Some("order-p"));
    assert_eq!(
        no_headers.header(h::DEAD_LETTER_CONSUMER),
        Some(name.as_str())
    );
    assert!(
        no_headers
            .header(h::DEAD_LETTER_ORIGIN)
            .unwrap()
            .starts_with(&format!("{topic}/"))
    );
    assert_eq!(
        bogus.header(h::DEAD_LETTER_REASON),
        Some("unknown message type Bogus")
    );
    for (key, value) in &unknown_headers {
        assert_eq!(
            bogus.header(key),
            Some(value.as_str()),
            "original header {key} kept"
        );
    }
    consumer.stop().await;
}

#[tokio::test]
async fn a_handler_failure_inside_a_batch_parks_only_that_message() {
    let world = World::new().await;
    let mut relay = world.relay();
    // Published before the consumer starts, so each partition's messages arrive as big batches.
    let mut batch = common::messages(400, 3);
    batch[200] = message("key-2", -1);
    let poison = batch[200].metadata.message_id;
    let ids = commit(world.pool(), &batch).await;
    assert_eq!(drain(&mut relay).await, 400);

    let consumer = world.start_consumer(&unique("c"));
    let good: Vec<_> = ids.iter().copied().filter(|id| *id != poison).collect();
    world.assert_applied_exactly_once(&good, WAIT).await;
    eventually(WAIT, "the poison message parked", || {
        let stats = consumer.stats.clone();
        async move { Ok((stats.dead_lettered() == 1).then_some(())) }
    })
    .await
    .unwrap();
    assert_eq!(world.effects().await.len(), 399);
    assert_eq!(consumer.stats.processed(), 399);
    consumer.stop().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_until_the_message_is_applied() {
    let world = World::new().await;
    let mut relay = world.relay();
    let ids = commit(world.pool(), &[message("order-t", 1)]).await;
    drain(&mut relay).await;

    let config = ConsumerConfig {
        retry_initial: Duration::from_millis(10),
        ..ConsumerConfig::new(unique("c"), &[common::TOPIC])
    };
    let consumer = world.start_consumer_with(config, EffectHandler::failing_transiently(3));
    world.assert_applied_exactly_once(&ids, WAIT).await;
    // The first failure rolls back the group transaction, which hands the message to the
    // one-by-one path at once; the next two are retried there, with backoff.
    assert_eq!(consumer.stats.retried(), 2);
    assert_eq!(consumer.stats.dead_lettered(), 0);
    consumer.stop().await;
}

#[tokio::test]
async fn after_a_graceful_stop_the_group_resumes_without_redelivery() {
    let world = World::new().await;
    let name = unique("c");
    let mut relay = world.relay();
    let first_ids = commit(world.pool(), &common::messages(50, 5)).await;
    drain(&mut relay).await;
    let first = world.start_consumer(&name);
    world.assert_applied_exactly_once(&first_ids, WAIT).await;
    first.stop().await;

    // The stop committed the offsets of everything applied: the next member starts after them.
    let more = commit(world.pool(), &common::messages(50, 5)).await;
    drain(&mut relay).await;
    let second = world.start_consumer(&name);
    world.assert_applied_exactly_once(&more, WAIT).await;
    assert_eq!(second.stats.duplicates(), 0);
    assert_eq!(second.stats.processed(), 50);
    second.stop().await;
}

/// Sixty messages of sixty keys, published: a backlog on every partition.
async fn backlog_on_every_partition(world: &World) -> Vec<uuid::Uuid> {
    let mut relay = world.relay();
    let messages: Vec<_> = (0..60).map(|n| message(&format!("order-{n}"), n)).collect();
    let ids = commit(world.pool(), &messages).await;
    drain(&mut relay).await;
    ids
}

/// At most `permits` transactions at once, and at most four messages from one partition each.
fn capped(permits: usize) -> ConsumerConfig {
    ConsumerConfig {
        max_concurrency: permits,
        max_batch: 4,
        ..ConsumerConfig::new(unique("c"), &[common::TOPIC])
    }
}

/// With one transaction at a time, the batches of partitions waiting their turn are committed
/// together: some transaction carries more messages than one partition's batch may hold.
#[tokio::test]
async fn waiting_partitions_batches_commit_in_one_transaction() {
    let world = World::new().await;
    let ids = backlog_on_every_partition(&world).await;
    let consumer =
        world.start_consumer_with(capped(1), EffectHandler::taking(Duration::from_millis(5)));
    world.assert_applied_exactly_once(&ids, WAIT).await;
    let largest: i64 = sqlx::query_scalar(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM effects GROUP BY txid) t",
    )
    .fetch_one(world.pool())
    .await
    .unwrap();
    assert!(
        largest > 4,
        "no transaction took more than one partition's batch: {largest}"
    );
    consumer.stop().await;
}

/// Partitions are many, transactions at once are few: with `max_concurrency` 1, six
/// partitions' backlogs are applied one transaction at a time, and all of them are applied.
/// With more permits, the same backlog is applied concurrently (so the check can see overlap).
#[tokio::test]
async fn transactions_at_once_are_capped_across_partitions() {
    for (permits, overlap_expected) in [(1, false), (6, true)] {
        let world = World::new().await;
        let ids = backlog_on_every_partition(&world).await;
        let handler = EffectHandler::taking(Duration::from_millis(5));
        let most_in_flight = handler.most_in_flight.clone();
        let consumer = world.start_consumer_with(capped(permits), handler);
        world.assert_applied_exactly_once(&ids, WAIT).await;
        let most = most_in_flight.load(std::sync::atomic::Ordering::SeqCst);
        if overlap_expected {
            assert!(most > 1, "{permits} permits: never more than one at once");
        } else {
            assert_eq!(most, 1, "{permits} permit: {most} at once");
        }
        consumer.stop().await;
    }
}
