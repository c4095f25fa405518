use std::time::Duration;

use order::deadline::DeadlineConfig;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use test_support::TestDatabase;

/// One order service on a random port over a fresh database, with one method per endpoint.
/// Its relay polls only every two minutes, so a message published within a test was published
/// because its writer rang the relay. Its saga deadline is the default (60 s) unless a test
/// asks for another: no test waits that long.
///
/// Requests go as `customer` (a fresh customer per app, `auth` its `Authorization` value)
/// unless a method takes another `Authorization`. The catalog replica starts with products 1, 2
/// and 3 at 1.00; [`TestApp::offer`] reprices one.
pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    pub client: reqwest::Client,
    pub customer: uuid::Uuid,
    pub auth: String,
    _stop: platform::shutdown::Trigger,
}

impl TestApp {
    pub async fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with_deadline(Duration::from_secs(60)).await
    }

    /// A service whose sagas time out after `deadline`, polled every 100 ms.
    pub async fn spawn_with_deadline(deadline: Duration) -> anyhow::Result<Self> {
        Self::spawn_with(test_support::isolated_settings(), deadline).await
    }

    /// A service with these settings (a test that publishes to its topics knows their prefix).
    pub async fn spawn_with(
        settings: platform::Settings,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let mut definition = order::definition(&db.name, 0);
        definition.relay.poll_interval = Duration::from_secs(120);
        let app = order::Component::build(&settings, definition, deadline_config(deadline)).await?;
        let address = format!("http://{}", app.address()?);
        let (trigger, shutdown) = platform::shutdown::channel();
        tokio::spawn(app.run(shutdown));
        let (customer, auth) = test_support::customer();
        let app = Self {
            address,
            db,
            client: test_support::http_client(),
            customer,
            auth,
            _stop: trigger,
        };
        for product in 1..=3 {
            app.offer(product, "1.00").await;
        }
        Ok(app)
    }

    /// Sets the replica's price of `product` (a newer version of it), as if the catalog had
    /// published the change.
    pub async fn offer(&self, product: i64, price: &str) {
        sqlx::query(
            "INSERT INTO catalog (product_id, name, unit_price, version)
             VALUES ($1, 'Product ' || $1, $2::numeric, 1)
             ON CONFLICT (product_id) DO UPDATE
                SET unit_price = EXCLUDED.unit_price, version = catalog.version + 1",
        )
        .bind(product)
        .bind(price)
        .execute(&self.db.pool)
        .await
        .expect("seeding the catalog replica");
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

    /// How many `OrderPlaced` events the store holds: how many orders were placed.
    pub async fn placed(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
            .fetch_one(self.pool())
            .await
            .unwrap()
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
        self.place_as(&self.auth, body, None).await
    }

    pub async fn place_with_key(&self, body: &Value, key: &str) -> Response {
        self.place_as(&self.auth, body, Some(key)).await
    }

    /// `POST /api/orders` with `auth` as `Authorization` (none if empty).
    pub async fn place_as(&self, auth: &str, body: &Value, key: Option<&str>) -> Response {
        let mut request = self.client.post(format!("{}/api/orders", self.address));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        authorized(request, auth)
            .json(body)
            .send()
            .await
            .expect("POST /api/orders")
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("authorization", &self.auth)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn get_order(&self, id: &str) -> Response {
        self.get(&format!("/api/orders/{id}")).await
    }

    /// `GET` of a path on this service (a list page, a `Link` target).
    pub async fn get(&self, path: &str) -> Response {
        self.get_as(&self.auth, path).await
    }

    /// `GET` of a path with `auth` as `Authorization` (none if empty).
    pub async fn get_as(&self, auth: &str, path: &str) -> Response {
        authorized(self.client.get(format!("{}{path}", self.address)), auth)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_events(&self, id: &str) -> Response {
        self.get(&format!("/api/orders/{id}/events")).await
    }

    pub async fn add_item(&self, id: &str, item: &Value) -> Response {
        self.add_item_as(&self.auth, id, item).await
    }

    pub async fn add_item_as(&self, auth: &str, id: &str, item: &Value) -> Response {
        let request = self
            .client
            .post(format!("{}/api/orders/{id}/items", self.address));
        authorized(request, auth)
            .json(item)
            .send()
            .await
            .expect("POST /api/orders/{id}/items")
    }

    pub async fn remove_item(&self, id: &str, product: &str, quantity: Option<i64>) -> Response {
        self.remove_item_as(&self.auth, id, product, quantity).await
    }

    pub async fn remove_item_as(
        &self,
        auth: &str,
        id: &str,
        product: &str,
        quantity: Option<i64>,
    ) -> Response {
        let mut url = format!("{}/api/orders/{id}/items/{product}", self.address);
        if let Some(q) = quantity {
            url.push_str(&format!("?quantity={q}"));
        }
        authorized(self.client.delete(url), auth)
            .send()
            .await
            .expect("DELETE item")
    }

    /// Places a valid order as the app's customer and returns its JSON.
    pub async fn place_ok(&self, items: Value) -> Value {
        self.place_ok_as(&self.auth, items).await
    }

    /// Places a valid order with `auth` and returns its JSON.
    pub async fn place_ok_as(&self, auth: &str, items: Value) -> Value {
        let response = self.place_as(auth, &json!({ "items": items }), None).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("order JSON")
    }
}

/// `request` with `Authorization: auth`, or without one when `auth` is empty.
fn authorized(request: reqwest::RequestBuilder, auth: &str) -> reqwest::RequestBuilder {
    if auth.is_empty() {
        request
    } else {
        request.header("authorization", auth)
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
