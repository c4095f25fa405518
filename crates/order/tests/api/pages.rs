//! Bounded lists and bounded changes: an order's history a page at a time, following `Link`,
//! and a pending order that refuses changes past its cap.

use order::domain::MAX_CHANGES;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, item, next_link};

/// Places an order and changes it until its history holds `events` events.
async fn order_with_events(app: &TestApp, events: u32) -> String {
    app.offer(2, "2.00").await;
    let order = app.place_ok(json!([item(1, 1, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    for _ in 1..events {
        let added = app.add_item(&id, &item(2, 1, "2.00")).await;
        assert_eq!(added.status(), StatusCode::OK);
    }
    id
}

/// Every page from `first` on, following `Link: rel="next"`: the versions of each page.
async fn follow(app: &TestApp, first: &str) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        assert!(path.starts_with("/api/orders/"), "a relative link: {path}");
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        next = next_link(&response);
        let page: Value = response.json().await.unwrap();
        pages.push(
            (page.as_array().unwrap().iter())
                .map(|e| e["version"].as_i64().unwrap())
                .collect(),
        );
        assert!(pages.len() <= 10, "the links end");
    }
    pages
}

#[tokio::test]
async fn an_orders_history_is_read_page_by_page_each_event_once() {
    let app = TestApp::spawn().await.unwrap();
    let id = order_with_events(&app, 7).await;

    let pages = follow(&app, &format!("/api/orders/{id}/events?limit=3")).await;
    assert_eq!(pages, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);

    // A page that ends exactly at the last event has no link.
    let pages = follow(&app, &format!("/api/orders/{id}/events?limit=7")).await;
    assert_eq!(pages, [vec![1, 2, 3, 4, 5, 6, 7]]);

    // An event appended while a client pages through is on a later page, not a repeat.
    let first = app.get(&format!("/api/orders/{id}/events?limit=4")).await;
    let next = next_link(&first).unwrap();
    app.offer(3, "3.00").await;
    let added = app.add_item(&id, &item(3, 1, "3.00")).await;
    assert_eq!(added.status(), StatusCode::OK);
    assert_eq!(follow(&app, &next).await, [vec![5, 6, 7, 8]]);

    // Without a limit, up to 100.
    let all: Value = app.get_events(&id).await.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn a_limit_out_of_range_or_a_foreign_cursor_is_refused() {
    let app = TestApp::spawn().await.unwrap();
    let id = order_with_events(&app, 1).await;
    for limit in ["0", "1001", "-1"] {
        let response = app
            .get(&format!("/api/orders/{id}/events?limit={limit}"))
            .await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-page").await;
        assert_eq!(problem["errors"][0]["field"], "limit");
    }
    let response = app.get(&format!("/api/orders/{id}/events?limit=ten")).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    let response = app.get(&format!("/api/orders/{id}/events?after=x")).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;

    // Past the end of an order's history: an empty page. An unknown order: 404, paged or not.
    let past: Value = app
        .get(&format!("/api/orders/{id}/events?after=5"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(past, json!([]));
    let unknown = uuid::Uuid::new_v4();
    for query in ["", "?after=1"] {
        let response = app
            .get(&format!("/api/orders/{unknown}/events{query}"))
            .await;
        assert_problem(response, StatusCode::NOT_FOUND, "order-not-found").await;
    }
}

#[tokio::test]
async fn a_pending_order_refuses_changes_past_its_cap() {
    let app = TestApp::spawn().await.unwrap();
    app.offer(2, "2.00").await;
    let order = app.place_ok(json!([item(1, 1, "1.00")])).await;
    let id = order["orderId"].as_str().unwrap();
    for n in 0..MAX_CHANGES {
        let response = if n % 2 == 0 {
            app.add_item(id, &item(2, 1, "2.00")).await
        } else {
            app.remove_item(id, "2", Some(1)).await
        };
        assert_eq!(response.status(), StatusCode::OK, "change {n}");
    }

    let add = app.add_item(id, &item(2, 1, "2.00")).await;
    let problem = assert_problem(add, StatusCode::CONFLICT, "too-many-changes").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("20"),
        "{problem}"
    );
    let remove = app.remove_item(id, "1", Some(1)).await;
    assert_problem(remove, StatusCode::CONFLICT, "too-many-changes").await;

    let order: Value = app.get_order(id).await.json().await.unwrap();
    assert_eq!(order["status"], "pending");
    assert_eq!(order["version"], MAX_CHANGES + 1);
}
