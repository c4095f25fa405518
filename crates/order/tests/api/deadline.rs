//! The saga deadline against the real PostgreSQL, with no stock or payment running: an order
//! nobody answers fails `timed_out` once, a settled order never does, the deadline outlives the
//! instance that placed the order, and pollers side by side fail each order once.

use std::time::Duration;

use order::deadline::{self, DeadlineConfig, TimeoutReport};
use order::saga::SagaHandler;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, deadline_config, item};
use crate::saga::{captured, event_types, handle, place};

/// A pass that treats every open saga as due.
fn due_now(batch_size: i64) -> DeadlineConfig {
    DeadlineConfig {
        deadline: Duration::ZERO,
        poll_interval: Duration::from_millis(10),
        batch_size,
    }
}

async fn order_json(app: &TestApp, order_id: Uuid) -> Value {
    app.get_order(&order_id.to_string())
        .await
        .json()
        .await
        .unwrap()
}

async fn open_sagas(app: &TestApp) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT order_id FROM open_sagas ORDER BY order_id")
        .fetch_all(app.pool())
        .await
        .unwrap()
}

/// `(message_type, payload)` of the order's queued messages, in queue order.
async fn queued(app: &TestApp, order_id: Uuid) -> Vec<(String, Value)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT message_type, payload::text FROM outbox WHERE message_key = $1 ORDER BY id",
    )
    .bind(order_id.to_string())
    .fetch_all(app.pool())
    .await
    .unwrap();
    (rows.into_iter())
        .map(|(kind, payload)| (kind, serde_json::from_str(&payload).unwrap()))
        .collect()
}

#[tokio::test]
async fn an_order_nobody_answers_fails_as_timed_out_after_the_deadline() {
    let app = TestApp::spawn_with_deadline(Duration::from_secs(1))
        .await
        .unwrap();
    let order_id = place(&app).await;
    assert_eq!(open_sagas(&app).await, [order_id]);

    let order = test_support::eventually(Duration::from_secs(10), "the order to time out", || {
        let app = &app;
        async move {
            let order = order_json(app, order_id).await;
            Ok((order["status"] == "failed").then_some(order))
        }
    })
    .await
    .unwrap();
    assert_eq!(order["failureReason"], "timed_out");

    let events: Value = app
        .get_events(&order_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = (events.as_array().unwrap().iter())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderFailed"]);
    assert_eq!(events[1]["data"], json!({"reason": "timed_out"}));
    let placed_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(events[0]["recordedAt"].clone()).unwrap();
    let failed_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(events[1]["recordedAt"].clone()).unwrap();
    assert!(
        failed_at - placed_at >= chrono::TimeDelta::seconds(1),
        "not before the deadline: {placed_at} → {failed_at}"
    );

    let messages = queued(&app, order_id).await;
    let kinds: Vec<&str> = messages.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["OrderPlaced", "OrderFailed"]);
    assert_eq!(messages[1].1["reason"], "timed_out");
    assert_eq!(messages[1].1["orderId"], order_id.to_string());
    assert!(open_sagas(&app).await.is_empty(), "the deadline is gone");

    // A reply that comes after the deadline changes nothing in the order.
    let mut tx = app.pool().begin().await.unwrap();
    handle(&SagaHandler, &mut tx, &[captured(order_id, 1)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        event_types(&app, order_id).await,
        ["OrderPlaced", "OrderFailed"]
    );
    assert_eq!(
        order_json(&app, order_id).await["failureReason"],
        "timed_out"
    );
}

#[tokio::test]
async fn a_settled_order_never_times_out() {
    let app = TestApp::spawn().await.unwrap();
    let (completed, pending) = (place(&app).await, place(&app).await);
    let mut tx = app.pool().begin().await.unwrap();
    handle(&SagaHandler, &mut tx, &[captured(completed, 1)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(open_sagas(&app).await, [pending], "completing settles");

    let report = deadline::time_out_due(app.pool(), &due_now(100))
        .await
        .unwrap();
    assert_eq!(report.timed_out, 1);
    assert_eq!(
        event_types(&app, completed).await,
        ["OrderPlaced", "OrderCompleted"]
    );
    assert_eq!(
        order_json(&app, pending).await["failureReason"],
        "timed_out"
    );

    // Nothing is due any more, and nothing happens twice.
    let again = deadline::time_out_due(app.pool(), &due_now(100))
        .await
        .unwrap();
    assert_eq!(again, TimeoutReport::default());
    assert_eq!(
        event_types(&app, pending).await,
        ["OrderPlaced", "OrderFailed"]
    );
}

#[tokio::test]
async fn the_deadline_outlives_the_instance_that_placed_the_order() {
    // The instance that places the order stops before its (long) deadline comes.
    let first = TestApp::spawn().await.unwrap();
    let order_id = place(&first).await;
    let db = first.stop();

    // Another instance, started later over the same database, knows nothing of it but its row.
    let settings = test_support::isolated_settings();
    let definition = order::definition(&db.name, 0);
    let second = order::Component::build(
        &settings,
        definition,
        deadline_config(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(second.run(shutdown));

    let reason = test_support::eventually(Duration::from_secs(10), "the order to time out", || {
        let pool = db.pool.clone();
        async move {
            let (order, _) = order::commands::load(&pool, order::domain::OrderId(order_id))
                .await?
                .unwrap();
            Ok(order.failure_reason)
        }
    })
    .await
    .unwrap();
    assert_eq!(reason, contracts::orders::FailureReason::TimedOut);
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM events WHERE stream_id = $1 ORDER BY version")
            .bind(order_id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2]);
    drop(trigger);
}

#[tokio::test]
async fn pollers_side_by_side_fail_each_order_once() {
    let app = TestApp::spawn().await.unwrap();
    let mut orders = Vec::new();
    for _ in 0..30 {
        orders.push(place(&app).await);
    }

    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let pool = app.pool().clone();
            tokio::spawn(async move {
                let mut failed = 0;
                loop {
                    let report = deadline::time_out_due(&pool, &due_now(4)).await.unwrap();
                    failed += report.timed_out;
                    if report == TimeoutReport::default() {
                        return failed;
                    }
                }
            })
        })
        .collect();
    let mut failed = 0;
    for poller in pollers {
        failed += poller.await.unwrap();
    }
    assert_eq!(failed, orders.len());

    // I6: versions 1..n without gaps, one failure per order, one message per failure.
    for order_id in &orders {
        assert_eq!(
            event_types(&app, *order_id).await,
            ["OrderPlaced", "OrderFailed"]
        );
        let kinds: Vec<String> = (queued(&app, *order_id).await.into_iter())
            .map(|(kind, _)| kind)
            .collect();
        assert_eq!(kinds, ["OrderPlaced", "OrderFailed"]);
    }
    assert!(open_sagas(&app).await.is_empty());
}

#[tokio::test]
async fn a_reply_settling_an_order_the_deadline_holds_neither_waits_nor_is_undone() {
    let app = TestApp::spawn().await.unwrap();
    let order_id = place(&app).await;

    // A poll holds the order's row, as `time_out_due` does between its read and its append.
    let mut poll = app.pool().begin().await.unwrap();
    let held: Vec<Uuid> = sqlx::query_scalar("SELECT order_id FROM open_sagas FOR UPDATE")
        .fetch_all(&mut *poll)
        .await
        .unwrap();
    assert_eq!(held, [order_id]);

    // The capture completes the order without waiting for that poll.
    let completing = async {
        let mut tx = app.pool().begin().await.unwrap();
        handle(&SagaHandler, &mut tx, &[captured(order_id, 1)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(5), completing)
        .await
        .expect("the capture does not wait for the deadline's lock");
    poll.rollback().await.unwrap();

    // The row it could not delete names a settled order: the next pass drops it, and only it.
    let report = deadline::time_out_due(app.pool(), &due_now(100))
        .await
        .unwrap();
    assert_eq!((report.timed_out, report.cleared), (0, 1));
    assert_eq!(
        event_types(&app, order_id).await,
        ["OrderPlaced", "OrderCompleted"]
    );
    assert!(open_sagas(&app).await.is_empty());
}

#[tokio::test]
async fn an_order_placed_with_an_idempotency_key_has_a_deadline_too() {
    let app = TestApp::spawn().await.unwrap();
    let body = json!({ "items": [item(1, 1, "1.00")] });
    let order: Value = app.place_with_key(&body, "k-1").await.json().await.unwrap();
    let order_id: Uuid = order["orderId"].as_str().unwrap().parse().unwrap();
    assert_eq!(open_sagas(&app).await, [order_id]);
}

/// The services' sessions force generic plans and rule out sequential scans (ARCHITECTURE.md,
/// "Generic plans"): the poll must find an index for both its range and its order, or it
/// would read every open saga once a second.
#[tokio::test]
async fn the_poll_reads_the_oldest_open_sagas_by_index() {
    let app = TestApp::spawn().await.unwrap();
    sqlx::query(
        "INSERT INTO open_sagas (order_id, placed_at)
         SELECT gen_random_uuid(), now() FROM generate_series(1, 20000)",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let mut conn = app.pool().acquire().await.unwrap();
    sqlx::raw_sql("ANALYZE open_sagas")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("PREPARE due (float8, int8) AS {}", deadline::POLL))
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE due (60, 100)")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("open_sagas_by_age"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}
