//! The HTTP server every component runs, the gateway included, and the bounds it puts on each
//! request whatever the client does (SYSTEM.md §7):
//!
//! - a connection must send a request's headers within `header_read_timeout` (hyper's own timer,
//!   which also closes a kept-alive connection that stays idle that long);
//! - a body is read to its end before the routes see it, and it is bounded while it is read: over
//!   `body_limit` it is 413, at once when its `Content-Length` says so, otherwise as soon as the
//!   bytes read pass the limit; a body that pauses longer than `body_read_timeout` between two
//!   pieces is 408, one that breaks off is 400. Reading it first means no answer ever leaves
//!   unread input on the connection: a route that answers without looking at the body (a 405,
//!   a 401) would otherwise make hyper close the connection, and a client still sending (the
//!   gateway's pooled connection) would find it reset instead of reading the answer. A body
//!   the server refuses is read on and dropped in the background for the same reason;
//! - an answer that has not started within `request_timeout` is 504;
//! - past `max_in_flight` requests a request is shed at once with 503 and `Retry-After` (a queue
//!   would only make every waiting client later);
//! - past `max_connections` open connections, new ones wait in the listen queue;
//! - a method outside the seven the API knows is 405, and a path with dot segments or encoded
//!   slashes is 400, both before routing: such a path never reaches a route it could be read as
//!   (`/api/orders/../../metrics`), and neither adds a metric series. Every 405 carries the
//!   `Allow` RFC 9110 requires: a route's own methods when a route refused a known method; the
//!   seven when the method was refused before routing, since no resource here takes any other
//!   (a request with one of the seven learns the resource's exact list).
//!
//! What the server answers by itself is counted in `http_requests_refused_total{reason}`; what
//! reaches the routes is counted by [`crate::metrics::track`].

use std::convert::Infallible;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder};

use crate::http::{Problem, no_route, too_large};
use crate::settings::HttpSettings;

type Stack = BoxCloneService<Request<hyper::body::Incoming>, Response, Infallible>;

/// A component's HTTP server: its routes plus `/health/live`, `/metrics` (with the request
/// metrics and server spans of [`crate::metrics::track`]), the problem fallback and the bounds
/// above. `bind` takes port 0 in tests and reports the bound address.
pub struct Server {
    listener: tokio::net::TcpListener,
    stack: Stack,
    header_read_timeout: Duration,
    max_connections: usize,
}

impl Server {
    pub async fn bind(
        settings: &HttpSettings,
        port: u16,
        routes: axum::Router,
    ) -> anyhow::Result<Self> {
        let address: std::net::SocketAddr = format!("{}:{port}", settings.host)
            .parse()
            .context("parsing the HTTP bind address")?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        let app = crate::metrics::instrument(
            routes
                .route("/health/live", axum::routing::get(crate::health::live))
                .fallback(no_route),
        )
        .layer(axum::extract::DefaultBodyLimit::max(settings.body_limit));
        register_metrics();
        Ok(Self {
            listener,
            stack: stack(settings, app),
            header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
            max_connections: settings.max_connections.max(1),
        })
    }

    pub fn address(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until shutdown is requested, then lets in-flight requests finish.
    pub async fn run(self, mut shutdown: crate::shutdown::Shutdown) -> std::io::Result<()> {
        let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        loop {
            let permit = tokio::select! {
                permit = connections.clone().acquire_owned() => permit,
                () = shutdown.requested() => break,
            };
            // The semaphore is never closed.
            let Ok(permit) = permit else { break };
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                },
                () = shutdown.requested() => break,
            };
            // A small answer goes out at once instead of waiting (Nagle) for the ACK of the
            // previous write.
            let _ = stream.set_nodelay(true);
            let connection = http.serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(self.stack.clone()),
            );
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that sends garbage, is too slow or goes away ends its own
                // connection; that is its business, not an error of this component.
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended");
                }
                drop(permit);
            });
        }
        graceful.shutdown().await;
        Ok(())
    }
}

/// Aborted handshakes are the client's; anything else (out of file descriptors) is this
/// process's, and retrying at once would spin.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(error = %error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The layers around the routes, outermost first.
fn stack(settings: &HttpSettings, app: axum::Router) -> Stack {
    let bounds = BodyBounds {
        limit: settings.body_limit,
        pause: Duration::from_millis(settings.body_read_timeout_ms),
        total: Duration::from_millis(settings.request_timeout_ms),
    };
    let service = ServiceBuilder::new()
        .map_request(|request: Request<hyper::body::Incoming>| request.map(Body::new))
        .layer(axum::middleware::from_fn_with_state(
            bounds,
            refuse_before_routing,
        ))
        .layer(axum::error_handling::HandleErrorLayer::new(
            |error: BoxError| async move { answer_layer_error(error) },
        ))
        .load_shed()
        .concurrency_limit(settings.max_in_flight.max(1))
        .timeout(Duration::from_millis(settings.request_timeout_ms))
        .layer(axum::middleware::from_fn_with_state(bounds, bound_body))
        .service(app);
    BoxCloneService::new(service)
}

/// The methods of [`crate::metrics::known_method`], as an `Allow` value.
const KNOWN_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// A path some component could read as another one: a `.` or `..` segment (plain or
/// percent-encoded), or an encoded `/` or `\` that a later decoding would turn into a
/// separator. Clients have no reason to send either.
fn ambiguous_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let encoded_separator = bytes.windows(3).any(|w| {
        w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
    });
    encoded_separator
        || path.contains('\\')
        || path.split('/').any(|segment| {
            [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."]
                .iter()
                .any(|dots| segment.eq_ignore_ascii_case(dots))
        })
}

async fn refuse_before_routing(
    State(bounds): State<BodyBounds>,
    request: Request,
    next: Next,
) -> Response {
    if crate::metrics::known_method(request.method()).is_none() {
        refused("unknown_method");
        discard_after_answer(request, bounds);
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "The method is not allowed here",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(KNOWN_METHODS));
        return response;
    }
    if ambiguous_path(request.uri().path()) {
        refused("path");
        discard_after_answer(request, bounds);
        return Problem::bad_request(
            "paths may not contain dot segments or encoded slashes or backslashes",
        )
        .into_response();
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        // axum's own answer to a method a route does not take is bare; keep its `Allow`.
        let mut problem = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "The method is not allowed here",
        )
        .into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            problem.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return problem;
    }
    response
}

/// Load shedding and the request timeout fail as errors of the service; they become problems.
fn answer_layer_error(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        refused("overloaded");
        let mut response = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests at once; try again",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else if error.is::<tower::timeout::error::Elapsed>() {
        refused("timeout");
        Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "The request took too long",
        )
        .into_response()
    } else {
        tracing::error!(error = %error, "a server layer failed");
        Problem::internal().into_response()
    }
}

#[derive(Clone, Copy)]
struct BodyBounds {
    limit: usize,
    pause: Duration,
    total: Duration,
}

/// Refuses a declared length over the limit before reading anything, then reads the body to
/// its end within the bounds and hands the routes the whole of it (at most `limit` bytes).
async fn bound_body(State(bounds): State<BodyBounds>, request: Request, next: Next) -> Response {
    let _in_flight = InFlight::start();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(bounds.limit).unwrap_or(u64::MAX)) {
        refused("too_large");
        discard_after_answer(request, bounds);
        return too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    match read_whole(body, bounds).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err((failure, rest)) => {
            if let BodyFailure::TooLarge = failure {
                refused("too_large");
                tokio::spawn(discard(rest, bounds));
            }
            failure.problem().into_response()
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, Copy)]
enum BodyFailure {
    TooLarge,
    TooSlow,
    BrokenOff,
}

impl BodyFailure {
    fn problem(self) -> Problem {
        match self {
            Self::TooLarge => too_large(),
            Self::TooSlow => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "The request body arrived too slowly",
            ),
            Self::BrokenOff => Problem::bad_request("the request body was broken off"),
        }
    }
}

/// The body's bytes, read piece by piece: never more than `limit` of them held, and no pause
/// between two pieces longer than `pause`. On failure, what is left of the body comes back so
/// that the client's remaining bytes can still be read off the connection.
async fn read_whole(
    body: Body,
    bounds: BodyBounds,
) -> Result<axum::body::Bytes, (BodyFailure, Body)> {
    use http_body_util::BodyExt as _;
    let mut body = Box::pin(tower_http::timeout::TimeoutBody::new(bounds.pause, body));
    let mut bytes = Vec::new();
    loop {
        match body.frame().await {
            None => return Ok(bytes.into()),
            Some(Ok(frame)) => {
                // Trailers carry nothing the routes read.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.len() > bounds.limit.saturating_sub(bytes.len()) {
                    return Err((BodyFailure::TooLarge, Body::new(body)));
                }
                bytes.extend_from_slice(&data);
            }
            Some(Err(error)) => {
                let failure = if error.is::<tower_http::timeout::TimeoutError>() {
                    BodyFailure::TooSlow
                } else {
                    BodyFailure::BrokenOff
                };
                return Err((failure, Body::empty()));
            }
        }
    }
}

/// An answer goes out before the body was read: read it on in the background, unless the
/// client asked to continue (it then waits for this answer and sends nothing).
fn discard_after_answer(request: Request, bounds: BodyBounds) {
    let (parts, body) = request.into_parts();
    let waits = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits {
        tokio::spawn(discard(body, bounds));
    }
}

/// What [`discard`] reads at most after a refusal, in bytes.
const DISCARD_LIMIT: usize = 16 << 20;

/// Reads and drops what the client still sends after it was refused (up to [`DISCARD_LIMIT`]
/// bytes, with the usual pause and time bounds), keeping none of it. A client that writes its
/// whole body before it reads the answer then reads the answer: closing a connection with
/// unread input resets it, and the client would see a broken pipe instead.
async fn discard(body: Body, bounds: BodyBounds) {
    use http_body_util::BodyExt as _;
    let mut body = std::pin::pin!(http_body_util::Limited::new(
        tower_http::timeout::TimeoutBody::new(bounds.pause, body),
        DISCARD_LIMIT,
    ));
    let _ = tokio::time::timeout(bounds.total, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// `http_requests_in_flight`, kept right however the request ends (a timeout drops it).
struct InFlight;

impl InFlight {
    fn start() -> Self {
        metrics::gauge!("http_requests_in_flight").increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("http_requests_in_flight").decrement(1.0);
    }
}

const REFUSALS: [&str; 5] = [
    "unknown_method",
    "path",
    "too_large",
    "overloaded",
    "timeout",
];

fn refused(reason: &'static str) {
    metrics::counter!("http_requests_refused_total", "reason" => reason).increment(1);
}

/// The server's own families exist from the start, at 0, so an alert on their increase sees
/// the first one.
fn register_metrics() {
    for reason in REFUSALS {
        metrics::counter!("http_requests_refused_total", "reason" => reason).increment(0);
    }
    metrics::gauge!("http_requests_in_flight").increment(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_encoded_separators_are_ambiguous() {
        for path in [
            "/api/orders/../../metrics",
            "/api/orders/./x",
            "/api/orders/..",
            "/api/orders/%2e%2e/%2e%2e/metrics",
            "/api/orders/%2E%2E/metrics",
            "/api/orders/.%2e/metrics",
            "/api/orders%2f..%2fmetrics",
            "/api/orders%2F..",
            "/api/orders%5c..",
            "/api/orders\\..",
        ] {
            assert!(ambiguous_path(path), "{path}");
        }
        for path in [
            "/api/orders",
            "/api/orders/0190a7b2-1c4e-7000-8000-000000000000/events",
            "/api/products/1/restock",
            "/api/orders/...",
            "/api/orders/.well",
            "/health/ready",
            "/",
        ] {
            assert!(!ambiguous_path(path), "{path}");
        }
    }

    #[test]
    fn only_the_seven_methods_are_known() {
        use axum::http::Method;
        assert_eq!(crate::metrics::known_method(&Method::PATCH), Some("PATCH"));
        assert_eq!(crate::metrics::known_method(&Method::TRACE), None);
        assert_eq!(crate::metrics::known_method(&Method::CONNECT), None);
        let made_up = Method::from_bytes(b"BREW").unwrap_or(Method::TRACE);
        assert_eq!(crate::metrics::known_method(&made_up), None);
        let allowed: Vec<&str> = KNOWN_METHODS.split(", ").collect();
        assert_eq!(allowed.len(), 7);
        for name in allowed {
            let method = Method::from_bytes(name.as_bytes()).unwrap_or(Method::TRACE);
            assert_eq!(crate::metrics::known_method(&method), Some(name));
        }
    }
}
