//! The three services of the saga, in this process, each with a fresh database, on a topic
//! prefix of their own: what the gateway's operability tests and its telemetry overhead bench
//! drive.

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use platform::Settings;
use platform::shutdown::Trigger;
use serde_json::{Value, json};
use service::Service;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{TestDatabase, eventually};

pub struct Shop {
    pub settings: Settings,
    pub order: SocketAddr,
    pub stock: SocketAddr,
    pub payment: SocketAddr,
    pub order_pool: PgPool,
    pub stock_pool: PgPool,
    pub client: reqwest::Client,
    trigger: Trigger,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    databases: Vec<TestDatabase>,
}

impl Shop {
    pub async fn start() -> Shop {
        let settings = crate::isolated_settings();
        let (order_db, stock_db, payment_db) = (
            TestDatabase::create().await.unwrap(),
            TestDatabase::create().await.unwrap(),
            TestDatabase::create().await.unwrap(),
        );
        let order = Service::build(&settings, order::definition(&order_db.name, 0))
            .await
            .unwrap();
        let stock = Service::build(&settings, stock::definition(&settings, &stock_db.name, 0))
            .await
            .unwrap();
        let payment = Service::build(
            &settings,
            payment::definition(&settings, &payment_db.name, 0),
        )
        .await
        .unwrap();
        let (order_addr, stock_addr, payment_addr) = (
            order.address().unwrap(),
            stock.address().unwrap(),
            payment.address().unwrap(),
        );
        let (order_pool, stock_pool) = (order.pool.clone(), stock.pool.clone());
        let (trigger, shutdown) = platform::shutdown::channel();
        let tasks = vec![
            tokio::spawn(order.run(shutdown.clone())),
            tokio::spawn(stock.run(shutdown.clone())),
            tokio::spawn(payment.run(shutdown)),
        ];
        crate::seeded_catalog_replicated(&order_pool).await;
        Shop {
            settings,
            order: order_addr,
            stock: stock_addr,
            payment: payment_addr,
            order_pool,
            stock_pool,
            client: crate::http_client(),
            trigger,
            tasks,
            databases: vec![order_db, stock_db, payment_db],
        }
    }

    /// Places an order of `quantity` units of product 1 (45.00) for a new customer; returns
    /// its id.
    pub async fn place(&self, quantity: i64, traceparent: Option<&str>) -> Uuid {
        let (_, customer) = crate::customer();
        let mut request = self
            .client
            .post(format!("http://{}/api/orders", self.order))
            .header("authorization", customer)
            .json(&json!({
                "items": [{"productId": 1, "quantity": quantity}],
            }));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["orderId"].as_str().unwrap().parse().unwrap()
    }

    pub async fn order_json(&self, id: Uuid) -> Value {
        self.client
            .get(format!("http://{}/api/orders/{id}", self.order))
            .header("authorization", crate::operator())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the order left `pending`; returns its final state.
    pub async fn settled(&self, id: Uuid, timeout: Duration) -> Value {
        eventually(timeout, "the order to settle", || async move {
            let order = self.order_json(id).await;
            Ok((order["status"] != "pending").then_some(order))
        })
        .await
        .unwrap()
    }

    pub async fn metrics(&self, addr: SocketAddr) -> String {
        self.client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.trigger.fire();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        for db in self.databases {
            let _ = db.drop_now().await;
        }
    }
}
