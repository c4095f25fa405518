//! Traces and metrics of the saga, observed in-process: the three services run here, their
//! spans go to an in-memory exporter and their metrics to this process's Prometheus recorder.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::SpanKind;
use platform::trace::SpanCollector;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use test_support::in_process::Shop;
use test_support::{eventually, sample};

static SPANS: OnceLock<SpanCollector> = OnceLock::new();

/// Installs telemetry once for the whole test binary (the subscriber and recorder are global).
fn telemetry() -> &'static SpanCollector {
    SPANS.get_or_init(|| {
        let collector = SpanCollector::keeping();
        let mut settings = test_support::settings().telemetry;
        // Spans must travel whatever the log level.
        settings.log_filter = "warn".to_owned();
        settings.traces = true;
        settings.metrics = true;
        platform::telemetry::init_with_exporter(&settings, "test", Some(collector.clone()));
        collector
    })
}

fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_order_stock_and_payment() {
    let _shared = test_support::shared().await;
    let spans = telemetry();
    let shop = Shop::start().await;
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");

    let id = shop.place(1, Some(&traceparent)).await;
    let order = shop.settled(id, Duration::from_secs(20)).await;
    assert_eq!(order["status"], "completed", "{order}");

    // The last span (the order service applying PaymentCaptured) ends before its transaction
    // commits, but the batch exporter may still hold it: flush until it shows.
    let groups = eventually(Duration::from_secs(15), "the saga's spans", || async {
        tokio::task::spawn_blocking(platform::telemetry::flush)
            .await
            .unwrap();
        let ours: Vec<_> = spans
            .spans()
            .into_iter()
            .filter(|s| s.span_context.trace_id().to_string() == trace_id)
            .collect();
        let server = ours
            .iter()
            .any(|s| s.span_kind == SpanKind::Server && s.name == "POST /api/orders");
        let groups: BTreeSet<String> = ours
            .iter()
            .filter(|s| s.span_kind == SpanKind::Consumer)
            .filter_map(|s| attribute(s, "messaging.consumer.group.name"))
            .collect();
        let complete = server
            && ["order", "stock", "payment"]
                .iter()
                .all(|g| groups.contains(*g));
        Ok(complete.then_some(groups))
    })
    .await
    .unwrap();
    assert!(groups.len() >= 3, "{groups:?}");

    // The consumed messages carried the trace: every consumer span has a parent in it.
    let ours: Vec<_> = spans
        .spans()
        .into_iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace_id)
        .collect();
    let ids: BTreeSet<String> = ours
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    for span in ours.iter().filter(|s| s.span_kind == SpanKind::Consumer) {
        assert!(
            ids.contains(&span.parent_span_id.to_string()),
            "consumer span {} has a parent outside the trace",
            span.name
        );
    }

    // The order's stored events carry the trace as well.
    let stored: Vec<Option<String>> =
        sqlx::query_scalar("SELECT traceparent FROM outbox ORDER BY id")
            .fetch_all(&shop.order_pool)
            .await
            .unwrap();
    assert!(!stored.is_empty());
    for tp in stored {
        assert!(tp.unwrap_or_default().contains(&trace_id));
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metric_families_exist_and_move_when_orders_flow() {
    let _shared = test_support::shared().await;
    telemetry();
    let shop = Shop::start().await;
    let before = shop.metrics(shop.order).await;
    let completed_before =
        sample(&before, "saga_outcomes_total", &[("outcome", "completed")]).unwrap_or(0.0);
    let out_of_stock_before = sample(
        &before,
        "saga_outcomes_total",
        &[("outcome", "failed"), ("reason", "out_of_stock")],
    )
    .unwrap_or(0.0);

    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(shop.place(1, None).await);
    }
    // Product 1 holds 100 units: 1000 cannot be reserved.
    let too_many = shop.place(1000, None).await;
    for id in &ids {
        assert_eq!(
            shop.settled(*id, Duration::from_secs(20)).await["status"],
            "completed"
        );
    }
    let failed = shop.settled(too_many, Duration::from_secs(20)).await;
    assert_eq!(failed["failureReason"], "out_of_stock");

    // The document's schemas are what the API really answers.
    let doc: serde_json::Value =
        serde_json::from_str(&gateway::openapi::document().to_json().unwrap()).unwrap();
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    let schema = |name: &str| keys(&doc["components"]["schemas"][name]["properties"]);
    assert_eq!(keys(&failed), schema("Order"));
    assert_eq!(keys(&failed["items"][0]), schema("Item"));
    let events: serde_json::Value = shop
        .client
        .get(format!(
            "http://{}/api/orders/{too_many}/events",
            shop.order
        ))
        .header("authorization", test_support::operator())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&events[0]), schema("Event"));

    let text = shop.metrics(shop.order).await;
    let requests = sample(
        &text,
        "http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/api/orders"),
            ("status", "201"),
        ],
    );
    assert!(requests.unwrap_or(0.0) >= 4.0, "{text}");
    assert!(
        sample(
            &text,
            "http_request_duration_seconds_bucket",
            &[("route", "/api/orders/{order_id}"), ("le", "+Inf")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "a latency histogram by route: {text}"
    );
    let completed = sample(&text, "saga_outcomes_total", &[("outcome", "completed")]).unwrap();
    assert!(completed >= completed_before + 3.0, "{text}");
    let out_of_stock = sample(
        &text,
        "saga_outcomes_total",
        &[("outcome", "failed"), ("reason", "out_of_stock")],
    )
    .unwrap();
    assert!(out_of_stock >= out_of_stock_before + 1.0);
    // Placement to outcome, by outcome: the console's saga latency.
    assert!(
        sample(
            &text,
            "saga_duration_seconds_count",
            &[("outcome", "completed")]
        )
        .unwrap_or(0.0)
            >= 3.0,
        "saga latency of completed orders: {text}"
    );
    assert!(
        sample(
            &text,
            "saga_duration_seconds_bucket",
            &[("outcome", "failed"), ("le", "120")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "saga latency of failed orders, in buckets: {text}"
    );
    for family in [
        "relay_published_total",
        "messages_processed_total",
        "outbox_pending",
        "outbox_oldest_pending_age_seconds",
    ] {
        assert!(
            sample(&text, family, &[]).is_some(),
            "{family} missing:\n{text}"
        );
    }
    // librdkafka reports statistics every 5 s.
    eventually(
        Duration::from_secs(20),
        "consumer_lag of the stock consumer",
        || async {
            let text = shop.metrics(shop.stock).await;
            Ok(sample(&text, "consumer_lag", &[("consumer", "stock")]))
        },
    )
    .await
    .unwrap();

    // A redelivery: the order service's relay publishes its whole outbox again.
    let duplicates = |text: &str| {
        sample(text, "messages_duplicate_total", &[("consumer", "stock")]).unwrap_or(0.0)
    };
    let duplicates_before = duplicates(&shop.metrics(shop.stock).await);
    sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(&shop.order_pool)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the duplicates to be counted",
        || async {
            let now = duplicates(&shop.metrics(shop.stock).await);
            Ok((now >= duplicates_before + 4.0).then_some(()))
        },
    )
    .await
    .unwrap();

    // A poison message: no headers, not JSON.
    let dead = |text: &str| {
        sample(
            text,
            "messages_dead_lettered_total",
            &[("consumer", "stock")],
        )
        .unwrap_or(0.0)
    };
    let dead_before = dead(&shop.metrics(shop.stock).await);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &shop.settings.kafka.brokers)
        .create()
        .unwrap();
    let topic = format!(
        "{}{}",
        shop.settings.kafka.topic_prefix,
        contracts::topics::ORDERS
    );
    producer
        .send(
            FutureRecord::to(&topic).key("poison").payload("not json"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the poison message parked",
        || async {
            let now = dead(&shop.metrics(shop.stock).await);
            Ok((now >= dead_before + 1.0).then_some(()))
        },
    )
    .await
    .unwrap();

    shop.stop().await;
}
