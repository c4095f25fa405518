//! Load: 500 orders from 20 concurrent clients over random products, quantities, customers
//! (some over their credit) and some changes, then the invariants exactly.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::common::invariants::{check, snapshot};
use crate::common::stack::{Stack, item};

const ORDERS: usize = 500;
const CLIENTS: usize = 20;

fn random_items(rng: &mut impl Rng, big_spender: bool) -> Value {
    let lines = rng.random_range(1..=3);
    let items: Vec<Value> = (0..lines)
        .map(|_| {
            // Now and then a product that does not exist.
            let product = if rng.random_ratio(1, 40) {
                7
            } else {
                rng.random_range(1..=3)
            };
            let price = if big_spender {
                format!(
                    "{}.{:02}",
                    rng.random_range(2000..4000),
                    rng.random_range(0..100)
                )
            } else {
                format!(
                    "{}.{:02}",
                    rng.random_range(1..60),
                    rng.random_range(0..100)
                )
            };
            item(product, rng.random_range(1..=2), &price)
        })
        .collect();
    json!(items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_orders_keep_every_invariant() {
    let stack = Arc::new(Stack::start().await);
    let customers: Arc<Vec<(Uuid, bool)>> =
        Arc::new((0..40).map(|i| (Uuid::new_v4(), i % 8 == 0)).collect());
    // Every path must be taken, whichever orders the random load lets through first. The random
    // orders soon exhaust the stock (out of stock) after many complete; a big spender's random
    // order is only declined if it gets stock first, so the first orders, placed while every
    // product is there, are ones no credit covers.
    let mut first = Vec::new();
    for (customer, _) in customers.iter().filter(|(_, big)| *big).take(3) {
        let order = stack.place(*customer, json!([item(1, 2, "6000.00")])).await;
        first.push(order["orderId"].as_str().unwrap().to_owned());
    }
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(first.len()));
    let placed = Arc::new(Mutex::new(first));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stack, customers, placed, counter) = (
                stack.clone(),
                customers.clone(),
                placed.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                while counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < ORDERS {
                    let (customer, big, items, change) = {
                        let mut rng = rand::rng();
                        let (customer, big) = customers[rng.random_range(0..customers.len())];
                        (
                            customer,
                            big,
                            random_items(&mut rng, big),
                            rng.random_range(0..10),
                        )
                    };
                    let order = stack.place(customer, items).await;
                    let id = order["orderId"].as_str().unwrap().to_owned();
                    // Some changes right after placing; 200 or 409 are both correct here,
                    // depending on whether the order completed or failed first.
                    let price = if big { "2500.00" } else { "3.00" };
                    if change == 0 {
                        let response = stack
                            .client
                            .post(stack.api(&format!("/api/orders/{id}/items")))
                            .json(&item(2, 1, price))
                            .send()
                            .await
                            .unwrap();
                        assert!(
                            matches!(response.status().as_u16(), 200 | 409),
                            "{}",
                            response.status()
                        );
                    } else if change == 1 {
                        let response = stack
                            .client
                            .delete(stack.api(&format!("/api/orders/{id}/items/1?quantity=1")))
                            .send()
                            .await
                            .unwrap();
                        assert!(
                            matches!(response.status().as_u16(), 200 | 409),
                            "{}",
                            response.status()
                        );
                    }
                    placed.lock().await.push(id);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }

    let ids = placed.lock().await.clone();
    assert_eq!(ids.len(), ORDERS);
    for id in &ids {
        stack.settled(id, Duration::from_secs(30)).await;
    }
    // Stock sees completions after the orders do: wait until nothing is reserved.
    test_support::eventually(
        Duration::from_secs(30),
        "reservations to settle",
        || async {
            Ok(stack
                .stock()
                .await
                .values()
                .all(|(_, reserved)| *reserved == 0)
                .then_some(()))
        },
    )
    .await
    .unwrap();

    let snapshot = snapshot(&stack, &ids).await;
    check(&snapshot);
    let completed = snapshot
        .orders
        .iter()
        .filter(|o| o["status"] == "completed")
        .count();
    let reasons = |r: &str| {
        snapshot
            .orders
            .iter()
            .filter(|o| o["failureReason"] == r)
            .count()
    };
    eprintln!(
        "load: {completed} completed, {} out of stock, {} unknown product, {} payment declined",
        reasons("out_of_stock"),
        reasons("unknown_product"),
        reasons("payment_declined")
    );
    // The load is meant to exercise every path; make sure it did.
    assert!(completed > 0 && reasons("out_of_stock") > 0 && reasons("payment_declined") > 0);
}
