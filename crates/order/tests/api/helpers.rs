use messaging::service::Service;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use test_support::TestDatabase;

/// One order service on a random port over a fresh database, with one method per endpoint.
/// Its relay polls only every two minutes, so a message published within a test was published
/// because its writer rang the relay.
pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    pub client: reqwest::Client,
    _stop: platform::shutdown::Trigger,
}

impl TestApp {
    pub async fn spawn() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let settings = test_support::isolated_settings();
        let mut definition = order::definition(&db.name, 0);
        definition.relay.poll_interval = std::time::Duration::from_secs(120);
        let app = Service::build(&settings, definition).await?;
        let address = format!("http://{}", app.address()?);
        let (trigger, shutdown) = platform::shutdown::channel();
        tokio::spawn(app.run(shutdown));
        Ok(Self {
            address,
            db,
            client: reqwest::Client::new(),
            _stop: trigger,
        })
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

pub fn item(product: i64, quantity: i64, price: &str) -> Value {
    json!({ "productId": product, "quantity": quantity, "unitPrice": price })
}
