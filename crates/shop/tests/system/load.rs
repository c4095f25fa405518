//! Load: 500 orders from 20 concurrent clients over random products, quantities, customers
//! (some over their credit) and some changes, with an operator restocking and repricing while
//! they run, then the invariants exactly (I1–I5).

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};
use test_support::stack::{Stack, item};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::common::SHOP;
use crate::common::invariants::{check, reports_agree, settled_after_recovery, snapshot};

const ORDERS: usize = 500;
const CLIENTS: usize = 20;

/// One to three lines of random products. A big spender buys monitors (450.00 each) and soon
/// runs out of credit; the others buy anything, and the monitors soon run out.
fn random_items(rng: &mut impl Rng, big_spender: bool) -> Value {
    let lines = rng.random_range(1..=3);
    let items: Vec<Value> = (0..lines)
        .map(|_| {
            let product = if big_spender {
                3
            } else {
                rng.random_range(1..=3)
            };
            item(product, rng.random_range(1..=2))
        })
        .collect();
    json!(items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_orders_keep_every_invariant() {
    let stack = Arc::new(
        Stack::start_with(
            SHOP,
            &["order", "stock", "payment", "projections", "gateway"],
            &[],
        )
        .await,
    );
    let customers: Arc<Vec<(Uuid, bool)>> =
        Arc::new((0..40).map(|i| (Uuid::new_v4(), i % 8 == 0)).collect());
    // Every path must be taken, whichever orders the random load lets through first. The random
    // orders soon exhaust the stock (out of stock) after many complete; a big spender's random
    // order is only declined if it gets stock first, so the first orders, placed while every
    // product is there, are ones no credit covers.
    let mut first = Vec::new();
    for (customer, _) in customers.iter().filter(|(_, big)| *big).take(3) {
        // 23 monitors: 10,350.00, over any new customer's credit.
        let order = stack.place(*customer, json!([item(3, 23)])).await;
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
                    let added = if big { 3 } else { 2 };
                    if change == 0 {
                        let response = stack.add(customer, &id, item(added, 1)).await;
                        assert!(
                            matches!(response.status().as_u16(), 200 | 409),
                            "{}",
                            response.status()
                        );
                    } else if change == 1 {
                        let response = stack.remove_item(customer, &id, 1, 1).await;
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
    // An operator restocks the monitors and reprices the mouse while the orders run: restocks
    // take the path reservations take (I1, I2), and an order pays the price it was placed at.
    let operator = {
        let stack = stack.clone();
        tokio::spawn(async move {
            for round in 0..4 {
                stack.restock(3, 5).await;
                let price = if round % 2 == 0 { "22.00" } else { "20.00" };
                stack.reprice(2, "Mouse", price).await;
            }
        })
    };
    for client in clients {
        client.await.unwrap();
    }
    operator.await.unwrap();

    let ids = placed.lock().await.clone();
    assert_eq!(ids.len(), ORDERS);
    // Stock sees completions after the orders do: this also waits until nothing is reserved.
    settled_after_recovery(&stack, &ids).await;

    let snapshot = snapshot(&stack, &ids).await;
    check(&snapshot);
    reports_agree(&stack, &snapshot.orders).await;
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
