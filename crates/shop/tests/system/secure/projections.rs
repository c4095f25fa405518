//! The read models on redis-secure and mongodb-secure at once: the projections reach both
//! servers by configuration only (`SHOP_REDIS__URL`, `SHOP_REDIS__CA_FILE`,
//! `SHOP_MONGODB__URL`), and an order placed through the gateway shows in both reports.

use std::time::Duration;

use ::mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use test_support::stack::{Stack, item};
use uuid::Uuid;

use super::{mongodb, redis, tls_dir};
use crate::common::SHOP;

/// `GET path` through the gateway as an operator, once it answers 200 and `done` holds.
pub(super) async fn report_until(
    stack: &Stack,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    test_support::eventually(
        Duration::from_secs(30),
        &format!("{path} to count the order"),
        || async {
            let response = stack
                .as_operator(stack.client.get(stack.api(path)))
                .send()
                .await?;
            if !response.status().is_success() {
                return Ok(None);
            }
            let report: Value = response.json().await?;
            Ok(done(&report).then_some(report))
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_read_models_fill_over_tls_on_redis_and_mongodb() {
    let ca = tls_dir().join("ca.pem");
    let redis_url = redis::url("rediss", &format!("shop:{}@", redis::password()));
    let mongodb_url = mongodb::services_url();
    let stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "projections", "gateway"],
        &[
            ("SHOP_REDIS__URL", &redis_url),
            ("SHOP_REDIS__CA_FILE", &ca.display().to_string()),
            ("SHOP_MONGODB__URL", &mongodb_url),
        ],
    )
    .await;

    let order = stack.place(Uuid::new_v4(), json!([item(1, 2)])).await;
    let id = order["orderId"].as_str().unwrap();
    let order = stack.settled(id, Duration::from_secs(10)).await;
    assert_eq!(order["status"], "completed", "{order}");

    read_models_hold_the_order(&stack, &redis_url, &mongodb_url).await;
    stack.remove().await.unwrap();
}

/// The read models on redis-secure and mongodb-secure hold `stack`'s one order of two units of
/// product 1: through the reports, and in the servers themselves, whose data of the stack it
/// then removes.
pub(super) async fn read_models_hold_the_order(stack: &Stack, redis_url: &str, mongodb_url: &str) {
    let ca = tls_dir().join("ca.pem");
    // The products report (Redis) counts the two units at their price, the orders report
    // (MongoDB) the completed order.
    let products = report_until(stack, "/api/reports/products", |r| {
        r.as_array().is_some_and(|products| {
            products
                .iter()
                .any(|p| p["productId"] == 1 && p["prices"][0]["quantity"] == 2)
        })
    })
    .await;
    let orders = report_until(stack, "/api/reports/orders", |r| r["completed"] == 1).await;
    assert_eq!(orders["total"], 1, "{orders}");

    // The data is on the TLS servers: the stack's Redis keys and MongoDB database are there.
    let id = stack.id.as_str();
    let settings = platform::settings::RedisSettings {
        url: redis_url.to_owned(),
        key_prefix: format!("{id}:"),
        ca_file: Some(ca.display().to_string()),
    };
    let mut con = platform::redis::client(&settings)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{id}:*"))
        .arg("COUNT")
        .arg(10_000)
        .query_async::<(u64, Vec<String>)>(&mut con)
        .await
        .unwrap()
        .1;
    assert!(
        keys.iter().any(|k| k.ends_with(":p:1")),
        "{products}: keys on redis-secure {keys:?}"
    );
    let _: () = ::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut con)
        .await
        .unwrap();
    let database = ::mongodb::Client::with_uri_str(mongodb_url)
        .await
        .unwrap()
        .database(id);
    let counters = database
        .collection::<Document>("order_counters_0")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert!(counters > 0, "no counters in {id} on mongodb-secure");
    database.drop().await.unwrap();
}
