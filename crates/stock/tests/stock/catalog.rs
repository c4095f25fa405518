//! The catalog and inventory over HTTP against the real PostgreSQL (and Kafka for the catalog
//! topic): who may do what, the rules of a product and of a restock, the outbox message and the
//! audit row of every change, and restocks racing reservations (I1, I2).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::Line;
use contracts::catalog::{CatalogMessage, ProductChanged};
use contracts::orders::{FailureReason, OrderCompleted, OrderFailed, OrderPlaced};
use platform::auth::Role;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::TestDatabase;
use uuid::Uuid;

use crate::messages::{handle, incoming};

/// The stock routes on a random port over a fresh (seeded) database.
struct App {
    db: TestDatabase,
    base: String,
    client: reqwest::Client,
}

/// An operator whose name (the token's `sub`) the audit trail shows.
fn operator() -> (String, String) {
    let id = Uuid::new_v4();
    (
        id.to_string(),
        format!("Bearer {}", test_support::token(id, &[Role::Ops])),
    )
}

impl App {
    async fn start() -> Self {
        let db = TestDatabase::create().await.unwrap();
        stock::migrate(&db.pool).await.unwrap();
        let verifier =
            platform::auth::Verifier::from_settings(&test_support::auth_settings()).unwrap();
        let routes =
            stock::http::routes(db.pool.clone(), messaging::Doorbell::new(db.pool.clone()))
                .layer(axum::Extension(verifier));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, routes).await });
        Self {
            db,
            base,
            client: reqwest::Client::new(),
        }
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn put(&self, authorization: Option<&str>, id: &str, body: Value) -> reqwest::Response {
        let path = format!("/api/products/{id}");
        self.send(reqwest::Method::PUT, &path, authorization, Some(body))
            .await
    }

    async fn restock(
        &self,
        authorization: Option<&str>,
        id: &str,
        body: Value,
    ) -> reqwest::Response {
        let path = format!("/api/products/{id}/restock");
        self.send(reqwest::Method::POST, &path, authorization, Some(body))
            .await
    }

    async fn get(&self, path: &str, authorization: Option<&str>) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, authorization, None)
            .await
    }

    /// The whole catalog, read without a token.
    async fn products(&self) -> Vec<Value> {
        let response = self.get("/api/products?limit=1000", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Vec<Value>>().await.unwrap()
    }

    async fn product(&self, id: i64) -> Value {
        (self.products().await.into_iter())
            .find(|p| p["productId"] == id)
            .unwrap()
    }

    /// The audit trail as a viewer reads it, newest first.
    async fn audit(&self, query: &str) -> Vec<Value> {
        let response = self
            .get(
                &format!("/api/ops/audit?{query}"),
                Some(&test_support::viewer()),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Vec<Value>>().await.unwrap()
    }

    /// The catalog messages queued for `key`, oldest first.
    async fn announced(&self, key: &str) -> Vec<ProductChanged> {
        let rows: Vec<(String, String, i16, String)> = sqlx::query_as(
            "SELECT topic, message_type, schema_version, payload::text FROM outbox
             WHERE message_key = $1 ORDER BY id",
        )
        .bind(key)
        .fetch_all(self.pool())
        .await
        .unwrap();
        (rows.into_iter())
            .map(|(topic, message_type, version, payload)| {
                assert_eq!(topic, contracts::topics::CATALOG);
                let decoded = CatalogMessage::decode(
                    &message_type,
                    u16::try_from(version).unwrap(),
                    payload.as_bytes(),
                );
                match decoded.unwrap() {
                    CatalogMessage::ProductChanged(m) => m,
                }
            })
            .collect()
    }

    async fn audit_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.db.drop_now().await.unwrap();
    }
}

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

fn product(id: i64, name: &str, price: &str, available: i64, version: i64) -> Value {
    json!({"productId": id, "name": name, "unitPrice": price, "available": available, "version": version})
}

#[tokio::test]
async fn everyone_reads_the_catalog_at_the_seed_prices_and_it_is_announced() {
    let app = App::start().await;
    assert_eq!(
        app.products().await,
        [
            product(1, "Keyboard", "45.00", 100, 1),
            product(2, "Mouse", "20.00", 50, 1),
            product(3, "Monitor", "450.00", 25, 1),
        ]
    );

    // A page at a time, like every list.
    let response = app.get("/api/products?limit=2", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, "</api/products?limit=2&after=2>; rel=\"next\"");
    assert_eq!(response.json::<Vec<Value>>().await.unwrap().len(), 2);
    let response = app.get("/api/products?limit=2&after=2", None).await;
    assert!(response.headers().get("link").is_none());
    assert_eq!(response.json::<Vec<Value>>().await.unwrap().len(), 1);
    problem(
        app.get("/api/products?limit=0", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.get("/api/products?after=x", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // The migration queued the seeded catalog for the relay, one message per product.
    for (id, name, price) in [
        (1, "Keyboard", 4500),
        (2, "Mouse", 2000),
        (3, "Monitor", 45000),
    ] {
        assert_eq!(
            app.announced(&id.to_string()).await,
            [ProductChanged {
                product_id: id,
                name: name.to_owned(),
                unit_price: Decimal::new(price, 2),
                version: 1,
            }]
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_operator_adds_and_reprices_a_product_announced_and_audited_once_each() {
    let app = App::start().await;
    let (name, ops) = operator();

    let added = app
        .put(
            Some(&ops),
            "4",
            json!({"name": "Webcam", "unitPrice": "75.5"}),
        )
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    assert_eq!(
        added.json::<Value>().await.unwrap(),
        product(4, "Webcam", "75.50", 0, 1)
    );

    // The same again changes nothing and says nothing.
    let again = app
        .put(
            Some(&ops),
            "4",
            json!({"name": "Webcam", "unitPrice": "75.50"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        product(4, "Webcam", "75.50", 0, 1)
    );
    assert_eq!(app.audit_rows().await, 1);

    let changed = app
        .put(
            Some(&ops),
            "4",
            json!({"name": "Webcam HD", "unitPrice": "80"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        changed.json::<Value>().await.unwrap(),
        product(4, "Webcam HD", "80.00", 0, 2)
    );
    // A seeded product keeps its units when repriced.
    let repriced = app
        .put(
            Some(&ops),
            "1",
            json!({"name": "Keyboard", "unitPrice": "47.00"}),
        )
        .await;
    assert_eq!(repriced.status(), StatusCode::OK);

    assert_eq!(app.product(4).await, product(4, "Webcam HD", "80.00", 0, 2));
    assert_eq!(
        app.product(1).await,
        product(1, "Keyboard", "47.00", 100, 2)
    );
    let announced = app.announced("4").await;
    assert_eq!(
        announced,
        [
            ProductChanged {
                product_id: 4,
                name: "Webcam".to_owned(),
                unit_price: Decimal::new(7550, 2),
                version: 1,
            },
            ProductChanged {
                product_id: 4,
                name: "Webcam HD".to_owned(),
                unit_price: Decimal::new(8000, 2),
                version: 2,
            },
        ]
    );
    assert_eq!(
        app.announced("1")
            .await
            .last()
            .map(|m| (m.unit_price, m.version)),
        Some((Decimal::new(4700, 2), 2))
    );

    let trail = app.audit("").await;
    let summary: Vec<(&str, &str, &str)> = (trail.iter())
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (name.as_str(), "product.change", "product:1"),
            (name.as_str(), "product.change", "product:4"),
            (name.as_str(), "product.add", "product:4"),
        ]
    );
    assert_eq!(trail[1]["before"], product(4, "Webcam", "75.50", 0, 1));
    assert_eq!(trail[1]["after"], product(4, "Webcam HD", "80.00", 0, 2));
    assert_eq!(trail[2]["before"], Value::Null);
    assert_eq!(trail[2]["after"], product(4, "Webcam", "75.50", 0, 1));
    assert!(trail[0]["at"].as_str().is_some());
    app.stop().await;
}

#[tokio::test]
async fn the_relay_publishes_the_catalog_to_its_compacted_topic_keyed_by_product() {
    let app = App::start().await;
    let settings = test_support::isolated_settings();
    messaging::topics::ensure(&settings.kafka, &[contracts::topics::CATALOG])
        .await
        .unwrap();
    let (_, ops) = operator();
    let response = app
        .put(
            Some(&ops),
            "3",
            json!({"name": "Monitor", "unitPrice": "399.99"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut relay = messaging::Relay::new(
        &settings.kafka,
        app.pool().clone(),
        messaging::RelayConfig::default(),
    )
    .unwrap();
    let mut published = 0;
    loop {
        let report = relay.publish_batch().await.unwrap();
        assert!(report.lease_held);
        published += report.published;
        if report.published == 0 {
            break;
        }
    }
    assert_eq!(published, 4);

    let topic = format!(
        "{}{}",
        settings.kafka.topic_prefix,
        contracts::topics::CATALOG
    );
    let records =
        test_support::kafka::read_until(&settings, &topic, Duration::from_secs(30), |records| {
            records.len() >= 4
        })
        .await
        .unwrap();
    let mut seen: Vec<(String, u32, String)> = (records.iter())
        .map(|r| {
            let message_type = r.header(contracts::headers::MESSAGE_TYPE).unwrap();
            let version: u16 = (r.header(contracts::headers::SCHEMA_VERSION).unwrap())
                .parse()
                .unwrap();
            let CatalogMessage::ProductChanged(m) =
                CatalogMessage::decode(message_type, version, r.payload.as_deref().unwrap())
                    .unwrap();
            assert_eq!(r.key.as_deref(), Some(m.product_id.to_string().as_str()));
            (r.key.clone().unwrap(), m.version, m.unit_price.to_string())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("1".to_owned(), 1, "45.00".to_owned()),
            ("2".to_owned(), 1, "20.00".to_owned()),
            ("3".to_owned(), 1, "450.00".to_owned()),
            ("3".to_owned(), 2, "399.99".to_owned()),
        ]
    );
    test_support::delete_topics(&settings, &[&topic])
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_restock_adds_units_and_is_audited() {
    let app = App::start().await;
    let (name, ops) = operator();
    let response = app.restock(Some(&ops), "3", json!({"quantity": 10})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        product(3, "Monitor", "450.00", 35, 1)
    );
    // JSON Schema's integers include integral floats.
    let response = app.restock(Some(&ops), "3", json!({"quantity": 5.0})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.product(3).await["available"], 40);
    // Units are not a catalog change: nothing more is announced.
    assert_eq!(app.announced("3").await.len(), 1);

    let trail = app.audit("").await;
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[1]["actor"], name.as_str());
    assert_eq!(trail[1]["action"], "product.restock");
    assert_eq!(trail[1]["subject"], "product:3");
    assert_eq!(trail[1]["before"], product(3, "Monitor", "450.00", 25, 1));
    assert_eq!(trail[1]["after"], product(3, "Monitor", "450.00", 35, 1));

    let unknown = app.restock(Some(&ops), "99", json!({"quantity": 1})).await;
    problem(unknown, StatusCode::NOT_FOUND).await;

    // Units that would leave the column's range: refused, nothing written.
    sqlx::query("UPDATE products SET available = 2147483647 - 5 WHERE product_id = 2")
        .execute(app.pool())
        .await
        .unwrap();
    let overflow = app.restock(Some(&ops), "2", json!({"quantity": 10})).await;
    let body = problem(overflow, StatusCode::CONFLICT).await;
    assert_eq!(body["type"], "urn:shop:problem:stock-overflow");
    assert_eq!(app.product(2).await["available"], 2147483642);
    assert_eq!(app.audit_rows().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn only_operators_change_the_catalog_and_only_viewers_read_the_trail() {
    let app = App::start().await;
    let (_, customer) = test_support::customer();
    let viewer = test_support::viewer();
    let body = json!({"name": "Keyboard", "unitPrice": "1.00"});
    let units = json!({"quantity": 1000});

    for (authorization, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer x.y.z"), StatusCode::UNAUTHORIZED),
        (Some(customer.as_str()), StatusCode::FORBIDDEN),
        (Some(viewer.as_str()), StatusCode::FORBIDDEN),
    ] {
        let put = app.put(authorization, "1", body.clone()).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(put.headers().contains_key("www-authenticate"));
        }
        problem(put, status).await;
        problem(app.restock(authorization, "1", units.clone()).await, status).await;
    }
    for (authorization, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(customer.as_str()), StatusCode::FORBIDDEN),
    ] {
        problem(app.get("/api/ops/audit", authorization).await, status).await;
        problem(app.get("/api/stock", authorization).await, status).await;
    }
    let (_, ops) = operator();
    for authorization in [viewer.as_str(), ops.as_str()] {
        let response = app.get("/api/ops/audit", Some(authorization)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert_eq!(
        app.product(1).await,
        product(1, "Keyboard", "45.00", 100, 1)
    );
    assert_eq!(app.audit_rows().await, 0);
    assert_eq!(app.announced("1").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_product_or_restock_that_breaks_a_rule_is_refused() {
    let app = App::start().await;
    let (_, ops) = operator();
    let long = "x".repeat(201);
    let longest = "é".repeat(200);

    for (id, body, status, field) in [
        ("5", json!({"name": "", "unitPrice": "1.00"}), 422, "name"),
        ("5", json!({"name": long, "unitPrice": "1.00"}), 422, "name"),
        (
            "5",
            json!({"name": "Cable", "unitPrice": "0.00"}),
            422,
            "unitPrice",
        ),
        (
            "5",
            json!({"name": "Cable", "unitPrice": "-1.00"}),
            422,
            "unitPrice",
        ),
        (
            "5",
            json!({"name": "Cable", "unitPrice": "1.001"}),
            422,
            "unitPrice",
        ),
        (
            "5",
            json!({"name": "Cable", "unitPrice": "1000000.01"}),
            422,
            "unitPrice",
        ),
        (
            "5",
            json!({"name": "Cable", "unitPrice": "01.00"}),
            422,
            "unitPrice",
        ),
        (
            "5",
            json!({"name": "Ca\u{0}ble", "unitPrice": "1.00"}),
            422,
            "name",
        ),
        (
            "0",
            json!({"name": "Cable", "unitPrice": "1.00"}),
            422,
            "productId",
        ),
        (
            "-3",
            json!({"name": "Cable", "unitPrice": "1.00"}),
            422,
            "productId",
        ),
        ("5", json!({"name": "Cable", "unitPrice": 1.5}), 400, ""),
        ("5", json!({"name": "Cable"}), 400, ""),
        (
            "five",
            json!({"name": "Cable", "unitPrice": "1.00"}),
            400,
            "",
        ),
        (
            "99999999999999999999",
            json!({"name": "Cable", "unitPrice": "1.00"}),
            400,
            "",
        ),
    ] {
        let status = StatusCode::from_u16(status).unwrap();
        let body = problem(app.put(Some(&ops), id, body.clone()).await, status).await;
        if !field.is_empty() {
            assert_eq!(body["errors"][0]["field"], field, "{body}");
        }
    }
    for (quantity, status) in [
        (json!(0), 422),
        (json!(-1), 422),
        (json!(1_000_001), 422),
        (json!(1.5), 422),
        (json!(1e300), 422),
        (json!("1"), 400),
        (Value::Null, 400),
    ] {
        let status = StatusCode::from_u16(status).unwrap();
        let response = app
            .restock(Some(&ops), "1", json!({"quantity": quantity}))
            .await;
        problem(response, status).await;
    }
    assert_eq!(app.audit_rows().await, 0);

    // The bounds themselves pass.
    let response = app
        .put(
            Some(&ops),
            "5",
            json!({"name": longest, "unitPrice": "1000000.00"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .put(Some(&ops), "6", json!({"name": "C", "unitPrice": "0.01"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .restock(Some(&ops), "1", json!({"quantity": 1_000_000}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_audit_trail_is_newest_first_a_page_at_a_time_and_filters() {
    let app = App::start().await;
    let (first, first_token) = operator();
    let (second, second_token) = operator();
    for n in 1..=3 {
        let response = app
            .restock(Some(&first_token), "1", json!({"quantity": n}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = app
            .put(
                Some(&second_token),
                "2",
                json!({"name": "Mouse", "unitPrice": format!("2{n}.00")}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    let mut ids = Vec::new();
    let mut next = Some("/api/ops/audit?limit=4".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let response = app.get(&path, Some(&test_support::viewer())).await;
        assert_eq!(response.status(), StatusCode::OK);
        next = response.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            let (target, _) = link.split_once(';').unwrap();
            target
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        });
        let page: Vec<Value> = response.json().await.unwrap();
        ids.extend(page.iter().map(|e| e["id"].as_i64().unwrap()));
        pages += 1;
    }
    assert_eq!(pages, 2);
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let mine = app.audit(&format!("actor={first}")).await;
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|e| e["action"] == "product.restock"));
    assert_eq!(mine[0]["after"]["available"], 106);
    let changes = app.audit("action=product.change&limit=2").await;
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|e| e["actor"] == second.as_str()));
    assert_eq!(changes[0]["after"]["unitPrice"], "23.00");
    let both = app
        .audit(&format!("actor={second}&action=product.restock"))
        .await;
    assert!(both.is_empty());
    // No entry can name a NUL: none is found, and nothing fails.
    assert!(app.audit("actor=%00").await.is_empty());
    assert!(app.audit("action=product.%00").await.is_empty());
    app.stop().await;
}

// --- restocks racing reservations ------------------------------------------------------------

fn line(product_id: i64, quantity: u32) -> Line {
    Line {
        product_id,
        quantity,
        unit_price: "450.00".parse().unwrap(),
    }
}

fn total(lines: &[Line]) -> Decimal {
    (lines.iter())
        .map(|l| l.unit_price * Decimal::from(l.quantity))
        .sum()
}

async fn units(pool: &PgPool, product_id: i64) -> (i64, i64) {
    let (available, reserved): (i32, i32) =
        sqlx::query_as("SELECT available, reserved FROM products WHERE product_id = $1")
            .bind(product_id)
            .fetch_one(pool)
            .await
            .unwrap();
    (i64::from(available), i64::from(reserved))
}

/// Units of product 3 held or sold, by reservation status.
async fn held(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(q), 0)::int8 FROM reservations, unnest(product_ids, quantities) AS l(p, q)
         WHERE status = $1 AND p = 3",
    )
    .bind(status)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Orders wanting more monitors than there are, restocks arriving meanwhile, then completions
/// and failures racing more restocks: every unit is accounted for (I1) and none is sold twice
/// (I2: the CHECK on `available` would fail a batch that tried, and every batch succeeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restocks_racing_reservations_lose_no_unit_and_oversell_none() {
    let app = App::start().await;
    let (_, ops) = operator();
    let restock = |quantity: i64| {
        let (client, base, ops) = (app.client.clone(), app.base.clone(), ops.clone());
        async move {
            let response = client
                .post(format!("{base}/api/products/3/restock"))
                .header("authorization", ops)
                .json(&json!({"quantity": quantity}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    };

    // 60 orders of 1 to 3 monitors (120 wanted) against 25 in stock and 15 restocks of 3.
    let orders: Vec<(Uuid, Vec<Line>)> = (0..60u32)
        .map(|n| (Uuid::new_v4(), vec![line(3, n % 3 + 1)]))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (order_id, lines)) in orders.iter().enumerate() {
        let pool = app.pool().clone();
        let message = incoming(
            *order_id,
            &OrderPlaced {
                order_id: *order_id,
                customer_id: Uuid::new_v4(),
                revision: 1,
                lines: lines.clone(),
                total: total(lines),
            },
        );
        tasks.spawn(async move { handle(&pool, &[message]).await.unwrap() });
        if n % 4 == 0 {
            tasks.spawn(restock(3));
        }
    }
    tasks.join_all().await;
    let restocked = 15 * 3;
    let (available, reserved) = units(app.pool(), 3).await;
    assert!(available >= 0);
    assert_eq!(reserved, held(app.pool(), "reserved").await);
    assert_eq!(available + reserved, 25 + restocked);
    assert!(reserved > 0, "some orders were held");
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reservations WHERE status = 'failed'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(
        failed > 0,
        "120 monitors wanted, 70 there: some orders went short"
    );

    // Half of what is held completes (sold), the rest fails (given back), racing more restocks.
    let reserved_orders: Vec<Uuid> =
        sqlx::query_scalar("SELECT order_id FROM reservations WHERE status = 'reserved'")
            .fetch_all(app.pool())
            .await
            .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, order_id) in reserved_orders.iter().enumerate() {
        let lines = orders
            .iter()
            .find(|(o, _)| o == order_id)
            .unwrap()
            .1
            .clone();
        let message = if n % 2 == 0 {
            incoming(
                *order_id,
                &OrderCompleted {
                    order_id: *order_id,
                    customer_id: Uuid::new_v4(),
                    payment_id: Uuid::new_v4(),
                    total: total(&lines),
                    lines,
                },
            )
        } else {
            incoming(
                *order_id,
                &OrderFailed {
                    order_id: *order_id,
                    customer_id: Uuid::new_v4(),
                    reason: FailureReason::PaymentDeclined,
                    total: total(&lines),
                    lines,
                },
            )
        };
        let pool = app.pool().clone();
        tasks.spawn(async move { handle(&pool, &[message]).await.unwrap() });
        tasks.spawn(restock(2));
    }
    // And new orders meanwhile, on the stock given back and restocked.
    for _ in 0..20 {
        let order_id = Uuid::new_v4();
        let lines = vec![line(3, 2)];
        let message = incoming(
            order_id,
            &OrderPlaced {
                order_id,
                customer_id: Uuid::new_v4(),
                revision: 1,
                total: total(&lines),
                lines,
            },
        );
        let pool = app.pool().clone();
        tasks.spawn(async move { handle(&pool, &[message]).await.unwrap() });
    }
    tasks.join_all().await;

    let restocked = restocked + 2 * i64::try_from(reserved_orders.len()).unwrap();
    let (available, reserved) = units(app.pool(), 3).await;
    let sold = held(app.pool(), "committed").await;
    assert!(available >= 0);
    assert!(sold > 0);
    assert_eq!(reserved, held(app.pool(), "reserved").await);
    assert_eq!(available, 25 + restocked - sold - reserved, "I1");
    let restocks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'product.restock' AND subject = 'product:3'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(restocks, 15 + i64::try_from(reserved_orders.len()).unwrap());
    app.stop().await;
}

#[test]
fn the_openapi_document_states_who_may_call_what_and_the_rules() {
    let doc = serde_json::to_value(stock::http::openapi()).unwrap();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(
        op("/api/products", "get").get("security").is_none(),
        "public"
    );
    for (path, method, statuses) in [
        (
            "/api/products/{productId}",
            "put",
            &["401", "403", "422"][..],
        ),
        (
            "/api/products/{productId}/restock",
            "post",
            &["401", "403", "404", "409", "422"][..],
        ),
        ("/api/stock", "get", &["401", "403"][..]),
        ("/api/ops/audit", "get", &["401", "403"][..]),
    ] {
        let operation = op(path, method);
        assert_eq!(operation["security"], json!([{"bearer": []}]), "{path}");
        for status in statuses {
            assert!(
                operation["responses"].get(*status).is_some(),
                "{method} {path} {status}"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PutProduct"]["properties"]["unitPrice"]["pattern"],
        stock::http::products::PRICE_PATTERN
    );
    assert_eq!(
        schemas["PutProduct"]["properties"]["name"]["maxLength"],
        200
    );
    assert_eq!(schemas["PutProduct"]["properties"]["name"]["minLength"], 1);
    assert_eq!(
        schemas["PutProduct"]["properties"]["name"]["pattern"],
        r"^[^\u0000]*$"
    );
    assert_eq!(schemas["Restock"]["properties"]["quantity"]["minimum"], 1);
    assert_eq!(
        schemas["Restock"]["properties"]["quantity"]["maximum"],
        1_000_000
    );
}
