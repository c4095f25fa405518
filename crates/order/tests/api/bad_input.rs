//! Every bad input of SYSTEM.md §7 gets its status and a problem document.

use order::commands::{self, Context};
use order::domain::{Command, OrderId};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, item};

fn order_with(items: Value) -> Value {
    json!({ "items": items })
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await.unwrap();
    let response = app
        .post_raw(
            "/api/orders",
            "application/json",
            b"{\"customerId\": ".to_vec(),
        )
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert!(body["detail"].as_str().unwrap().contains("EOF"), "{body}");
}

#[tokio::test]
async fn wrong_types_are_400() {
    let app = TestApp::spawn().await.unwrap();
    for body in [
        json!({ "items": "many" }),
        order_with(json!([{ "productId": "one", "quantity": 1, "unitPrice": "1.00" }])),
        order_with(json!([{ "productId": 1, "quantity": 1.5, "unitPrice": "1.00" }])),
        order_with(json!([{ "productId": 1, "quantity": 1, "unitPrice": true }])),
        order_with(json!([{ "productId": 1, "quantity": 2.5 }])),
        order_with(json!([{ "productId": 1.5, "quantity": 1 }])),
        json!({ "customerId": 7, "items": [item(1, 1, "1.00")] }),
        json!({}),
        json!([1, 2]),
    ] {
        let response = app.place(&body).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await.unwrap();
    let response = app
        .post_raw("/api/orders", "text/plain", b"hello".to_vec())
        .await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
}

#[tokio::test]
async fn semantic_violations_are_422() {
    let app = TestApp::spawn().await.unwrap();
    let too_many: Vec<Value> = (1..=51).map(|p| item(p, 1, "1.00")).collect();
    let cases = [
        (order_with(json!([])), "empty-order"),
        (order_with(json!(too_many)), "too-many-lines"),
        (order_with(json!([item(1, 0, "1.00")])), "invalid-order"),
        (order_with(json!([item(1, -2, "1.00")])), "invalid-order"),
        (order_with(json!([item(1, 1001, "1.00")])), "invalid-order"),
        (order_with(json!([item(1, 1, "-1.00")])), "invalid-order"),
        (order_with(json!([item(1, 1, "1.001")])), "invalid-order"),
        (
            order_with(json!([{ "productId": 1, "quantity": 1, "unitPrice": 1.001 }])),
            "invalid-order",
        ),
        (order_with(json!([item(1, 1, "ten")])), "invalid-order"),
        (order_with(json!([item(0, 1, "1.00")])), "invalid-order"),
        (
            order_with(json!([item(1, 600, "1.00"), item(1, 600, "1.00")])),
            "quantity-too-large",
        ),
        (
            json!({ "customerId": "not-a-uuid", "items": [item(1, 1, "1.00")] }),
            "invalid-order",
        ),
    ];
    for (body, kind) in cases {
        let response = app.place(&body).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, kind).await;
        if kind == "invalid-order" {
            assert!(
                !problem["errors"].as_array().unwrap().is_empty(),
                "{problem}"
            );
        }
    }
    // Nothing was stored for any of them.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(events, 0);
}

#[tokio::test]
async fn the_field_errors_name_every_bad_field() {
    let app = TestApp::spawn().await.unwrap();
    let response = app
        .place(&order_with(json!([
            item(1, 0, "1.005"),
            item(-1, 1, "1.00")
        ])))
        .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-order").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "items[0].quantity",
            "items[0].unitPrice",
            "items[1].productId"
        ]
    );
}

#[tokio::test]
async fn item_changes_with_bad_values_are_422() {
    let app = TestApp::spawn().await.unwrap();
    let order = app.place_ok(json!([item(1, 2, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    let response = app.add_item(id, &item(1, 0, "1.00")).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-order").await;
    let response = app.remove_item(id, "1", Some(0)).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-order").await;
    let response = app.remove_item(id, "x", Some(1)).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    let response = app
        .client
        .delete(format!(
            "{}/api/orders/{id}/items/1?quantity=lots",
            app.address
        ))
        .header("authorization", &app.auth)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
}

#[tokio::test]
async fn unknown_orders_are_404() {
    let app = TestApp::spawn().await.unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_problem(
        app.get_order(&unknown).await,
        StatusCode::NOT_FOUND,
        "order-not-found",
    )
    .await;
    assert_problem(
        app.get_events(&unknown).await,
        StatusCode::NOT_FOUND,
        "order-not-found",
    )
    .await;
    assert_problem(
        app.get_order("nope").await,
        StatusCode::NOT_FOUND,
        "order-not-found",
    )
    .await;
    let response = app.add_item(&unknown, &item(1, 1, "1.00")).await;
    assert_problem(response, StatusCode::NOT_FOUND, "order-not-found").await;
    let response = app.remove_item(&unknown, "1", Some(1)).await;
    assert_problem(response, StatusCode::NOT_FOUND, "order-not-found").await;
    let response = app
        .client
        .get(format!("{}/api/nothing", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn changes_not_allowed_in_the_current_state_are_409() {
    let app = TestApp::spawn().await.unwrap();
    let order = app.place_ok(json!([item(1, 2, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap();

    let response = app.remove_item(id, "1", Some(3)).await;
    assert_problem(response, StatusCode::CONFLICT, "not-enough-to-remove").await;
    let response = app.remove_item(id, "2", Some(1)).await;
    assert_problem(response, StatusCode::CONFLICT, "not-enough-to-remove").await;
    let response = app.remove_item(id, "1", None).await;
    assert_problem(response, StatusCode::CONFLICT, "order-would-be-empty").await;

    // Completed: the order is no longer pending.
    let order_id = OrderId(id.parse().unwrap());
    let context = Context::external(order_id, None);
    let payment_id = uuid::Uuid::new_v4();
    commands::execute(
        app.pool(),
        order_id,
        Command::ConfirmPayment {
            revision: 1,
            payment_id,
        },
        &context,
    )
    .await
    .unwrap();
    let response = app.remove_item(id, "1", Some(1)).await;
    assert_problem(response, StatusCode::CONFLICT, "order-not-pending").await;
    let order: Value = app.get_order(id).await.json().await.unwrap();
    assert_eq!(order["status"], "completed");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::spawn().await.unwrap();
    let huge = format!(
        "{{\"customerId\": \"{}\", \"items\": [], \"pad\": \"{}\"}}",
        uuid::Uuid::new_v4(),
        "x".repeat(100_000)
    );
    let response = app
        .post_raw("/api/orders", "application/json", huge.into_bytes())
        .await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_409() {
    let app = TestApp::spawn().await.unwrap();
    let first = order_with(json!([item(1, 1, "1.00")]));
    let second = order_with(json!([item(1, 2, "1.00")]));
    assert_eq!(
        app.place_with_key(&first, "k").await.status(),
        StatusCode::CREATED
    );
    let response = app.place_with_key(&second, "k").await;
    assert_problem(response, StatusCode::CONFLICT, "idempotency-key-reused").await;
}
