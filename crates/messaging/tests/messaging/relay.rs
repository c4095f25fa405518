//! The relay publishes committed outbox rows, and only those, with their metadata as headers.

use crate::common;

use std::time::Duration;

use common::{EffectHandler, World, commit, drain, message, read_topic};
use contracts::headers as h;
use messaging::outbox;
use messaging::{BatchReport, Doorbell, RelayConfig};
use test_support::unique;

#[tokio::test]
async fn a_committed_message_is_delivered_and_a_rolled_back_one_never_is() {
    let world = World::new().await;
    let consumer = world.start_consumer(&unique("c"));
    let mut relay = world.relay();

    // One key, so all three share a partition and the last one's effect proves the consumer got
    // past the position where the rolled-back one would have been.
    let first = commit(world.pool(), &[message("order-1", 1)]).await;
    let rolled_back = message("order-1", 2);
    let mut tx = world.pool().begin().await.unwrap();
    outbox::enqueue(&mut tx, std::slice::from_ref(&rolled_back))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let last = commit(world.pool(), &[message("order-1", 3)]).await;

    assert_eq!(drain(&mut relay).await, 2);
    let delivered = [first[0], last[0]];
    world
        .assert_applied_exactly_once(&delivered, Duration::from_secs(20))
        .await;
    let effects = world.effects().await;
    assert_eq!(effects.iter().map(|e| e.n).collect::<Vec<_>>(), [1, 3]);
    assert!(
        effects
            .iter()
            .all(|e| e.message_id != rolled_back.metadata.message_id)
    );
    assert_eq!(consumer.stats.processed(), 2);
    assert_eq!(world.unpublished().await, 0);
    consumer.stop().await;
}

#[tokio::test]
async fn a_record_carries_the_key_payload_and_metadata_headers() {
    let world = World::new().await;
    let mut relay = world.relay();
    let mut sent = message("order-7", 7);
    sent.metadata.causation_id = Some(uuid::Uuid::now_v7());
    commit(world.pool(), std::slice::from_ref(&sent)).await;
    assert_eq!(drain(&mut relay).await, 1);

    let records = read_topic(
        &world.settings,
        &world.topic(common::TOPIC),
        1,
        Duration::from_secs(20),
    )
    .await;
    let r = &records[0];
    let m = &sent.metadata;
    assert_eq!(r.key.as_deref(), Some("order-7"));
    assert_eq!(r.payload.as_deref(), Some(sent.payload.as_bytes()));
    assert_eq!(
        r.header(h::MESSAGE_ID),
        Some(m.message_id.to_string().as_str())
    );
    assert_eq!(r.header(h::MESSAGE_TYPE), Some(common::TEST_TYPE));
    assert_eq!(r.header(h::SCHEMA_VERSION), Some("1"));
    assert_eq!(
        r.header(h::CORRELATION_ID),
        Some(m.correlation_id.to_string().as_str())
    );
    assert_eq!(
        r.header(h::CAUSATION_ID),
        m.causation_id.map(|c| c.to_string()).as_deref()
    );
    assert_eq!(r.header(h::TRACEPARENT), m.traceparent.as_deref());
    let occurred = chrono::DateTime::parse_from_rfc3339(r.header(h::OCCURRED_AT).unwrap()).unwrap();
    // PostgreSQL keeps microseconds.
    assert_eq!(
        occurred,
        chrono::SubsecRound::trunc_subsecs(m.occurred_at, 6)
    );
}

#[tokio::test]
async fn only_the_lease_holder_publishes_and_a_stand_by_takes_over_when_it_goes() {
    let world = World::new().await;
    let mut active = world.relay();
    let mut stand_by = world.relay();
    commit(world.pool(), &common::messages(3, 1)).await;

    assert!(active.publish_batch().await.unwrap().lease_held);
    commit(world.pool(), &common::messages(2, 1)).await;
    let report = stand_by.publish_batch().await.unwrap();
    assert!(!report.lease_held);
    assert_eq!(report.published, 0);
    assert_eq!(world.unpublished().await, 2);

    // Dropping the holder expires its lease.
    drop(active);
    let report = once_it_holds_the_lease(&mut stand_by, Duration::from_secs(10)).await;
    assert_eq!(report.published, 2);
}

#[tokio::test]
async fn published_rows_are_deleted_after_the_retention_and_pending_ones_are_kept() {
    let world = World::new().await;
    let config = RelayConfig {
        retention: Duration::ZERO,
        ..RelayConfig::default()
    };
    let mut relay = world.relay_with(config);
    commit(world.pool(), &common::messages(5, 2)).await;
    assert_eq!(drain(&mut relay).await, 5);
    commit(world.pool(), &common::messages(2, 2)).await;

    assert_eq!(relay.clean_up().await.unwrap(), 5);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(world.pool())
        .await
        .unwrap();
    assert_eq!(left, 2);
}

#[tokio::test]
async fn a_clean_up_deletes_at_most_its_batch_and_the_next_one_goes_on() {
    let world = World::new().await;
    let config = RelayConfig {
        retention: Duration::ZERO,
        cleanup_batch: 3,
        ..RelayConfig::default()
    };
    let mut relay = world.relay_with(config);
    commit(world.pool(), &common::messages(5, 2)).await;
    assert_eq!(drain(&mut relay).await, 5);

    assert_eq!(relay.clean_up().await.unwrap(), 3);
    assert_eq!(relay.clean_up().await.unwrap(), 2);
    assert_eq!(relay.clean_up().await.unwrap(), 0);
}

/// A relay running with a poll interval far beyond any test deadline: only a ring wakes it.
/// (Test scaffolding: a failure here is a failed test, hence the unwraps.)
struct ListeningRelay {
    doorbell: Doorbell,
    trigger: platform::shutdown::Trigger,
    task: tokio::task::JoinHandle<()>,
}

#[allow(clippy::unwrap_used)]
impl ListeningRelay {
    /// Starts a relay and waits until it is idle: it took the lease and published a first row
    /// (which its initial read may have found without a ring).
    async fn start_idle(world: &World) -> Self {
        let relay = Self::start(world);
        commit(world.pool(), &[message("first", 1)]).await;
        relay.doorbell.ring();
        published(world, 1, Duration::from_secs(10), "the first row published").await;
        relay
    }

    fn start(world: &World) -> Self {
        let config = RelayConfig {
            poll_interval: Duration::from_secs(120),
            ..RelayConfig::default()
        };
        let relay = world.relay_with(config);
        let doorbell = relay.doorbell();
        let (trigger, shutdown) = platform::shutdown::channel();
        let task = tokio::spawn(relay.run(shutdown));
        Self {
            doorbell,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Waits until `count` rows are marked published.
#[allow(clippy::unwrap_used)]
async fn published(world: &World, count: i64, within: Duration, what: &str) {
    let pool = world.pool().clone();
    test_support::eventually(within, what, || {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
                    .fetch_one(&pool)
                    .await?;
            Ok((n == count).then_some(()))
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_running_relay_is_woken_by_its_doorbell_not_by_its_poll() {
    let world = World::new().await;
    let relay = ListeningRelay::start_idle(&world).await;

    commit(world.pool(), &[message("order-1", 2)]).await;
    relay.doorbell.ring();
    published(
        &world,
        2,
        Duration::from_secs(5),
        "the second row published on its ring",
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_late_commit_with_a_smaller_id_still_wakes_the_relay() {
    let world = World::new().await;
    let relay = ListeningRelay::start_idle(&world).await;

    // `late` takes the smaller id but commits after `early` was read and published: its own
    // ring must make the relay read again.
    let mut late = world.pool().begin().await.unwrap();
    outbox::enqueue(&mut late, &[message("order-1", 1)])
        .await
        .unwrap();
    commit(world.pool(), &[message("order-2", 1)]).await;
    relay.doorbell.ring();
    published(&world, 2, Duration::from_secs(10), "the early row").await;
    late.commit().await.unwrap();
    relay.doorbell.ring();
    published(
        &world,
        3,
        Duration::from_secs(5),
        "the late row, on its ring",
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_ring_in_a_process_whose_relay_stands_by_reaches_the_lease_holder() {
    let world = World::new().await;
    let holder = ListeningRelay::start_idle(&world).await;
    // Another instance of the service: its relay cannot take the lease, so its writers' rings
    // go to the holder as a notification.
    let stand_by = ListeningRelay::start(&world);

    commit(world.pool(), &[message("order-1", 1)]).await;
    stand_by.doorbell.ring();
    published(
        &world,
        2,
        Duration::from_secs(5),
        "the row published by the lease holder, on the other process's ring",
    )
    .await;
    stand_by.stop().await;
    holder.stop().await;
}

/// A transaction that notifies holds a server-wide lock from its commit until its WAL flush
/// ended, which serialises every such commit: writing the outbox must not notify.
#[tokio::test]
async fn writing_the_outbox_sends_no_notification() {
    let world = World::new().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(world.pool())
        .await
        .unwrap();
    listener.listen("outbox").await.unwrap();

    commit(world.pool(), &[message("order-1", 1)]).await;
    // Notifications arrive in commit order: a notification of the write would come first.
    sqlx::query("SELECT pg_notify('outbox', 'marker')")
        .execute(world.pool())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.payload(), "marker");
}

#[tokio::test]
async fn a_consumer_rings_the_relay_after_committing_its_handlers_outbox_rows() {
    let world = World::new().await;
    let relay = ListeningRelay::start_idle(&world).await;
    // The first row is a message of the consumed topic; the handler answers it with a reply
    // row, which only the consumer's ring gets published before the relay's poll.
    let _consumer = world.start_consumer_ringing(
        messaging::ConsumerConfig::new(unique("c"), &[common::TOPIC]),
        EffectHandler::replying_to("test.replies"),
        relay.doorbell.clone(),
    );
    published(
        &world,
        2,
        Duration::from_secs(30),
        "the consumer's reply published",
    )
    .await;
    relay.stop().await;
}

/// The relay reads, marks and cleans up rows by key. Its statements are prepared, and a generic
/// plan settled while the outbox was small (and analysed) must not scan it once it has grown: the
/// session runs with `enable_seqscan = off` (`platform::postgres::connect`). (A clean-up without
/// an index to use did scan it, holding up publishing for as long.)
#[tokio::test]
async fn publishing_and_cleaning_up_never_scan_an_outbox_that_grew_from_empty() {
    let world = World::new().await;
    let mut relay = world.relay();
    commit(world.pool(), &common::messages(100, 4)).await;
    assert_eq!(drain(&mut relay).await, 100);
    sqlx::query("ANALYZE outbox")
        .execute(world.pool())
        .await
        .unwrap();
    for n in 0..10 {
        commit(world.pool(), &[message("order-1", n)]).await;
        assert_eq!(drain(&mut relay).await, 1);
    }
    let grown = 20_000;
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, message_key, message_type, schema_version,
                             payload, correlation_id, occurred_at, published_at)
         SELECT gen_random_uuid(), 'old', 'old', 'Old', 1, '{}', gen_random_uuid(), now(), now()
         FROM generate_series(1, $1)",
    )
    .bind(grown)
    .execute(world.pool())
    .await
    .unwrap();
    commit(world.pool(), &[message("order-1", 10)]).await;
    assert_eq!(drain(&mut relay).await, 1);
    assert_eq!(
        relay.clean_up().await.unwrap(),
        0,
        "nothing is past the retention"
    );

    // A session reports its statistics at the latest when it ends: once the relay's session is
    // gone, its scans are all counted.
    drop(relay);
    let pool = world.pool().clone();
    test_support::eventually(Duration::from_secs(10), "the relay's session ends", || {
        let pool = pool.clone();
        async move {
            let sessions: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = $1",
            )
            .bind(messaging::relay::SESSION_NAME)
            .fetch_one(&pool)
            .await?;
            Ok((sessions == 0).then_some(()))
        }
    })
    .await
    .unwrap();
    let read: i64 =
        sqlx::query_scalar("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'outbox'")
            .fetch_one(world.pool())
            .await
            .unwrap();
    assert!(
        read < grown.into(),
        "the relay scanned the grown outbox ({read} rows read)"
    );
}

/// The lease row's epoch.
#[allow(clippy::unwrap_used)]
/// Calls `relay`'s batches until one holds the lease (within `within`), and returns that one.
async fn once_it_holds_the_lease(relay: &mut messaging::Relay, within: Duration) -> BatchReport {
    let relay = tokio::sync::Mutex::new(relay);
    let relay = &relay;
    test_support::eventually(within, "the relay takes the lease", || async move {
        let report = relay.lock().await.publish_batch().await?;
        Ok(report.lease_held.then_some(report))
    })
    .await
    .unwrap()
}

async fn lease_epoch(world: &World) -> i64 {
    sqlx::query_scalar("SELECT epoch FROM outbox_lease")
        .fetch_one(world.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_holder_that_stops_renewing_is_replaced_after_the_ttl_and_then_stands_by() {
    let world = World::new().await;
    let config = RelayConfig {
        lease_ttl: Duration::from_secs(1),
        ..RelayConfig::default()
    };
    let mut first = world.relay_with(config.clone());
    let mut second = world.relay_with(config);
    commit(world.pool(), &common::messages(3, 1)).await;
    assert_eq!(drain(&mut first).await, 3);
    let first_epoch = lease_epoch(&world).await;
    assert!(!second.publish_batch().await.unwrap().lease_held);

    // `first` is not called again: it renews nothing, as if its host had vanished.
    commit(world.pool(), &common::messages(2, 1)).await;
    let report = once_it_holds_the_lease(&mut second, Duration::from_secs(5)).await;
    assert_eq!(report.published, 2);
    let second_epoch = lease_epoch(&world).await;
    assert!(second_epoch > first_epoch);

    // Woken up, the first finds another epoch when it renews, and stands by.
    commit(world.pool(), &common::messages(1, 1)).await;
    let report = first.publish_batch().await.unwrap();
    assert!(!report.lease_held);
    assert_eq!(report.published, 0);
    assert!(!first.holds_lease());
    assert_eq!(second.publish_batch().await.unwrap().published, 1);
    let epochs: Vec<(Option<i64>, i64)> =
        sqlx::query_as("SELECT published_epoch, count(*) FROM outbox GROUP BY 1 ORDER BY 1")
            .fetch_all(world.pool())
            .await
            .unwrap();
    assert_eq!(epochs, [(Some(first_epoch), 3), (Some(second_epoch), 3)]);
}

/// A payload of `len` characters that lz4 cannot shrink (the broker's size limit applies to
/// the compressed record batch).
fn incompressible(len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        for b in uuid::Uuid::new_v4().as_bytes() {
            s.push(char::from(ALPHABET[usize::from(b & 63)]));
        }
    }
    s.truncate(len);
    s
}

/// A message of key `key` for [`SMALL_TOPIC`] whose payload is padded to about `size` bytes.
fn padded(key: &str, n: i64, size: usize) -> outbox::OutgoingMessage {
    outbox::OutgoingMessage {
        topic: SMALL_TOPIC,
        payload: serde_json::json!({ "n": n, "pad": incompressible(size) }).to_string(),
        ..message(key, n)
    }
}

/// A topic whose records may not exceed [`SMALL_LIMIT`] bytes.
const SMALL_TOPIC: &str = "relay.small-records";
const SMALL_LIMIT: usize = 500_000;

#[allow(clippy::unwrap_used)]
async fn set_topic_limit(world: &World, create: bool, limit: usize) {
    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.settings.kafka.brokers)
        .create()
        .unwrap();
    let topic = world.topic(SMALL_TOPIC);
    let limit = limit.to_string();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    if create {
        let new =
            NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &limit);
        for result in admin.create_topics(&[new], &options).await.unwrap() {
            result.unwrap();
        }
    } else {
        let alter =
            AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("max.message.bytes", &limit);
        for result in admin.alter_configs(&[alter], &options).await.unwrap() {
            result.unwrap();
        }
    }
}

/// How many records the topic's partitions hold.
#[allow(clippy::unwrap_used)]
fn records_in(world: &World, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.settings.kafka.brokers)
        .set("group.id", unique("watermarks"))
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum()
}

/// Which of `ids` are marked published.
#[allow(clippy::unwrap_used)]
async fn marked(world: &World, ids: &[uuid::Uuid]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        let published: bool =
            sqlx::query_scalar("SELECT published_at IS NOT NULL FROM outbox WHERE message_id = $1")
                .bind(id)
                .fetch_one(world.pool())
                .await
                .unwrap();
        out.push(published);
    }
    out
}

/// A row Kafka refuses in the middle of a key's rows: the key's later rows are neither marked
/// nor written before it, the other keys go on, and once the topic accepts the row the key
/// goes out in order.
#[tokio::test]
async fn a_refused_row_holds_back_the_later_rows_of_its_key_and_only_those() {
    let world = World::new().await;
    set_topic_limit(&world, true, SMALL_LIMIT).await;
    let config = RelayConfig {
        poison_retry: Duration::from_millis(500),
        ..RelayConfig::default()
    };
    let mut relay = world.relay_with(config);

    let first = commit(world.pool(), &[padded("order-a", 1, 100)]).await;
    assert_eq!(drain(&mut relay).await, 1);
    // Too large for the topic, then one that fits but not in the same record batch as the
    // too-large one (librdkafka's batch.size is 1 MB), so that it travels in a request of its
    // own, after the refused one; and another key's rows around them.
    let rows = [
        message("order-b", 1),
        padded("order-a", 2, 800_000),
        message("order-b", 2),
        padded("order-a", 3, 300_000),
        message("order-b", 3),
    ];
    let ids = commit(world.pool(), &rows).await;
    let (refused, after) = (ids[1], ids[3]);
    let others = [ids[0], ids[2], ids[4]];
    match relay.publish_batch().await {
        Err(messaging::RelayError::Delivery { .. }) => {}
        other => panic!("the batch with the refused row should fail, not {other:?}"),
    }
    assert_eq!(marked(&world, &[refused, after]).await, [false, false]);

    // The other key goes on while this one waits (retrying now and then, failing again).
    let relay = std::sync::Arc::new(tokio::sync::Mutex::new(relay));
    test_support::eventually(
        Duration::from_secs(20),
        "the other key's rows published",
        || {
            let relay = relay.clone();
            let world = &world;
            async move {
                let _ = relay.lock().await.publish_batch().await;
                let state = marked(world, &[refused, after]).await;
                assert_eq!(state, [false, false], "a row of order-a marked");
                Ok(marked(world, &others)
                    .await
                    .iter()
                    .all(|m| *m)
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    // Not even written: the producer wrote nothing of the partition after the refused row.
    assert_eq!(records_in(&world, &world.topic(SMALL_TOPIC), 1), 1);

    set_topic_limit(&world, false, 2_000_000).await;
    test_support::eventually(
        Duration::from_secs(30),
        "order-a published once the topic takes its row",
        || {
            let relay = relay.clone();
            let world = &world;
            async move {
                let _ = relay.lock().await.publish_batch().await;
                Ok(marked(world, &[refused, after])
                    .await
                    .iter()
                    .all(|m| *m)
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    let records = read_topic(
        &world.settings,
        &world.topic(SMALL_TOPIC),
        3,
        Duration::from_secs(20),
    )
    .await;
    let order: Vec<String> = records
        .iter()
        .map(|r| r.header(h::MESSAGE_ID).unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [first[0], refused, after].map(|id| id.to_string()),
        "order-a's rows on the topic in outbox order"
    );
}

/// Every relay metric family in docs/operations.md is exported from the start, counters at 0.
#[tokio::test]
async fn the_relay_metric_families_exist_before_anything_is_published() {
    let world = World::new().await;
    platform::metrics::install().unwrap();
    let _relay = world.relay();
    let text = platform::metrics::render();
    for family in [
        "relay_published_total",
        "relay_publish_errors_total",
        "outbox_pending",
        "outbox_oldest_pending_age_seconds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} missing from:\n{text}"
        );
    }
}

/// A published batch records how long each of its phases took, so that an operator can tell a
/// slow broker (`acknowledge`) from a slow database (`read`, `mark`).
#[tokio::test]
async fn a_batch_records_the_time_of_each_phase() {
    let world = World::new().await;
    platform::metrics::install().unwrap();
    let mut relay = world.relay();
    commit(world.pool(), &[message("order-a", 1)]).await;
    let report = relay.publish_batch().await.unwrap();
    assert_eq!(report.published, 1);
    let text = platform::metrics::render();
    for phase in ["read", "acknowledge", "mark"] {
        let series = format!("relay_batch_seconds_count{{phase=\"{phase}\"}}");
        assert!(
            text.lines().any(|l| l.starts_with(&series)),
            "{series} missing from:\n{text}"
        );
    }
}

/// A row whose delivery fails on a partition of its own (here a topic name Kafka refuses),
/// while the next row of its key, on another topic, is acknowledged: that one is not marked
/// either, so it goes out again after the failed one.
#[tokio::test]
async fn an_acknowledged_row_after_a_failed_one_of_its_key_is_not_marked() {
    let world = World::new().await;
    let mut relay = world.relay();
    let rows = [
        message("order-b", 1),
        outbox::OutgoingMessage {
            topic: "no such topic!",
            ..message("order-a", 1)
        },
        message("order-a", 2),
        message("order-b", 2),
    ];
    let ids = commit(world.pool(), &rows).await;
    match relay.publish_batch().await {
        Err(messaging::RelayError::Delivery { failed: 1, .. }) => {}
        other => panic!("one row of the batch should fail, not {other:?}"),
    }
    assert_eq!(marked(&world, &ids).await, [true, false, false, true]);
    // Refused for good: the key waits (RelayConfig::poison_retry), the relay goes on.
    commit(world.pool(), &[message("order-b", 3)]).await;
    assert_eq!(relay.publish_batch().await.unwrap().published, 1);
    assert_eq!(marked(&world, &ids).await, [true, false, false, true]);
    // Acknowledged all the same: it was on the topic, and will be again after order-a's first.
    let records = read_topic(
        &world.settings,
        &world.topic(common::TOPIC),
        3,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        records
            .iter()
            .any(|r| r.header(h::MESSAGE_ID) == Some(ids[2].to_string().as_str()))
    );
}
