//! A component of several instances behind the gateway: requests take the instances in turn; a
//! request whose connection an instance refuses goes to the next one, a POST with its body
//! too; an instance that refused rests (is tried after the others) for a while and is used
//! again after it; a connection that breaks after the request went out is never retried
//! elsewhere; readiness shows each instance. The instances are small servers in this process
//! on the components' own shared server (`platform::http::Server`) that answer with their name.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use platform::shutdown::Trigger;
use serde_json::{Value, json};
use test_support::eventually;

/// Answers with its name and the body it was sent.
async fn echo(State(name): State<&'static str>, request: Request) -> Response {
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    axum::Json(json!({ "instance": name, "body": String::from_utf8_lossy(&body) })).into_response()
}

/// An instance named `name` on `port` (0: any), serving until the returned trigger fires.
async fn instance(name: &'static str, port: u16) -> (String, Trigger) {
    let settings = test_support::settings().http;
    let routes = axum::Router::new()
        .route("/api/{*rest}", any(echo))
        .route(
            "/health/ready",
            get(|| async { axum::Json(json!({ "status": "ready" })) }),
        )
        .with_state(name);
    let server = platform::http::Server::bind(&settings, port, routes)
        .await
        .unwrap();
    let base = format!("http://{}", server.address().unwrap());
    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(server.run(shutdown));
    (base, trigger)
}

/// A port on which nothing listens: a connection to it is refused.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway whose order service is `order` (base URLs, comma-separated) and whose other
/// components are `other`.
async fn start_gateway(order: &str, other: &str, rest: Duration) -> (SocketAddr, Trigger) {
    let settings = test_support::settings().http;
    let upstreams = gateway::Upstreams {
        order: order.to_owned(),
        stock: other.to_owned(),
        payment: other.to_owned(),
        projections: other.to_owned(),
    };
    let server =
        platform::http::Server::bind(&settings, 0, gateway::routes_with(upstreams, rest).unwrap())
            .await
            .unwrap();
    let address = server.address().unwrap();
    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(server.run(shutdown));
    (address, trigger)
}

/// `POST /api/orders` with a body of `n` through the gateway: the status and, on 200, which
/// instance answered with which body.
async fn post(client: &reqwest::Client, gateway: SocketAddr, n: usize) -> (u16, Value) {
    let response = client
        .post(format!("http://{gateway}/api/orders"))
        .json(&json!({ "n": n }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = if status == 200 {
        response.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_take_the_instances_in_turn() {
    let _shared = test_support::shared().await;
    let (a, _a) = instance("a", 0).await;
    let (b, _b) = instance("b", 0).await;
    let (gateway, _gateway) = start_gateway(&format!("{a},{b}"), &a, Duration::from_secs(2)).await;
    let client = test_support::http_client();
    let mut answered = Vec::new();
    for n in 0..8 {
        let (status, body) = post(&client, gateway, n).await;
        assert_eq!(status, 200);
        assert_eq!(body["body"], json!({ "n": n }).to_string());
        answered.push(body["instance"].as_str().unwrap().to_owned());
    }
    let a_count = answered.iter().filter(|name| *name == "a").count();
    assert_eq!(
        a_count, 4,
        "each instance answers every other request: {answered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_goes_to_the_next_instance_and_the_refuser_rests() {
    let _shared = test_support::shared().await;
    let down = closed_port();
    let (b, _b) = instance("b", 0).await;
    let order = format!("http://127.0.0.1:{down},{b}");
    // One gateway lets a refuser rest for longer than the test, one for a moment.
    let (long, _long) = start_gateway(&order, &b, Duration::from_secs(600)).await;
    let (short, _short) = start_gateway(&order, &b, Duration::from_millis(100)).await;
    let client = test_support::http_client();

    // Every request is answered, half of them after a refusal: nothing was sent to the
    // instance that is down, so even a POST goes on to the next one, with its body.
    for gateway in [long, short] {
        for n in 0..4 {
            let (status, body) = post(&client, gateway, n).await;
            assert_eq!(
                status, 200,
                "a refused connection is retried on the next instance"
            );
            assert_eq!(body["instance"], "b");
            assert_eq!(body["body"], json!({ "n": n }).to_string());
        }
    }

    // The instance comes back. The gateway that rests it for long goes on without it; the
    // other one sends it requests again once its rest is over.
    let (_, _a) = instance("a", down).await;
    for n in 0..6 {
        let (status, body) = post(&client, long, n).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["instance"], "b",
            "a resting instance is not tried first"
        );
    }
    eventually(
        Duration::from_secs(10),
        "the instance back from its rest to answer",
        || {
            let client = client.clone();
            async move {
                let (status, body) = post(&client, short, 0).await;
                Ok((status == 200 && body["instance"] == "a").then_some(()))
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_breaks_after_the_request_went_out_is_not_retried() {
    let _shared = test_support::shared().await;
    // Accepts a connection, reads what comes, and closes it without an answer: the request
    // went out, and the instance may have acted on it.
    let breaker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let breaker_address = breaker.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        while let Ok((mut connection, _)) = breaker.accept().await {
            let mut buffer = [0_u8; 4096];
            let _ = connection.read(&mut buffer).await;
        }
    });
    let (b, _b) = instance("b", 0).await;
    let (gateway, _gateway) = start_gateway(
        &format!("http://{breaker_address},{b}"),
        &b,
        Duration::from_secs(2),
    )
    .await;
    let client = test_support::http_client();
    let mut statuses = Vec::new();
    for n in 0..4 {
        let (status, body) = post(&client, gateway, n).await;
        if status == 200 {
            assert_eq!(body["instance"], "b");
        }
        statuses.push(status);
    }
    // In turn: the breaker's requests fail (503), and b answers only its own.
    assert_eq!(statuses, [503, 200, 503, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_shows_each_instance_and_a_component_is_ready_when_one_is() {
    let _shared = test_support::shared().await;
    let (a, _a) = instance("a", 0).await;
    let down = format!("http://127.0.0.1:{}", closed_port());
    let (gateway, _gateway) =
        start_gateway(&format!("{down},{a}"), &a, Duration::from_secs(2)).await;
    let client = test_support::http_client();
    let response = client
        .get(format!("http://{gateway}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let order = &body["components"]["order"];
    assert_eq!(order["up"], true, "{body}");
    let instances = order["detail"]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{body}");
    assert_eq!(instances[0]["url"], down.as_str());
    assert_eq!(instances[0]["up"], false);
    assert_eq!(instances[1]["up"], true);
    // One instance: its own readiness, as before.
    assert_eq!(
        body["components"]["stock"]["detail"]["status"], "ready",
        "{body}"
    );

    // A component none of whose instances answers makes the system not ready.
    let (gateway, _gateway) = start_gateway(&down, &a, Duration::from_secs(2)).await;
    let response = client
        .get(format!("http://{gateway}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
}
