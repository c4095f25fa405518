//! The gateway: one address for the whole `/api` of the system. It owns no data; it forwards
//! each request to the component that owns the resource and passes the answer back unchanged.
//! A component that cannot be reached becomes a 503 problem document, never a 500.
//!
//! Why a gateway in Rust rather than an nginx in front: `./dev` then needs no extra server, the
//! routing table is code that tests exercise, and the gateway is where the system-wide readiness
//! lives.

pub mod openapi;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
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

    /// The component that owns `path`, by the first segments of the path.
    fn owner(&self, path: &str) -> Option<&str> {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/api/orders") {
            Some(&self.order)
        } else if under("/api/stock") {
            Some(&self.stock)
        } else if under("/api/payments") {
            Some(&self.payment)
        } else if under("/api/reports") {
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
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;
    Ok(Router::new()
        .route("/health/ready", get(ready))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(openapi::docs))
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
    // The body limit layer of the server already bounds what is read here.
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(_) => return platform::http::too_large().into_response(),
    };
    let mut headers = copy_headers(&parts.headers);
    // The upstream's span is a child of this request's span (which continued the caller's
    // trace, if any).
    if let Some(traceparent) = platform::trace::current_traceparent()
        .and_then(|tp| axum::http::HeaderValue::from_str(&tp).ok())
    {
        headers.insert("traceparent", traceparent);
    }
    let sent = gateway
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(%url, error = %e, "upstream unreachable");
            return Problem::unavailable("a component of the shop is unavailable").into_response();
        }
    };
    let status = response.status();
    let headers = copy_headers(response.headers());
    match response.bytes().await {
        Ok(bytes) => (status, headers, bytes).into_response(),
        Err(e) => {
            tracing::warn!(%url, error = %e, "upstream answer broken off");
            Problem::unavailable("a component of the shop is unavailable").into_response()
        }
    }
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
