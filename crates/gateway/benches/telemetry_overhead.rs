//! The cost of telemetry on the saga: completed orders per second with tracing and metrics off
//! versus on, in one run.
//!
//! The parent process runs each phase in a child process of its own (the tracing subscriber and
//! the metrics recorder are process-wide and cannot be uninstalled), alternating off and on for
//! `ROUNDS` rounds, and prints the ratio of the best rates. Each child runs order, stock and
//! payment in-process on fresh databases and a topic prefix of its own, places `ORDERS` orders
//! with `CONCURRENCY` requests in flight, and times from the first request until every order has
//! completed.
//!
//! "On" is what a deployment runs: OpenTelemetry spans on every request and message, exported in
//! batches (to an exporter that counts and drops, standing in for a collector), trace context
//! in every outbox row, and the Prometheus recorder.
//!
//! ```text
//! cargo bench -p gateway --bench telemetry_overhead            # ORDERS=1000 CONCURRENCY=32 ROUNDS=2
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::in_process::Shop;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        let on = args.get(i + 1).is_some_and(|p| p == "on");
        let rate = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(phase(on));
        println!("RATE {rate}");
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probing: nothing to list
    }
    let rounds = env("ROUNDS", 2);
    let exe = std::env::current_exe().unwrap();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for telemetry in ["off", "on"] {
            let output = std::process::Command::new(&exe)
                .args(["--phase", telemetry])
                .stderr(std::process::Stdio::inherit())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let rate: f64 = stdout
                .lines()
                .find_map(|l| l.strip_prefix("RATE "))
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or_else(|| panic!("phase {telemetry} failed: {stdout}"));
            println!("round {round}: telemetry {telemetry:>3}: {rate:8.1} completed orders/s");
            if telemetry == "on" {
                on.push(rate)
            } else {
                off.push(rate)
            }
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "telemetry on / off: best {:.1} / {:.1} = {:.1}%, mean {:.1} / {:.1} = {:.1}%",
        best(&on),
        best(&off),
        100.0 * best(&on) / best(&off),
        mean(&on),
        mean(&off),
        100.0 * mean(&on) / mean(&off)
    );
}

async fn phase(on: bool) -> f64 {
    let orders = env("ORDERS", 1000);
    let concurrency = env("CONCURRENCY", 32);
    let mut settings = test_support::settings().telemetry;
    settings.log_filter = "warn".to_owned();
    settings.traces = on;
    settings.metrics = on;
    settings.otlp_endpoint = None;
    let exporter = on.then(platform::trace::SpanCollector::counting);
    platform::telemetry::init_with_exporter(&settings, "bench", exporter.clone());

    let shop = Arc::new(Shop::start().await);
    sqlx::query("UPDATE products SET available = 10000000")
        .execute(&shop.stock_pool)
        .await
        .unwrap();
    // Warm-up: connections, partitions assigned, caches.
    let warm: Vec<_> = futures_join(&shop, 50, concurrency).await;
    wait_completed(&shop, warm.len()).await;

    let start = Instant::now();
    let placed = futures_join(&shop, orders, concurrency).await;
    wait_completed(&shop, warm.len() + placed.len()).await;
    let elapsed = start.elapsed();
    let rate = orders as f64 / elapsed.as_secs_f64();
    if let Some(exporter) = exporter {
        tokio::task::spawn_blocking(platform::telemetry::flush)
            .await
            .unwrap();
        let series = platform::metrics::render().lines().count();
        eprintln!(
            "  telemetry on: {} spans exported, {series} lines of metrics",
            exporter.exported()
        );
    }
    if let Ok(shop) = Arc::try_unwrap(shop) {
        shop.stop().await;
    }
    platform::telemetry::shutdown();
    rate
}

/// Places `n` orders, `concurrency` at a time.
async fn futures_join(shop: &Arc<Shop>, n: usize, concurrency: usize) -> Vec<uuid::Uuid> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let shop = shop.clone();
        tasks.spawn(async move {
            let id = shop.place(1, None).await;
            drop(permit);
            id
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    ids
}

async fn wait_completed(shop: &Shop, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type IN ('OrderCompleted', 'OrderFailed')",
        )
        .fetch_one(&shop.order_pool)
        .await
        .unwrap();
        if done as usize >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "orders did not settle: {done} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
