//! The happy paths of the orders API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, item};

#[tokio::test]
async fn placing_an_order_returns_it_pending_with_its_location() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(1, "12.50").await;
    app.offer(2, "0.99").await;
    let customer = app.customer;
    let response = app
        .place(&json!({
            "items": [item(1, 2, "12.50"), { "productId": 2, "quantity": 1, "unitPrice": 0.99 }]
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();

    assert_eq!(
        location,
        format!("/api/orders/{}", order["orderId"].as_str().unwrap())
    );
    assert_eq!(order["customerId"], customer.to_string());
    assert_eq!(order["status"], "pending");
    assert_eq!(order["failureReason"], Value::Null);
    assert_eq!(order["total"], "25.99");
    assert_eq!(order["version"], 1);
    assert_eq!(
        order["items"],
        json!([item(1, 2, "12.50"), item(2, 1, "0.99")])
    );
    assert!(order["createdAt"].is_string() && order["updatedAt"].is_string());

    let fetched: Value = app
        .get_order(order["orderId"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, order);
}

#[tokio::test]
async fn adding_and_removing_items_while_pending_changes_the_order() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(1, "10.00").await;
    app.offer(3, "2.50").await;
    let order = app.place_ok(json!([item(1, 2, "10.00")])).await;
    let id = order["orderId"].as_str().unwrap();

    let response = app.add_item(id, &item(3, 4, "2.50")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["total"], "30.00");
    assert_eq!(order["version"], 2);

    let response = app.remove_item(id, "3", Some(3)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(
        order["items"],
        json!([item(1, 2, "10.00"), item(3, 1, "2.50")])
    );
    assert_eq!(order["total"], "22.50");

    // Without a quantity, every unit of the product goes.
    let order: Value = app.remove_item(id, "3", None).await.json().await.unwrap();
    assert_eq!(order["items"], json!([item(1, 2, "10.00")]));
    assert_eq!(order["version"], 4);
}

#[tokio::test]
async fn the_event_history_lists_every_event_in_version_order() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(1, "5.00").await;
    let order = app.place_ok(json!([item(1, 1, "5.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    app.add_item(id, &item(2, 2, "1.00")).await;
    app.remove_item(id, "2", Some(1)).await;

    let events: Value = app.get_events(id).await.json().await.unwrap();
    let events = events.as_array().unwrap();
    let versions: Vec<i64> = events
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(types, vec!["OrderPlaced", "ItemAdded", "ItemRemoved"]);
    assert_eq!(events[1]["data"], item(2, 2, "1.00"));
    assert!(events[0]["recordedAt"].is_string());
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_returns_the_same_order() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(1, "3.00").await;
    let body = json!({ "customerId": app.customer, "items": [item(1, 1, "3.00")] });

    let first = app.place_with_key(&body, "key-1").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second: Value = app
        .place_with_key(&body, "key-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["orderId"], second["orderId"]);

    // Concurrent retries of a new key also place exactly one order.
    let attempts = (0..8).map(|_| app.place_with_key(&body, "key-2"));
    let responses = futures::future::join_all(attempts).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.unwrap();
        ids.push(order["orderId"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");

    assert_eq!(app.placed().await, 2);
}

#[tokio::test]
async fn placing_writes_the_integration_message_to_the_outbox_with_its_headers() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(2, "4.00").await;
    let order = app.place_ok(json!([item(2, 3, "4.00")])).await;
    let id: uuid::Uuid = order["orderId"].as_str().unwrap().parse().unwrap();

    let (topic, key, message_type, version, payload, correlation): (String, String, String, i16, Value, uuid::Uuid) =
        sqlx::query_as(
            "SELECT topic, message_key, message_type, schema_version, payload::jsonb, correlation_id FROM outbox",
        )
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(topic, contracts::topics::ORDERS);
    assert_eq!(key, id.to_string());
    assert_eq!((message_type.as_str(), version), ("OrderPlaced", 2));
    assert_eq!(correlation, id);
    assert_eq!(payload["revision"], 1);
    assert_eq!(payload["lines"], json!([item(2, 3, "4.00")]));
    assert_eq!(payload["total"], "12.00");
}

/// The relay of the test service polls every two minutes: each command that appends must ring
/// it once its transaction committed.
#[tokio::test]
async fn every_command_that_appends_wakes_the_relay() {
    let app = TestApp::spawn().await.unwrap();
    let soon = std::time::Duration::from_secs(5);
    app.offer(1, "2.00").await;
    app.offer(2, "4.00").await;
    // The relay's first read may find the first order without a ring; after that it is idle.
    let order = app.place_ok(json!([item(2, 3, "4.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    app.published(1, std::time::Duration::from_secs(10))
        .await
        .unwrap();

    let added = app.add_item(id, &item(1, 1, "2.00")).await;
    assert_eq!(added.status(), StatusCode::OK);
    app.published(2, soon).await.unwrap();

    let removed = app.remove_item(id, "1", None).await;
    assert_eq!(removed.status(), StatusCode::OK);
    app.published(3, soon).await.unwrap();

    let key = test_support::unique("key");
    let placed = app
        .place_with_key(&json!({ "items": [item(3, 1, "1.00")] }), &key)
        .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    app.published(4, soon).await.unwrap();

    app.place_ok(json!([item(3, 1, "1.00")])).await;
    app.published(5, soon).await.unwrap();
}
