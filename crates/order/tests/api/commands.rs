//! Commands against the real PostgreSQL: atomicity of events and outbox, and concurrency.

use order::commands::{self, CommandError, Context};
use order::domain::{Command, CustomerId, Line, OrderId, Price, ProductId, Quantity};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, item};

fn line(product: i64, quantity: i64) -> Line {
    Line {
        product_id: ProductId::parse(product).unwrap(),
        quantity: Quantity::parse(quantity).unwrap(),
        unit_price: Price::parse("1.00").unwrap(),
    }
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(app.pool())
        .await
        .unwrap()
}

/// (events, outbox rows)
async fn written(app: &TestApp) -> (i64, i64) {
    (count(app, "events").await, count(app, "outbox").await)
}

#[tokio::test]
async fn events_and_their_outbox_messages_commit_or_roll_back_together() {
    let app = TestApp::spawn().await.unwrap();
    let order_id = OrderId(uuid::Uuid::new_v4());
    let place = Command::Place {
        customer_id: CustomerId(uuid::Uuid::new_v4()),
        lines: vec![line(1, 1)],
    };
    let context = Context::external(order_id, None);

    // A transaction that appended and enqueued, then rolled back, leaves neither.
    let mut tx = app.pool().begin().await.unwrap();
    let executed = commands::execute_in(&mut tx, order_id, place.clone(), &context)
        .await
        .unwrap();
    assert_eq!(executed.appended, 1);
    tx.rollback().await.unwrap();
    assert_eq!(written(&app).await, (0, 0));

    // A failure injected between the event insert and the outbox insert loses the event too.
    sqlx::raw_sql(
        "CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'injected outbox failure'; END $$;
         CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox
           FOR EACH ROW EXECUTE FUNCTION fail_outbox();",
    )
    .execute(app.pool())
    .await
    .unwrap();
    // Placing outside a transaction (`start`: one statement) is just as atomic.
    let in_a_transaction = commands::execute(app.pool(), order_id, place.clone(), &context).await;
    let in_one_statement = commands::start(app.pool(), order_id, place.clone(), &context).await;
    for result in [in_a_transaction, in_one_statement] {
        assert!(
            matches!(result, Err(CommandError::Database(_))),
            "{result:?}"
        );
    }
    assert_eq!(written(&app).await, (0, 0));

    // Without the failure both commit.
    sqlx::query("DROP TRIGGER fail_outbox ON outbox")
        .execute(app.pool())
        .await
        .unwrap();
    commands::start(app.pool(), order_id, place.clone(), &context)
        .await
        .unwrap();
    assert_eq!(written(&app).await, (1, 1));

    // `start` on a stream that exists after all loses on the version, and queues nothing.
    let result = commands::start(app.pool(), order_id, place, &context).await;
    assert!(
        matches!(result, Err(CommandError::Conflict(_))),
        "{result:?}"
    );
    assert_eq!(written(&app).await, (1, 1));
}

#[tokio::test]
async fn concurrent_changes_to_one_order_are_all_applied_without_gaps() {
    let app = TestApp::spawn().await.unwrap();
    let order = app.place_ok(json!([item(1, 1, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();

    app.offer(4, "1.00").await;
    let adds = (0..12).map(|i| {
        let app = &app;
        let id = id.clone();
        async move { app.add_item(&id, &item(2 + (i % 3), 1, "1.00")).await }
    });
    let responses = futures::future::join_all(adds).await;
    let mut applied = 0;
    for response in responses {
        match response.status() {
            StatusCode::OK => applied += 1,
            // Allowed by the contract: a clean refusal after repeated lost races.
            StatusCode::CONFLICT => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(applied > 0);

    let order: Value = app.get_order(&id).await.json().await.unwrap();
    let units: i64 = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["quantity"].as_i64().unwrap())
        .sum();
    assert_eq!(
        units,
        1 + applied,
        "every accepted change is in the order, none twice"
    );

    // I6: versions 1..n without gaps, and the state is the fold of the events.
    let events: Value = app.get_events(&id).await.json().await.unwrap();
    let versions: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, (1..=1 + applied).collect::<Vec<_>>());
    assert_eq!(order["version"], 1 + applied);
    assert_eq!(count(&app, "outbox").await, 1 + applied);
}

#[tokio::test]
async fn a_saga_reply_and_an_item_change_racing_on_one_order_never_lose_an_update() {
    let app = TestApp::spawn().await.unwrap();
    for _ in 0..10 {
        let order = app.place_ok(json!([item(1, 1, "1.00")])).await;
        let id = order["orderId"].as_str().unwrap().to_owned();
        let order_id = OrderId(id.parse().unwrap());
        let context = Context::external(order_id, None);

        let confirm = commands::execute(
            app.pool(),
            order_id,
            Command::ConfirmPayment {
                revision: 1,
                payment_id: uuid::Uuid::new_v4(),
            },
            &context,
        );
        let new_item = item(2, 1, "1.00");
        let add = app.add_item(&id, &new_item);
        let (confirmed, added) = tokio::join!(confirm, add);
        let confirmed = confirmed.unwrap();

        let order: Value = app.get_order(&id).await.json().await.unwrap();
        let events: Value = app.get_events(&id).await.json().await.unwrap();
        let types: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        if added.status() == StatusCode::OK {
            // The change came first: the payment for revision 1 is stale and completes nothing.
            assert_eq!(types, vec!["OrderPlaced", "ItemAdded"]);
            assert_eq!(confirmed.appended, 0);
            assert_eq!(order["items"].as_array().unwrap().len(), 2);
        } else {
            // The payment came first: the order completed and the change is refused.
            assert_eq!(added.status(), StatusCode::CONFLICT);
            assert_eq!(types, vec!["OrderPlaced", "OrderCompleted"]);
            assert_eq!(order["items"].as_array().unwrap().len(), 1);
        }
    }
}
