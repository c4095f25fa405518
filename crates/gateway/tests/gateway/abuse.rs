//! The entry point bounds what a hostile or broken client costs (SYSTEM.md §7). The gateway runs
//! in this process, in front of an upstream that is the components' own shared server
//! (`platform::http::Server`) with an order-like route, its internal `/metrics` and a route
//! that answers only when the test lets it. Memory is this process's, gateway and upstream
//! included.
//!
//! The tests measure this process's metrics series and memory, so each runs alone
//! ([`test_support::alone`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use platform::settings::HttpSettings;
use platform::shutdown::Trigger;
use serde_json::{Value, json};
use test_support::{eventually, sample};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Requests to `GET /api/orders/{id}` wait here until the test opens the gate.
#[derive(Clone)]
struct Gate {
    arrived: Arc<AtomicUsize>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    fn new() -> Self {
        Self {
            arrived: Arc::new(AtomicUsize::new(0)),
            open: tokio::sync::watch::channel(false).0,
        }
    }
}

async fn held(axum::extract::State(gate): axum::extract::State<Gate>) -> axum::Json<Value> {
    gate.arrived.fetch_add(1, Ordering::SeqCst);
    let mut open = gate.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    axum::Json(json!({"held": true}))
}

async fn place(
    platform::http::Json(body): platform::http::Json<Value>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    (axum::http::StatusCode::CREATED, axum::Json(body))
}

struct Setup {
    gateway: SocketAddr,
    upstream: SocketAddr,
    gate: Gate,
    trigger: Trigger,
}

impl Setup {
    /// An upstream with default bounds, and the gateway in front of it with `http`'s.
    async fn start(http: HttpSettings) -> Setup {
        platform::metrics::install();
        let gate = Gate::new();
        let upstream_routes = axum::Router::new()
            .route("/api/orders", post(place))
            .route("/api/orders/{id}", get(held))
            .with_state(gate.clone());
        let defaults = test_support::settings().http;
        let upstream = platform::http::Server::bind(&defaults, 0, upstream_routes)
            .await
            .unwrap();
        let upstream_address = upstream.address().unwrap();
        let base = format!("http://{upstream_address}");
        let upstreams = gateway::Upstreams {
            order: base.clone(),
            stock: base.clone(),
            payment: base.clone(),
            projections: base,
        };
        let gateway = platform::http::Server::bind(&http, 0, gateway::routes(upstreams).unwrap())
            .await
            .unwrap();
        let gateway_address = gateway.address().unwrap();
        let (trigger, shutdown) = platform::shutdown::channel();
        tokio::spawn(upstream.run(shutdown.clone()));
        tokio::spawn(gateway.run(shutdown));
        Setup {
            gateway: gateway_address,
            upstream: upstream_address,
            gate,
            trigger,
        }
    }

    fn stop(self) {
        let _ = self.gate.open.send_replace(true);
        self.trigger.fire();
    }
}

fn settings() -> HttpSettings {
    test_support::settings().http
}

/// A response read whole from a raw connection.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn problem(&self) -> Value {
        assert!(
            self.head
                .to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "not a problem document: {}\n{}",
            self.head,
            self.body
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Sends one request exactly as given (method and target unnormalised, as `curl --path-as-is
/// -X` would) over a fresh connection, and reads the answer.
async fn exact(address: SocketAddr, method: &str, target: &str) -> Answer {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = axum::http::Request::builder()
        .method(axum::http::Method::from_bytes(method.as_bytes()).unwrap())
        .uri(target)
        .header("host", address.to_string())
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let head: String = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\r\n", value.to_str().unwrap_or_default()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Reads a raw HTTP/1.1 answer up to the end of its head and as much body as `Content-Length`
/// says (or to the end of the connection).
async fn read_answer(stream: &mut tokio::net::tcp::OwnedReadHalf) -> std::io::Result<Answer> {
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; 8192];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(usize::MAX);
    while bytes.len() - head_end < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: String::from_utf8_lossy(&bytes[head_end..]).into_owned(),
    })
}

/// Writes `head`, then `body_bytes` of body in pieces (chunked when `chunked`), while reading
/// the answer; the writer stops at the first failed write (the server closed).
async fn post_while_reading(
    address: SocketAddr,
    head: String,
    body_bytes: usize,
    chunked: bool,
) -> (Answer, usize) {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let piece = vec![b' '; 64 * 1024];
        let mut sent = 0_usize;
        if write.write_all(head.as_bytes()).await.is_err() {
            return sent;
        }
        while sent < body_bytes {
            let n = piece.len().min(body_bytes - sent);
            let written = if chunked {
                let mut framed = format!("{n:x}\r\n").into_bytes();
                framed.extend_from_slice(&piece[..n]);
                framed.extend_from_slice(b"\r\n");
                write.write_all(&framed).await
            } else {
                write.write_all(&piece[..n]).await
            };
            if written.is_err() {
                return sent;
            }
            sent += n;
        }
        if chunked {
            let _ = write.write_all(b"0\r\n\r\n").await;
        }
        sent
    });
    let answer = read_answer(&mut read).await.unwrap();
    let sent = writer.await.unwrap();
    (answer, sent)
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_of_hundreds_of_megabytes_is_413_and_never_held() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    let before = resident_kib();
    let peak = Arc::new(AtomicUsize::new(0));
    let sampling = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(usize::try_from(resident_kib()).unwrap(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let head = format!(
        "POST /api/orders HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        setup.gateway
    );
    let (answer, sent) = post_while_reading(setup.gateway, head, 400 << 20, true).await;
    peak.fetch_max(usize::try_from(resident_kib()).unwrap(), Ordering::SeqCst);
    sampling.abort();

    assert_eq!(answer.status, 413, "{} {}", answer.head, answer.body);
    assert_eq!(
        answer.problem()["type"],
        "urn:shop:problem:payload-too-large"
    );
    let grown_mib = (peak.load(Ordering::SeqCst) as u64).saturating_sub(before) / 1024;
    println!("{sent} bytes sent before the gateway closed; the process grew by {grown_mib} MiB");
    assert!(
        grown_mib < 100,
        "the process grew by {grown_mib} MiB while {sent} bytes were sent"
    );

    // A component's own server refuses it the same way.
    let head = format!(
        "POST /api/orders HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        setup.upstream
    );
    let (answer, _) = post_while_reading(setup.upstream, head, 8 << 20, true).await;
    assert_eq!(answer.status, 413, "{} {}", answer.head, answer.body);
    assert_eq!(
        answer.problem()["type"],
        "urn:shop:problem:payload-too-large"
    );
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mb_body_with_its_length_is_413_every_time() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    let length = 3 << 20;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = client
            .post(format!("http://{}/api/orders", setup.gateway))
            .header("content-type", "application/json")
            .body(vec![b' '; length])
            .send()
            .await;
        statuses.push(match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                assert_eq!(body["type"], "urn:shop:problem:payload-too-large", "{body}");
                status.to_string()
            }
            Err(e) => format!("{e:?}"),
        });
    }
    assert!(statuses.iter().all(|s| s == "413"), "{statuses:?}");
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mb_body_sent_by_a_raw_client_is_413_every_time() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    let length = 3 << 20;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let head = format!(
            "POST /api/orders HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n",
            setup.gateway
        );
        let (answer, _) = post_while_reading(setup.gateway, head, length, false).await;
        if answer.status == 413 {
            assert_eq!(
                answer.problem()["type"],
                "urn:shop:problem:payload-too-large"
            );
        }
        statuses.push(answer.status);
    }
    assert!(statuses.iter().all(|s| *s == 413), "{statuses:?}");

    // Up to the limit a body goes through, chunked or not.
    let order = json!({"items": [{"productId": 1, "quantity": 1}], "note": " ".repeat(60_000)});
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/orders", setup.gateway))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap(), order);
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter(
        serde_json::to_vec(&order)
            .unwrap()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    ));
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/orders", setup.gateway))
        .header("content-type", "application/json")
        .body(chunked)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap(), order);
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_half_its_headers_is_cut_off() {
    let _alone = test_support::alone().await;
    let mut http = settings();
    http.header_read_timeout_ms = 1000;
    let setup = Setup::start(http).await;

    let started = Instant::now();
    let mut stream = TcpStream::connect(setup.gateway).await.unwrap();
    stream
        .write_all(b"GET /api/orders/1 HTTP/1.1\r\nHost: shop\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "still open after 30 s");
    assert!(
        elapsed < Duration::from_secs(5),
        "cut off only after {elapsed:?}"
    );
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_408_and_a_slow_answer_is_504() {
    let _alone = test_support::alone().await;
    let mut http = settings();
    http.body_read_timeout_ms = 500;
    http.request_timeout_ms = 1500;
    let setup = Setup::start(http).await;

    let stream = TcpStream::connect(setup.gateway).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/orders HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"items\"",
        setup.gateway
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = read_answer(&mut read).await.unwrap();
    assert_eq!(answer.status, 408, "{} {}", answer.head, answer.body);
    assert_eq!(answer.problem()["type"], "urn:shop:problem:request-timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The upstream holds the request; the gateway answers on its own.
    let started = Instant::now();
    let answer = exact(setup.gateway, "GET", "/api/orders/1").await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert_eq!(answer.problem()["type"], "urn:shop:problem:timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_encoded_slashes_never_reach_an_internal_route() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    // The upstream's /metrics is there to be found.
    let internal = exact(setup.upstream, "GET", "/metrics").await;
    assert_eq!(internal.status, 200);

    let paths = [
        "/api/orders/../../metrics",
        "/api/orders/%2e%2e/%2e%2e/metrics",
        "/api/orders/%2E%2E/%2E%2E/metrics",
        "/api/orders/.%2e/.%2e/metrics",
        "/api/orders%2f..%2fmetrics",
        "/api/orders%2F..%2F..%2Fmetrics",
        "/api/orders/..%2f..%2fmetrics",
        "/api/orders/%5c..%5c..%5cmetrics",
        "/api/orders/../../health/live",
        "/api/./orders/../../metrics",
    ];
    for path in paths {
        for (who, address) in [("gateway", setup.gateway), ("upstream", setup.upstream)] {
            let answer = exact(address, "GET", path).await;
            assert_ne!(answer.status, 200, "{who} {path}: {}", answer.body);
            assert!(
                !answer.body.contains("http_requests_total"),
                "{who} {path} reached /metrics"
            );
            let problem = answer.problem();
            assert_eq!(problem["status"], answer.status, "{who} {path}");
        }
    }
    setup.stop();
}

fn request_series(exposition: &str) -> Vec<&str> {
    exposition
        .lines()
        .filter(|line| line.starts_with("http_requests_total{"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_are_405_and_add_no_series() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    let scrape = || async { exact(setup.gateway, "GET", "/metrics").await.body };
    // The scrape's own series exists from here on.
    scrape().await;
    let before = scrape().await;
    let series_before = request_series(&before).len();
    assert!(series_before > 0, "{before}");

    for i in 0..200 {
        let method = format!("X{}{i}", uuid::Uuid::new_v4().simple()).to_uppercase();
        let method = &method[..12];
        for address in [setup.gateway, setup.upstream] {
            let answer = exact(address, method, "/api/orders").await;
            assert_eq!(answer.status, 405, "{method}: {}", answer.body);
            assert_eq!(
                answer.problem()["type"],
                "urn:shop:problem:method-not-allowed"
            );
            assert!(
                answer
                    .head
                    .to_ascii_lowercase()
                    .contains("allow: get, head, post, put, patch, delete, options\r\n"),
                "{method}: no Allow in {}",
                answer.head
            );
        }
    }
    // TRACE too: no resource here takes it.
    let answer = exact(setup.gateway, "TRACE", "/health/live").await;
    assert_eq!(answer.status, 405);
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("allow: get, head"),
        "{}",
        answer.head
    );
    // A known method a route does not take is a problem document too.
    let answer = exact(setup.upstream, "PATCH", "/api/orders").await;
    assert_eq!(answer.status, 405);
    assert!(
        answer.head.to_ascii_lowercase().contains("allow: post\r\n"),
        "the route's own methods: {}",
        answer.head
    );
    assert_eq!(
        answer.problem()["type"],
        "urn:shop:problem:method-not-allowed"
    );

    let after = scrape().await;
    let series_after = request_series(&after);
    assert_eq!(
        series_after.len(),
        series_before + 1,
        "only PATCH /api/orders 405 is new: {series_after:#?}"
    );
    assert!(
        series_after
            .iter()
            .all(|s| !s.contains("method=\"X") && !s.contains("method=\"other\"")),
        "{series_after:#?}"
    );
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_the_limit_is_shed_with_retry_after_and_the_rest_is_served() {
    let _alone = test_support::alone().await;
    let mut http = settings();
    http.max_in_flight = 4;
    let setup = Setup::start(http).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/orders/held", setup.gateway);

    let admitted: Vec<_> = (0..4)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    let gate = setup.gate.clone();
    eventually(
        Duration::from_secs(10),
        "four requests held upstream",
        || {
            let gate = gate.clone();
            async move { Ok((gate.arrived.load(Ordering::SeqCst) == 4).then_some(())) }
        },
    )
    .await
    .unwrap();

    let burst: Vec<_> = (0..12)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    for shed in burst {
        let response = shed.await.unwrap().unwrap();
        assert_eq!(response.status(), 503);
        let retry_after = response.headers().get("retry-after").cloned();
        assert!(retry_after.is_some(), "no Retry-After");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "urn:shop:problem:overloaded", "{body}");
    }
    assert_eq!(setup.gate.arrived.load(Ordering::SeqCst), 4);

    setup.gate.open.send_replace(true);
    for served in admitted {
        assert_eq!(served.await.unwrap().unwrap().status(), 200);
    }
    let after = client.get(&url).send().await.unwrap();
    assert_eq!(after.status(), 200);
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_families_exist_from_the_start_and_count_refusals() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    let text = exact(setup.gateway, "GET", "/metrics").await.body;
    let reasons = [
        "unknown_method",
        "path",
        "too_large",
        "overloaded",
        "timeout",
    ];
    for reason in reasons {
        assert!(
            sample(&text, "http_requests_refused_total", &[("reason", reason)]).is_some(),
            "{reason} missing:\n{text}"
        );
    }
    assert!(
        sample(&text, "http_requests_in_flight", &[]).is_some(),
        "{text}"
    );

    let refused = |text: &str, reason: &str| {
        sample(text, "http_requests_refused_total", &[("reason", reason)]).unwrap_or(0.0)
    };
    let (methods, paths) = (refused(&text, "unknown_method"), refused(&text, "path"));
    exact(setup.gateway, "BREW", "/api/orders").await;
    exact(setup.gateway, "GET", "/api/orders/../../metrics").await;
    let text = exact(setup.gateway, "GET", "/metrics").await.body;
    assert_eq!(refused(&text, "unknown_method"), methods + 1.0);
    assert_eq!(refused(&text, "path"), paths + 1.0);
    setup.stop();
}

/// A route that answers without reading the body (a 405 by method, a 401 before any extractor)
/// must leave the connection usable: hyper closes a connection whose request body was left
/// unread, and a client still sending it (the gateway's pooled connection) finds it reset
/// instead of reading the answer. The server reads the body first, so the body sent after a
/// pause is read, answered, and the next request on the same connection is answered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_ignores_the_body_leaves_the_connection_usable() {
    let _alone = test_support::alone().await;
    let setup = Setup::start(settings()).await;
    for address in [setup.upstream, setup.gateway] {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let body = r#"{"store": "redis"}"#;
        let head = format!(
            "OPTIONS /api/orders/1 HTTP/1.1\r\nHost: {address}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(body.as_bytes()).await.unwrap();
        let next = format!("GET /api/orders/1/nothing HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(next.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0_u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while String::from_utf8_lossy(&seen).matches("HTTP/1.1 ").count() < 2 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        let seen = String::from_utf8_lossy(&seen);
        assert!(read.is_ok(), "{address}: no second answer: {seen}");
        let statuses: Vec<&str> = seen
            .match_indices("HTTP/1.1 ")
            .map(|(at, _)| &seen[at + 9..at + 12])
            .collect();
        assert_eq!(statuses, ["405", "404"], "{address}: {seen}");
    }
    setup.stop();
}
