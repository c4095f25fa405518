//! Telemetry set-up: logs, traces and metrics, once per process.
//!
//! - **Logs**: `tracing` with an env filter, human-readable or JSON lines. Each line carries the
//!   fields of the spans it is in, among them `order_id` and `trace_id`.
//! - **Traces**: an OpenTelemetry layer turns `tracing` spans into OTel spans, so trace ids
//!   exist and travel (see [`crate::trace`]) whether or not anything is exported. Spans are
//!   exported over OTLP (http/protobuf) only when `otlp_endpoint` is set; otherwise silently
//!   dropped.
//! - **Metrics**: the Prometheus recorder of [`crate::metrics`].
//!
//! `traces = false` and `metrics = false` turn each off entirely (the benchmark's baseline).

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::settings::TelemetrySettings;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs logs, traces and metrics for a process named `shop`. Prefer [`init_component`].
pub fn init(settings: &TelemetrySettings) {
    init_component(settings, "shop");
}

/// Installs logs, traces and metrics for one component (`order`, `stock`, …), which names the
/// OTel service (`shop-order`, …). Spans go to the OTLP endpoint if one is configured.
pub fn init_component(settings: &TelemetrySettings, component: &str) {
    let exporter = settings
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .and_then(|endpoint| match otlp_exporter(endpoint) {
            Ok(exporter) => Some(exporter),
            Err(e) => {
                eprintln!("telemetry: OTLP exporter for {endpoint} not created: {e}");
                None
            }
        });
    init_with_exporter(settings, component, exporter);
}

/// Like [`init_component`], with the span exporter given (tests and benchmarks pass a
/// [`crate::trace::SpanCollector`]). `None` keeps traces in-process only.
///
/// The global subscriber and recorder can be installed once per process: later calls change
/// nothing (the first installation stays).
pub fn init_with_exporter<E: SpanExporter + 'static>(
    settings: &TelemetrySettings,
    component: &str,
    exporter: Option<E>,
) {
    if settings.metrics {
        crate::metrics::install();
    }
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_filter));
    if settings.traces {
        // The request and message spans carry the trace whatever the log level.
        for directive in ["platform::metrics=info", "platform::trace=info"] {
            if let Ok(directive) = directive.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let logs = if settings.json_logs {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed()
    } else {
        fmt::layer().boxed()
    };
    let otel = settings
        .traces
        .then(|| otel_layer(component, exporter))
        .flatten();
    // The env filter is global, not the log layer's own: with per-layer filters on both layers,
    // spans the log layer also records lost their OTel context in `Span::current()` (seen with
    // tracing-subscriber 0.3 and tracing-opentelemetry 0.32).
    // `try_init` fails only if a subscriber is already installed (tests); that one stays.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(logs)
        .try_init();
}

/// Exports the spans still buffered and stops the exporter. Call once, on the way out.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// Exports the spans buffered so far (tests wait for their spans with it).
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

fn otlp_exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::WithExportConfig;
    // The endpoint is the collector's base URL (http://host:4318); OTLP/HTTP posts traces to
    // its /v1/traces.
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

/// The OTel layer, or `None` if a provider was already installed in this process.
fn otel_layer<S, E>(component: &str, exporter: Option<E>) -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    E: SpanExporter + 'static,
{
    if PROVIDER.get().is_some() {
        return None;
    }
    let resource = Resource::builder()
        .with_service_name(format!("shop-{component}"))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(exporter) = exporter {
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = PROVIDER.get_or_init(|| builder.build());
    let tracer = provider.tracer("shop");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        // Spans from INFO up become OTel spans; only warnings and errors become span events
        // (the queries' own log events would flood every span).
        .with_filter(filter_fn(|meta| {
            if meta.is_span() {
                *meta.level() <= LevelFilter::INFO
            } else {
                *meta.level() <= LevelFilter::WARN
            }
        }));
    Some(Box::new(layer))
}
