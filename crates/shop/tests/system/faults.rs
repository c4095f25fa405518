//! Fault drills of SYSTEM.md §6 on the real processes: SIGKILLed services, Kafka stopped,
//! PostgreSQL restarted. These stop shared servers, so each runs alone
//! ([`Stack::start_alone`]).

use serde_json::json;
use test_support::Stopped;
use test_support::stack::{COMPONENTS, Stack, item};
use uuid::Uuid;

use crate::common::SHOP;
use crate::common::invariants::{AFTER_RECOVERY, settle_and_check};

async fn place_some(stack: &Stack, n: usize, ids: &mut Vec<String>) {
    let customer = Uuid::new_v4();
    for i in 0..n {
        let items = if i % 7 == 3 {
            json!([item(3, 30)])
        } else {
            json!([item(1 + (i % 3) as i64, 1)])
        };
        let order = stack.place(customer, items).await;
        ids.push(order["orderId"].as_str().unwrap().to_owned());
    }
}

#[tokio::test]
async fn services_killed_with_sigkill_mid_saga_lose_and_double_nothing() {
    let mut stack = Stack::start_alone(SHOP, &COMPONENTS).await;
    let mut ids = Vec::new();
    place_some(&stack, 40, &mut ids).await;
    // Kill the saga's consumers and relays while messages are in flight, place more meanwhile.
    stack.kill("stock");
    stack.kill("payment");
    place_some(&stack, 40, &mut ids).await;
    stack.spawn("stock").await;
    stack.kill("order");
    stack.spawn("order").await;
    place_some(&stack, 20, &mut ids).await;
    stack.spawn("payment").await;
    stack.kill("stock");
    stack.spawn("stock").await;
    settle_and_check(&stack, &ids).await;
}

#[tokio::test]
async fn orders_are_accepted_while_kafka_is_down_and_complete_after_it_returns() {
    let stack = Stack::start_alone(SHOP, &COMPONENTS).await;
    let mut ids = Vec::new();
    place_some(&stack, 10, &mut ids).await;
    let kafka = Stopped::server("kafka");
    let mut during = Vec::new();
    place_some(&stack, 20, &mut during).await;
    for id in &during {
        assert_eq!(
            stack.order(id).await["status"],
            "pending",
            "nothing can move without Kafka"
        );
    }
    kafka.restart();
    ids.extend(during);
    settle_and_check(&stack, &ids).await;
}

#[tokio::test]
async fn services_reconnect_after_postgres_restarts() {
    let stack = Stack::start_alone(SHOP, &COMPONENTS).await;
    let mut ids = Vec::new();
    place_some(&stack, 10, &mut ids).await;
    let postgres = Stopped::server("postgres");
    // While it is down the API answers with a problem document, not a hang or a crash.
    let response = stack
        .client
        .post(stack.api("/api/orders"))
        .header("authorization", Stack::customer(Uuid::new_v4()))
        .json(&json!({ "items": [item(1, 1)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    postgres.restart();
    test_support::eventually(AFTER_RECOVERY, "the API to accept orders again", || async {
        let response = stack
            .client
            .post(stack.api("/api/orders"))
            .header("authorization", Stack::customer(Uuid::new_v4()))
            .json(&json!({ "items": [item(2, 1)] }))
            .send()
            .await?;
        if response.status().as_u16() != 201 {
            return Ok(None);
        }
        let order: serde_json::Value = response.json().await?;
        Ok(Some(
            order["orderId"].as_str().unwrap_or_default().to_owned(),
        ))
    })
    .await
    .map(|id| ids.push(id))
    .unwrap();
    place_some(&stack, 10, &mut ids).await;
    settle_and_check(&stack, &ids).await;
}
