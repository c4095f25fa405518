//! Identity and ownership (SYSTEM.md §7, §8, I8): every route wants a token, an order is its
//! customer's, another customer's order is indistinguishable from an unknown one, and keys and
//! lists are the caller's own.

use order::commands::{self, Context};
use order::domain::{Command, OrderId};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, item, next_link};

#[tokio::test]
async fn every_route_without_a_token_is_401_with_a_challenge() {
    let app = TestApp::spawn().await.unwrap();
    let order = app.place_ok(json!([item(1, 2, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    let responses = [
        app.place_as("", &json!({ "items": [item(1, 1, "1.00")] }), None)
            .await,
        app.get_as("", "/api/orders").await,
        app.get_as("", &format!("/api/orders/{id}")).await,
        app.get_as("", &format!("/api/orders/{id}/events")).await,
        app.add_item_as("", id, &item(1, 1, "1.00")).await,
        app.remove_item_as("", id, "1", Some(1)).await,
        app.get_as("Bearer not-a-token", &format!("/api/orders/{id}"))
            .await,
    ];
    for response in responses {
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let order: Value = app.get_order(id).await.json().await.unwrap();
    assert_eq!(order["version"], 1, "nothing changed");
}

#[tokio::test]
async fn an_order_is_placed_for_the_caller_and_a_body_customer_id_of_someone_else_is_403() {
    let app = TestApp::spawn().await.unwrap();
    let someone_else = uuid::Uuid::new_v4();
    let response = app
        .place(&json!({ "customerId": someone_else, "items": [item(1, 1, "1.00")] }))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let own = app
        .place(&json!({ "customerId": app.customer, "items": [item(1, 1, "1.00")] }))
        .await;
    assert_eq!(own.status(), StatusCode::CREATED);
    let without: Value = app.place_ok(json!([item(1, 1, "1.00")])).await;
    assert_eq!(without["customerId"], app.customer.to_string());

    // A viewer reads orders but places none.
    let response = app
        .place_as(
            &test_support::viewer(),
            &json!({ "items": [item(1, 1, "1.00")] }),
            None,
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    assert_eq!(app.placed().await, 2);
}

#[tokio::test]
async fn another_customers_order_is_404_like_an_unknown_one_and_a_viewer_reads_it() {
    let app = TestApp::spawn().await.unwrap();
    let order = app.place_ok(json!([item(1, 2, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    let (_, other) = test_support::customer();

    // Every route answers another customer's order exactly as it answers an unknown one.
    for target in [id, unknown.as_str()] {
        let responses = [
            app.get_as(&other, &format!("/api/orders/{target}")).await,
            app.get_as(&other, &format!("/api/orders/{target}/events"))
                .await,
            app.get_as(&other, &format!("/api/orders/{target}/events?after=1"))
                .await,
            app.add_item_as(&other, target, &item(1, 1, "1.00")).await,
            app.remove_item_as(&other, target, "1", Some(1)).await,
            app.remove_item_as(&other, target, "1", None).await,
        ];
        for response in responses {
            let body = assert_problem(response, StatusCode::NOT_FOUND, "order-not-found").await;
            assert_eq!(body["title"], "No such order");
        }
    }

    // A viewer reads the order and its history, and changes nothing.
    let viewer = test_support::viewer();
    let seen: Value = app
        .get_as(&viewer, &format!("/api/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen, order);
    let events = app
        .get_as(&viewer, &format!("/api/orders/{id}/events"))
        .await;
    assert_eq!(events.status(), StatusCode::OK);
    let operator = test_support::operator();
    let by_ops = app.get_as(&operator, &format!("/api/orders/{id}")).await;
    assert_eq!(by_ops.status(), StatusCode::OK);
    let add = app.add_item_as(&viewer, id, &item(1, 1, "1.00")).await;
    assert_problem(add, StatusCode::FORBIDDEN, "forbidden").await;
    let remove = app.remove_item_as(&viewer, id, "1", Some(1)).await;
    assert_problem(remove, StatusCode::FORBIDDEN, "forbidden").await;

    let after: Value = app.get_order(id).await.json().await.unwrap();
    assert_eq!(after, order, "nobody but its customer changed it");
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_customer() {
    let app = TestApp::spawn().await.unwrap();
    let (b, other) = test_support::customer();
    let body = json!({ "items": [item(1, 1, "1.00")] });

    let a_first: Value = app
        .place_with_key(&body, "shared-key")
        .await
        .json()
        .await
        .unwrap();
    let b_first = app.place_as(&other, &body, Some("shared-key")).await;
    assert_eq!(b_first.status(), StatusCode::CREATED);
    let b_first: Value = b_first.json().await.unwrap();
    assert_ne!(
        a_first["orderId"], b_first["orderId"],
        "two customers, two orders"
    );
    assert_eq!(b_first["customerId"], b.to_string());

    // Each customer's retry finds their own order.
    let a_again: Value = app
        .place_with_key(&body, "shared-key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a_again["orderId"], a_first["orderId"]);
    let b_again: Value = app
        .place_as(&other, &body, Some("shared-key"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b_again["orderId"], b_first["orderId"]);

    // The same key with a different request is still refused, per customer.
    let different = json!({ "items": [item(1, 2, "1.00")] });
    let response = app.place_as(&other, &different, Some("shared-key")).await;
    assert_problem(response, StatusCode::CONFLICT, "idempotency-key-reused").await;

    // A retry after a price change is the same request: the first order, at the first price.
    app.offer(1, "3.00").await;
    let retried: Value = app
        .place_with_key(&body, "shared-key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(retried["orderId"], a_first["orderId"]);
    assert_eq!(retried["total"], "1.00");

    assert_eq!(app.placed().await, 2);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let app = TestApp::spawn().await.unwrap();
    let body = json!({ "items": [item(1, 1, "1.00")] });
    for key in ["with space", &"k".repeat(201)] {
        let response = app.place_with_key(&body, key).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    let longest = app.place_with_key(&body, &"k".repeat(200)).await;
    assert_eq!(longest.status(), StatusCode::CREATED);
}

/// The ids of a list page, in its order.
fn ids(page: &Value) -> Vec<String> {
    (page.as_array().unwrap().iter())
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(app: &TestApp, auth: &str, path: &str) -> Value {
    let response = app.get_as(auth, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_customer_lists_their_own_orders_newest_first_and_a_viewer_everyones() {
    let app = TestApp::spawn().await.unwrap();
    let (b, other) = test_support::customer();
    let mut own = Vec::new();
    for quantity in 1..=3 {
        let order = app.place_ok(json!([item(1, quantity, "1.00")])).await;
        own.push(order["orderId"].as_str().unwrap().to_owned());
    }
    let mut theirs = Vec::new();
    for _ in 0..2 {
        let order = app.place_ok_as(&other, json!([item(2, 1, "1.00")])).await;
        theirs.push(order["orderId"].as_str().unwrap().to_owned());
    }
    own.reverse();
    theirs.reverse();

    // Own orders, newest first; each item is the order as GET /api/orders/{id} shows it.
    let page = list(&app, &app.auth, "/api/orders").await;
    assert_eq!(ids(&page), own);
    let newest: Value = app.get_order(&own[0]).await.json().await.unwrap();
    assert_eq!(page[0], newest);
    let named = list(
        &app,
        &app.auth,
        &format!("/api/orders?customerId={}", app.customer),
    )
    .await;
    assert_eq!(ids(&named), own);
    let response = app.get(&format!("/api/orders?customerId={b}")).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    // A page at a time, following the links.
    let first = app.get("/api/orders?limit=2").await;
    let next = next_link(&first).unwrap();
    let first: Value = first.json().await.unwrap();
    assert_eq!(ids(&first), own[..2]);
    let second = app.get(&next).await;
    assert!(next_link(&second).is_none());
    let second: Value = second.json().await.unwrap();
    assert_eq!(ids(&second), own[2..]);

    // A viewer sees everyone's, and filters.
    let viewer = test_support::viewer();
    let mut all = [theirs.clone(), own.clone()].concat();
    all.sort();
    all.reverse();
    assert_eq!(ids(&list(&app, &viewer, "/api/orders").await), all);
    let path = format!("/api/orders?customerId={b}");
    assert_eq!(ids(&list(&app, &viewer, &path).await), theirs);

    let completed = OrderId(own[1].parse().unwrap());
    commands::execute(
        app.pool(),
        completed,
        Command::ConfirmPayment {
            revision: 1,
            payment_id: uuid::Uuid::new_v4(),
        },
        &Context::external(completed, None),
    )
    .await
    .unwrap();
    let path = format!("/api/orders?customerId={}&status=completed", app.customer);
    let page = list(&app, &viewer, &path).await;
    assert_eq!(ids(&page), [own[1].clone()]);
    assert_eq!(page[0]["status"], "completed");
    let path = format!("/api/orders?customerId={}&status=pending", app.customer);
    assert_eq!(
        ids(&list(&app, &viewer, &path).await),
        [own[0].clone(), own[2].clone()]
    );
    assert_eq!(
        ids(&list(&app, &viewer, "/api/orders?status=failed").await),
        Vec::<String>::new()
    );
    let pending = list(&app, &app.auth, "/api/orders?status=pending&limit=1").await;
    assert_eq!(ids(&pending), [own[0].clone()]);

    for bad in ["?status=lost", "?customerId=nobody", "?after=x"] {
        let response = app.get_as(&viewer, &format!("/api/orders{bad}")).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
}

/// A customer's orders are read through `events_orders_by_customer`, not by scanning every
/// event (the sessions rule out sequential scans, see ARCHITECTURE.md, "Generic plans", so a
/// missing index would show as a scan of the whole table).
#[tokio::test]
async fn a_customers_orders_are_found_by_index() {
    let app = TestApp::spawn().await.unwrap();
    sqlx::query(
        "INSERT INTO events (stream_id, version, event_type, schema_version, payload, metadata)
         SELECT gen_random_uuid(), 1, 'OrderPlaced', 1,
                jsonb_build_object('customerId', gen_random_uuid(), 'lines', '[]'::jsonb), '{}'
         FROM generate_series(1, 20000)",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let mut conn = app.pool().acquire().await.unwrap();
    sqlx::raw_sql("ANALYZE events")
        .execute(&mut *conn)
        .await
        .unwrap();
    let filter = order::listing::Filter {
        customer: Some(app.customer),
        status: Some(order::domain::Status::Pending),
        before: Some(uuid::Uuid::from_u128(u128::MAX)),
    };
    let plan = order::listing::explain(&mut *conn, &filter, 101)
        .await
        .unwrap();
    assert!(plan.contains("events_orders_by_customer"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");

    // Everyone's orders (a viewer's list) walk the primary key backwards.
    let everyone = order::listing::Filter {
        customer: None,
        ..filter
    };
    let plan = order::listing::explain(&mut *conn, &everyone, 101)
        .await
        .unwrap();
    assert!(
        plan.contains("Index Scan Backward using events_stream_version"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
