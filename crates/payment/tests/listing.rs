//! `GET /api/payments` a page at a time, over HTTP against the real PostgreSQL: following
//! `Link: rel="next"` reads every payment exactly once, in order, even while payments are added.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use test_support::TestDatabase;
use uuid::Uuid;

/// The payment routes on a random port over a fresh database; the base URL.
async fn serve() -> (TestDatabase, String) {
    let db = TestDatabase::create().await.unwrap();
    payment::migrate(&db.pool).await.unwrap();
    let routes = payment::http::routes(db.pool.clone(), messaging::Doorbell::new(db.pool.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await });
    (db, base)
}

async fn insert(pool: &PgPool, created_at: DateTime<Utc>) -> Uuid {
    let payment_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO payments (payment_id, order_id, customer_id, amount, status, created_at, revision)
         VALUES ($1, $2, $3, 1.00, 'captured', $4, 1)",
    )
    .bind(payment_id)
    .bind(Uuid::new_v4())
    .bind(Uuid::new_v4())
    .bind(created_at)
    .execute(pool)
    .await
    .unwrap();
    payment_id
}

fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().ok()?;
    let (target, rel) = link.split_once(';')?;
    assert_eq!(rel.trim(), "rel=\"next\"");
    Some(
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned(),
    )
}

/// One page: its payment ids and the link to the next.
async fn page(base: &str, path: &str) -> (Vec<Uuid>, Option<String>) {
    assert!(path.starts_with("/api/payments"), "a relative link: {path}");
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let next = next_link(&response);
    let body: Value = response.json().await.unwrap();
    let ids = (body.as_array().unwrap().iter())
        .map(|p| p["paymentId"].as_str().unwrap().parse().unwrap())
        .collect();
    (ids, next)
}

#[tokio::test]
async fn following_the_links_reads_every_payment_once_in_order() {
    let (db, base) = serve().await;
    let start = Utc::now() - TimeDelta::minutes(10);
    // Pairs that share a timestamp: the payment id breaks the tie, on the page and the cursor.
    let mut expected: Vec<(DateTime<Utc>, Uuid)> = Vec::new();
    for n in 0..10 {
        let at = start + TimeDelta::milliseconds(n / 2);
        expected.push((at, insert(&db.pool, at).await));
    }
    expected.sort();

    let (first, next) = page(&base, "/api/payments?limit=4").await;
    assert_eq!(first.len(), 4);
    // A payment made while the client pages through comes on a later page.
    let late = insert(&db.pool, Utc::now()).await;
    let mut seen = first;
    let mut next = next;
    let mut pages = 1;
    while let Some(path) = next {
        let (ids, link) = page(&base, &path).await;
        assert!(ids.len() <= 4);
        seen.extend(ids);
        next = link;
        pages += 1;
    }
    let mut all: Vec<Uuid> = expected.iter().map(|(_, id)| *id).collect();
    all.push(late);
    assert_eq!(seen, all, "each payment once, oldest first");
    assert_eq!(pages, 3);

    // A page that ends on the last payment has no link; without a limit, up to 100.
    let (ids, next) = page(&base, "/api/payments?limit=11").await;
    assert_eq!((ids.len(), next), (11, None));
    let (ids, next) = page(&base, "/api/payments").await;
    assert_eq!((ids.len(), next), (11, None));
}

#[tokio::test]
async fn a_limit_out_of_range_or_a_foreign_cursor_is_a_problem() {
    let (_db, base) = serve().await;
    for (query, status) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=1001", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=x", StatusCode::BAD_REQUEST),
        ("after=12", StatusCode::BAD_REQUEST),
    ] {
        let response = reqwest::get(format!("{base}/api/payments?{query}"))
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}
