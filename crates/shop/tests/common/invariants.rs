//! The invariants of SYSTEM.md §5 that the stack's state can be checked against.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use test_support::stack::Stack;

pub const SEEDED: [(i64, i64); 3] = [(1, 100), (2, 50), (3, 25)];

/// I4 after a fault: every order settles within 30 s of recovery.
pub const AFTER_RECOVERY: Duration = Duration::from_secs(30);

/// Waits until every order of `ids` settled and nothing stays reserved, each within
/// [`AFTER_RECOVERY`] (I4 after a fault).
pub async fn settled_after_recovery(stack: &Stack, ids: &[String]) {
    for id in ids {
        stack.settled(id, AFTER_RECOVERY).await;
    }
    test_support::eventually(AFTER_RECOVERY, "reservations to settle", || async {
        Ok(stack
            .stock()
            .await
            .values()
            .all(|(_, reserved)| *reserved == 0)
            .then_some(()))
    })
    .await
    .unwrap();
}

/// [`settled_after_recovery`], then I1–I4 over `ids`, every order the stack saw.
pub async fn settle_and_check(stack: &Stack, ids: &[String]) {
    settled_after_recovery(stack, ids).await;
    check(&snapshot(stack, ids).await);
}

/// Everything observable that the saga changes; equal snapshots mean nothing changed.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub orders: Vec<Value>,
    pub stock: Vec<(i64, (i64, i64))>,
    pub payments: Vec<Value>,
    /// Units operators added (I1: available = seeded + restocked − sold).
    pub restocked: Vec<(i64, i64)>,
}

pub async fn snapshot(stack: &Stack, order_ids: &[String]) -> Snapshot {
    let mut orders = Vec::new();
    for id in order_ids {
        orders.push(stack.order(id).await);
    }
    let mut stock: Vec<_> = stack.stock().await.into_iter().collect();
    stock.sort();
    let mut restocked: Vec<_> = stack
        .restocked
        .lock()
        .unwrap()
        .iter()
        .map(|(p, q)| (*p, *q))
        .collect();
    restocked.sort();
    Snapshot {
        orders,
        stock,
        payments: stack.payments().await,
        restocked,
    }
}

fn money(value: &Value) -> Decimal {
    Decimal::from_str(value.as_str().unwrap()).unwrap()
}

/// I1 (conservation), I2 (no oversell), I3 (payments) and I4 (everything terminal) over
/// `orders`, which must be every order the stack ever saw.
pub fn check(snapshot: &Snapshot) {
    let mut sold: HashMap<i64, i64> = HashMap::new();
    let mut captured: HashMap<String, Vec<Decimal>> = HashMap::new();
    for payment in snapshot
        .payments
        .iter()
        .filter(|p| p["status"] == "captured")
    {
        captured
            .entry(payment["orderId"].as_str().unwrap().to_owned())
            .or_default()
            .push(money(&payment["amount"]));
    }

    for order in &snapshot.orders {
        let id = order["orderId"].as_str().unwrap();
        let status = order["status"].as_str().unwrap();
        assert_ne!(status, "pending", "I4: order {id} is still pending");
        let lines = order["items"].as_array().unwrap();
        let total: Decimal = lines
            .iter()
            .map(|l| money(&l["unitPrice"]) * Decimal::from(l["quantity"].as_i64().unwrap()))
            .sum();
        assert_eq!(
            money(&order["total"]),
            total,
            "order {id}: total is the sum of its lines"
        );
        let payments = captured.get(id).cloned().unwrap_or_default();
        if status == "completed" {
            assert_eq!(
                payments,
                vec![total],
                "I3: completed order {id} has exactly one captured payment of its total"
            );
            for line in lines {
                *sold.entry(line["productId"].as_i64().unwrap()).or_default() +=
                    line["quantity"].as_i64().unwrap();
            }
        } else {
            assert!(
                payments.is_empty(),
                "I3: failed order {id} has a captured payment"
            );
            assert!(
                order["failureReason"].is_string(),
                "failed order {id} says why"
            );
        }
    }

    for (product, seeded) in SEEDED {
        let (available, reserved) = snapshot
            .stock
            .iter()
            .find(|(p, _)| *p == product)
            .unwrap()
            .1;
        assert!(available >= 0, "I2: product {product} oversold");
        assert_eq!(
            reserved, 0,
            "product {product}: nothing stays reserved once sagas settle"
        );
        let sold = sold.get(&product).copied().unwrap_or(0);
        let restocked = snapshot
            .restocked
            .iter()
            .find(|(p, _)| *p == product)
            .map_or(0, |(_, q)| *q);
        assert_eq!(
            available,
            seeded + restocked - sold,
            "I1: product {product}: available = seeded + restocked − sold"
        );
    }
}

/// I5: the reports the gateway serves come to what `orders` (every order the stack saw, settled)
/// add up to: the products report to the completed orders' final lines by product and unit
/// price, the orders report to the counts by outcome. The projections may still be applying the
/// last events, so this waits up to [`AFTER_RECOVERY`].
pub async fn reports_agree(stack: &Stack, orders: &[Value]) {
    let mut products: BTreeMap<i64, BTreeMap<Decimal, i64>> = BTreeMap::new();
    let (mut completed, mut failed) = (0, 0);
    for order in orders {
        match order["status"].as_str().unwrap() {
            "completed" => {
                completed += 1;
                for line in order["items"].as_array().unwrap() {
                    *products
                        .entry(line["productId"].as_i64().unwrap())
                        .or_default()
                        .entry(money(&line["unitPrice"]).normalize())
                        .or_default() += line["quantity"].as_i64().unwrap();
                }
            }
            "failed" => failed += 1,
            other => panic!("I5 is checked over settled orders; one is {other}"),
        }
    }
    let products: Vec<Value> = products
        .into_iter()
        .map(|(product, prices)| {
            let prices: Vec<Value> = prices
                .into_iter()
                .map(|(mut price, quantity)| {
                    price.rescale(2);
                    json!({ "unitPrice": price.to_string(), "quantity": quantity })
                })
                .collect();
            json!({ "productId": product, "prices": prices })
        })
        .collect();
    let expected = (
        Value::Array(products),
        json!({ "total": completed + failed, "completed": completed, "failed": failed }),
    );
    let served = || async {
        (
            stack.ops_get("/api/reports/products").await,
            stack.ops_get("/api/reports/orders").await,
        )
    };
    let reached = test_support::eventually(AFTER_RECOVERY, "I5: the reports", || async {
        Ok((served().await == expected).then_some(()))
    })
    .await;
    if let Err(e) = reached {
        let last = served().await;
        panic!("{e:#}\nexpected {expected:?}\nserved   {last:?}");
    }
}
