//! Trace context across every hop: HTTP request → command → outbox row → Kafka headers →
//! consumer → the next outbox row. The W3C `traceparent` is the only thing that travels; spans
//! are `tracing` spans that the OpenTelemetry layer (see [`crate::telemetry`]) turns into OTel
//! spans.
//!
//! Without that layer (telemetry off) every function here degrades to a no-op: spans have no
//! OTel context, [`current_traceparent`] is `None`, and callers fall back to passing on the
//! traceparent they received.

use std::sync::{Arc, Mutex};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The OTel context a W3C `traceparent` value names; `None` if it does not parse.
pub fn parse_traceparent(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The `traceparent` of `span`, if the OpenTelemetry layer gave it a valid context.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The `traceparent` of the current span: what a message written now should carry.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// Makes `span` a child of `traceparent` (if any and valid) and records its trace id in the
/// span's `trace_id` field, so log lines inside it carry the id. Call before entering the span.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    if let Some(parent) = traceparent.and_then(parse_traceparent) {
        let _ = span.set_parent(parent);
    }
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// The span of one consumed message: a consumer span whose parent is the message's
/// `traceparent`, carrying the order id (the record key) and the trace id for the logs.
pub fn message_span(
    consumer: &str,
    topic: &str,
    message_type: &str,
    key: Option<&str>,
    traceparent: Option<&str>,
) -> Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format_args!("{topic} process {message_type}"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.consumer.group.name = consumer,
        messaging.destination.name = topic,
        message_type,
        order_id = key.unwrap_or_default(),
        trace_id = tracing::field::Empty,
    );
    continue_trace(&span, traceparent);
    span
}

/// A span exporter that keeps every finished span in memory: for tests that assert on traces,
/// and for benchmarks that want the export path exercised without a collector.
#[derive(Debug, Clone, Default)]
pub struct SpanCollector {
    spans: Arc<Mutex<Vec<SpanData>>>,
    /// Count only, dropping the spans (benchmarks).
    discard: bool,
    exported: Arc<std::sync::atomic::AtomicU64>,
}

impl SpanCollector {
    /// Keeps the spans.
    pub fn keeping() -> Self {
        Self::default()
    }

    /// Counts the spans and drops them.
    pub fn counting() -> Self {
        Self {
            discard: true,
            ..Self::default()
        }
    }

    /// Every span kept so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many spans were exported.
    pub fn exported(&self) -> u64 {
        self.exported.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl SpanExporter for SpanCollector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.exported
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if !self.discard {
            if let Ok(mut spans) = self.spans.lock() {
                spans.extend(batch);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_parses_and_garbage_does_not() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(tp).expect("valid traceparent");
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(parse_traceparent("not-a-traceparent").is_none());
    }

    #[test]
    fn without_the_otel_layer_there_is_no_traceparent() {
        assert_eq!(current_traceparent(), None);
    }
}
