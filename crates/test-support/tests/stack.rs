//! Smoke tests: each server of the local stack is real and reachable from Rust with the client
//! crates the services use. `./dev test` starts the servers before running these.

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{Document, doc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use redis::AsyncCommands;
use test_support::{TestDatabase, create_topics, settings, unique};

#[tokio::test]
async fn postgres_transactions_commit_and_roll_back() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(&db.pool)
        .await?;

    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;

    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO t VALUES (2)")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(ids, vec![2], "the rolled-back row must not exist");
    db.drop_now().await
}

#[tokio::test]
async fn redis_commands_and_scripts_run() -> anyhow::Result<()> {
    let settings = settings();
    let client = platform::redis::client(&settings.redis)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let key = unique("test:smoke");

    let _: () = con.hincr(&key, "12.50", 3).await?;
    let _: () = con.hincr(&key, "12.50", 4).await?;
    let value: i64 = con.hget(&key, "12.50").await?;
    assert_eq!(value, 7);

    // Scripts are how projections make "dedupe + update" atomic.
    let script = redis::Script::new(
        "if redis.call('SET', KEYS[1], '1', 'NX') then return redis.call('INCRBY', KEYS[2], ARGV[1]) end return -1",
    );
    let dedupe = format!("{key}:seen");
    let counter = format!("{key}:n");
    let first: i64 = script
        .key(&dedupe)
        .key(&counter)
        .arg(5)
        .invoke_async(&mut con)
        .await?;
    let second: i64 = script
        .key(&dedupe)
        .key(&counter)
        .arg(5)
        .invoke_async(&mut con)
        .await?;
    assert_eq!((first, second), (5, -1));

    let _: () = con.del(&[&key, &dedupe, &counter]).await?;
    Ok(())
}

#[tokio::test]
async fn kafka_round_trip_with_idempotent_producer_and_committed_offsets() -> anyhow::Result<()> {
    let settings = settings();
    let topic = unique("test.smoke");
    let group = unique("test-group");
    create_topics(&settings, &[&topic], 3).await?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    for i in 0..10 {
        let payload = format!("message {i}");
        let key = format!("order-{}", i % 3);
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let consumer = |group: &str| -> anyhow::Result<StreamConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &settings.kafka.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?)
    };
    let first = consumer(&group)?;
    first.subscribe(&[&topic])?;
    let mut received = Vec::new();
    {
        let mut stream = first.stream();
        while received.len() < 10 {
            let message = tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("consumer stream ended"))??;
            received
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
            // Commit only after "processing": here, after the message was recorded.
            first.commit_message(&message, CommitMode::Sync)?;
        }
    }
    received.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    expected.sort();
    assert_eq!(received, expected);

    // The group's committed offsets cover all ten messages.
    let mut partitions = TopicPartitionList::new();
    for p in 0..3 {
        partitions.add_partition(&topic, p);
    }
    let committed = first.committed_offsets(partitions, Duration::from_secs(10))?;
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(
        total, 10,
        "committed offsets must add up to the messages processed"
    );
    Ok(())
}

#[tokio::test]
async fn mongodb_insert_find_and_atomic_upsert() -> anyhow::Result<()> {
    let settings = settings();
    let client = mongodb::Client::with_uri_str(&settings.mongodb.url).await?;
    let db = client.database(&unique("test"));
    let orders = db.collection::<Document>("orders");

    orders
        .insert_one(doc! { "_id": "o1", "status": "completed" })
        .await?;
    let found = orders
        .find_one(doc! { "_id": "o1" })
        .await?
        .ok_or_else(|| anyhow::anyhow!("inserted document not found"))?;
    assert_eq!(found.get_str("status")?, "completed");

    let stats = db.collection::<Document>("stats");
    for _ in 0..3 {
        stats
            .update_one(
                doc! { "_id": "orders" },
                doc! { "$inc": { "completed": 1_i64, "totalCents": 1250_i64 } },
            )
            .upsert(true)
            .await?;
    }
    let doc = stats
        .find_one(doc! { "_id": "orders" })
        .await?
        .ok_or_else(|| anyhow::anyhow!("upserted document not found"))?;
    assert_eq!(doc.get_i64("completed")?, 3);
    assert_eq!(doc.get_i64("totalCents")?, 3750);

    db.drop().await?;
    Ok(())
}

/// The headless Chromium of the page tests (the `browser` feature): it runs a page's script,
/// its helpers fill, submit, click and wait, and a browser dropped without `close`, as a failing
/// test drops it, leaves no process behind, not even one unreaped, and no profile.
#[cfg(feature = "browser")]
#[tokio::test]
async fn a_dropped_browser_leaves_no_process_behind() -> anyhow::Result<()> {
    use test_support::browser::Browser;

    let mut browser = Browser::start().await?;
    browser
        .goto(
            "data:text/html,<title>t</title><form id=f><input name=q><button>Send</button></form>\
             <p id=out></p><script>document.getElementById('f').onsubmit = e => { \
             e.preventDefault(); document.getElementById('out').textContent = 'got ' + \
             new FormData(e.target).get('q'); };</script>",
        )
        .await?;
    browser.submit_form("#f", &[("q", "one")]).await?;
    browser.wait_for_text("got one").await?;
    browser.fill("input[name=q]", "two").await?;
    browser.click_text("Send").await?;
    browser.wait_for_text("got two").await?;
    browser.set_timeout(Duration::from_millis(300));
    let Err(missing) = browser.wait_for_text("never there").await else {
        anyhow::bail!("found a text that is not on the page");
    };
    // A failed wait shows what the page said instead.
    assert!(format!("{missing:#}").contains("got two"), "{missing:#}");

    // Chromium's processes: those of chromedriver's group, and its crash handlers, which leave
    // the group but name the browser's directory (their database is in it).
    let group = browser.driver_pid();
    let dir = browser.dir().to_owned();
    let path = dir.to_string_lossy().into_owned();
    let chromium = processes(|_, cmdline| cmdline.contains(&path));
    assert!(
        chromium.iter().any(|p| p.contains("--type=renderer")),
        "no Chromium renderer runs with {path}: {chromium:#?}"
    );
    assert!(
        chromium.iter().any(|p| p.contains("crashpad")),
        "{chromium:#?}"
    );
    assert!(processes(|pgrp, _| pgrp == group).len() > 1);

    drop(browser);
    // Ended and reaped: an orphan of Chromium's ends as a zombie until PID 1 reaps it.
    test_support::eventually(Duration::from_secs(10), "no process left", || async {
        let left = processes(|pgrp, cmdline| pgrp == group || cmdline.contains(&path));
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    assert!(!dir.exists(), "{} is still there", dir.display());
    Ok(())
}

/// The processes (zombies included, whose command line is empty) that `matches` by process
/// group and command line, as `pid stat` lines.
#[cfg(feature = "browser")]
fn processes(matches: impl Fn(u32, &str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let (Ok(stat), Ok(cmdline)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read(path.join("cmdline")),
        ) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`: comm may hold spaces, so fields count from its `)`.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|pgrp| pgrp.parse().ok())
            .unwrap_or(0);
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if matches(pgrp, &cmdline) {
            found.push(format!("{} {cmdline}", stat.trim()));
        }
    }
    found
}
