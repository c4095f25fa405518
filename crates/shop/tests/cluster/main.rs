//! Cluster drills (SYSTEM.md §9) on three Kafka nodes (`./dev start kafka-1 kafka-2 kafka-3`,
//! each a broker and a controller; topics replicated three times, `min.insync.replicas` 2) and
//! two instances of every service behind one gateway, under a steady load of orders:
//!
//! 1. the node that leads the most partitions is SIGKILLed, then the instance of each service
//!    that publishes its outbox (the relay's lease holder; the first projections), and all are
//!    started again;
//! 2. the three nodes restart one after another (rolling), each once every partition is fully
//!    replicated again;
//! 3. during a burst of orders the second instance of each service and of the projections
//!    leaves its consumer groups and joins them again: two rebalances while messages flow.
//!
//! While instances are down, the console's overview shows each component up through its other
//! instance. Then every order settles, I1–I4 hold exactly, the reports equal the orders (I5),
//! and a replay of every topic changes nothing (I7). The drill prints how long orders waited while leaders moved and instances were down:
//! figures, not assertions. One cluster and one stack serve every step, to keep the drill short.
//! The nodes run beside the single node of the other tests, on ports of their own, and are
//! stopped afterwards if the drill started them.

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use test_support::stack::{CLUSTER_INSTANCES, Stack, component_of, item};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::common::SHOP;
use crate::common::invariants::{reports_agree, settled_after_recovery};
use crate::common::replay::check_then_replay_everything;

/// Orders placed per second by the steady load.
const RATE: u64 = 10;
/// Orders of the burst during which consumers leave and join.
const BURST: usize = 150;
/// The nodes, by `node.id`: node N is `kafka-N` to `./dev`.
const NODES: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];
/// Every instance of the saga's services, which the replay restarts.
const SAGA_INSTANCES: [&str; 6] = [
    "order-1",
    "order-2",
    "stock-1",
    "stock-2",
    "payment-1",
    "payment-2",
];

/// The nodes' addresses: `./dev test` passes dev.env's; these are its defaults.
fn brokers() -> String {
    std::env::var("KAFKA_CLUSTER_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9192,127.0.0.1:9292,127.0.0.1:9392".to_owned())
}

/// Prints a figure where `cargo test` shows it whether the drill passes or not: the harness
/// captures `println!` and `eprintln!`, not writes to the standard error itself.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "cluster drill: {line}");
}

/// Runs `./dev ARGS` without failing: for clean-up, which may run while a drill panics.
fn dev_quietly(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev");
    let _ = std::process::Command::new(script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status();
}

/// The three nodes, started with `./dev` unless all of them ran already. However the drill ends
/// they are stopped again if it started them (they would take the machine from the tests after
/// it), and started again otherwise (a node it killed comes back).
struct Nodes {
    started_here: bool,
}

impl Nodes {
    fn start(brokers: &str) -> Self {
        let running = brokers.split(',').all(|address| {
            address.parse().is_ok_and(|address| {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            })
        });
        test_support::dev(&["start", NODES[0], NODES[1], NODES[2]]);
        Nodes {
            started_here: !running,
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let command = if self.started_here { "stop" } else { "start" };
        dev_quietly(&[command, NODES[0], NODES[1], NODES[2]]);
    }
}

/// One partition as the cluster's metadata shows it.
struct Partition {
    topic: String,
    leader: i32,
    replicas: usize,
    in_sync: usize,
}

/// The cluster as its metadata shows it, for the drill's topics (under `prefix`) and the
/// consumer offsets.
struct Cluster {
    client: Arc<BaseConsumer>,
    prefix: String,
}

impl Cluster {
    fn new(brokers: &str, prefix: &str) -> Self {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .unwrap();
        Cluster {
            client: Arc::new(client),
            prefix: prefix.to_owned(),
        }
    }

    async fn partitions(&self) -> anyhow::Result<Vec<Partition>> {
        let (client, prefix) = (self.client.clone(), self.prefix.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Partition>> {
            let metadata = client.fetch_metadata(None, Duration::from_secs(5))?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.name().starts_with(&prefix) || t.name() == "__consumer_offsets")
                .flat_map(|t| {
                    t.partitions().iter().map(|p| Partition {
                        topic: t.name().to_owned(),
                        leader: p.leader(),
                        replicas: p.replicas().len(),
                        in_sync: p.isr().len(),
                    })
                })
                .collect())
        })
        .await?
    }

    /// The node leading the most partitions of the drill's topics: its id, how many it leads
    /// and of how many.
    async fn busiest_leader(&self) -> (i32, usize, usize) {
        let partitions: Vec<Partition> = (self.partitions().await.unwrap().into_iter())
            .filter(|p| p.topic.starts_with(&self.prefix))
            .collect();
        let busiest = (1..=3)
            .map(|node| (node, partitions.iter().filter(|p| p.leader == node).count()))
            .max_by_key(|(_, led)| *led)
            .unwrap();
        (busiest.0, busiest.1, partitions.len())
    }

    /// Waits until no partition is led by `node` or has no leader.
    async fn led_without(&self, node: i32) {
        test_support::eventually(
            Duration::from_secs(60),
            &format!("every partition to have a leader other than node {node}"),
            || async {
                let partitions = self.partitions().await?;
                Ok((!partitions.is_empty()
                    && partitions.iter().all(|p| p.leader != node && p.leader >= 0))
                .then_some(()))
            },
        )
        .await
        .unwrap();
    }

    /// Waits until every partition has all three replicas in sync: a node may go again.
    async fn fully_replicated(&self) {
        test_support::eventually(
            Duration::from_secs(120),
            "every partition to have its three replicas in sync",
            || async {
                let partitions = self.partitions().await?;
                Ok((!partitions.is_empty()
                    && partitions.iter().all(|p| p.replicas == 3 && p.in_sync == 3))
                .then_some(()))
            },
        )
        .await
        .unwrap();
    }
}

/// The drill's topics are replicated three times with `min.insync.replicas` 2, as the services
/// created them from their settings.
async fn assert_topics_replicated(stack: &Stack, cluster: &Cluster) {
    let names: Vec<String> = (messaging::topics::ALL.iter())
        .map(|t| format!("{}{t}", stack.prefix))
        .collect();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", stack.brokers())
        .create()
        .unwrap();
    let resources: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    for (name, result) in names
        .iter()
        .zip(admin.describe_configs(&resources, &options).await.unwrap())
    {
        let min_insync = result
            .unwrap()
            .get("min.insync.replicas")
            .unwrap()
            .value
            .clone();
        assert_eq!(min_insync.as_deref(), Some("2"), "{name}");
    }
    let partitions = cluster.partitions().await.unwrap();
    for name in &names {
        let of_topic: Vec<&Partition> = partitions.iter().filter(|p| &p.topic == name).collect();
        assert!(!of_topic.is_empty(), "{name} exists");
        assert!(
            of_topic.iter().all(|p| p.replicas == 3),
            "{name} is replicated three times"
        );
    }
}

/// A steady stream of orders through the gateway, [`RATE`] a second, each placed with an
/// `Idempotency-Key` and retried with it until it is 201: a retried request never places a
/// second order, so the list of orders is exact whatever the gateway answered meanwhile.
struct Load {
    placer: Placer,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(stack: &Stack) -> Self {
        let mut load = Load {
            placer: Placer {
                url: stack.api("/api/orders"),
                client: stack.client.clone(),
                customers: Uuid::new_v4().as_u128(),
                next: Arc::new(AtomicUsize::new(0)),
                placed: Arc::new(Mutex::new(Vec::new())),
                retried: Arc::new(AtomicUsize::new(0)),
            },
            stop: Arc::new(AtomicBool::new(false)),
            task: None,
        };
        let steady = load.placer.clone();
        let stop = load.stop.clone();
        load.task = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut orders = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                orders.push(tokio::spawn(steady.clone().place()));
            }
            for order in orders {
                order.await.unwrap();
            }
        }));
        load
    }

    /// Places `n` orders at once, on top of the steady load.
    fn burst(&self, n: usize) -> tokio::task::JoinHandle<()> {
        let placer = self.placer.clone();
        tokio::spawn(async move {
            let orders: Vec<_> = (0..n)
                .map(|_| tokio::spawn(placer.clone().place()))
                .collect();
            for order in orders {
                order.await.unwrap();
            }
        })
    }

    /// Stops the load once every order it began is placed; returns them all.
    async fn stop(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        let placed = self.placer.placed.lock().await.clone();
        (placed, self.placer.retried.load(Ordering::Relaxed))
    }
}

#[derive(Clone)]
struct Placer {
    url: String,
    client: reqwest::Client,
    customers: u128,
    next: Arc<AtomicUsize>,
    placed: Arc<Mutex<Vec<String>>>,
    retried: Arc<AtomicUsize>,
}

impl Placer {
    /// Places the next order. Most complete (a keyboard or a mouse, restocked plenty); every
    /// tenth asks for a monitor (25 in stock, then out of stock); every fiftieth for 23 of them
    /// (10,350.00: declined while monitors last). A customer places at most 100 orders, well
    /// within the starting credit.
    async fn place(self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let items = match n % 50 {
            0 => json!([item(3, 23)]),
            m if m % 10 == 5 => json!([item(3, 1)]),
            m => json!([item(1 + (m % 2) as i64, 1)]),
        };
        let customer = Uuid::from_u128(self.customers ^ (n / 100) as u128);
        let authorization = Stack::customer(customer);
        let key = Uuid::new_v4().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sent = self
                .client
                .post(&self.url)
                .header("authorization", &authorization)
                .header("idempotency-key", &key)
                .json(&json!({ "items": items }))
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 201 => {
                    let order: Value = response.json().await.unwrap();
                    let id = order["orderId"].as_str().unwrap().to_owned();
                    self.placed.lock().await.push(id);
                    return;
                }
                Ok(response) if !response.status().is_server_error() => {
                    let status = response.status();
                    panic!(
                        "POST /api/orders: {status} {}",
                        response.text().await.unwrap()
                    );
                }
                // 503 (no instance reached, or one failed after the request went out) or no
                // answer: the same key again.
                _ => {}
            }
            self.retried.fetch_add(1, Ordering::Relaxed);
            assert!(
                Instant::now() < deadline,
                "an order could not be placed for a minute"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The instance of `component` whose relay holds the outbox lease (the one publishing), or
/// its first instance if none does.
async fn publishing_instance(stack: &Stack, component: &str) -> &'static str {
    let pool = stack.pool(component).await;
    let holder: String = sqlx::query_scalar("SELECT holder FROM outbox_lease")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    // "{host} pid {pid} ({instance id})"
    let pid: Option<u32> = holder
        .split_whitespace()
        .skip_while(|word| *word != "pid")
        .nth(1)
        .and_then(|pid| pid.parse().ok());
    let pids = stack.pids();
    CLUSTER_INSTANCES
        .iter()
        .filter(|name| component_of(name) == component)
        .find(|name| pids.get(*name).copied() == pid && pid.is_some())
        .or_else(|| {
            CLUSTER_INSTANCES
                .iter()
                .find(|name| component_of(name) == component)
        })
        .copied()
        .unwrap()
}

/// Waits until no order placed before `until` is pending (the order service's open sagas).
async fn orders_placed_before_settled(stack: &Stack, until: DateTime<Utc>) {
    let pool = stack.pool("order").await;
    test_support::eventually(
        Duration::from_secs(60),
        "the orders placed so far to settle",
        || {
            let pool = pool.clone();
            async move {
                let pending: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM open_sagas WHERE placed_at < $1")
                        .bind(until)
                        .fetch_one(&pool)
                        .await?;
                Ok((pending == 0).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    pool.close().await;
}

/// When an order was placed and how long its saga took, from its own timestamps.
fn placed_and_waited(order: &Value) -> (DateTime<Utc>, f64) {
    let at = |field: &str| {
        DateTime::parse_from_rfc3339(order[field].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let created = at("createdAt");
    let waited = (at("updatedAt") - created).num_microseconds().unwrap() as f64 / 1000.0;
    (created, waited)
}

/// How long the orders placed in `[from, to)` took to settle: count, p50, p99, max.
fn waits(orders: &[Value], from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let mut waits: Vec<f64> = orders
        .iter()
        .map(placed_and_waited)
        .filter(|(placed, _)| *placed >= from && *placed < to)
        .map(|(_, waited)| waited)
        .collect();
    if waits.is_empty() {
        return "no orders placed".to_owned();
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} orders settled in p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        waits.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brokers_and_instances_lost_under_load_lose_and_double_nothing() {
    let began = Instant::now();
    let brokers = brokers();
    let _nodes = Nodes::start(&brokers);
    // Topics of earlier runs that failed before removing theirs.
    let mut settings = test_support::settings();
    settings.kafka.brokers.clone_from(&brokers);
    test_support::drop_run_topics(&settings).await.unwrap();
    let mut stack = Stack::start_cluster(SHOP, &brokers, &[]).await;
    let cluster = Cluster::new(&brokers, &stack.prefix);
    assert_topics_replicated(&stack, &cluster).await;
    cluster.fully_replicated().await;
    report(&format!(
        "three nodes and {} processes up after {:.1} s",
        CLUSTER_INSTANCES.len(),
        began.elapsed().as_secs_f64()
    ));
    stack.restock(1, 100_000).await;
    stack.restock(2, 100_000).await;

    let load = Load::start(&stack);
    // The steady state the figures below compare with.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // 1. The node leading the most partitions, then the publishing instance of each service.
    let (node, led, partitions) = cluster.busiest_leader().await;
    let node_name = NODES[usize::try_from(node - 1).unwrap()];
    let killed_at = Utc::now();
    // Orders placed this shortly before the kill are still on their way through it.
    let in_flight_at_kill = killed_at - chrono::Duration::seconds(1);
    let clock = Instant::now();
    test_support::dev(&["kill", node_name]);
    cluster.led_without(node).await;
    let moved_at = Utc::now();
    report(&format!(
        "{node_name} led {led} of the drill's {partitions} partitions; SIGKILLed, every \
         partition had another leader {:.1} s later",
        clock.elapsed().as_secs_f64()
    ));
    // Every order placed until then settles before the instances go, so the figures of the
    // leaders' move are its own.
    orders_placed_before_settled(&stack, moved_at).await;
    let mut victims = Vec::new();
    for component in ["order", "stock", "payment"] {
        victims.push(publishing_instance(&stack, component).await);
    }
    victims.push("projections-1");
    for victim in &victims {
        stack.kill(victim);
    }
    let instances_killed_at = Utc::now();
    // The console sees every component up through its other instance, and the dead ones down.
    let overview = stack.ops_get("/api/ops/overview").await;
    for component in overview["components"].as_array().unwrap() {
        let down = component["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["up"] == false)
            .count();
        assert!(
            component["up"] == true && down == 1,
            "one instance of each component is down: {overview:#}"
        );
    }
    // Longer than the consumers' session (10 s): the surviving instances take over the
    // partitions of the dead ones, and their relays the leases.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let clock = Instant::now();
    test_support::dev(&["start", node_name]);
    stack.spawn_all(&victims).await;
    cluster.fully_replicated().await;
    let recovered_at = Utc::now();
    report(&format!(
        "SIGKILLed {} too; {node_name} and they back, every partition fully replicated, \
         {:.1} s after the restart",
        victims.join(", "),
        clock.elapsed().as_secs_f64()
    ));

    // 2. A rolling restart of the three nodes, each once the cluster is whole again.
    let rolling_at = Utc::now();
    for name in NODES {
        let clock = Instant::now();
        test_support::dev(&["restart", name]);
        cluster.fully_replicated().await;
        report(&format!(
            "{name} restarted, every partition fully replicated again, in {:.1} s",
            clock.elapsed().as_secs_f64()
        ));
    }
    let rolled_at = Utc::now();

    // 3. Rebalances while a burst's messages flow: the second instances leave their groups
    // (a graceful stop) and join them again.
    let burst_at = Utc::now();
    let burst = load.burst(BURST);
    let seconds = ["order-2", "stock-2", "payment-2", "projections-2"];
    for instance in seconds {
        stack.stop(instance).await;
    }
    stack.spawn_all(&seconds).await;
    burst.await.unwrap();
    let rebalanced_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (orders, retried) = load.stop().await;

    // Every order settles within 30 s, I1–I4 hold, and a full replay changes nothing.
    settled_after_recovery(&stack, &orders).await;
    let state = check_then_replay_everything(&mut stack, &orders, &SAGA_INSTANCES).await;
    reports_agree(&stack, &state.orders).await;
    report(&format!(
        "{} orders ({} requests retried after a 503 or no answer); placed before the first \
         kill: {}",
        orders.len(),
        retried,
        waits(&state.orders, DateTime::<Utc>::MIN_UTC, in_flight_at_kill)
    ));
    report(&format!(
        "placed in the second before {node_name} was SIGKILLed and until its partitions had \
         new leaders: {}",
        waits(&state.orders, in_flight_at_kill, moved_at)
    ));
    report(&format!(
        "placed while the instances were down and until the cluster was whole: {}",
        waits(&state.orders, instances_killed_at, recovered_at)
    ));
    report(&format!(
        "placed during the rolling restart: {}",
        waits(&state.orders, rolling_at, rolled_at)
    ));
    report(&format!(
        "placed during the burst and the rebalances: {}",
        waits(&state.orders, burst_at, rebalanced_at)
    ));
    stack.remove().await.unwrap();
    report(&format!(
        "every order settled, I1–I5 and I7 hold; the drill took {:.0} s",
        began.elapsed().as_secs_f64()
    ));
}
