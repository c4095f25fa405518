//! Each path of the saga, end to end through the gateway, within the 5 s of SYSTEM.md I4.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::stack::{Stack, item};

const LIVENESS: Duration = Duration::from_secs(5);

fn captured_for<'a>(payments: &'a [Value], order_id: &str) -> Vec<&'a Value> {
    payments
        .iter()
        .filter(|p| p["orderId"] == order_id && p["status"] == "captured")
        .collect()
}

#[tokio::test]
async fn happy_path_reserves_captures_and_completes() {
    let stack = Stack::start().await;
    let order = stack
        .place(
            Uuid::new_v4(),
            json!([item(1, 2, "12.50"), item(2, 1, "5.00")]),
        )
        .await;
    let id = order["orderId"].as_str().unwrap();

    let order = stack.settled(id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["failureReason"], Value::Null);
    assert_eq!(stack.events(id).await, ["OrderPlaced", "OrderCompleted"]);

    let payments = stack.payments().await;
    let captured = captured_for(&payments, id);
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0]["amount"], "30.00");

    // Sold units leave `reserved` once the stock service has seen the completion.
    test_support::eventually(LIVENESS, "stock to settle", || async {
        let stock = stack.stock().await;
        Ok((stock[&1] == (98, 0) && stock[&2] == (49, 0)).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(stack.stock().await[&3], (25, 0));
}

#[tokio::test]
async fn out_of_stock_fails_the_order_and_reserves_nothing() {
    let stack = Stack::start().await;
    let order = stack
        .place(
            Uuid::new_v4(),
            json!([item(1, 1, "1.00"), item(3, 26, "1.00")]),
        )
        .await;
    let order = stack
        .settled(order["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failureReason"], "out_of_stock");
    let stock = stack.stock().await;
    assert_eq!((stock[&1], stock[&3]), ((100, 0), (25, 0)));
    assert!(stack.payments().await.is_empty());
}

#[tokio::test]
async fn an_unknown_product_fails_the_order_and_reserves_nothing() {
    let stack = Stack::start().await;
    let order = stack
        .place(
            Uuid::new_v4(),
            json!([item(1, 1, "1.00"), item(99, 1, "1.00")]),
        )
        .await;
    let order = stack
        .settled(order["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failureReason"], "unknown_product");
    assert_eq!(stack.stock().await[&1], (100, 0));
    assert!(stack.payments().await.is_empty());
}

#[tokio::test]
async fn a_declined_payment_fails_the_order_and_gives_the_stock_back() {
    let stack = Stack::start().await;
    let customer = Uuid::new_v4();
    let order = stack.place(customer, json!([item(3, 2, "5000.01")])).await;
    let id = order["orderId"].as_str().unwrap();
    let order = stack.settled(id, LIVENESS).await;
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failureReason"], "payment_declined");

    let payments = stack.payments().await;
    assert!(captured_for(&payments, id).is_empty());
    assert!(
        payments
            .iter()
            .any(|p| p["orderId"] == id && p["status"] == "declined")
    );
    // Compensation: the reservation is released.
    test_support::eventually(LIVENESS, "stock to be restored", || async {
        Ok((stack.stock().await[&3] == (25, 0)).then_some(()))
    })
    .await
    .unwrap();

    // The customer's credit was untouched: an affordable order still goes through.
    let order = stack.place(customer, json!([item(3, 1, "10000.00")])).await;
    let order = stack
        .settled(order["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(order["status"], "completed");
}

#[tokio::test]
async fn the_starting_credit_is_configurable() {
    let stack = Stack::start_with(
        &crate::common::stack::COMPONENTS,
        &[("SHOP_PAYMENT__STARTING_CREDIT", "50.00")],
    )
    .await;
    let customer = Uuid::new_v4();
    let first = stack.place(customer, json!([item(1, 4, "10.00")])).await;
    let first = stack
        .settled(first["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(first["status"], "completed");
    let second = stack.place(customer, json!([item(1, 2, "5.01")])).await;
    let second = stack
        .settled(second["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(
        second["failureReason"], "payment_declined",
        "10.00 left, 10.02 asked"
    );
}

#[tokio::test]
async fn changes_while_pending_reach_stock_and_payment() {
    // Stock is not running yet, so nothing is held or paid while the order changes.
    let mut stack = Stack::start_with(&["order", "payment", "gateway"], &[]).await;
    let order = stack
        .place(Uuid::new_v4(), json!([item(1, 2, "10.00")]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();

    let add = stack
        .client
        .post(stack.api(&format!("/api/orders/{id}/items")))
        .json(&item(2, 3, "2.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::OK);
    let remove = stack
        .client
        .delete(stack.api(&format!("/api/orders/{id}/items/1?quantity=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(remove.status(), StatusCode::OK);

    stack.spawn("stock").await;
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(
        order["items"],
        json!([item(1, 1, "10.00"), item(2, 3, "2.00")])
    );
    assert_eq!(order["total"], "16.00");

    // Stock holds the final lines only; the one payment is for the final total.
    let payments = stack.payments().await;
    let captured = captured_for(&payments, &id);
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0]["amount"], "16.00");
    test_support::eventually(LIVENESS, "stock to settle", || async {
        let stock = stack.stock().await;
        Ok((stock[&1] == (99, 0) && stock[&2] == (47, 0)).then_some(()))
    })
    .await
    .unwrap();
}

/// Waits until stock shows `(available, reserved)` for each product given.
async fn stock_holds(stack: &Stack, what: &str, expected: &[(i64, (i64, i64))]) {
    test_support::eventually(LIVENESS, what, || async {
        let stock = stack.stock().await;
        Ok((expected
            .iter()
            .all(|(product, units)| stock[product] == *units))
        .then_some(()))
    })
    .await
    .unwrap();
}

fn payments_of<'a>(payments: &'a [Value], order_id: &str, status: &str) -> Vec<&'a str> {
    payments
        .iter()
        .filter(|p| p["orderId"] == order_id && p["status"] == status)
        .map(|p| p["amount"].as_str().unwrap())
        .collect()
}

/// Places an order of one unit of product 1 at `price`, waits for stock to hold it, adds one
/// unit of product 2 at `added`, and waits for stock to hold that revision too. Payment must not
/// be running: both reservations wait for it on the stock topic. Returns the order id.
async fn held_twice(stack: &Stack, customer: Uuid, price: &str, added: &str) -> String {
    let order = stack.place(customer, json!([item(1, 1, price)])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    stock_holds(stack, "stock to hold revision 1", &[(1, (99, 1))]).await;
    let add = stack
        .client
        .post(stack.api(&format!("/api/orders/{id}/items")))
        .json(&item(2, 1, added))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::OK);
    stock_holds(stack, "stock to hold revision 2", &[(2, (49, 1))]).await;
    id
}

#[tokio::test]
async fn a_change_after_stock_held_the_order_refunds_the_first_capture_and_pays_the_new_total() {
    let mut stack = Stack::start_with(&["order", "stock", "gateway"], &[]).await;
    let id = held_twice(&stack, Uuid::new_v4(), "10.00", "2.00").await;

    // Payment captures revision 1, then refunds it for revision 2; the order, at revision 2,
    // completes on the second capture only.
    stack.spawn("payment").await;
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total"], "12.00");
    let payments = stack.payments().await;
    assert_eq!(payments_of(&payments, &id, "captured"), ["12.00"]);
    assert_eq!(payments_of(&payments, &id, "refunded"), ["10.00"]);
    stock_holds(&stack, "stock to settle", &[(1, (99, 0)), (2, (49, 0))]).await;
}

#[tokio::test]
async fn a_change_the_credit_cannot_cover_fails_the_order_and_refunds_the_first_capture() {
    let mut stack = Stack::start_with(
        &["order", "stock", "gateway"],
        &[("SHOP_PAYMENT__STARTING_CREDIT", "50.00")],
    )
    .await;
    let customer = Uuid::new_v4();
    let id = held_twice(&stack, customer, "40.00", "20.00").await;

    stack.spawn("payment").await;
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failureReason"], "payment_declined");
    let payments = stack.payments().await;
    assert!(payments_of(&payments, &id, "captured").is_empty());
    assert_eq!(payments_of(&payments, &id, "refunded"), ["40.00"]);
    assert_eq!(payments_of(&payments, &id, "declined"), ["60.00"]);
    stock_holds(
        &stack,
        "stock to be restored",
        &[(1, (100, 0)), (2, (50, 0))],
    )
    .await;

    // The refund gave the whole credit back.
    let order = stack.place(customer, json!([item(3, 1, "50.00")])).await;
    let order = stack
        .settled(order["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(order["status"], "completed");
}

#[tokio::test]
async fn changes_after_the_order_completed_are_refused() {
    let stack = Stack::start().await;
    let order = stack
        .place(Uuid::new_v4(), json!([item(1, 1, "10.00")]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "completed");

    let add = stack
        .client
        .post(stack.api(&format!("/api/orders/{id}/items")))
        .json(&item(2, 1, "1.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::CONFLICT);
    let problem: Value = add.json().await.unwrap();
    assert_eq!(problem["type"], "urn:shop:problem:order-not-pending");
    let remove = stack
        .client
        .delete(stack.api(&format!("/api/orders/{id}/items/1?quantity=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(remove.status(), StatusCode::CONFLICT);
    let problem: Value = remove.json().await.unwrap();
    assert_eq!(problem["type"], "urn:shop:problem:order-not-pending");
    assert_eq!(stack.order(&id).await["total"], "10.00");
}
