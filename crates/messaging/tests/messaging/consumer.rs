//! The consumer applies each message exactly once, whatever Kafka redelivers, and parks poison
//! messages in the dead-letter topic without stopping: a panic, a violated constraint, a
//! failure on every attempt; one stuck partition holds back no other.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    EffectHandler, Record, World, commit, drain, headers_of, message, produce, produce_to,
    read_topic,
};
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
    world.produce(&m).await;
    world.produce(&m).await;
    // A later message on the same partition: once it is applied, both copies were seen.
    let after = message("order-1", 2);
    world.produce(&after).await;

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
    world.produce(&unknown).await;
    let good = message("order-p", 3);
    world.produce(&good).await;

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
    for (key, value) in &headers_of(&unknown) {
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

fn dead_letter_topic(world: &World) -> String {
    world.topic(contracts::topics::DEAD_LETTERS)
}

async fn wait_for_dead_letters(consumer: &common::Running, n: u64) {
    let stats = consumer.stats.clone();
    eventually(WAIT, "the dead letters", || {
        let stats = stats.clone();
        async move { Ok((stats.dead_lettered() >= n).then_some(())) }
    })
    .await
    .expect("dead-lettered in time");
}

/// The dead letter of the message with `id` among `records`.
fn parked(records: &[Record], id: uuid::Uuid) -> &Record {
    let id = id.to_string();
    records
        .iter()
        .find(|r| r.header(h::MESSAGE_ID) == Some(id.as_str()))
        .unwrap_or_else(|| panic!("no dead letter for {id} in {records:?}"))
}

#[tokio::test]
async fn a_handler_that_panics_parks_its_message_and_every_partition_goes_on() {
    let world = World::new().await;
    let topic = world.topic(common::TOPIC);
    let before = message("order-a", 1);
    let boom = message("order-a", 666);
    let after = message("order-a", 2);
    let other = message("order-b", 3);
    produce_to(&world.settings, &topic, 0, &[&before, &boom, &after]).await;
    produce_to(&world.settings, &topic, 1, &[&other]).await;

    let handler = EffectHandler::panicking_on(666);
    let consumer =
        world.start_consumer_with(ConsumerConfig::new(unique("c"), &[common::TOPIC]), handler);
    let applied = [&before, &after, &other].map(|m| m.metadata.message_id);
    world.assert_applied_exactly_once(&applied, WAIT).await;
    wait_for_dead_letters(&consumer, 1).await;

    let records = read_topic(&world.settings, &dead_letter_topic(&world), 1, WAIT).await;
    let parked = parked(&records, boom.metadata.message_id);
    assert_eq!(
        parked.header(h::DEAD_LETTER_REASON),
        Some("handler panicked: cannot handle n = 666")
    );
    let origin = format!("{topic}/0/1");
    assert_eq!(parked.header(h::DEAD_LETTER_ORIGIN), Some(origin.as_str()));
    assert!(!consumer.task.is_finished(), "the consumer stopped");

    // Still consuming the partition the panic happened on.
    let later = message("order-a", 4);
    produce_to(&world.settings, &topic, 0, &[&later]).await;
    world
        .assert_applied_exactly_once(&[later.metadata.message_id], WAIT)
        .await;
    assert_eq!(world.effects().await.len(), 4);
    assert_eq!(consumer.stats.dead_lettered(), 1);
    consumer.stop().await;
}

#[tokio::test]
async fn a_message_that_breaks_a_constraint_or_overflows_is_parked_after_one_attempt() {
    let world = World::new().await;
    let topic = world.topic(common::TOPIC);
    let first = message("order-c", 1);
    let breaks_check = message("order-c", 1_000_000);
    let overflows = message("order-c", 3_000_000_000);
    let last = message("order-c", 2);
    produce_to(
        &world.settings,
        &topic,
        0,
        &[&first, &breaks_check, &overflows, &last],
    )
    .await;

    let config = ConsumerConfig {
        retry_initial: Duration::from_millis(10),
        ..ConsumerConfig::new(unique("c"), &[common::TOPIC])
    };
    let consumer = world.start_consumer_with(config, EffectHandler::default());
    world
        .assert_applied_exactly_once(&[first.metadata.message_id, last.metadata.message_id], WAIT)
        .await;
    wait_for_dead_letters(&consumer, 2).await;
    assert_eq!(consumer.stats.retried(), 0, "a data error was retried");

    let records = read_topic(&world.settings, &dead_letter_topic(&world), 2, WAIT).await;
    let check = parked(&records, breaks_check.metadata.message_id)
        .header(h::DEAD_LETTER_REASON)
        .unwrap();
    assert!(check.contains("SQLSTATE 23514"), "{check}");
    let overflow = parked(&records, overflows.metadata.message_id)
        .header(h::DEAD_LETTER_REASON)
        .unwrap();
    assert!(overflow.contains("SQLSTATE 22003"), "{overflow}");
    assert_eq!(world.effects().await.len(), 2);
    consumer.stop().await;
}

/// Whether this process's readiness names `consumer` as stuck.
fn reported_stuck(consumer: &str) -> bool {
    platform::health::conditions()
        .iter()
        .any(|d| !d.up && d.error.as_deref().is_some_and(|e| e.contains(consumer)))
}

#[tokio::test]
async fn a_message_failing_on_every_attempt_is_parked_after_the_bound_and_reported_stuck_meanwhile()
{
    let world = World::new().await;
    let topic = world.topic(common::TOPIC);
    let stalled = message("order-s", 13);
    let next = message("order-s", 14);
    produce_to(&world.settings, &topic, 0, &[&stalled, &next]).await;

    let name = unique("c");
    let config = ConsumerConfig {
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(300),
        max_attempts: 8,
        stuck_after: Duration::from_millis(400),
        ..ConsumerConfig::new(name.clone(), &[common::TOPIC])
    };
    let handler = EffectHandler::stalling_on(13, Arc::new(AtomicBool::new(true)));
    let consumer = world.start_consumer_with(config, handler);

    // While it retries: stuck, and not ready.
    let stats = consumer.stats.clone();
    eventually(WAIT, "the partition reported stuck", || {
        let (stats, name) = (stats.clone(), name.clone());
        async move {
            let unready = platform::health::readiness(&[]).status() == 503;
            Ok((stats.stuck_partitions() == 1 && reported_stuck(&name) && unready).then_some(()))
        }
    })
    .await
    .unwrap();
    assert_eq!(consumer.stats.dead_lettered(), 0, "parked before the bound");

    // Then parked after the bounded attempts, and the partition goes on.
    world
        .assert_applied_exactly_once(&[next.metadata.message_id], WAIT)
        .await;
    assert_eq!(consumer.stats.dead_lettered(), 1);
    // Eight failed attempts alone (after the failed batch): seven retries, then parked.
    assert_eq!(consumer.stats.retried(), 7);
    let records = read_topic(&world.settings, &dead_letter_topic(&world), 1, WAIT).await;
    let reason = parked(&records, stalled.metadata.message_id)
        .header(h::DEAD_LETTER_REASON)
        .unwrap();
    assert!(reason.contains("stalled on purpose"), "{reason}");
    assert!(reason.contains("gave up after 8 attempts"), "{reason}");
    eventually(WAIT, "the partition no longer stuck", || {
        let (stats, name) = (stats.clone(), name.clone());
        async move { Ok((stats.stuck_partitions() == 0 && !reported_stuck(&name)).then_some(())) }
    })
    .await
    .unwrap();
    consumer.stop().await;
}

/// A partition stuck on one message while a flood piles up behind it is paused; the other
/// partitions go on, and once the message passes, the flood is applied in order.
#[tokio::test]
async fn a_stuck_partition_with_a_flood_behind_it_does_not_hold_back_the_others() {
    let world = World::new().await;
    let topic = world.topic(common::TOPIC);
    let flood: Vec<_> = (13..60).map(|n| message("flood", n)).collect();
    let refs: Vec<_> = flood.iter().collect();
    produce_to(&world.settings, &topic, 0, &refs).await;

    let stall = Arc::new(AtomicBool::new(true));
    let config = ConsumerConfig {
        max_batch: 2,
        max_concurrency: 2,
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        max_attempts: u32::MAX,
        max_retry_time: Duration::from_secs(600),
        ..ConsumerConfig::new(unique("c"), &[common::TOPIC])
    };
    let handler = EffectHandler::stalling_on(13, stall.clone());
    let consumer = world.start_consumer_with(config, handler);
    let stats = consumer.stats.clone();
    eventually(WAIT, "the flood's first message retried", || {
        let stats = stats.clone();
        async move { Ok((stats.retried() >= 3).then_some(())) }
    })
    .await
    .unwrap();

    // Published only now: a receive loop that waits for the stuck partition never sees them.
    let others: Vec<_> = (0..10).map(|n| message(&format!("other-{n}"), n)).collect();
    let refs: Vec<_> = others.iter().collect();
    produce_to(&world.settings, &topic, 1, &refs).await;
    let ids: Vec<_> = others.iter().map(|m| m.metadata.message_id).collect();
    world.assert_applied_exactly_once(&ids, WAIT).await;
    let flooded = |effects: &[common::Effect]| -> Vec<i64> {
        effects
            .iter()
            .filter(|e| e.key.as_deref() == Some("flood"))
            .map(|e| e.n)
            .collect()
    };
    assert!(flooded(&world.effects().await).is_empty());
    assert!(
        consumer.stats.pauses() > 0,
        "the flooded partition was never paused"
    );

    stall.store(false, Ordering::SeqCst);
    let ids: Vec<_> = flood.iter().map(|m| m.metadata.message_id).collect();
    world.assert_applied_exactly_once(&ids, WAIT).await;
    let applied = flooded(&world.effects().await);
    assert_eq!(applied, (13..60).collect::<Vec<_>>(), "out of order");
    assert_eq!(consumer.stats.dead_lettered(), 0);
    consumer.stop().await;
}

#[tokio::test]
async fn the_counters_are_exported_at_zero_from_the_start() {
    platform::metrics::install().unwrap();
    let world = World::new().await;
    let name = unique("c");
    let consumer = world.start_consumer(&name);
    let text = platform::metrics::render();
    for family in [
        "messages_processed_total",
        "messages_duplicate_total",
        "messages_retried_total",
        "messages_dead_lettered_total",
    ] {
        let line = format!("{family}{{consumer=\"{name}\"}} 0");
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    consumer.stop().await;
}
