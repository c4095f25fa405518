//! The whole saga on this machine: completed orders per second at saturation, then end-to-end
//! latency (placed → completed, from the event store's timestamps) at 25%, 50% and 75% of that
//! rate, with the median and p99 of each step (which relay or consumer the time went to). Every
//! component runs as its own release process, as `./dev up` runs them.
//!
//! Each latency phase places orders at its rate for `BENCH_RAMP + BENCH_SECONDS` seconds,
//! starting from an idle stack, and reports two windows of `BENCH_SECONDS` each: the orders
//! placed once the stack has run at the rate for `BENCH_RAMP` seconds (steady), and the first
//! ones, placed while it goes from idle to the rate (from idle). The p99 of each second of the
//! steady window tells a stall (a few bad seconds) from a rate the stack cannot keep (all bad),
//! and the clock times of each phase match it with the servers' logs (e.g. the broker's
//! `.local/log/kafka-gc.log`).
//!
//! `cargo bench -p shop --bench saga` (servers from `./dev up`). `BENCH_SECONDS` sets the length
//! of each window and search step (default 10), `BENCH_RAMP` the lead-in before the steady window
//! (default 3), `BENCH_DIRECT=1` bypasses the gateway, `BENCH_RATE=N` runs one phase at N
//! orders/s instead of the search (for profiling), and the components inherit the environment
//! (so `TOKIO_WORKER_THREADS=1` sizes their runtimes). Each stack's topics and databases are
//! removed when it is done with; `BENCH_KEEP=1` keeps them, to inspect. `BENCH_CONSOLE=1` keeps
//! an operator's console overview open on every stack, live (server-sent events every two
//! seconds), to measure what watching costs the saga. `BENCH_CLUSTER=1` runs every stack as the
//! cluster drill does: two instances of each service on the three Kafka nodes of
//! `./dev start kafka-1 kafka-2 kafka-3`, topics replicated three times, `min.insync.replicas` 2.
//! With PostgreSQL's `track_commit_timestamp` on, each relay step is also split at the commit of
//! the transaction that wrote its outbox row (`relay_splits`).
//!
//! Set-up that is not the system's own behaviour: stock is topped up and the starting credit
//! raised, so that every order completes and the run measures the happy path. Orders are placed
//! as 1024 customers in turn, with bearer tokens made before the run, at the catalog's prices. The search and
//! each latency phase run on a fresh stack (new databases and topics).

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::SHOP;
use contracts::Contract;
use contracts::orders::{OrderCompleted, OrderPlaced};
use contracts::payments::PaymentCaptured;
use contracts::stock::StockReserved;
use serde_json::json;
use sqlx::PgPool;
use test_support::stack::{COMPONENTS, Stack};
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `BENCH_CLUSTER=1`: the Kafka cluster's nodes (`KAFKA_CLUSTER_BROKERS`, else the ports
/// `./dev start kafka-1 kafka-2 kafka-3` uses).
fn cluster_brokers() -> Option<String> {
    std::env::var_os("BENCH_CLUSTER")?;
    Some(
        std::env::var("KAFKA_CLUSTER_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9192,127.0.0.1:9292,127.0.0.1:9392".to_owned()),
    )
}

/// Through the gateway, as a client would; `BENCH_DIRECT=1` goes straight to the order service.
fn orders_url(stack: &Stack) -> String {
    if std::env::var_os("BENCH_DIRECT").is_some() {
        stack.url("order", "/api/orders")
    } else {
        stack.api("/api/orders")
    }
}

/// The catalog's seed prices (SYSTEM.md §2): a client states the price it showed.
const PRICES: [&str; 3] = ["45.00", "20.00", "450.00"];

/// Bearer tokens of the customers orders are placed for, made before any phase so that the
/// load generator spends no signing time on the machine it measures.
fn customers() -> &'static [String] {
    static TOKENS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TOKENS.get_or_init(|| (0..1024).map(|_| Stack::customer(Uuid::new_v4())).collect())
}

/// Places one order. `Ok(false)`: the system turned it away as overloaded (a 5xx, e.g. 503
/// when the order service waited too long for a database connection); anything else unexpected
/// is an error.
async fn place(stack: &Stack, n: u64) -> anyhow::Result<bool> {
    let (a, b) = ((n % 3) as usize, ((n + 1) % 3) as usize);
    let items = json!([
        { "productId": 1 + a, "quantity": 1, "unitPrice": PRICES[a] },
        { "productId": 1 + b, "quantity": 2, "unitPrice": PRICES[b] }
    ]);
    let tokens = customers();
    let token = &tokens[(n % tokens.len() as u64) as usize];
    let response = stack
        .client
        .post(orders_url(stack))
        .header("authorization", token)
        .json(&json!({ "items": items }))
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.as_u16() == 201 || status.is_server_error(),
        "place: {status}"
    );
    Ok(status.as_u16() == 201)
}

/// Completed orders per second in a window, from the event store.
async fn completions(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'OrderCompleted' AND recorded_at >= $1 AND recorded_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?)
}

async fn pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events p WHERE p.event_type = 'OrderPlaced' AND NOT EXISTS
           (SELECT 1 FROM events t WHERE t.stream_id = p.stream_id AND t.event_type IN ('OrderCompleted', 'OrderFailed'))",
    )
    .fetch_one(pool)
    .await?)
}

async fn drain(pool: &PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while pending(pool).await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "orders did not settle within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A schedule of orders placed: when it started, and how many the system turned away.
struct Run {
    start: chrono::DateTime<chrono::Utc>,
    refused: u64,
}

/// Places orders at `rate` per second for `seconds` (open loop: the schedule does not wait for
/// the system).
async fn open_loop(stack: &Arc<Stack>, rate: f64, seconds: f64) -> anyhow::Result<Run> {
    let start = chrono::Utc::now();
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let began = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until(began + interval * n as u32).await;
        let stack = stack.clone();
        tasks.spawn(async move { place(&stack, n).await });
    }
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        if !done?? {
            refused += 1;
        }
    }
    Ok(Run { start, refused })
}

/// Saturation: the highest offered rate the saga keeps up with. Rates grow by half each step
/// until one is not kept up with, then two bisection steps narrow the gap. A step is kept up
/// with when no order was turned away and, by the end of its schedule, at least 95% of the
/// orders placed in it have completed (the rest are the few still in flight).
async fn saturation(stack: &Arc<Stack>, pool: &PgPool, seconds: f64) -> anyhow::Result<f64> {
    // Completed orders per second at `rate`, if the saga kept up with it.
    let step = |rate: f64| async move {
        let Run { start, refused } = open_loop(stack, rate, seconds).await?;
        let end = chrono::Utc::now();
        let completed = completions(pool, start, end).await? as f64;
        let offered = rate * seconds;
        let elapsed = (end - start).as_seconds_f64();
        drain(pool).await?;
        let kept_up = refused == 0 && completed >= 0.95 * offered && elapsed <= seconds * 1.1;
        eprintln!(
            "  offered {rate:>5.0}/s: {completed:>6.0} of {offered:>6.0} completed within the run ({elapsed:.1} s), {refused} refused"
        );
        anyhow::Ok(kept_up.then_some(completed / elapsed))
    };
    let (mut good, mut sustained) = (0.0, 0.0);
    let mut bad = 50.0;
    while let Some(done) = step(bad).await? {
        (good, sustained) = (bad, done);
        bad *= 1.5;
    }
    for _ in 0..2 {
        let middle = (good + bad) / 2.0;
        match step(middle).await? {
            Some(done) => (good, sustained) = (middle, done),
            None => bad = middle,
        }
    }
    Ok(sustained)
}

/// One latency phase: orders placed at `rate` for `ramp + seconds`, from an idle stack.
struct Phase {
    /// When the first order was placed (to match the phase with the servers' logs).
    start: chrono::DateTime<chrono::Utc>,
    /// The steady window: from `ramp` seconds after the start to the end.
    steady_from: chrono::DateTime<chrono::Utc>,
    steady_to: chrono::DateTime<chrono::Utc>,
    /// Placed→completed latencies in ms, sorted: the first `seconds` of the phase.
    from_idle: Vec<f64>,
    /// The same for the last `seconds`, once the stack has run at the rate for `ramp`.
    steady: Vec<f64>,
}

async fn latency_at(
    stack: &Arc<Stack>,
    pool: &PgPool,
    rate: f64,
    seconds: f64,
    ramp: f64,
) -> anyhow::Result<Phase> {
    let Run { start, refused } = open_loop(stack, rate, ramp + seconds).await?;
    anyhow::ensure!(refused == 0, "{refused} orders refused at {rate:.0}/s");
    let at = |offset: f64| start + chrono::Duration::milliseconds((offset * 1000.0) as i64);
    let (steady_from, steady_to) = (at(ramp), at(ramp + seconds));
    Ok(Phase {
        start,
        steady_from,
        steady_to,
        from_idle: latency_at_window(pool, start, at(seconds)).await?,
        steady: latency_at_window(pool, steady_from, steady_to).await?,
    })
}

/// Waits for every order to settle, then returns placed→completed latencies in ms of the orders
/// placed in `[from, to)`, sorted.
async fn latency_at_window(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<f64>> {
    drain(pool).await?;
    let mut latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM (t.recorded_at - p.recorded_at))::float8 * 1000
         FROM events p JOIN events t ON t.stream_id = p.stream_id AND t.event_type = 'OrderCompleted'
         WHERE p.event_type = 'OrderPlaced' AND p.recorded_at >= $1 AND p.recorded_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// The p99 latency in ms of the orders placed in each second of `[from, to)`: a stall shows as
/// a run of high seconds, where a slow rate would lift them all.
async fn p99_per_second(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY
                    extract(epoch FROM (t.recorded_at - p.recorded_at))::float8 * 1000)
         FROM events p JOIN events t ON t.stream_id = p.stream_id AND t.event_type = 'OrderCompleted'
         WHERE p.event_type = 'OrderPlaced' AND p.recorded_at >= $1 AND p.recorded_at < $2
         GROUP BY floor(extract(epoch FROM (p.recorded_at - $1)))
         ORDER BY floor(extract(epoch FROM (p.recorded_at - $1)))",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?)
}

fn print_per_second(p99s: &[f64]) {
    let shown: Vec<String> = p99s.iter().map(|ms| format!("{ms:.0}")).collect();
    println!("{:>15} steady p99 per second, ms: {}", "", shown.join(" "));
}

fn print_when(phase: &Phase) {
    println!(
        "{:>15} ran {} – {} UTC",
        "",
        phase.start.format("%H:%M:%S"),
        phase.steady_to.format("%H:%M:%S")
    );
}

/// One row of the latency table.
fn print_latencies(load: &str, rate: &str, window: &str, latencies: &[f64]) {
    println!(
        "{load:>6} {rate:>7} {window:<22} {:>8.1} {:>8.1} {:>8.1} {:>7}",
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
        latencies.len()
    );
}

/// The steps of a completed order, each from the end of the one before. A relay step ends when
/// Kafka acknowledged the message and the relay marked its outbox row; the next step ends when
/// the transaction that handled it began (its own rows' timestamps). A consumer may begin
/// before the relay's mark, so its step can be slightly negative.
const STEPS: [&str; 6] = [
    "order relay",
    "stock",
    "stock relay",
    "payment",
    "payment relay",
    "order",
];

/// (order id, message type) → seconds since the epoch.
type Times = HashMap<(String, String), f64>;

/// When each outbox row since `since` was created (its transaction began) and published.
async fn outbox_times(
    pool: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(Times, Times)> {
    let rows: Vec<(String, String, f64, f64)> = sqlx::query_as(
        "SELECT message_key, message_type, extract(epoch FROM created_at)::float8,
                extract(epoch FROM published_at)::float8
         FROM outbox WHERE published_at IS NOT NULL AND created_at >= $1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let (mut created, mut published) = (Times::new(), Times::new());
    for (order, kind, at, out) in rows {
        created.insert((order.clone(), kind.clone()), at);
        published.insert((order, kind), out);
    }
    Ok((created, published))
}

/// Milliseconds each step of [`STEPS`] took for the orders placed since `since`, each sorted.
async fn steps(
    stack: &Stack,
    orders: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let rows: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT stream_id::text, event_type, extract(epoch FROM recorded_at)::float8
         FROM events WHERE recorded_at >= $1",
    )
    .bind(since)
    .fetch_all(orders)
    .await?;
    let events: Times = rows.into_iter().map(|(o, t, at)| ((o, t), at)).collect();
    let (_, order_out) = outbox_times(orders, since).await?;
    let (stock_in, stock_out) = outbox_times(&stack.pool("stock").await, since).await?;
    let (payment_in, payment_out) = outbox_times(&stack.pool("payment").await, since).await?;
    let path: [(&Times, &str); 7] = [
        (&events, OrderPlaced::TYPE),
        (&order_out, OrderPlaced::TYPE),
        (&stock_in, StockReserved::TYPE),
        (&stock_out, StockReserved::TYPE),
        (&payment_in, PaymentCaptured::TYPE),
        (&payment_out, PaymentCaptured::TYPE),
        (&events, OrderCompleted::TYPE),
    ];
    let mut steps = vec![Vec::new(); STEPS.len()];
    for (order, _) in events.keys().filter(|(_, kind)| kind == OrderPlaced::TYPE) {
        let times: Option<Vec<f64>> = (path.iter())
            .map(|(times, kind)| times.get(&(order.clone(), (*kind).to_owned())).copied())
            .collect();
        for (step, pair) in steps
            .iter_mut()
            .zip(times.iter().flat_map(|t| t.windows(2)))
        {
            step.push((pair[1] - pair[0]) * 1000.0);
        }
    }
    for step in &mut steps {
        step.sort_by(f64::total_cmp);
    }
    Ok(steps)
}

fn print_steps(steps: &[Vec<f64>]) {
    let shown: Vec<String> = (STEPS.iter().zip(steps))
        .map(|(name, ms)| {
            let (p50, p99) = (percentile(ms, 0.50), percentile(ms, 0.99));
            format!("{name} {p50:.1}/{p99:.1}")
        })
        .collect();
    println!("{:>15} steady steps, p50/p99 ms: {}", "", shown.join(" · "));
}

/// Where a relay step's time goes, when PostgreSQL keeps commit timestamps
/// (`track_commit_timestamp`): each relay step of [`STEPS`] split at the commit of the
/// transaction that wrote its outbox row, into the rest of that transaction (from its begin,
/// when the step starts, to its commit) and the relay's part (from the commit, through its WAL
/// flush and the doorbell, to Kafka's acknowledgement and the mark). Per relay: milliseconds of
/// the two parts for its rows written since `since` (`OrderPlaced` appended, `StockReserved` or
/// `PaymentCaptured` queued), each sorted; `None` when the server keeps no commit timestamps.
async fn relay_splits(
    stack: &Stack,
    orders: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<Vec<(Vec<f64>, Vec<f64>)>>> {
    let kept: String = sqlx::query_scalar("SHOW track_commit_timestamp")
        .fetch_one(orders)
        .await?;
    if kept != "on" {
        return Ok(None);
    }
    // The order's row is written by the statement that appends `OrderPlaced`, whose event row
    // nothing updates; stock's and payment's by a consumer transaction, whose inbox row (the
    // message the outbox row answers) nothing updates. The outbox row itself is updated by the
    // mark, which gives it the mark's transaction.
    let placed: Vec<(f64, f64)> = sqlx::query_as(
        "SELECT extract(epoch FROM pg_xact_commit_timestamp(e.xmin) - e.recorded_at)::float8 * 1000,
                extract(epoch FROM o.published_at - pg_xact_commit_timestamp(e.xmin))::float8 * 1000
         FROM events e
         JOIN outbox o ON o.message_key = e.stream_id::text AND o.message_type = e.event_type
         WHERE e.event_type = $1 AND e.recorded_at >= $2 AND o.published_at IS NOT NULL",
    )
    .bind(OrderPlaced::TYPE)
    .bind(since)
    .fetch_all(orders)
    .await?;
    let answered = |pool: PgPool, message_type: &'static str| async move {
        sqlx::query_as::<_, (f64, f64)>(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(i.xmin) - o.created_at)::float8 * 1000,
                    extract(epoch FROM o.published_at - pg_xact_commit_timestamp(i.xmin))::float8 * 1000
             FROM outbox o JOIN inbox i ON i.message_id = o.causation_id
             WHERE o.message_type = $1 AND o.created_at >= $2 AND o.published_at IS NOT NULL",
        )
        .bind(message_type)
        .bind(since)
        .fetch_all(&pool)
        .await
    };
    let reserved = answered(stack.pool("stock").await, StockReserved::TYPE).await?;
    let captured = answered(stack.pool("payment").await, PaymentCaptured::TYPE).await?;
    let split = |pairs: Vec<(f64, f64)>| {
        let (mut transaction, mut relay): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        transaction.sort_by(f64::total_cmp);
        relay.sort_by(f64::total_cmp);
        (transaction, relay)
    };
    Ok(Some(vec![split(placed), split(reserved), split(captured)]))
}

fn print_splits(splits: &Option<Vec<(Vec<f64>, Vec<f64>)>>) {
    let Some(splits) = splits else { return };
    let relays = ["order relay", "stock relay", "payment relay"];
    let shown: Vec<String> = (relays.iter().zip(splits))
        .map(|(name, (transaction, relay))| {
            format!(
                "{name} {:.1} + {:.1}",
                percentile(transaction, 0.50),
                percentile(relay, 0.50)
            )
        })
        .collect();
    println!(
        "{:>15} relay steps at the writer's commit, p50 ms (its transaction + the relay): {}",
        "",
        shown.join(" · ")
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A stack of its own (new databases and topics), topped up and warmed up.
async fn fresh_stack() -> anyhow::Result<(Arc<Stack>, PgPool)> {
    let env = [
        ("SHOP_PAYMENT__STARTING_CREDIT", "1000000000.00"),
        ("SHOP_TELEMETRY__LOG_FILTER", "warn"),
    ];
    let stack = Arc::new(match cluster_brokers() {
        Some(brokers) => Stack::start_cluster(SHOP, &brokers, &env).await,
        None => Stack::start_with(SHOP, &COMPONENTS, &env).await,
    });
    let orders = stack.pool("order").await;
    sqlx::query("UPDATE products SET available = 100000000")
        .execute(&stack.pool("stock").await)
        .await?;
    if std::env::var_os("BENCH_CONSOLE").is_some() {
        watch_console(&stack).await?;
    }
    // Warm-up: connections, consumer assignments, caches.
    open_loop(&stack, 50.0, 2.0).await?;
    drain(&orders).await?;
    Ok((stack, orders))
}

/// Signs in to the console as an operator and keeps its live overview open (reading the stream
/// and dropping it) until the stack goes away.
async fn watch_console(stack: &Stack) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let token = test_support::stack::operator_token();
    let signed_in = client
        .post(stack.api("/console/login"))
        .form(&[("token", token.as_str())])
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("the console gave no session: {}", signed_in.status()))?
        .to_owned();
    let mut events = client
        .get(stack.api("/console/events?view=overview"))
        .header("cookie", cookie)
        .send()
        .await?;
    anyhow::ensure!(
        events.status().is_success(),
        "live overview: {}",
        events.status()
    );
    tokio::spawn(async move { while let Ok(Some(_)) = events.chunk().await {} });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = env_or("BENCH_SECONDS", 10.0);
    let ramp: f64 = env_or("BENCH_RAMP", 3.0);
    customers();
    let (stack, orders) = fresh_stack().await?;
    let header = || {
        println!(
            "{:>6} {:>7} {:<22} {:>8} {:>8} {:>8} {:>7}",
            "load", "rate/s", "window", "p50 ms", "p95 ms", "p99 ms", "orders"
        )
    };
    let windows = (
        format!("steady (after {ramp} s)"),
        format!("from idle (first {seconds} s)"),
    );

    if let Ok(rate) = std::env::var("BENCH_RATE") {
        // One phase at a fixed rate, for profiling a component under a known load.
        let rate: f64 = rate.parse()?;
        let phase = latency_at(&stack, &orders, rate, seconds, ramp).await?;
        header();
        print_latencies("", &format!("{rate:.0}"), &windows.0, &phase.steady);
        print_latencies("", "", &windows.1, &phase.from_idle);
        print_steps(&steps(&stack, &orders, phase.steady_from).await?);
        print_splits(&relay_splits(&stack, &orders, phase.steady_from).await?);
        print_per_second(&p99_per_second(&orders, phase.steady_from, phase.steady_to).await?);
        print_when(&phase);
        return discard(stack, orders).await;
    }

    let saturated = saturation(&stack, &orders, seconds).await?;
    discard(stack, orders).await?;
    println!(
        "saga, whole stack on this machine ({} cores)",
        std::thread::available_parallelism()?.get()
    );
    println!(
        "saturation (highest offered rate kept up with, {seconds} s steps): {saturated:.0} completed orders/s"
    );
    header();
    for share in [0.25, 0.5, 0.75] {
        // Each phase on a stack of its own: the search leaves tens of thousands of orders'
        // worth of autovacuum work behind, which would land in whichever phase came next.
        let (stack, orders) = fresh_stack().await?;
        let rate = saturated * share;
        let phase = latency_at(&stack, &orders, rate, seconds, ramp).await?;
        let load = format!("{:.0}%", share * 100.0);
        print_latencies(&load, &format!("{rate:.0}"), &windows.0, &phase.steady);
        print_latencies("", "", &windows.1, &phase.from_idle);
        print_steps(&steps(&stack, &orders, phase.steady_from).await?);
        print_splits(&relay_splits(&stack, &orders, phase.steady_from).await?);
        print_per_second(&p99_per_second(&orders, phase.steady_from, phase.steady_to).await?);
        print_when(&phase);
        discard(stack, orders).await?;
    }
    Ok(())
}

/// Stops a stack that is done with and removes its topics and databases, which would otherwise
/// pile up and slow the next runs' broker; `BENCH_KEEP=1` keeps them to inspect.
async fn discard(stack: Arc<Stack>, orders: PgPool) -> anyhow::Result<()> {
    orders.close().await;
    let stack = Arc::try_unwrap(stack).map_err(|_| anyhow::anyhow!("the stack is still in use"))?;
    if std::env::var_os("BENCH_KEEP").is_some() {
        return Ok(());
    }
    stack.remove().await
}
