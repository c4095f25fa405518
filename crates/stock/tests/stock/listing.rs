//! `GET /api/stock` a page at a time, over HTTP against the real PostgreSQL: following
//! `Link: rel="next"` reads every product exactly once, by product id; viewers only.

#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use serde_json::Value;
use test_support::TestDatabase;

/// The stock routes on a random port over a fresh (seeded) database; the base URL.
async fn serve() -> (TestDatabase, String) {
    let db = TestDatabase::create().await.unwrap();
    stock::migrate(&db.pool).await.unwrap();
    let verifier = platform::auth::Verifier::from_settings(&test_support::auth_settings()).unwrap();
    let routes = stock::http::routes(db.pool.clone(), messaging::Doorbell::new(db.pool.clone()))
        .layer(axum::Extension(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await });
    (db, base)
}

/// One page: its product ids and the link to the next.
async fn page(base: &str, path: &str) -> (Vec<i64>, Option<String>) {
    assert!(path.starts_with("/api/stock"), "a relative link: {path}");
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("authorization", test_support::viewer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let next = response
        .headers()
        .get("link")
        .map(|link| link.to_str().unwrap().to_owned());
    let next = next.map(|link| {
        let (target, rel) = link.split_once(';').unwrap();
        assert_eq!(rel.trim(), "rel=\"next\"");
        target
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    });
    let body: Value = response.json().await.unwrap();
    let ids = (body.as_array().unwrap().iter())
        .map(|p| p["productId"].as_i64().unwrap())
        .collect();
    (ids, next)
}

#[tokio::test]
async fn following_the_links_reads_every_product_once() {
    let (db, base) = serve().await;
    sqlx::query(
        "INSERT INTO products (product_id, name, unit_price, available, reserved, version)
         SELECT n, 'Product ' || n, 1.00, 10, 0, 1 FROM generate_series(4, 12) AS n",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let mut pages = Vec::new();
    let mut next = Some("/api/stock?limit=5".to_owned());
    while let Some(path) = next {
        let (ids, link) = page(&base, &path).await;
        pages.push(ids);
        next = link;
    }
    assert_eq!(
        pages,
        [vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10], vec![11, 12]]
    );

    let (ids, next) = page(&base, "/api/stock?limit=12").await;
    assert_eq!((ids.len(), next), (12, None));

    for (query, status) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=1001", StatusCode::UNPROCESSABLE_ENTITY),
        ("after=one", StatusCode::BAD_REQUEST),
    ] {
        let response = reqwest::Client::new()
            .get(format!("{base}/api/stock?{query}"))
            .header("authorization", test_support::operator())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
    }
}

#[tokio::test]
async fn the_stock_is_for_viewers_and_operators_only() {
    let (db, base) = serve().await;
    let client = reqwest::Client::new();
    let (_, customer) = test_support::customer();
    for (authorization, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (
            Some("Bearer not-a-token".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
        (Some(customer), StatusCode::FORBIDDEN),
        (Some(test_support::viewer()), StatusCode::OK),
        (Some(test_support::operator()), StatusCode::OK),
    ] {
        let mut request = client.get(format!("{base}/api/stock"));
        if let Some(authorization) = &authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{authorization:?}");
        if status == StatusCode::UNAUTHORIZED {
            assert!(response.headers().contains_key("www-authenticate"));
        }
        if status != StatusCode::OK {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
    }
    db.drop_now().await.unwrap();
}
