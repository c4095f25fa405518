//! Faults: Kafka stopped while messages are written, and the relay SIGKILLed mid-run.
//!
//! These tests stop shared servers and kill processes, so each runs alone ([`World::alone`]).

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{self, World, commit, fast_relay_config, message};
use test_support::{Stopped, eventually, unique};

/// Kills the child with SIGKILL when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn nothing_written_while_kafka_is_down_is_lost() {
    let world = World::alone().await;
    let consumer = world.start_consumer(&unique("c"));
    let relay = world.relay_with(fast_relay_config());
    let (relay_trigger, shutdown) = platform::shutdown::channel();
    let relay_task = tokio::spawn(relay.run(shutdown));

    let warm_up = commit(world.pool(), &[message("warm-up", 0)]).await;
    world
        .assert_applied_exactly_once(&warm_up, Duration::from_secs(20))
        .await;

    let mut ids = Vec::new();
    {
        let _down = Stopped::server("kafka");
        for chunk in common::messages(200, 10).chunks(20) {
            ids.extend(commit(world.pool(), chunk).await);
        }
        assert_eq!(
            world.unpublished().await,
            200,
            "nothing can be acknowledged while Kafka is down"
        );
    }

    world
        .assert_applied_exactly_once(&ids, Duration::from_secs(45))
        .await;
    eventually(
        Duration::from_secs(10),
        "every row marked published",
        || {
            let pool = world.pool().clone();
            async move {
                let left: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                        .fetch_one(&pool)
                        .await?;
                Ok((left == 0).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    relay_trigger.fire();
    relay_task.await.unwrap();
    consumer.stop().await;
}

#[tokio::test]
async fn a_relay_killed_mid_run_and_restarted_loses_nothing_and_nothing_is_applied_twice() {
    let world = World::alone().await;
    const TOTAL: usize = 20_000;
    let mut ids = Vec::new();
    for chunk in common::messages(TOTAL, 50).chunks(2000) {
        ids.extend(commit(world.pool(), chunk).await);
    }
    let consumer = world.start_consumer(&unique("c"));

    let spawn_relay = || relay_process(&world, &[]);

    let first = spawn_relay();
    eventually(Duration::from_secs(20), "the relay publishing", || async {
        Ok((published(&world).await >= 2000).then_some(()))
    })
    .await
    .unwrap();
    drop(first); // SIGKILL, typically with a batch sent but not yet marked
    let at_kill = published(&world).await;
    assert!(
        at_kill < TOTAL,
        "the relay finished before it was killed; the test proves nothing"
    );

    let _second = spawn_relay();
    world
        .assert_applied_exactly_once(&ids, Duration::from_secs(45))
        .await;
    assert_eq!(world.effects().await.len(), TOTAL);
    // Not asserted (timing decides it), but it shows whether the kill hit a batch in flight.
    eprintln!(
        "killed after {at_kill} rows marked; duplicates redelivered and skipped: {}",
        consumer.stats.duplicates()
    );
    consumer.stop().await;
}

/// Sends `signal` (`STOP`, `CONT`) to the child.
#[allow(clippy::unwrap_used)]
fn signal(process: &Process, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(process.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// The relay holding the lease is stopped (SIGSTOP: its renewals stop exactly as a vanished
/// host's would, and its TCP connections stay up). A stand-by takes over within a few seconds
/// and publishes the rest; woken up, the stopped one marks nothing: everything is applied
/// once and in per-key order.
#[tokio::test]
async fn a_stopped_lease_holder_is_replaced_within_seconds_and_marks_nothing_when_woken() {
    let world = World::alone().await;
    const TOTAL: usize = 20_000;
    const KEYS: usize = 50;
    let mut ids = Vec::new();
    for chunk in common::messages(TOTAL, KEYS).chunks(2000) {
        ids.extend(commit(world.pool(), chunk).await);
    }
    let consumer = world.start_consumer(&unique("c"));

    let spawn_relay = || relay_process(&world, &[("SHOP_RELAY_LEASE_TTL_MS", "3000")]);
    let epoch = || async {
        let e: i64 = sqlx::query_scalar("SELECT epoch FROM outbox_lease")
            .fetch_one(world.pool())
            .await
            .unwrap();
        e
    };

    let first = spawn_relay();
    eventually(
        Duration::from_secs(20),
        "the first relay publishing",
        || async { Ok((published(&world).await >= 2000).then_some(())) },
    )
    .await
    .unwrap();
    let first_epoch = epoch().await;
    let _second = spawn_relay();
    signal(&first, "STOP");
    let stopped = std::time::Instant::now();
    let at_stop = published(&world).await;
    assert!(
        at_stop < TOTAL,
        "the relay finished before it was stopped; the test proves nothing"
    );

    // The TTL (3 s) plus the stand-by's retry interval (0.5 s), and some slack.
    eventually(
        Duration::from_secs(8),
        "the stand-by takes the lease",
        || async { Ok((epoch().await > first_epoch).then_some(())) },
    )
    .await
    .unwrap();
    let took_over = stopped.elapsed();
    let second_epoch = epoch().await;
    world
        .assert_applied_exactly_once(&ids, Duration::from_secs(45))
        .await;

    signal(&first, "CONT");
    // More rows after the wake-up: the woken relay must find it lost the lease and leave them
    // to the holder.
    let late: Vec<_> = (0..200)
        .map(|i| common::message(&format!("late-{}", i % 10), i / 10))
        .collect();
    ids.extend(commit(world.pool(), &late).await);
    world
        .assert_applied_exactly_once(&ids, Duration::from_secs(20))
        .await;
    assert_eq!(
        epoch().await,
        second_epoch,
        "the woken relay took the lease back"
    );
    let stale_marks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox o, outbox_lease l
         WHERE o.published_epoch = $1 AND o.published_at >= l.acquired_at",
    )
    .bind(first_epoch)
    .fetch_one(world.pool())
    .await
    .unwrap();
    assert_eq!(stale_marks, 0, "rows marked under the stale lease");
    let late_epochs: Vec<Option<i64>> = sqlx::query_scalar(
        "SELECT DISTINCT published_epoch FROM outbox WHERE message_key LIKE 'late-%'",
    )
    .fetch_all(world.pool())
    .await
    .unwrap();
    assert_eq!(late_epochs, [Some(second_epoch)]);

    let mut per_key: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for e in world.effects().await {
        per_key.entry(e.key.unwrap()).or_default().push(e.n);
    }
    assert_eq!(per_key.len(), KEYS + 10);
    for (key, ns) in &per_key {
        let expected: Vec<i64> = (0..ns.len() as i64).collect();
        assert_eq!(ns, &expected, "effects of {key} in outbox order");
    }
    eprintln!(
        "stopped after {at_stop} rows marked; taken over after {took_over:?}; \
         duplicates redelivered and skipped: {}",
        consumer.stats.duplicates()
    );
    consumer.stop().await;
}

/// The `outbox-relay` binary on `world`'s outbox, in batches of 200, with `env` besides.
fn relay_process(world: &World, env: &[(&str, &str)]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
            .arg(&world.db.name)
            .env(
                "SHOP_KAFKA__TOPIC_PREFIX",
                &world.settings.kafka.topic_prefix,
            )
            .env("SHOP_RELAY_BATCH_SIZE", "200")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    )
}

/// How many rows of `world`'s outbox are marked published.
async fn published(world: &World) -> usize {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        .fetch_one(world.pool())
        .await
        .unwrap();
    usize::try_from(n).unwrap()
}
