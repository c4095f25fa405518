//! The gateway: one address for the whole `/api` of the system. It owns no data; it forwards
//! each request to the component that owns the resource and passes the answer back unchanged.
//! A component that cannot be reached becomes a 503 problem document, never a 500.
//!
//! It is the one entry point, so it bounds what a client can cost (SYSTEM.md §7). It runs on the
//! shared server ([`platform::server`]), which refuses unknown methods, dot segments and encoded
//! slashes before routing, times out slow headers, bodies and answers, sheds load past its
//! concurrency limit, and reads each body whole within the body limit before routing (413,
//! 408 and 400 are the gateway's own answers). Here the body goes to the component in one
//! piece and the answer streams back, never held whole. Only the `/api` prefixes
//! of the components are forwarded; their internal routes (`/metrics`, `/health/*`) are not
//! reachable through it. It answers itself the system's readiness, the OpenAPI document and the
//! API page with its script and stylesheet, which are embedded in the binary ([`openapi`]).
//!
//! It checks no token: `Authorization` goes to the component unchanged (it is no hop-by-hop
//! header), and each component verifies it where the data lives (`platform::auth` says why).
//!
//! Why a gateway in Rust rather than an nginx in front: `./dev` then needs no extra server, the
//! routing table is code that tests exercise, and the gateway is where the system-wide readiness
//! lives.

pub mod openapi;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use platform::Settings;
use platform::http::Problem;

/// Base URLs of the components behind the gateway.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub order: String,
    pub stock: String,
    pub payment: String,
    pub projections: String,
}

impl Upstreams {
    /// The components at their configured ports on this host.
    pub fn from_settings(settings: &Settings) -> Self {
        let url = |port: u16| format!("http://{}:{port}", settings.http.host);
        Self {
            order: url(settings.http.order_port),
            stock: url(settings.http.stock_port),
            payment: url(settings.http.payment_port),
            projections: url(settings.http.projections_port),
        }
    }

    /// The component that owns `path`, by the first segments of the path: the order service
    /// its orders and its sagas (`/api/ops/orders`), the stock service its stock, the catalog
    /// (`/api/products`) and the audit trail of catalog actions (`/api/ops/audit`), the payment
    /// service its payments and the projections the reports and their read models
    /// (`/api/ops/read-models`). The console's own `/api/ops`
    /// routes are answered in this process and never get here.
    fn owner(&self, path: &str) -> Option<&str> {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/api/orders") || under("/api/ops/orders") {
            Some(&self.order)
        } else if under("/api/stock") || under("/api/products") || under("/api/ops/audit") {
            Some(&self.stock)
        } else if under("/api/payments") {
            Some(&self.payment)
        } else if under("/api/reports") || under("/api/ops/read-models") {
            Some(&self.projections)
        } else {
            None
        }
    }

    fn all(&self) -> [(&'static str, &str); 4] {
        [
            ("order", &self.order),
            ("stock", &self.stock),
            ("payment", &self.payment),
            ("projections", &self.projections),
        ]
    }
}

#[derive(Clone)]
struct Gateway {
    upstreams: Upstreams,
    client: reqwest::Client,
}

pub fn routes(upstreams: Upstreams) -> anyhow::Result<Router> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // The server's request timeout ends a request whose answer has not started; this one
        // also bounds an answer that streams back too slowly.
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        // A component closes a connection that stays idle for its header-read timeout (5 s by
        // default); a request sent on it just then would fail. Dropping idle connections
        // sooner on this side keeps that race away, at the price of a loopback reconnect.
        .pool_idle_timeout(Duration::from_secs(1))
        .build()?;
    Ok(Router::new()
        .route("/health/ready", get(ready))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(openapi::docs))
        // The page's own files: a named route wins over the catch-all below, so they are never
        // forwarded (and no component owns `/api/docs`).
        .route("/api/docs/{file}", get(openapi::docs_asset))
        .route("/api/{*rest}", any(forward))
        .with_state(Gateway { upstreams, client }))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) stay on this hop.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    from.iter()
        .filter(|(name, _)| !hop_by_hop(name))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

async fn forward(State(gateway): State<Gateway>, request: Request) -> Response {
    let path_and_query = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let Some(upstream) = gateway.upstreams.owner(request.uri().path()) else {
        return Problem::not_found("No such resource").into_response();
    };
    let url = format!("{upstream}{path_and_query}");
    let (parts, body) = request.into_parts();
    let mut headers = copy_headers(&parts.headers);
    // The upstream's span is a child of this request's span (which continued the caller's
    // trace, if any).
    if let Some(traceparent) = platform::trace::current_traceparent()
        .and_then(|tp| axum::http::HeaderValue::from_str(&tp).ok())
    {
        headers.insert("traceparent", traceparent);
    }
    let mut upstream_request = gateway.client.request(parts.method, &url).headers(headers);
    // The server has read the body whole, within its bounds (`platform::server`): it goes on
    // in one piece with its length.
    if has_body(&parts.headers) {
        upstream_request =
            upstream_request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let response = match upstream_request.send().await {
        Ok(response) => response,
        Err(e) => {
            let error = anyhow::Error::new(e);
            tracing::warn!(
                %url,
                error = format!("{error:#}"),
                "upstream unreachable; is the component running? (./dev status)"
            );
            return Problem::unavailable("a component of the shop is unavailable").into_response();
        }
    };
    // The answer streams back too. Once its head is sent, an upstream that breaks off shows as
    // a broken-off answer (the status cannot change any more).
    let status = response.status();
    let headers = copy_headers(response.headers());
    let body = axum::body::Body::new(axum::http::Response::from(response).into_body());
    (status, headers, body).into_response()
}

/// HTTP/1.1 framing: a request has a body if and only if it says how it is sent.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// Ready when every component is: each component's own readiness, side by side.
async fn ready(State(gateway): State<Gateway>) -> Response {
    let checks = gateway.upstreams.all().map(|(name, base)| {
        let client = gateway.client.clone();
        let url = format!("{base}/health/ready");
        async move {
            let result = client
                .get(&url)
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            let (up, detail) = match result {
                Ok(r) => {
                    let up = r.status().is_success();
                    (up, r.json::<serde_json::Value>().await.unwrap_or_default())
                }
                Err(e) => (false, serde_json::json!({ "error": e.to_string() })),
            };
            (name, up, detail)
        }
    });
    let results = futures_join_all(checks).await;
    let ready = results.iter().all(|(_, up, _)| *up);
    let components: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, up, detail)| {
            (
                name.to_owned(),
                serde_json::json!({ "up": up, "detail": detail }),
            )
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "status": if ready { "ready" } else { "unavailable" }, "components": components });
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

async fn futures_join_all<F: std::future::Future>(futures: [F; 4]) -> Vec<F::Output> {
    let [a, b, c, d] = futures;
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    vec![a, b, c, d]
}
