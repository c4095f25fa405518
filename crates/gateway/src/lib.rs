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
//! A component may run as several instances (`SHOP_GATEWAY__ORDER_URLS=…,…`): requests take
//! them in turn, and a request whose connection an instance refuses goes to the next one. Only
//! then: a connection that was made may have carried the request, and a POST sent twice could
//! be two orders. An instance that refused rests for a while (`SHOP_GATEWAY__UNREACHABLE_REST_MS`,
//! 2 s), tried only after the others.
//!
//! It checks no token: `Authorization` goes to the component unchanged (it is no hop-by-hop
//! header), and each component verifies it where the data lives (`platform::auth` says why).
//!
//! Why a gateway in Rust rather than an nginx in front: `./dev` then needs no extra server, the
//! routing table is code that tests exercise, and the gateway is where the system-wide readiness
//! lives.

pub mod openapi;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use platform::Settings;
use platform::http::Problem;

/// Base URLs of the components behind the gateway. Each is one base URL, or several separated
/// by commas: the instances of the component, which share its requests.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub order: String,
    pub stock: String,
    pub payment: String,
    pub projections: String,
}

impl Upstreams {
    /// The instances the settings name (`SHOP_GATEWAY__ORDER_URLS`, …), or each component at
    /// its configured port on this host.
    pub fn from_settings(settings: &Settings) -> Self {
        let urls = |component| settings.gateway.urls(&settings.http, component).join(",");
        Self {
            order: urls("order"),
            stock: urls("stock"),
            payment: urls("payment"),
            projections: urls("projections"),
        }
    }
}

/// How long an instance that refused a connection is tried only after the others of its
/// component, unless the settings say otherwise (`SHOP_GATEWAY__UNREACHABLE_REST_MS`).
pub const UNREACHABLE_REST: Duration = Duration::from_secs(2);

/// The instances of one component and the turn they take.
struct Component {
    name: &'static str,
    instances: Vec<Instance>,
    next: AtomicUsize,
}

struct Instance {
    base: String,
    /// Until when (milliseconds after [`Balancer::epoch`]) this instance rests after it refused
    /// a connection; 0 when it does not rest.
    resting_until: AtomicU64,
}

/// Spreads each component's requests over its instances in turn. An instance that could not
/// be connected to rests for a while: it is tried only after the others, so requests stop
/// paying for its refusal (passive health: nothing probes it, the next request that needs it
/// finds out). A resting instance is still tried when every other one failed too, so a
/// component of one instance is tried on every request, as if nothing rested.
struct Balancer {
    components: [Component; 4],
    epoch: Instant,
    /// How long an instance rests, in milliseconds (at least 1).
    rest_ms: u64,
}

impl Balancer {
    fn new(upstreams: &Upstreams, rest: Duration) -> Self {
        let component = |name, urls: &str| Component {
            name,
            instances: urls
                .split(',')
                .map(|url| url.trim().trim_end_matches('/'))
                .filter(|url| !url.is_empty())
                .map(|base| Instance {
                    base: base.to_owned(),
                    resting_until: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
        };
        Self {
            components: [
                component("order", &upstreams.order),
                component("stock", &upstreams.stock),
                component("payment", &upstreams.payment),
                component("projections", &upstreams.projections),
            ],
            epoch: Instant::now(),
            rest_ms: u64::try_from(rest.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// The component that owns `path`, by the first segments of the path: the order service
    /// its orders and its sagas (`/api/ops/orders`), the stock service its stock, the catalog
    /// (`/api/products`) and the audit trail of catalog actions (`/api/ops/audit`), the payment
    /// service its payments and the projections the reports and their read models
    /// (`/api/ops/read-models`). The console's own `/api/ops`
    /// routes are answered in this process and never get here.
    fn owner(&self, path: &str) -> Option<&Component> {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        let [order, stock, payment, projections] = &self.components;
        if under("/api/orders") || under("/api/ops/orders") {
            Some(order)
        } else if under("/api/stock") || under("/api/products") || under("/api/ops/audit") {
            Some(stock)
        } else if under("/api/payments") {
            Some(payment)
        } else if under("/api/reports") || under("/api/ops/read-models") {
            Some(projections)
        } else {
            None
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The order in which to try `component`'s instances for one request: in turn from the next
    /// one, those that rest after the others.
    fn candidates<'a>(&self, component: &'a Component) -> Vec<&'a Instance> {
        let n = component.instances.len();
        let start = component.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let (mut awake, resting): (Vec<&Instance>, Vec<&Instance>) = (0..n)
            .map(|i| &component.instances[(start + i) % n])
            .partition(|instance| instance.resting_until.load(Ordering::Relaxed) <= now);
        awake.extend(resting);
        awake
    }

    /// `instance` refused a connection: it rests from now on.
    fn unreachable(&self, component: &Component, instance: &Instance) {
        let until = self.now_ms().saturating_add(self.rest_ms);
        let was = instance.resting_until.swap(until, Ordering::Relaxed);
        if was <= self.now_ms() && component.instances.len() > 1 {
            tracing::warn!(
                component = component.name,
                instance = %instance.base,
                rest_ms = self.rest_ms,
                "instance unreachable; sending its requests to the other instances for a \
                 while (./dev status shows which are down)"
            );
        }
        metrics::counter!("gateway_upstream_unreachable_total", "component" => component.name)
            .increment(1);
    }

    /// `instance` answered: it rests no longer.
    fn answered(instance: &Instance) {
        if instance.resting_until.load(Ordering::Relaxed) != 0 {
            instance.resting_until.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
struct Gateway {
    balancer: Arc<Balancer>,
    client: reqwest::Client,
}

/// The gateway's routes, with [`UNREACHABLE_REST`].
pub fn routes(upstreams: Upstreams) -> anyhow::Result<Router> {
    routes_with(upstreams, UNREACHABLE_REST)
}

/// The gateway's routes; an instance that refuses a connection rests for `rest`.
pub fn routes_with(upstreams: Upstreams, rest: Duration) -> anyhow::Result<Router> {
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
    // Exported at 0 from the start, so that an alert on its increase sees the first refusal.
    for component in ["order", "stock", "payment", "projections"] {
        metrics::counter!("gateway_upstream_unreachable_total", "component" => component)
            .increment(0);
    }
    let balancer = Arc::new(Balancer::new(&upstreams, rest));
    Ok(Router::new()
        .route("/health/ready", get(ready))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(openapi::docs))
        // The page's own files: a named route wins over the catch-all below, so they are never
        // forwarded (and no component owns `/api/docs`).
        .route("/api/docs/{file}", get(openapi::docs_asset))
        .route("/api/{*rest}", any(forward))
        .with_state(Gateway { balancer, client }))
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
    let Some(component) = gateway.balancer.owner(request.uri().path()) else {
        return Problem::not_found("No such resource").into_response();
    };
    let (parts, body) = request.into_parts();
    let mut headers = copy_headers(&parts.headers);
    // The upstream's span is a child of this request's span (which continued the caller's
    // trace, if any).
    if let Some(traceparent) = platform::trace::current_traceparent()
        .and_then(|tp| axum::http::HeaderValue::from_str(&tp).ok())
    {
        headers.insert("traceparent", traceparent);
    }
    // The server has read the body whole, within its bounds (`platform::server`): it is in
    // memory already, and goes on in one piece with its length, to a second instance too if the
    // first cannot be reached.
    let body: Option<Bytes> = if has_body(&parts.headers) {
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(error = %e, "request body unreadable");
                return Problem::bad_request("The request body could not be read").into_response();
            }
        }
    } else {
        None
    };
    let mut refused = Vec::new();
    for instance in gateway.balancer.candidates(component) {
        let url = format!("{}{path_and_query}", instance.base);
        let mut upstream_request = gateway
            .client
            .request(parts.method.clone(), &url)
            .headers(headers.clone());
        if let Some(body) = &body {
            upstream_request = upstream_request.body(body.clone());
        }
        match upstream_request.send().await {
            Ok(response) => {
                Balancer::answered(instance);
                return stream_back(response);
            }
            // No connection, so nothing of the request was sent: even a POST may go to the
            // next instance.
            Err(e) if e.is_connect() => {
                gateway.balancer.unreachable(component, instance);
                refused.push(format!("{url}: {:#}", anyhow::Error::new(e)));
            }
            // Connected: the instance may have acted on the request, so no other is asked.
            Err(e) => {
                let error = anyhow::Error::new(e);
                tracing::warn!(
                    %url,
                    error = format!("{error:#}"),
                    "upstream failed after the request went out; is the component running? \
                     (./dev status)"
                );
                return Problem::unavailable("a component of the shop is unavailable")
                    .into_response();
            }
        }
    }
    tracing::warn!(
        component = component.name,
        refused = refused.join("; "),
        "no instance of the component could be reached; is it running? (./dev status)"
    );
    Problem::unavailable("a component of the shop is unavailable").into_response()
}

/// The answer streams back. Once its head is sent, an upstream that breaks off shows as a
/// broken-off answer (the status cannot change any more).
fn stream_back(response: reqwest::Response) -> Response {
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

/// Ready when every component is: each component's own readiness, side by side. A component
/// of several instances is ready when one of them is, and shows each.
async fn ready(State(gateway): State<Gateway>) -> Response {
    let checks = gateway.balancer.components.iter().map(|component| {
        let instances = component.instances.iter().map(|instance| {
            let client = gateway.client.clone();
            let url = format!("{}/health/ready", instance.base);
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
                (instance.base.as_str(), up, detail)
            }
        });
        async move {
            let mut results = futures::future::join_all(instances).await;
            let up = results.iter().any(|(_, up, _)| *up);
            let detail = if results.len() == 1 {
                results
                    .pop()
                    .map(|(_, _, detail)| detail)
                    .unwrap_or_default()
            } else {
                let instances: Vec<serde_json::Value> = results
                    .into_iter()
                    .map(|(url, up, detail)| {
                        serde_json::json!({ "url": url, "up": up, "detail": detail })
                    })
                    .collect();
                serde_json::json!({ "instances": instances })
            };
            (component.name, up, detail)
        }
    });
    let results = futures::future::join_all(checks).await;
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
