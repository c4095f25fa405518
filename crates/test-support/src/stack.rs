//! A stack of real processes: every component of the system run by the `shop` executable, with
//! databases, topics, ports, a Redis key prefix and a MongoDB database of the stack's own. The
//! shop crate's system tests, cluster drills and saga benchmark start one or several.
//!
//! Cargo names the executable (`CARGO_BIN_EXE_shop`) and a scratch directory for the
//! processes' logs (`CARGO_TARGET_TMPDIR`) only to the shop crate's own tests and benches, so
//! they hand both in as a [`Binary`].

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{eventually, unique};

/// The `shop` executable a stack runs, and the directory its processes log to (in
/// `system-logs/`, a file per process named after the stack's topic prefix and the process):
///
/// ```ignore
/// const SHOP: Binary = Binary {
///     path: env!("CARGO_BIN_EXE_shop"),
///     target_tmpdir: env!("CARGO_TARGET_TMPDIR"),
/// };
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    pub path: &'static str,
    pub target_tmpdir: &'static str,
}

pub const COMPONENTS: [&str; 4] = ["order", "stock", "payment", "gateway"];

/// The processes of a cluster stack ([`Stack::start_cluster`]): two instances of every
/// service, named after the component and a number, and one gateway that spreads requests
/// over them.
pub const CLUSTER_INSTANCES: [&str; 9] = [
    "order-1",
    "order-2",
    "stock-1",
    "stock-2",
    "payment-1",
    "payment-2",
    "projections-1",
    "projections-2",
    "gateway",
];

/// The component an instance runs: `order` for `order-2`, the name itself for `order`.
pub fn component_of(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((component, number)) if number.chars().all(|c| c.is_ascii_digit()) => component,
        _ => name,
    }
}

/// One copy of the system: four `shop` processes with their own databases and topics (the
/// gateway's is the console's).
pub struct Stack {
    /// The stack's own name: its Redis key prefix is `{id}:`, its MongoDB database `{id}`.
    pub id: String,
    /// Its Kafka topic prefix.
    pub prefix: String,
    pub client: reqwest::Client,
    shop: Binary,
    env: Vec<(String, String)>,
    ports: HashMap<&'static str, u16>,
    databases: HashMap<&'static str, String>,
    children: HashMap<&'static str, Child>,
    settings: platform::Settings,
    /// `Authorization` of an operator, for reads across customers.
    operator: String,
    /// Units each product was restocked with through [`Stack::restock`] (I1 counts them).
    pub restocked: Mutex<HashMap<i64, i64>>,
    /// The test's turn among the tests of its binary; it ends after the processes are killed.
    _turn: crate::Turn,
}

/// A port nothing listens on and no other stack of this test process was given. Stacks start
/// in parallel and bind their ports later, one component at a time, so the kernel can offer one
/// stack a port another stack was given but has not bound yet. Then one stack's health check is
/// answered by the other stack's component and its requests go to the wrong system (the likely
/// cause of a CI failure in which a gateway that never logged "listening" was found healthy).
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

impl Stack {
    /// A stack with every component running.
    pub async fn start(shop: Binary) -> Self {
        Self::start_with(shop, &COMPONENTS, &[]).await
    }

    /// A stack running `components`, with extra `SHOP_*` settings. A setting named
    /// `COMPONENT:SHOP_…` is given to that component's processes only (each service its own
    /// Kafka principal, say); a `SHOP_KAFKA__TOPIC_PREFIX` replaces the stack's random prefix.
    pub async fn start_with(
        shop: Binary,
        components: &[&'static str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        Self::start_in(shop, crate::shared().await, components, extra_env).await
    }

    /// A stack running `components` while no other test of the binary runs: for a drill that
    /// stops a shared server, or a test whose load would stretch the others' time bounds.
    pub async fn start_alone(shop: Binary, components: &[&'static str]) -> Self {
        Self::start_in(shop, crate::alone().await, components, &[]).await
    }

    async fn start_in(
        shop: Binary,
        turn: crate::Turn,
        components: &[&'static str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        // The projections run only in the stacks that ask for them; they get a port either
        // way, for the gateway to route the reports to.
        let mut stack = Self::prepare(
            shop,
            turn,
            &["order", "stock", "payment", "gateway", "projections"],
            extra_env,
        );
        for component in components {
            stack.spawn(component).await;
        }
        if components.contains(&"order") && components.contains(&"stock") {
            stack.catalog_replicated().await;
        }
        stack
    }

    /// Every process of [`CLUSTER_INSTANCES`] running on the Kafka cluster at `brokers`, with
    /// topics replicated three times and `min.insync.replicas` 2, and the gateway spreading
    /// each component's requests over its two instances; with extra `SHOP_*` settings.
    pub async fn start_cluster(shop: Binary, brokers: &str, extra_env: &[(&str, &str)]) -> Self {
        let mut env = vec![
            ("SHOP_KAFKA__BROKERS", brokers),
            ("SHOP_KAFKA__REPLICATION", "3"),
            ("SHOP_KAFKA__MIN_INSYNC_REPLICAS", "2"),
        ];
        env.extend_from_slice(extra_env);
        let mut stack = Self::prepare(shop, crate::shared().await, &CLUSTER_INSTANCES, &env);
        stack.settings.kafka.brokers = brokers.to_owned();
        for component in ["order", "stock", "payment", "projections"] {
            let urls: Vec<String> = ["1", "2"]
                .iter()
                .map(|n| {
                    format!(
                        "http://127.0.0.1:{}",
                        stack.ports[format!("{component}-{n}").as_str()]
                    )
                })
                .collect();
            stack.env.push((
                format!("SHOP_GATEWAY__{}_URLS", component.to_uppercase()),
                urls.join(","),
            ));
        }
        // The first instances make the databases, their tables and the topics; the second ones
        // and the gateway start after them, all at once.
        stack
            .spawn_all(&["order-1", "stock-1", "payment-1", "projections-1"])
            .await;
        stack
            .spawn_all(&[
                "order-2",
                "stock-2",
                "payment-2",
                "projections-2",
                "gateway",
            ])
            .await;
        stack.catalog_replicated().await;
        stack
    }

    /// The stack's settings, ports and databases for the processes `names`, none started. Each
    /// component's port is its first instance's.
    fn prepare(
        shop: Binary,
        turn: crate::Turn,
        names: &[&'static str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let settings = crate::settings();
        let id = unique("sys");
        let prefix = (extra_env.iter())
            .find(|(key, _)| *key == "SHOP_KAFKA__TOPIC_PREFIX")
            .map_or_else(|| format!("{id}."), |(_, prefix)| (*prefix).to_owned());
        let mut ports = HashMap::new();
        let mut databases = HashMap::new();
        let mut env = vec![
            ("SHOP_KAFKA__TOPIC_PREFIX".to_owned(), prefix.clone()),
            (
                "SHOP_TELEMETRY__LOG_FILTER".to_owned(),
                "warn,shop=info".to_owned(),
            ),
        ];
        for &name in names {
            let port = free_port();
            ports.insert(name, port);
            let component = component_of(name);
            if !(name.ends_with("-1") || name == component) {
                continue;
            }
            env.push((
                format!("SHOP_HTTP__{}_PORT", component.to_uppercase()),
                port.to_string(),
            ));
            // The gateway's database is the console's; the projections have none.
            let owner = match component {
                "gateway" => "console",
                "projections" => continue,
                owner => owner,
            };
            let database = format!("test_{id}_{owner}");
            env.push((
                format!("SHOP_POSTGRES__DATABASES__{}", owner.to_uppercase()),
                database.clone(),
            ));
            databases.insert(owner, database);
        }
        // A Redis key prefix and a MongoDB database of the stack's own, for the projections.
        env.extend([
            ("SHOP_REDIS__KEY_PREFIX".to_owned(), format!("{id}:")),
            ("SHOP_MONGODB__DATABASE".to_owned(), id.clone()),
        ]);
        // Every component verifies tokens with the test key pair, as `crate::token` signs them.
        env.extend(
            crate::auth_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Self {
            id,
            prefix,
            client: crate::http_client(),
            shop,
            env,
            ports,
            databases,
            children: HashMap::new(),
            settings,
            operator: crate::operator(),
            restocked: Mutex::new(HashMap::new()),
            _turn: turn,
        }
    }

    /// Waits until the stack's order service prices from the whole seeded catalog
    /// ([`crate::seeded_catalog_replicated`]).
    pub async fn catalog_replicated(&self) {
        let order = self.pool("order").await;
        crate::seeded_catalog_replicated(&order).await;
        order.close().await;
    }

    /// Stops every component, then deletes the stack's topics and drops its databases, so that
    /// runs on one set of servers do not pile them up (a broker slows with its partition count).
    pub async fn remove(mut self) -> anyhow::Result<()> {
        self.kill_all();
        let topics: Vec<String> = messaging::topics::ALL
            .iter()
            .map(|t| format!("{}{t}", self.prefix))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        crate::delete_topics(&self.settings, &topics).await?;
        for database in self.databases.values() {
            platform::postgres::drop_database(&self.settings.postgres, database).await?;
        }
        Ok(())
    }

    fn kill_all(&mut self) {
        for (_, mut child) in self.children.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets `key` for the processes spawned after this call.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The HTTP port of process `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn url(&self, component: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[component])
    }

    /// The gateway's URL for `path`.
    pub fn api(&self, path: &str) -> String {
        self.url("gateway", path)
    }

    /// Runs `shop ARGS` with the stack's settings and returns what it printed.
    pub fn shop(&self, args: &[&str]) -> String {
        let output = Command::new(self.shop.path)
            .args(args)
            .envs(
                (self.env.iter())
                    .filter(|(k, _)| !k.contains(':'))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .output()
            .unwrap();
        assert!(output.status.success(), "shop {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// Starts a component's process and waits until it answers.
    pub async fn spawn(&mut self, name: &'static str) {
        self.launch(name);
        self.listening(name).await;
    }

    /// Starts the processes `names` at once, then waits until each answers.
    pub async fn spawn_all(&mut self, names: &[&'static str]) {
        for name in names {
            self.launch(name);
        }
        for name in names {
            self.listening(name).await;
        }
    }

    /// Starts the process `name`: the component it names (`order` for `order-2`) on the port
    /// the stack gave it.
    fn launch(&mut self, name: &'static str) {
        let log_dir = std::path::Path::new(self.shop.target_tmpdir).join("system-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}{name}.log", self.prefix)))
            .unwrap();
        let component = component_of(name);
        let own = format!("{component}:");
        let child = Command::new(self.shop.path)
            .arg(component)
            .envs(self.env.iter().filter_map(|(k, v)| {
                let key = k
                    .strip_prefix(&own)
                    .or((!k.contains(':')).then_some(k.as_str()))?;
                Some((key, v.as_str()))
            }))
            .env(
                format!("SHOP_HTTP__{}_PORT", component.to_uppercase()),
                self.ports[name].to_string(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(name, child);
    }

    /// Waits until the process `name` answers on its port.
    async fn listening(&self, name: &str) {
        let url = self.url(name, "/health/live");
        let client = self.client.clone();
        eventually(
            Duration::from_secs(60),
            &format!("{name} to listen"),
            || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    Ok(client
                        .get(&url)
                        .send()
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ()))
                }
            },
        )
        .await
        .unwrap();
    }

    /// The process id of each running component: a component that crashed and was started
    /// again has another one.
    pub fn pids(&self) -> std::collections::BTreeMap<&'static str, u32> {
        self.children
            .iter()
            .map(|(name, child)| (*name, child.id()))
            .collect()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self, component: &str) {
        if let Some(mut child) = self.children.remove(component) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub async fn stop(&mut self, component: &str) {
        if let Some(mut child) = self.children.remove(component) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The Kafka settings the stack's own clients use ([`Stack::remove`] deletes its topics with
    /// them): an administrator's, on a cluster that authorizes each client.
    pub fn set_kafka(&mut self, kafka: platform::settings::KafkaSettings) {
        self.settings.kafka = kafka;
    }

    /// The Kafka bootstrap servers the stack runs on.
    pub fn brokers(&self) -> &str {
        &self.settings.kafka.brokers
    }

    /// A pool on a component's database, for checks and for bench set-up.
    pub async fn pool(&self, component: &str) -> PgPool {
        platform::postgres::connect(&self.settings.postgres, &self.databases[component])
            .await
            .unwrap()
    }

    /// `Authorization` for `customer`: a token whose subject is that customer.
    pub fn customer(customer: uuid::Uuid) -> String {
        format!(
            "Bearer {}",
            crate::token(customer, &[platform::auth::Role::Customer])
        )
    }

    /// `POST /api/orders` as `customer`, priced by the catalog; asserts 201.
    pub async fn place(&self, customer: uuid::Uuid, items: Value) -> Value {
        let response = self
            .client
            .post(self.api("/api/orders"))
            .header("authorization", Self::customer(customer))
            .json(&json!({ "items": items }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// `POST /api/orders/{id}/items` as `customer` (the owner): the response, whatever it is.
    pub async fn add(&self, customer: uuid::Uuid, id: &str, item: Value) -> reqwest::Response {
        self.client
            .post(self.api(&format!("/api/orders/{id}/items")))
            .header("authorization", Self::customer(customer))
            .json(&item)
            .send()
            .await
            .unwrap()
    }

    /// `DELETE /api/orders/{id}/items/{product}?quantity=N` as `customer` (the owner).
    pub async fn remove_item(
        &self,
        customer: uuid::Uuid,
        id: &str,
        product: i64,
        quantity: i64,
    ) -> reqwest::Response {
        self.client
            .delete(self.api(&format!(
                "/api/orders/{id}/items/{product}?quantity={quantity}"
            )))
            .header("authorization", Self::customer(customer))
            .send()
            .await
            .unwrap()
    }

    /// An operator request (`ops`, which reads everything a viewer reads).
    pub fn as_operator(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header("authorization", &self.operator)
    }

    /// `GET path` as an operator: the answer must be a success, and is read as JSON.
    pub async fn ops_get(&self, path: &str) -> Value {
        let response = self
            .as_operator(self.client.get(self.api(path)))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// The fault the dead-letter tests start from: payment's database refuses `customer`'s
    /// payments with a check violation, so payment's consumer parks the message at once
    /// instead of retrying it. `DROP TRIGGER refuse_customer ON payments` fixes it.
    pub async fn refuse_payments_of(&self, payment: &PgPool, customer: uuid::Uuid) {
        sqlx::raw_sql(&format!(
            "CREATE FUNCTION refuse_customer() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.customer_id = '{customer}' THEN
                     RAISE EXCEPTION 'payments of this customer are refused' USING ERRCODE = '23514';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_customer BEFORE INSERT ON payments
                 FOR EACH ROW EXECUTE FUNCTION refuse_customer();"
        ))
        .execute(payment)
        .await
        .unwrap();
    }

    /// `PUT /api/products/{product}` as an operator, then waits until the order service prices
    /// with it (its catalog replica has caught up).
    pub async fn reprice(&self, product: i64, name: &str, price: &str) {
        let response = self
            .as_operator(
                self.client
                    .put(self.api(&format!("/api/products/{product}"))),
            )
            .json(&json!({ "name": name, "unitPrice": price }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let order = self.pool("order").await;
        let price: rust_decimal::Decimal = price.parse().unwrap();
        eventually(
            Duration::from_secs(10),
            "the order service's catalog to have the price",
            || {
                let order = order.clone();
                async move {
                    let current: Option<rust_decimal::Decimal> =
                        sqlx::query_scalar("SELECT unit_price FROM catalog WHERE product_id = $1")
                            .bind(product)
                            .fetch_optional(&order)
                            .await?;
                    Ok((current == Some(price)).then_some(()))
                }
            },
        )
        .await
        .unwrap();
        order.close().await;
    }

    /// `POST /api/products/{product}/restock` as an operator; asserts success and counts the
    /// units for I1.
    pub async fn restock(&self, product: i64, quantity: i64) {
        let response = self
            .as_operator(
                self.client
                    .post(self.api(&format!("/api/products/{product}/restock"))),
            )
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        *self.restocked.lock().unwrap().entry(product).or_default() += quantity;
    }

    pub async fn order(&self, id: &str) -> Value {
        self.as_operator(self.client.get(self.api(&format!("/api/orders/{id}"))))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn events(&self, id: &str) -> Vec<String> {
        self.list(&format!("/api/orders/{id}/events"))
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits (up to `within`) until the order is completed or failed; returns it.
    pub async fn settled(&self, id: &str, within: Duration) -> Value {
        eventually(within, &format!("order {id} to settle"), || async move {
            let order = self.order(id).await;
            Ok((order["status"] != "pending").then_some(order))
        })
        .await
        .unwrap()
    }

    /// `productId → (available, reserved)`.
    pub async fn stock(&self) -> HashMap<i64, (i64, i64)> {
        self.list("/api/stock")
            .await
            .iter()
            .map(|p| {
                (
                    p["productId"].as_i64().unwrap(),
                    (
                        p["available"].as_i64().unwrap(),
                        p["reserved"].as_i64().unwrap(),
                    ),
                )
            })
            .collect()
    }

    pub async fn payments(&self) -> Vec<Value> {
        self.list("/api/payments").await
    }

    /// `GET path` through the gateway, which must answer with a JSON list; follows
    /// `Link: rel="next"` to the last page, so the whole list is read.
    async fn list(&self, path: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(path) = next.take() {
            let response = self
                .as_operator(self.client.get(self.api(&path)))
                .send()
                .await
                .unwrap();
            let status = response.status();
            next = response
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.contains("rel=\"next\""))
                .and_then(|v| v.split('<').nth(1))
                .and_then(|v| v.split('>').next())
                .map(str::to_owned);
            match response.json().await.unwrap() {
                Value::Array(items) if status.is_success() => all.extend(items),
                other => panic!("GET {path}: {status} {other}"),
            }
        }
        all
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A line as a client asks for it: the catalog prices it.
pub fn item(product: i64, quantity: i64) -> Value {
    json!({ "productId": product, "quantity": quantity })
}

/// A line as an order shows it, with the price it was placed at.
pub fn line(product: i64, quantity: i64, price: &str) -> Value {
    json!({ "productId": product, "quantity": quantity, "unitPrice": price })
}

/// A fresh operator token (its own `jti`, so it can sign in to the console once).
pub fn operator_token() -> String {
    crate::token(uuid::Uuid::new_v4(), &[platform::auth::Role::Ops])
}
