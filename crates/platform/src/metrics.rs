//! Prometheus metrics: one recorder per process (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`), `GET /metrics`, and the HTTP middleware that records every
//! request by route and status and opens its server span.
//!
//! Code anywhere in the workspace records with `metrics::counter!`/`gauge!`/`histogram!`; what
//! is registered is what `/metrics` shows. Without an installed recorder (telemetry off) those
//! calls are no-ops and `/metrics` answers with an empty body.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets of `http_request_duration_seconds`, in seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets of `saga_duration_seconds`, placement to outcome: from a normal saga's milliseconds
/// to past the default deadline.
const SAGA_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets of `relay_batch_seconds`: from a quick batch's milliseconds to a broker that stalls.
const RELAY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// `None` if another recorder was installed first by someone else.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Some(handle);
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("http_request_duration_seconds".to_owned()),
            HTTP_BUCKETS,
        )
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full("saga_duration_seconds".to_owned()),
            SAGA_BUCKETS,
        )
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full("relay_batch_seconds".to_owned()),
            RELAY_BUCKETS,
        )
        .ok()?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get();
    }
    describe();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // Histograms are kept as raw samples until upkeep folds them; without an HTTP listener
        // of the exporter's own, that is ours to schedule.
        let upkeep = handle.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
    }
    Some(HANDLE.get_or_init(|| handle))
}

/// The installed recorder's handle, if any.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get()
}

/// The Prometheus text exposition of everything registered in this process.
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// `GET /metrics`.
pub async fn endpoint() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        render(),
    )
        .into_response()
}

/// Adds `GET /metrics` and the request middleware ([`track`]) to a component's router.
pub fn instrument(router: axum::Router) -> axum::Router {
    router
        .route("/metrics", axum::routing::get(endpoint))
        .layer(axum::middleware::from_fn(track))
}

/// Records `http_requests_total{method,route,status}` and
/// `http_request_duration_seconds{method,route,status}` for every request, by the route that
/// matched (never the raw path: order ids would explode the label set; `unmatched` when none
/// did) and by one of the known methods (`other` for the rest, which the server refuses before
/// they get here), and runs the request inside a server span that continues an incoming
/// `traceparent`. Every label takes values from a fixed set, whatever clients send.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = known_method(request.method()).unwrap_or("other");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Probes and scrapes are frequent and uninteresting as traces.
    let traced = !(route.starts_with("/health/") || route == "/metrics");
    let response = if traced {
        let span = tracing::info_span!(
            "http",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
            order_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let incoming = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok());
        crate::trace::continue_trace(&span, incoming);
        if let Some(order_id) = order_id_in(request.uri().path()) {
            span.record("order_id", order_id);
        }
        let response = next.run(request).instrument(span.clone()).await;
        span.record("http.response.status_code", response.status().as_u16());
        response
    } else {
        next.run(request).await
    };
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", response.status().as_str().to_owned()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The order id of `/api/orders/{id}/…`, for the span (and so the logs) of the request.
fn order_id_in(path: &str) -> Option<&str> {
    path.strip_prefix("/api/orders/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
}

/// Help texts of the metrics the shared code records.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route and status"
    );
    describe_gauge!(
        "http_requests_in_flight",
        "HTTP requests being served (admitted past the concurrency limit)"
    );
    describe_counter!(
        "http_requests_refused_total",
        "HTTP requests the server answered itself, by reason: unknown_method (405), path (400), \
         too_large (413 by Content-Length), overloaded (503, shed), timeout (504)"
    );
    describe_gauge!("outbox_pending", "Outbox rows not yet published to Kafka");
    describe_gauge!(
        "outbox_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest unpublished outbox row (0 when none)"
    );
    describe_counter!(
        "relay_published_total",
        "Outbox rows published and acknowledged"
    );
    describe_counter!(
        "relay_publish_errors_total",
        "Outbox rows Kafka did not acknowledge (retried later)"
    );
    describe_gauge!(
        "consumer_lag",
        "Messages of a partition not yet processed (high watermark - stored offset)"
    );
    describe_counter!("messages_processed_total", "Messages applied, by consumer");
    describe_counter!(
        "messages_duplicate_total",
        "Redelivered messages skipped by the inbox, by consumer"
    );
    describe_counter!(
        "messages_retried_total",
        "Transient failures retried, by consumer"
    );
    describe_counter!(
        "messages_dead_lettered_total",
        "Poison messages parked in the dead-letter topic, by consumer"
    );
    describe_counter!(
        "saga_outcomes_total",
        "Sagas settled, by outcome (completed|failed) and failure reason"
    );
    metrics::describe_histogram!(
        "relay_batch_seconds",
        metrics::Unit::Seconds,
        "Time of each phase of an outbox relay batch: read, acknowledge (Kafka), mark"
    );
    metrics::describe_histogram!(
        "saga_duration_seconds",
        metrics::Unit::Seconds,
        "Time from an order's placement to its saga's outcome, by outcome"
    );
}

/// The methods the API knows, as metric labels: a bounded set, so no client adds a series.
/// The server refuses any other method (405) before it reaches the routes.
pub(crate) fn known_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::order_id_in;

    #[test]
    fn the_order_id_is_read_from_order_paths_only() {
        assert_eq!(order_id_in("/api/orders/abc/events"), Some("abc"));
        assert_eq!(order_id_in("/api/orders/abc"), Some("abc"));
        assert_eq!(order_id_in("/api/orders"), None);
        assert_eq!(order_id_in("/api/stock"), None);
    }
}
