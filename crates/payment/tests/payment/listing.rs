//! `GET /api/payments` a page at a time, over HTTP against the real PostgreSQL: following
//! `Link: rel="next"` reads every payment exactly once, in order, even while payments are added;
//! a customer reads only their own, a viewer everyone's or one customer's.

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
    let verifier = platform::auth::Verifier::from_settings(&test_support::auth_settings()).unwrap();
    let routes = payment::http::routes(db.pool.clone(), messaging::Doorbell::new(db.pool.clone()))
        .layer(axum::Extension(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await });
    (db, base)
}

async fn insert(pool: &PgPool, created_at: DateTime<Utc>) -> Uuid {
    insert_for(pool, Uuid::new_v4(), created_at).await
}

async fn insert_for(pool: &PgPool, customer_id: Uuid, created_at: DateTime<Utc>) -> Uuid {
    let payment_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO payments (payment_id, order_id, customer_id, amount, status, created_at, revision)
         VALUES ($1, $2, $3, 1.00, 'captured', $4, 1)",
    )
    .bind(payment_id)
    .bind(Uuid::new_v4())
    .bind(customer_id)
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

async fn get(base: &str, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap()
}

/// One page, as a viewer reads it: its payment ids and the link to the next.
async fn page(base: &str, path: &str) -> (Vec<Uuid>, Option<String>) {
    page_as(base, path, &test_support::viewer()).await
}

/// One page, as `authorization` reads it.
async fn page_as(base: &str, path: &str, authorization: &str) -> (Vec<Uuid>, Option<String>) {
    assert!(path.starts_with("/api/payments"), "a relative link: {path}");
    let response = get(base, path, Some(authorization)).await;
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
        ("customerId=12", StatusCode::BAD_REQUEST),
    ] {
        let path = format!("/api/payments?{query}");
        let response = get(&base, &path, Some(&test_support::viewer())).await;
        assert_eq!(response.status(), status, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

/// Every page of `path`, as `authorization` reads it.
async fn all_pages(base: &str, path: &str, authorization: &str) -> Vec<Uuid> {
    let mut seen = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next {
        let (ids, link) = page_as(base, &path, authorization).await;
        seen.extend(ids);
        next = link;
    }
    seen
}

#[tokio::test]
async fn a_customer_reads_only_their_own_payments_and_a_viewer_everyones() {
    let (db, base) = serve().await;
    let (a, a_token) = test_support::customer();
    let (b, b_token) = test_support::customer();
    let start = Utc::now() - TimeDelta::minutes(10);
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for n in 0..5 {
        let at = start + TimeDelta::seconds(n);
        of_a.push(insert_for(&db.pool, a, at).await);
        of_b.push(insert_for(&db.pool, b, at).await);
        if n < 3 {
            insert(&db.pool, at).await;
        }
    }

    // A customer's own, a page at a time, whether they name themselves or not.
    assert_eq!(
        all_pages(&base, "/api/payments?limit=2", &a_token).await,
        of_a
    );
    let own = format!("/api/payments?customerId={a}&limit=2");
    assert_eq!(all_pages(&base, &own, &a_token).await, of_a);
    assert_eq!(
        all_pages(&base, "/api/payments?limit=3", &b_token).await,
        of_b
    );
    // Someone else's: refused, not an empty list.
    let response = get(
        &base,
        &format!("/api/payments?customerId={b}"),
        Some(&a_token),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // A customer with no payments has none.
    let (_, c_token) = test_support::customer();
    assert!(all_pages(&base, "/api/payments", &c_token).await.is_empty());

    // A viewer sees all of them, or one customer's, the filter kept across pages.
    let viewer = test_support::viewer();
    assert_eq!(
        all_pages(&base, "/api/payments?limit=4", &viewer)
            .await
            .len(),
        13
    );
    let of = format!("/api/payments?customerId={b}&limit=2");
    assert_eq!(all_pages(&base, &of, &viewer).await, of_b);
    assert_eq!(all_pages(&base, &of, &test_support::operator()).await, of_b);

    // No token, or a bad one.
    for authorization in [None, Some("Bearer nope")] {
        let response = get(&base, "/api/payments", authorization).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
    }
    db.drop_now().await.unwrap();
}

/// A customer's page must come from the customer's index, not from a generic plan made while
/// the table was small that would then read every payment (ARCHITECTURE.md, "Generic plans").
#[tokio::test]
async fn a_customers_page_never_scans_the_payments_it_grew_from_empty() {
    let db = TestDatabase::create().await.unwrap();
    payment::migrate(&db.pool).await.unwrap();
    // One session: prepared statements and their plans belong to it.
    let mut conn = db.pool.acquire().await.unwrap();
    let grow = async |conn: &mut sqlx::PgConnection, rows: i32| {
        sqlx::query(
            "INSERT INTO payments (payment_id, order_id, customer_id, amount, status, revision)
             SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1.00, 'captured', 1
             FROM generate_series(1, $1)",
        )
        .bind(rows)
        .execute(conn)
        .await
        .unwrap();
    };
    grow(&mut conn, 100).await;
    sqlx::query("ANALYZE payments")
        .execute(&mut *conn)
        .await
        .unwrap();
    let customer = Uuid::new_v4();
    let start = (DateTime::UNIX_EPOCH, Uuid::nil());
    for _ in 0..10 {
        payment::http::read_page(&mut conn, Some(customer), start, 101)
            .await
            .unwrap();
    }
    grow(&mut conn, 20_000).await;
    insert_for(&db.pool, customer, Utc::now()).await;

    // Scans of the table, and rows read through any of its indexes, in this transaction.
    let reads = async |tx: &mut sqlx::PgConnection| -> (i64, i64) {
        sqlx::query_as(
            "SELECT seq_scan, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
             WHERE relname = 'payments'",
        )
        .fetch_one(tx)
        .await
        .unwrap()
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let (scans, fetched) = reads(&mut tx).await;
    let page = payment::http::read_page(&mut tx, Some(customer), start, 101)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let (scans_after, fetched_after) = reads(&mut tx).await;
    assert_eq!(
        scans_after, scans,
        "a customer's page scanned every payment"
    );
    // Through the time index the page would read every payment to find the customer's one.
    assert!(
        fetched_after - fetched <= 10,
        "a customer's page read {} payments",
        fetched_after - fetched
    );
    drop(tx);
    drop(conn);
    db.drop_now().await.unwrap();
}

#[test]
fn the_openapi_document_says_who_may_list_payments() {
    let doc = serde_json::to_value(payment::http::openapi()).unwrap();
    let list = &doc["paths"]["/api/payments"]["get"];
    assert_eq!(list["security"], serde_json::json!([{"bearer": []}]));
    for status in ["401", "403"] {
        assert!(list["responses"].get(status).is_some(), "{status}");
    }
    let params: Vec<&str> = (list["parameters"].as_array().unwrap().iter())
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"customerId"), "{params:?}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
