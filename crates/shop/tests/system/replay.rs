//! I7: every message of the saga delivered a second time (the consumer groups reset to the
//! beginning of every topic) changes no order, no stock and no payment.

use std::time::Duration;

use serde_json::json;
use test_support::stack::{Stack, item};
use uuid::Uuid;

use crate::common::SHOP;
use crate::common::replay::check_then_replay_everything;

#[tokio::test]
async fn replaying_every_topic_from_the_start_changes_nothing() {
    let mut stack = Stack::start(SHOP).await;
    let rich = Uuid::new_v4();
    let mut ids = Vec::new();
    for i in 0..30 {
        let items = match i % 4 {
            0 => json!([item(3, 30)]),            // out of stock
            1 => json!([item(3, 23)]),            // declined: 10,350.00
            _ => json!([item(1, 1), item(2, 1)]), // completes: 65.00
        };
        let customer = if i % 4 == 1 { Uuid::new_v4() } else { rich };
        let order = stack.place(customer, items).await;
        ids.push(order["orderId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        stack.settled(id, Duration::from_secs(10)).await;
    }
    check_then_replay_everything(&mut stack, &ids, &["order", "stock", "payment"]).await;
}
