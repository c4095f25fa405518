use std::time::Duration;

use order::deadline::DeadlineConfig;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use test_support::TestDatabase;

/// One order service on a random port over a fresh database, with one method per endpoint.
/// Its relay polls only every two minutes, so a message published within a test was published
/// because its writer rang the relay. Its saga deadline is the default (60 s) unless a test
/// asks for another: no test waits that long.
pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    pub client: reqwest::Client,
    _stop: platform::shutdown::Trigger,
}

impl TestApp {
    pub async fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with_deadline(Duration::from_secs(60)).await
    }

    /// A service whose sagas time out after `deadline`, polled every 100 ms.
    pub async fn spawn_with_deadline(deadline: Duration) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let settings = test_support::isolated_settings();
        let mut definition = order::definition(&db.name, 0);
        definition.relay.poll_interval = Duration::from_secs(120);
        let app = order::Component::build(&settings, definition, deadline_config(deadline)).await?;
        let address = format!("http://{}", app.address()?);
        let (trigger, shutdown) = platform::shutdown::channel();
        tokio::spawn(app.run(shutdown));
        Ok(Self {
            address,
            db,
            client: test_support::http_client(),
            _stop: trigger,
        })
    }

    /// Stops the service (its HTTP server, relay, consumer and deadline) and hands back its
    /// database.
    pub fn stop(self) -> TestDatabase {
        drop(self._stop);
        self.db
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    /// Waits (up to `within`) until the relay has published `count` outbox rows.
    pub async fn published(&self, count: i64, within: std::time::Duration) -> anyhow::Result<()> {
        let pool = self.db.pool.clone();
        test_support::eventually(within, &format!("{count} messages published"), || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL",
                )
                .fetch_one(&pool)
                .await?;
                Ok((n == count).then_some(()))
            }
        })
        .await
    }

    pub async fn place(&self, body: &Value) -> Response {
        self.client
            .post(format!("{}/api/orders", self.address))
            .json(body)
            .send()
            .await
            .expect("POST /api/orders")
    }

    pub async fn place_with_key(&self, body: &Value, key: &str) -> Response {
        self.client
            .post(format!("{}/api/orders", self.address))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("POST /api/orders")
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn get_order(&self, id: &str) -> Response {
        self.client
            .get(format!("{}/api/orders/{id}", self.address))
            .send()
            .await
            .expect("GET /api/orders/{id}")
    }

    /// `GET` of a path on this service (a list page, a `Link` target).
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_events(&self, id: &str) -> Response {
        self.client
            .get(format!("{}/api/orders/{id}/events", self.address))
            .send()
            .await
            .expect("GET /api/orders/{id}/events")
    }

    pub async fn add_item(&self, id: &str, item: &Value) -> Response {
        self.client
            .post(format!("{}/api/orders/{id}/items", self.address))
            .json(item)
            .send()
            .await
            .expect("POST /api/orders/{id}/items")
    }

    pub async fn remove_item(&self, id: &str, product: &str, quantity: Option<i64>) -> Response {
        let mut url = format!("{}/api/orders/{id}/items/{product}", self.address);
        if let Some(q) = quantity {
            url.push_str(&format!("?quantity={q}"));
        }
        self.client.delete(url).send().await.expect("DELETE item")
    }

    /// Places a valid order and returns its JSON.
    pub async fn place_ok(&self, items: Value) -> Value {
        let response = self
            .place(&json!({ "customerId": uuid::Uuid::new_v4(), "items": items }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("order JSON")
    }
}

/// Asserts a problem document: status, content type and `type` slug; returns the body.
pub async fn assert_problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(
        body["type"],
        format!("urn:shop:problem:{kind}"),
        "problem type in {body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string());
    body
}

pub fn deadline_config(deadline: Duration) -> DeadlineConfig {
    DeadlineConfig {
        deadline,
        poll_interval: Duration::from_millis(100),
        batch_size: 100,
    }
}

/// The target of a `Link: <…>; rel="next"` header, if the response has one.
pub fn next_link(response: &Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().ok()?;
    let (target, params) = link.split_once(';')?;
    assert_eq!(params.trim(), "rel=\"next\"", "{link}");
    Some(
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned(),
    )
}

pub fn item(product: i64, quantity: i64, price: &str) -> Value {
    json!({ "productId": product, "quantity": quantity, "unitPrice": price })
}
