//! The order's saga handler on micro-batches, against the real PostgreSQL: each message decided
//! against the order as the batch left it, and a batch that lost a race rolled back whole.

use std::time::Duration;

use contracts::Contract;
use contracts::payments::{PaymentCaptured, PaymentDeclined};
use messaging::consumer::{HandlerError, IncomingMessage};
use messaging::outbox::Metadata;
use order::saga::SagaHandler;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, item};

pub(crate) fn incoming<M: Contract>(order_id: Uuid, message: &M) -> IncomingMessage {
    IncomingMessage {
        topic: M::TOPIC.to_owned(),
        partition: 0,
        offset: 0,
        key: Some(order_id.to_string()),
        message_type: M::TYPE.to_owned(),
        schema_version: M::VERSION,
        payload: serde_json::to_vec(message).unwrap(),
        metadata: Metadata {
            message_id: Uuid::now_v7(),
            correlation_id: order_id,
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        },
    }
}

pub(crate) fn captured(order_id: Uuid, revision: u32) -> IncomingMessage {
    let message = PaymentCaptured {
        order_id,
        payment_id: Uuid::new_v4(),
        customer_id: Uuid::nil(),
        revision,
        amount: Decimal::ONE,
    };
    incoming(order_id, &message)
}

fn declined(order_id: Uuid, revision: u32) -> IncomingMessage {
    let message = PaymentDeclined {
        order_id,
        customer_id: Uuid::nil(),
        revision,
        amount: Decimal::ONE,
        available_credit: Decimal::ZERO,
    };
    incoming(order_id, &message)
}

pub(crate) async fn place(app: &TestApp) -> Uuid {
    let order = app.place_ok(json!([item(1, 1, "1.00")])).await;
    order["orderId"].as_str().unwrap().parse().unwrap()
}

pub(crate) async fn handle(
    handler: &SagaHandler,
    conn: &mut sqlx::PgConnection,
    messages: &[IncomingMessage],
) -> Result<(), HandlerError> {
    test_support::handler::handle_on(handler, conn, messages).await
}

pub(crate) async fn event_types(app: &TestApp, order_id: Uuid) -> Vec<String> {
    let events: Value = app
        .get_events(&order_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    (events.as_array().unwrap().iter())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_batch_decides_each_message_against_the_order_as_the_messages_before_it_left_it() {
    let app = TestApp::spawn().await.unwrap();
    let (paid, refused, changed) = (place(&app).await, place(&app).await, place(&app).await);
    app.offer(2, "2.00").await;
    let add = app
        .add_item(&changed.to_string(), &item(2, 1, "2.00"))
        .await;
    assert_eq!(add.status(), reqwest::StatusCode::OK);

    let batch = [
        captured(paid, 1),
        captured(changed, 1), // stale: the order is at revision 2
        declined(refused, 1),
        captured(changed, 2),
        captured(paid, 1), // the order completed two messages ago
    ];
    let mut tx = app.pool().begin().await.unwrap();
    handle(&SagaHandler, &mut tx, &batch).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        event_types(&app, paid).await,
        ["OrderPlaced", "OrderCompleted"]
    );
    assert_eq!(
        event_types(&app, refused).await,
        ["OrderPlaced", "OrderFailed"]
    );
    assert_eq!(
        event_types(&app, changed).await,
        ["OrderPlaced", "ItemAdded", "OrderCompleted"]
    );
    let queued: Vec<(String, String)> = sqlx::query_as(
        "SELECT message_key, message_type FROM outbox
         WHERE message_type IN ('OrderCompleted', 'OrderFailed') ORDER BY id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let expected = [
        (paid, "OrderCompleted"),
        (refused, "OrderFailed"),
        (changed, "OrderCompleted"),
    ]
    .map(|(id, kind)| (id.to_string(), kind.to_owned()));
    assert_eq!(queued, expected, "in the order the batch decided them");
}

#[tokio::test]
async fn a_batch_that_lost_a_race_for_one_order_writes_nothing_for_any() {
    let app = TestApp::spawn().await.unwrap();
    let (contested, other) = (place(&app).await, place(&app).await);

    // A first transaction completes `contested` and stays open.
    let mut first = app.pool().begin().await.unwrap();
    handle(&SagaHandler, &mut first, &[captured(contested, 1)])
        .await
        .unwrap();
    // A second batch reads `contested` as placed, and its append waits until the first ends.
    let pool = app.pool().clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let batch = [declined(other, 1), declined(contested, 1)];
        let outcome = handle(&SagaHandler, &mut tx, &batch).await;
        tx.rollback().await.unwrap();
        outcome
    });
    // Only once the second append waits on the first one's row lock does the first commit.
    test_support::eventually(
        Duration::from_secs(10),
        "the second batch's append to wait on the first",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(app.pool())
            .await?;
            Ok((waiting > 0).then_some(()))
        },
    )
    .await
    .unwrap();
    first.commit().await.unwrap();

    let outcome = second.await.unwrap();
    assert!(
        matches!(outcome, Err(HandlerError::Transient(_))),
        "{outcome:?}"
    );
    assert_eq!(
        event_types(&app, contested).await,
        ["OrderPlaced", "OrderCompleted"]
    );
    assert_eq!(event_types(&app, other).await, ["OrderPlaced"]);
}
