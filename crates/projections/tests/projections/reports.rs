//! The read models against the real stack: exact reports after a randomized load (I5),
//! redelivery and a full replay that change nothing (I7), and a rebuild during load.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{SETTLE, World, load};
use projections::{OrdersModel, ProductsModel, ProjectionConfig, Projections};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use test_support::{eventually, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_equal_the_orders_after_a_randomized_load() {
    let world = World::new().await;
    load(world.pool(), 120).await;
    world.assert_reports_exact(SETTLE).await;

    // Polled: a store restarted by another test binary a moment ago may still be coming up.
    eventually(SETTLE, "readiness", || async {
        Ok((world.get("/health/ready").await.status() == 200).then_some(()))
    })
    .await
    .unwrap();
    let unknown = world.get("/api/reports/nothing").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_are_for_viewers_and_operators_only() {
    let world = World::new().await;
    load(world.pool(), 10).await;
    world.assert_reports_exact(SETTLE).await;
    let (_, customer) = test_support::customer();
    let operator = test_support::operator();
    for path in ["/api/reports/products", "/api/reports/orders"] {
        let anonymous = world.get_as(path, None).await;
        assert_eq!(anonymous.status(), 401, "{path} without a token");
        assert_eq!(
            anonymous.headers()["www-authenticate"],
            r#"Bearer realm="shop""#
        );
        assert_eq!(
            anonymous.headers()["content-type"],
            "application/problem+json"
        );
        let forged = world.get_as(path, Some("Bearer not.a.token")).await;
        assert_eq!(forged.status(), 401, "{path} with a malformed token");

        let refused = world.get_as(path, Some(&customer)).await;
        assert_eq!(refused.status(), 403, "{path} as a customer");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(problem["status"], 403);

        let as_viewer = world.get_as(path, Some(&world.viewer)).await;
        assert_eq!(as_viewer.status(), 200, "{path} as a viewer");
        let as_operator = world.get_as(path, Some(&operator)).await;
        assert_eq!(as_operator.status(), 200, "{path} as an operator");
        assert_eq!(
            as_operator.json::<serde_json::Value>().await.unwrap(),
            as_viewer.json::<serde_json::Value>().await.unwrap(),
        );
    }
    // Health stays public.
    eventually(SETTLE, "readiness without a token", || async {
        Ok((world.get_as("/health/ready", None).await.status() == 200).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_replayed_events_change_nothing() {
    let world = World::new().await;
    load(world.pool(), 60).await;
    world.assert_reports_exact(SETTLE).await;
    let before = world.reports().await.unwrap();
    let (redis, mongo) = world.stats.clone();
    let topic = format!(
        "{}{}",
        world.settings.kafka.topic_prefix,
        contracts::topics::ORDERS
    );

    // Every record published a second time (what a relay that crashed before marking its rows
    // does), plus a record no one can read.
    let copies = republish(&world.settings.kafka.brokers, &topic).await;
    let producer = producer(&world.settings.kafka.brokers);
    producer
        .send(
            FutureRecord::to(&topic).key("poison").payload("not json"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    // Every record of the topic now: the originals, their copies and the poison one.
    let total = 2 * copies + 1;
    eventually(SETTLE, "the copies processed", || {
        let (redis, mongo) = (redis.clone(), mongo.clone());
        async move { Ok((redis.processed() >= total && mongo.processed() >= total).then_some(())) }
    })
    .await
    .unwrap();
    assert_eq!(world.reports().await.unwrap(), before, "duplicates counted");
    assert!(redis.duplicates() > 0 && mongo.duplicates() > 0);
    assert_eq!((redis.poison(), mongo.poison()), (1, 1));

    // A full replay from offset 0: new groups over the same read models.
    let replay = Projections::build_with(
        &world.settings,
        0,
        ProductsModel::new(&world.settings.redis).unwrap(),
        OrdersModel::new(&world.settings.mongodb).await.unwrap(),
        ProjectionConfig::new(unique("replay-redis")),
        ProjectionConfig::new(unique("replay-mongodb")),
    )
    .await
    .unwrap();
    let (replay_redis, replay_mongo) = replay.stats();
    let (_stop, shutdown) = platform::shutdown::channel();
    tokio::spawn(replay.run(shutdown));
    eventually(SETTLE, "the replay to reach the end", || {
        let (r, m) = (replay_redis.clone(), replay_mongo.clone());
        async move { Ok((r.processed() >= total && m.processed() >= total).then_some(())) }
    })
    .await
    .unwrap();
    assert_eq!(world.reports().await.unwrap(), before, "the replay counted");
    assert_eq!((replay_redis.counted(), replay_mongo.counted()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_during_load_ends_with_exact_reports() {
    let world = World::new().await;
    load(world.pool(), 40).await;
    world.assert_reports_exact(SETTLE).await;

    let pool = world.pool().clone();
    let more = tokio::spawn(async move { load(&pool, 120).await });
    // Let part of the load through first, so the rebuild overlaps live traffic.
    let pool = world.pool().clone();
    eventually(SETTLE, "load under way", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(DISTINCT stream_id) FROM events")
                .fetch_one(&pool)
                .await?;
            Ok((n >= 70).then_some(()))
        }
    })
    .await
    .unwrap();
    let progress = projections::rebuild::Progress::default();
    let rebuilt = projections::rebuild::rebuild(
        world.pool(),
        Some(&world.products),
        Some(&world.orders),
        &progress,
    )
    .await
    .unwrap();
    assert!(rebuilt.completed > 0, "{rebuilt:?}");
    assert_eq!(
        progress.now(),
        rebuilt,
        "the progress ends at what was done"
    );
    more.await.unwrap();
    world.assert_reports_exact(SETTLE).await;

    // A second rebuild when all is quiet changes nothing either.
    let before = world.reports().await.unwrap();
    projections::rebuild::rebuild(
        world.pool(),
        Some(&world.products),
        Some(&world.orders),
        &projections::rebuild::Progress::default(),
    )
    .await
    .unwrap();
    assert_eq!(world.reports().await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_projections_cannot_read_is_dead_lettered_and_later_ones_are_applied() {
    let world = World::new().await;
    let prefix = &world.settings.kafka.topic_prefix;
    let topic = format!("{prefix}{}", contracts::topics::ORDERS);
    let dead_letters = format!("{prefix}{}", contracts::topics::DEAD_LETTERS);
    // Valid headers around a payload that is no `OrderCompleted`.
    let id = uuid::Uuid::now_v7().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: contracts::headers::MESSAGE_ID,
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: contracts::headers::MESSAGE_TYPE,
            value: Some("OrderCompleted"),
        })
        .insert(Header {
            key: contracts::headers::SCHEMA_VERSION,
            value: Some("1"),
        });
    producer(&world.settings.kafka.brokers)
        .send(
            FutureRecord::to(&topic)
                .key("poison")
                .payload(r#"{"orderId":5}"#)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    load(world.pool(), 20).await;
    world.assert_reports_exact(SETTLE).await;
    let brokers = world.settings.kafka.brokers.clone();
    let parked = eventually(SETTLE, "a dead letter from each projection", || {
        let (brokers, dead_letters) = (brokers.clone(), dead_letters.clone());
        async move {
            let records =
                tokio::task::spawn_blocking(move || read_all(&brokers, &dead_letters)).await?;
            Ok((records.len() >= 2).then_some(records))
        }
    })
    .await
    .unwrap();
    let header = |record: &Record, name: &str| -> String {
        let (_, _, _, headers) = record;
        let value = headers.iter().rev().find(|(k, _)| k == name);
        String::from_utf8_lossy(&value.unwrap().1).into_owned()
    };
    let mut consumers: Vec<String> = parked
        .iter()
        .map(|r| header(r, contracts::headers::DEAD_LETTER_CONSUMER))
        .collect();
    consumers.sort();
    assert_eq!(
        consumers,
        [projections::MONGO_CONSUMER, projections::REDIS_CONSUMER]
    );
    for record in &parked {
        let (_, key, payload, _) = record;
        assert_eq!(key.as_slice(), b"poison");
        assert_eq!(payload.as_slice(), br#"{"orderId":5}"#);
        assert_eq!(header(record, contracts::headers::MESSAGE_ID), id);
        assert!(header(record, contracts::headers::DEAD_LETTER_ORIGIN).starts_with(&topic));
        assert!(!header(record, contracts::headers::DEAD_LETTER_REASON).is_empty());
    }
    let (redis, mongo) = &world.stats;
    assert_eq!((redis.poison(), mongo.poison()), (1, 1));
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .unwrap()
}

/// Publishes a copy of every record of `topic` (same partition, key, headers, payload) and
/// returns how many.
async fn republish(brokers: &str, topic: &str) -> u64 {
    let brokers_owned = brokers.to_owned();
    let topic_owned = topic.to_owned();
    let records = tokio::task::spawn_blocking(move || read_all(&brokers_owned, &topic_owned))
        .await
        .unwrap();
    let producer = producer(brokers);
    for (partition, key, payload, headers) in &records {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(*partition)
                    .key(key.as_slice())
                    .payload(payload.as_slice())
                    .headers(owned),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    records.len() as u64
}

type Record = (i32, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("copier"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut left = 0;
    for p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, *p, timeout).unwrap();
        left += high;
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while left > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "reading the topic timed out"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push((
            message.partition(),
            message.key().unwrap_or_default().to_vec(),
            message.payload().unwrap_or_default().to_vec(),
            headers,
        ));
        left -= 1;
    }
    records
}

async fn read_models(world: &World) -> Value {
    world
        .get("/api/ops/read-models")
        .await
        .json::<Value>()
        .await
        .unwrap()
}

/// SYSTEM.md §11 "Read models": an operator starts a rebuild over HTTP, follows its progress,
/// and the new generation replaces the old one with the reports unchanged; a viewer may look
/// but not start one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rebuilds_the_read_models_over_http_and_follows_the_progress() {
    let world = World::new().await;
    load(world.pool(), 20).await;
    world.assert_reports_exact(SETTLE).await;
    let reports = world.reports().await.unwrap();
    let before = read_models(&world).await;
    let current = |state: &Value, store: &str| -> String {
        state["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["store"] == store)
            .unwrap()["generations"]["current"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(before["rebuild"].is_null(), "{before}");

    let start = |authorization: Option<String>, body: Value| {
        let mut request = world
            .client
            .post(format!("{}/api/ops/read-models/rebuild", world.address))
            .json(&body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        async move { request.send().await.unwrap() }
    };
    let all = json!({"store": "all"});
    assert_eq!(start(None, all.clone()).await.status(), 401);
    assert_eq!(
        start(Some(world.viewer.clone()), all.clone())
            .await
            .status(),
        403
    );
    assert_eq!(
        start(
            Some(test_support::operator()),
            json!({"store": "elsewhere"})
        )
        .await
        .status(),
        400
    );
    let started = start(Some(test_support::operator()), all).await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["store"], "all");
    assert!(started["finishedAt"].is_null());

    let after = eventually(SETTLE, "the rebuild to finish", || async {
        let state = read_models(&world).await;
        Ok((!state["rebuild"]["finishedAt"].is_null()).then_some(state))
    })
    .await
    .unwrap();
    let rebuild = &after["rebuild"];
    assert!(rebuild["error"].is_null(), "{after}");
    assert!(
        rebuild["progress"]["completed"].as_u64().unwrap() > 0,
        "{after}"
    );
    assert!(
        rebuild["progress"]["eventsRead"].as_u64().unwrap() >= 40,
        "{after}"
    );
    for store in ["redis", "mongodb"] {
        assert_ne!(
            current(&before, store),
            current(&after, store),
            "{store}: {after}"
        );
    }
    assert_eq!(world.reports().await.unwrap(), reports);
}
