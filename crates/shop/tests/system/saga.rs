//! Each path of the saga, end to end through the gateway, within the 5 s of SYSTEM.md I4.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::stack::{Stack, item, line};
use uuid::Uuid;

use crate::common::SHOP;

const LIVENESS: Duration = Duration::from_secs(5);

fn captured_for<'a>(payments: &'a [Value], order_id: &str) -> Vec<&'a Value> {
    payments
        .iter()
        .filter(|p| p["orderId"] == order_id && p["status"] == "captured")
        .collect()
}

#[tokio::test]
async fn happy_path_reserves_captures_and_completes() {
    let stack = Stack::start(SHOP).await;
    let order = stack
        .place(Uuid::new_v4(), json!([item(1, 2), item(2, 1)]))
        .await;
    let id = order["orderId"].as_str().unwrap();

    let order = stack.settled(id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["failureReason"], Value::Null);
    assert_eq!(stack.events(id).await, ["OrderPlaced", "OrderCompleted"]);

    let payments = stack.payments().await;
    let captured = captured_for(&payments, id);
    assert_eq!(captured.len(), 1);
    // At the catalog's prices: 2 × 45.00 + 20.00.
    assert_eq!(captured[0]["amount"], "110.00");
    assert_eq!(
        order["items"],
        json!([line(1, 2, "45.00"), line(2, 1, "20.00")])
    );

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
    let stack = Stack::start(SHOP).await;
    let order = stack
        .place(Uuid::new_v4(), json!([item(1, 1), item(3, 26)]))
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
async fn a_product_the_catalog_does_not_know_is_refused_and_nothing_starts() {
    let stack = Stack::start(SHOP).await;
    let response = stack
        .client
        .post(stack.api("/api/orders"))
        .header("authorization", Stack::customer(Uuid::new_v4()))
        .json(&json!({ "items": [item(1, 1), item(99, 1)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["type"], "urn:shop:problem:unknown-product",
        "{problem}"
    );
    assert_eq!(stack.stock().await[&1], (100, 0));
    assert!(stack.payments().await.is_empty());
}

#[tokio::test]
async fn a_price_the_customer_did_not_see_is_refused_and_a_repriced_product_sells_at_its_new_price()
{
    let stack = Stack::start(SHOP).await;
    let customer = Uuid::new_v4();
    let stale = json!([{ "productId": 1, "quantity": 1, "unitPrice": "0.01" }]);
    let response = stack
        .client
        .post(stack.api("/api/orders"))
        .header("authorization", Stack::customer(customer))
        .json(&json!({ "items": stale }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["type"], "urn:shop:problem:price-changed",
        "{problem}"
    );
    assert!(
        problem.to_string().contains("45.00"),
        "names the current price: {problem}"
    );

    stack.reprice(1, "Keyboard", "40.00").await;
    let order = stack.place(customer, json!([line(1, 2, "40.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    let order = stack.settled(id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total"], "80.00");
    let payments = stack.payments().await;
    assert_eq!(captured_for(&payments, id)[0]["amount"], "80.00");
}

#[tokio::test]
async fn a_declined_payment_fails_the_order_and_gives_the_stock_back() {
    let stack = Stack::start(SHOP).await;
    let customer = Uuid::new_v4();
    // 23 monitors at 450.00 are 10,350.00, over a new customer's 10,000.00.
    let order = stack.place(customer, json!([item(3, 23)])).await;
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
    let order = stack.place(customer, json!([item(3, 22)])).await;
    let order = stack
        .settled(order["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(order["status"], "completed");
}

#[tokio::test]
async fn the_starting_credit_is_configurable() {
    let stack = Stack::start_with(
        SHOP,
        &test_support::stack::COMPONENTS,
        &[("SHOP_PAYMENT__STARTING_CREDIT", "100.00")],
    )
    .await;
    let customer = Uuid::new_v4();
    let first = stack.place(customer, json!([item(1, 2)])).await;
    let first = stack
        .settled(first["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(first["status"], "completed");
    let second = stack.place(customer, json!([item(2, 1)])).await;
    let second = stack
        .settled(second["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(
        second["failureReason"], "payment_declined",
        "10.00 left, 20.00 asked"
    );
}

#[tokio::test]
async fn changes_while_pending_reach_stock_and_payment() {
    // Stock publishes the catalog, then stops: nothing is held or paid while the order changes.
    let mut stack = Stack::start_with(SHOP, &["order", "stock", "payment", "gateway"], &[]).await;
    stack.stop("stock").await;
    let customer = Uuid::new_v4();
    let order = stack.place(customer, json!([item(1, 2)])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();

    let add = stack.add(customer, &id, item(2, 3)).await;
    assert_eq!(add.status(), StatusCode::OK);
    let remove = stack.remove_item(customer, &id, 1, 1).await;
    assert_eq!(remove.status(), StatusCode::OK);

    stack.spawn("stock").await;
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(
        order["items"],
        json!([line(1, 1, "45.00"), line(2, 3, "20.00")])
    );
    assert_eq!(order["total"], "105.00");

    // Stock holds the final lines only; the one payment is for the final total.
    let payments = stack.payments().await;
    let captured = captured_for(&payments, &id);
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0]["amount"], "105.00");
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

/// Places an order of one unit of product 1 (45.00), waits for stock to hold it, adds one unit
/// of product 2 (20.00), and waits for stock to hold that revision too. Payment must not be
/// running: both reservations wait for it on the stock topic. Returns the order id.
async fn held_twice(stack: &Stack, customer: Uuid) -> String {
    let order = stack.place(customer, json!([item(1, 1)])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    stock_holds(stack, "stock to hold revision 1", &[(1, (99, 1))]).await;
    let add = stack.add(customer, &id, item(2, 1)).await;
    assert_eq!(add.status(), StatusCode::OK);
    stock_holds(stack, "stock to hold revision 2", &[(2, (49, 1))]).await;
    id
}

#[tokio::test]
async fn a_change_after_stock_held_the_order_refunds_the_first_capture_and_pays_the_new_total() {
    let mut stack = Stack::start_with(SHOP, &["order", "stock", "gateway"], &[]).await;
    let id = held_twice(&stack, Uuid::new_v4()).await;

    // Payment captures revision 1, then refunds it for revision 2; the order, at revision 2,
    // completes on the second capture only.
    stack.spawn("payment").await;
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total"], "65.00");
    let payments = stack.payments().await;
    assert_eq!(payments_of(&payments, &id, "captured"), ["65.00"]);
    assert_eq!(payments_of(&payments, &id, "refunded"), ["45.00"]);
    stock_holds(&stack, "stock to settle", &[(1, (99, 0)), (2, (49, 0))]).await;
}

#[tokio::test]
async fn a_change_the_credit_cannot_cover_fails_the_order_and_refunds_the_first_capture() {
    let mut stack = Stack::start_with(
        SHOP,
        &["order", "stock", "gateway"],
        &[("SHOP_PAYMENT__STARTING_CREDIT", "50.00")],
    )
    .await;
    let customer = Uuid::new_v4();
    let id = held_twice(&stack, customer).await;

    stack.spawn("payment").await;
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failureReason"], "payment_declined");
    let payments = stack.payments().await;
    assert!(payments_of(&payments, &id, "captured").is_empty());
    assert_eq!(payments_of(&payments, &id, "refunded"), ["45.00"]);
    assert_eq!(payments_of(&payments, &id, "declined"), ["65.00"]);
    stock_holds(
        &stack,
        "stock to be restored",
        &[(1, (100, 0)), (2, (50, 0))],
    )
    .await;

    // The refund gave the whole credit back.
    let order = stack.place(customer, json!([item(1, 1)])).await;
    let order = stack
        .settled(order["orderId"].as_str().unwrap(), LIVENESS)
        .await;
    assert_eq!(order["status"], "completed");
}

#[tokio::test]
async fn changes_after_the_order_completed_are_refused() {
    let stack = Stack::start(SHOP).await;
    let customer = Uuid::new_v4();
    let order = stack.place(customer, json!([item(1, 1)])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    let order = stack.settled(&id, LIVENESS).await;
    assert_eq!(order["status"], "completed");

    let add = stack.add(customer, &id, item(2, 1)).await;
    assert_eq!(add.status(), StatusCode::CONFLICT);
    let problem: Value = add.json().await.unwrap();
    assert_eq!(problem["type"], "urn:shop:problem:order-not-pending");
    let remove = stack.remove_item(customer, &id, 1, 1).await;
    assert_eq!(remove.status(), StatusCode::CONFLICT);
    let problem: Value = remove.json().await.unwrap();
    assert_eq!(problem["type"], "urn:shop:problem:order-not-pending");
    assert_eq!(stack.order(&id).await["total"], "45.00");
}

#[tokio::test]
async fn a_customer_sees_and_changes_only_their_own_orders() {
    let stack = Stack::start(SHOP).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let order = stack.place(alice, json!([item(2, 1)])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    stack.settled(&id, LIVENESS).await;

    // Bob cannot tell Alice's order from one that does not exist.
    for path in [
        format!("/api/orders/{id}"),
        format!("/api/orders/{id}/events"),
    ] {
        let response = stack
            .client
            .get(stack.api(&path))
            .header("authorization", Stack::customer(bob))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        stack.add(bob, &id, item(1, 1)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stack.remove_item(bob, &id, 2, 1).await.status(),
        StatusCode::NOT_FOUND
    );

    // Lists are the caller's own.
    let list = |who: Uuid, path: &'static str| {
        let request = stack
            .client
            .get(stack.api(path))
            .header("authorization", Stack::customer(who));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<Vec<Value>>()
                .await
                .unwrap()
        }
    };
    assert_eq!(list(alice, "/api/orders").await.len(), 1);
    assert!(list(bob, "/api/orders").await.is_empty());
    assert_eq!(list(alice, "/api/payments").await.len(), 1);
    assert!(list(bob, "/api/payments").await.is_empty());

    // A body naming another customer is refused, and no token is 401 with a challenge.
    let response = stack
        .client
        .post(stack.api("/api/orders"))
        .header("authorization", Stack::customer(bob))
        .json(&json!({ "customerId": alice, "items": [item(1, 1)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = stack
        .client
        .post(stack.api("/api/orders"))
        .json(&json!({ "items": [item(1, 1)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
}
