//! Prices come from the catalog (SYSTEM.md §3.1): the order service prices every line from its
//! replica of `shop.catalog`, refuses a stated price that is not the current one, and refuses a
//! product it cannot price. The replica follows the topic: newer versions win, older ones and
//! redeliveries change nothing.

use std::time::Duration;

use contracts::catalog::{self, ProductChanged};
use contracts::{Contract, headers as h, topics};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use test_support::kafka::{RawProducer, Record};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, item};

#[tokio::test]
async fn lines_are_priced_from_the_catalog_and_a_stale_stated_price_is_409() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(1, "45.00").await;
    app.offer(2, "20.00").await;

    // Without a stated price, the line takes the catalog's.
    let order = app
        .place_ok(json!([{ "productId": 1, "quantity": 2 }]))
        .await;
    assert_eq!(order["items"], json!([item(1, 2, "45.00")]));
    assert_eq!(order["total"], "90.00");
    let id = order["orderId"].as_str().unwrap();

    // A stated price that is not the current one: 409, naming the product and its price.
    let response = app
        .place(&json!({ "items": [item(2, 1, "20.00"), item(1, 1, "40.00")] }))
        .await;
    let problem = assert_problem(response, StatusCode::CONFLICT, "price-changed").await;
    assert_eq!(problem["productId"], 1);
    assert_eq!(problem["currentPrice"], "45.00");
    assert!(
        problem["detail"].as_str().unwrap().contains("45.00"),
        "{problem}"
    );
    let response = app.add_item(id, &item(2, 1, "19.99")).await;
    let problem = assert_problem(response, StatusCode::CONFLICT, "price-changed").await;
    assert_eq!(
        (
            problem["productId"].clone(),
            problem["currentPrice"].clone()
        ),
        (json!(2), json!("20.00"))
    );

    // Repriced: placed lines keep their price, new lines take the new one. A customer who
    // states the new price gets it at once (a refusal is decided on the replica itself, never
    // on the prices the service read a moment ago: `catalog::PriceCache`).
    app.offer(1, "50.00").await;
    let added = app.add_item(id, &item(1, 1, "50.00")).await;
    assert_eq!(added.status(), StatusCode::OK);
    let order: Value = added.json().await.unwrap();
    assert_eq!(
        order["items"],
        json!([item(1, 2, "45.00"), item(1, 1, "50.00")])
    );
    assert_eq!(order["total"], "140.00");
    let matching = app.add_item(id, &item(1, 1, "50.00")).await;
    assert_eq!(matching.status(), StatusCode::OK);

    assert_eq!(app.placed().await, 1, "the refused order was not placed");
}

#[tokio::test]
async fn a_product_the_catalog_does_not_know_is_422() {
    let app = TestApp::spawn().await.unwrap();
    let response = app
        .place(&json!({ "items": [item(1, 1, "1.00"), { "productId": 99, "quantity": 1 }] }))
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown-product",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "items[1].productId");

    let order = app.place_ok(json!([item(1, 1, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    let response = app
        .add_item(id, &json!({ "productId": 99, "quantity": 1 }))
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown-product",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "productId");
}

#[tokio::test]
async fn integer_fields_take_integral_floats_and_refuse_fractions() {
    let app = TestApp::spawn().await.unwrap();
    let order = app
        .place_ok(json!([{ "productId": 3.0, "quantity": 2.0, "unitPrice": "1.00" }]))
        .await;
    assert_eq!(order["items"], json!([item(3, 2, "1.00")]));
    let id = order["orderId"].as_str().unwrap();
    let added = app
        .add_item(id, &json!({ "productId": 1.0, "quantity": 1e0 }))
        .await;
    assert_eq!(added.status(), StatusCode::OK);

    for bad in [
        json!({ "productId": 1, "quantity": 2.5 }),
        json!({ "productId": 2.5, "quantity": 1 }),
    ] {
        let response = app.add_item(id, &bad).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
        let response = app.place(&json!({ "items": [bad] })).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    // An integral float out of range is the range's 422, like the integer.
    let response = app
        .place(&json!({ "items": [{ "productId": 1, "quantity": 140855433.0 }] }))
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-order").await;
}

/// A `ProductChanged` record as the catalog's relay publishes it, with `message_id`.
fn change(message_id: Uuid, product: i64, price: &str, version: u32) -> Record {
    let message = ProductChanged {
        product_id: product,
        name: format!("Product {product}"),
        unit_price: price.parse::<Decimal>().unwrap(),
        version,
    };
    Record {
        // One partition for all: the records are applied in the order they are sent.
        partition: Some(0),
        key: Some(catalog::product_key(product)),
        payload: Some(serde_json::to_vec(&message).unwrap()),
        headers: vec![
            (h::MESSAGE_ID.into(), message_id.to_string()),
            (h::MESSAGE_TYPE.into(), ProductChanged::TYPE.into()),
            (
                h::SCHEMA_VERSION.into(),
                ProductChanged::VERSION.to_string(),
            ),
            (h::CORRELATION_ID.into(), message_id.to_string()),
            (h::OCCURRED_AT.into(), chrono::Utc::now().to_rfc3339()),
        ],
        ..Record::default()
    }
}

/// The replica's row of `product`: price and version.
async fn replica(app: &TestApp, product: i64) -> Option<(String, i64)> {
    sqlx::query_as("SELECT unit_price::text, version FROM catalog WHERE product_id = $1")
        .bind(product)
        .fetch_optional(app.pool())
        .await
        .unwrap()
}

async fn until_known(app: &TestApp, product: i64) -> (String, i64) {
    test_support::eventually(
        Duration::from_secs(30),
        &format!("product {product} in the replica"),
        || async move { Ok(replica(app, product).await) },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_replica_follows_the_catalog_topic_newest_version_first_and_redeliveries_change_nothing()
 {
    let settings = test_support::isolated_settings();
    let topic = format!("{}{}", settings.kafka.topic_prefix, topics::CATALOG);
    test_support::create_topics(&settings, &[&topic], 1)
        .await
        .unwrap();
    let app = TestApp::spawn_with(settings.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    let producer = RawProducer::new(&settings).unwrap();
    let (product, sentinel) = (7, 8);

    // Not in the catalog yet: refused.
    let body = json!({ "items": [{ "productId": product, "quantity": 1 }] });
    let response = app.place(&body).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown-product",
    )
    .await;

    producer
        .send(&topic, &change(Uuid::now_v7(), product, "45.00", 1))
        .await
        .unwrap();
    assert_eq!(until_known(&app, product).await, ("45.00".into(), 1));
    let order = app
        .place_ok(json!([{ "productId": product, "quantity": 1 }]))
        .await;
    assert_eq!(order["total"], "45.00");

    // Version 3, then a late version 2, a redelivery of version 3, and another message that
    // claims version 3 again; then a sentinel on the same partition, so that once it is
    // applied, every record before it was too.
    let newest = change(Uuid::now_v7(), product, "50.00", 3);
    for record in [
        newest.clone(),
        change(Uuid::now_v7(), product, "40.00", 2),
        newest,
        change(Uuid::now_v7(), product, "60.00", 3),
        change(Uuid::now_v7(), sentinel, "1.00", 1),
    ] {
        producer.send(&topic, &record).await.unwrap();
    }
    until_known(&app, sentinel).await;
    assert_eq!(replica(&app, product).await, Some(("50.00".into(), 3)));
    let order = app
        .place_ok(json!([{ "productId": product, "quantity": 2, "unitPrice": "50.00" }]))
        .await;
    assert_eq!(order["items"], json!([item(product, 2, "50.00")]));
    // One that states no price pays the new one once the prices read before it are older
    // than `catalog::FRESH`.
    tokio::time::sleep(order::catalog::FRESH).await;
    let unstated = app
        .place_ok(json!([{ "productId": product, "quantity": 1 }]))
        .await;
    assert_eq!(unstated["total"], "50.00");
    let stale = app
        .place(&json!({ "items": [item(product, 1, "40.00")] }))
        .await;
    let problem = assert_problem(stale, StatusCode::CONFLICT, "price-changed").await;
    assert_eq!(problem["currentPrice"], "50.00");

    // The redelivery was skipped by the inbox: five distinct messages, five rows.
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(applied, 5);
    test_support::delete_topics(&settings, &[&topic])
        .await
        .unwrap();
}
