//! The operator API over real processes, through the entry point: an order's journey across the
//! services, the stuck list and the overview while a service is down, and the hop a stuck
//! order waits on.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::eventually;
use uuid::Uuid;

use crate::common::stack::Stack;

async fn get(stack: &Stack, path: &str) -> Value {
    let response = stack
        .as_operator(stack.client.get(stack.api(path)))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

fn kinds(journey: &Value, kind: &str) -> Vec<String> {
    journey["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            format!(
                "{} {}",
                s["by"].as_str().unwrap(),
                s["what"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_journey_shows_every_hop_and_a_stuck_order_names_the_one_it_waits_on() {
    let mut stack = Stack::start().await;
    let customer = Uuid::new_v4();
    let order = stack
        .place(customer, json!([{"productId": 1, "quantity": 1}]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.settled(&id, Duration::from_secs(30)).await["status"],
        "completed"
    );

    let journey = get(&stack, &format!("/api/ops/orders/{id}/journey")).await;
    assert_eq!(
        kinds(&journey, "event"),
        ["order OrderPlaced", "order OrderCompleted"]
    );
    let messages = kinds(&journey, "message");
    for expected in [
        "order OrderPlaced",
        "stock StockReserved",
        "payment PaymentCaptured",
        "order OrderCompleted",
    ] {
        assert!(
            messages.contains(&expected.to_owned()),
            "{expected} missing: {journey:#}"
        );
    }
    let applied = kinds(&journey, "applied");
    for expected in [
        "stock OrderPlaced",
        "payment StockReserved",
        "order PaymentCaptured",
    ] {
        assert!(
            applied.contains(&expected.to_owned()),
            "{expected} missing: {journey:#}"
        );
    }
    // Each message is placed on its topic, and names the message that caused it.
    let reserved = journey["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "message" && s["what"] == "StockReserved")
        .unwrap();
    assert!(reserved["topic"].as_str().unwrap().ends_with("shop.stock"));
    assert!(reserved["offset"].as_i64().is_some() && reserved["causationId"].as_str().is_some());
    assert_eq!(
        journey["traceId"].as_str().map(str::len),
        Some(32),
        "{journey:#}"
    );
    assert!(journey["waitingOn"].is_null());

    // With payment down, an order stays pending: it is listed as stuck, and its journey says
    // that payment has not applied the reservation.
    stack.stop("payment").await;
    let stuck = stack
        .place(customer, json!([{"productId": 2, "quantity": 1}]))
        .await;
    let stuck_id = stuck["orderId"].as_str().unwrap().to_owned();
    let journey = eventually(
        Duration::from_secs(30),
        "the order to wait on payment",
        || {
            let path = format!("/api/ops/orders/{stuck_id}/journey");
            let stack = &stack;
            async move {
                let journey = get(stack, &path).await;
                let waiting = journey["waitingOn"].as_str().unwrap_or_default().to_owned();

                Ok(waiting
                    .starts_with("payment has not applied StockReserved")
                    .then_some(journey))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(journey["order"]["status"], "pending");
    let listed = get(&stack, "/api/ops/orders/stuck?olderThan=0").await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [stuck_id.as_str()]);
    let overview = get(&stack, "/api/ops/overview").await;
    let payment = overview["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "payment")
        .unwrap();
    assert_eq!(payment["up"], false, "{overview:#}");
    assert!(
        overview["sagas"]["completed"].as_f64().unwrap() >= 1.0,
        "{overview:#}"
    );
    let lagging: i64 = overview["lag"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["group"] == "payment")
        .map(|l| l["messages"].as_i64().unwrap())
        .sum();
    assert!(
        lagging >= 1,
        "payment's group is behind by the reservation: {overview:#}"
    );

    // Back up, the order completes and leaves the stuck list.
    stack.spawn("payment").await;
    assert_eq!(
        stack.settled(&stuck_id, Duration::from_secs(30)).await["status"],
        "completed"
    );
    let listed = get(&stack, "/api/ops/orders/stuck?olderThan=0").await;
    assert_eq!(listed, json!([]));
    stack.remove().await.unwrap();
}
