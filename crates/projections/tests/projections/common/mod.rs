//! A world per test: the real order service in-process (its relay publishes to a topic prefix
//! of the test's own), the projections component on a random port, a Redis key prefix and a
//! Mongo database of its own. Sagas are driven by executing the saga's commands directly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use order::commands::{self, Context};
use order::domain::{Command, CustomerId, Line, OrderId, Price, ProductId, Quantity, Status};
use platform::Settings;
use platform::shutdown::Trigger;
use projections::{OrdersModel, ProductsModel, ProjectionStats, Projections};
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use test_support::{TestDatabase, eventually, unique};

pub const SETTLE: Duration = Duration::from_secs(30);

pub struct World {
    pub settings: Settings,
    pub db: TestDatabase,
    pub products: ProductsModel,
    pub orders: OrdersModel,
    pub address: String,
    pub stats: (Arc<ProjectionStats>, Arc<ProjectionStats>),
    pub client: reqwest::Client,
    /// The `Authorization` the reports are read with: a viewer's (the reports are staff-only).
    pub viewer: String,
    _order_service: Trigger,
    _projections: Trigger,
    /// Last, so the turn ends after the services stop.
    _turn: test_support::Turn,
}

impl World {
    /// A world beside other tests' worlds.
    pub async fn new() -> Self {
        Self::start(test_support::shared().await).await
    }

    /// A world while no other test runs, for a drill that stops a shared server.
    pub async fn alone() -> Self {
        Self::start(test_support::alone().await).await
    }

    async fn start(turn: test_support::Turn) -> Self {
        let mut settings = test_support::isolated_settings();
        settings.redis.key_prefix = format!("{}:", unique("test"));
        settings.mongodb.database = unique("test");
        let db = TestDatabase::create().await.unwrap();
        // A rebuild started over HTTP reads this world's event store.
        settings.postgres.databases.order.clone_from(&db.name);
        let service = service::Service::build(&settings, order::definition(&db.name, 0))
            .await
            .unwrap();
        let (order_trigger, shutdown) = platform::shutdown::channel();
        tokio::spawn(service.run(shutdown));

        let projections = Projections::build(&settings, 0).await.unwrap();
        let address = format!("http://{}", projections.address().unwrap());
        let stats = projections.stats();
        let (trigger, shutdown) = platform::shutdown::channel();
        tokio::spawn(projections.run(shutdown));
        Self {
            products: ProductsModel::new(&settings.redis).unwrap(),
            orders: OrdersModel::new(&settings.mongodb).await.unwrap(),
            settings,
            db,
            address,
            stats,
            client: test_support::http_client(),
            viewer: test_support::viewer(),
            _order_service: order_trigger,
            _projections: trigger,
            _turn: turn,
        }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    /// `GET path` as a viewer.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, Some(&self.viewer)).await
    }

    /// `GET path` with `authorization` as the `Authorization` header, or none.
    pub async fn get_as(&self, path: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send().await.unwrap()
    }

    /// Both reports as the API serves them; `None` while a store is unavailable.
    pub async fn reports(&self) -> Option<(Value, Value)> {
        let products = self.get("/api/reports/products").await;
        let orders = self.get("/api/reports/orders").await;
        if !products.status().is_success() || !orders.status().is_success() {
            return None;
        }
        Some((products.json().await.ok()?, orders.json().await.ok()?))
    }

    /// Waits until both reports equal what the event store says (I5).
    pub async fn assert_reports_exact(&self, timeout: Duration) {
        let expected = expected_reports(self.pool()).await;
        let reached = eventually(timeout, "reports equal to the orders", || {
            let expected = expected.clone();
            async move { Ok((self.reports().await.as_ref() == Some(&expected)).then_some(())) }
        })
        .await;
        if let Err(e) = reached {
            let got = self.reports().await;
            panic!("{e:#}\nexpected {expected:?}\ngot      {got:?}");
        }
    }

    pub async fn products_report(&self) -> Value {
        self.get("/api/reports/products")
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn orders_report(&self) -> Value {
        self.get("/api/reports/orders").await.json().await.unwrap()
    }
}

/// Places `n` orders with random lines and drives each to completed, failed (three ways) or
/// leaves it pending. Returns the ids.
pub async fn load(pool: &sqlx::PgPool, n: usize) -> Vec<OrderId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(one_order(pool).await);
    }
    ids
}

const PRICES: [&str; 5] = ["0.99", "2.50", "12.50", "12.5", "100.00"];

fn random_line(rng: &mut impl Rng) -> Line {
    Line {
        product_id: ProductId::parse(rng.random_range(1..=4)).unwrap(),
        quantity: Quantity::parse(rng.random_range(1..=5)).unwrap(),
        unit_price: Price::parse(PRICES[rng.random_range(0..PRICES.len())]).unwrap(),
    }
}

pub async fn one_order(pool: &sqlx::PgPool) -> OrderId {
    let (lines, add, outcome) = {
        let mut rng = rand::rng();
        let lines: Vec<Line> = (0..rng.random_range(1..=3))
            .map(|_| random_line(&mut rng))
            .collect();
        let add = rng.random_bool(0.3).then(|| random_line(&mut rng));
        (lines, add, rng.random_range(0..10))
    };
    let id = OrderId(uuid::Uuid::now_v7());
    let ctx = Context::external(id, None);
    let mut executed = commands::execute(
        pool,
        id,
        Command::Place {
            customer_id: CustomerId(uuid::Uuid::new_v4()),
            lines,
        },
        &ctx,
    )
    .await
    .unwrap();
    if let Some(line) = add {
        executed = commands::execute(pool, id, Command::AddItem(line), &ctx)
            .await
            .unwrap();
    }
    let revision = executed.order.revision;
    let run = |command| commands::execute(pool, id, command, &ctx);
    match outcome {
        // Left pending: counted nowhere.
        0 => {}
        1 => {
            run(Command::RejectStock {
                revision,
                reason: contracts::orders::FailureReason::OutOfStock,
            })
            .await
            .unwrap();
        }
        2 | 3 => {
            run(Command::DeclinePayment { revision }).await.unwrap();
        }
        _ => {
            run(Command::ConfirmPayment {
                revision,
                payment_id: uuid::Uuid::new_v4(),
            })
            .await
            .unwrap();
        }
    }
    id
}

/// The reports computed from the orders themselves: every stream folded.
pub async fn expected_reports(pool: &sqlx::PgPool) -> (Value, Value) {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT stream_id FROM events")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut products: BTreeMap<i64, BTreeMap<Decimal, i64>> = BTreeMap::new();
    let (mut completed, mut failed) = (0, 0);
    for id in ids {
        let (order, _) = commands::load(pool, OrderId(id)).await.unwrap().unwrap();
        match order.status {
            Status::Pending => {}
            Status::Failed => failed += 1,
            Status::Completed => {
                completed += 1;
                for line in &order.lines {
                    *products
                        .entry(line.product_id.get())
                        .or_default()
                        .entry(line.unit_price.money().amount())
                        .or_default() += i64::from(line.quantity.get());
                }
            }
        }
    }
    let products: Vec<Value> = products
        .into_iter()
        .map(|(product, prices)| {
            let prices: Vec<Value> = prices
                .into_iter()
                .map(|(price, quantity)| {
                    let mut p = price;
                    p.rescale(2);
                    json!({ "unitPrice": p.to_string(), "quantity": quantity })
                })
                .collect();
            json!({ "productId": product, "prices": prices })
        })
        .collect();
    (
        Value::Array(products),
        json!({ "total": completed + failed, "completed": completed, "failed": failed }),
    )
}
