//! Which component answers each path of the API, and what reaches it: the gateway in this
//! process, in front of four upstreams on the components' own shared server
//! (`platform::http::Server`) that echo what they were sent and who they are. The
//! `Authorization` header reaches the component unchanged (each component verifies the token
//! itself), and a component's 401 with its `WWW-Authenticate` comes back unchanged.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use platform::shutdown::Trigger;
use serde_json::{Value, json};

/// Answers with its name and the request it saw; a request without `Authorization` gets the
/// 401 a component gives.
async fn echo(State(name): State<&'static str>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(authorization) = parts.headers.get(header::AUTHORIZATION) else {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, r#"Bearer realm="shop""#),
                (header::CONTENT_TYPE, "application/problem+json"),
            ],
            r#"{"type":"about:blank","title":"A valid bearer token is required","status":401}"#,
        )
            .into_response();
    };
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    axum::Json(json!({
        "component": name,
        "method": parts.method.as_str(),
        "target": parts.uri.path_and_query().unwrap().as_str(),
        "authorization": authorization.as_bytes(),
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

struct Setup {
    gateway: SocketAddr,
    client: reqwest::Client,
    _trigger: Trigger,
}

impl Setup {
    async fn start() -> Setup {
        let defaults = test_support::settings().http;
        let (trigger, shutdown) = platform::shutdown::channel();
        let mut bases = Vec::new();
        for name in ["order", "stock", "payment", "projections"] {
            let routes = axum::Router::new()
                .route("/api/{*rest}", any(echo))
                .with_state(name);
            let server = platform::http::Server::bind(&defaults, 0, routes)
                .await
                .unwrap();
            bases.push(format!("http://{}", server.address().unwrap()));
            tokio::spawn(server.run(shutdown.clone()));
        }
        let [order, stock, payment, projections] = <[String; 4]>::try_from(bases).unwrap();
        let upstreams = gateway::Upstreams {
            order,
            stock,
            payment,
            projections,
        };
        let gateway =
            platform::http::Server::bind(&defaults, 0, gateway::routes(upstreams).unwrap())
                .await
                .unwrap();
        let address = gateway.address().unwrap();
        tokio::spawn(gateway.run(shutdown));
        Setup {
            gateway: address,
            client: test_support::http_client(),
            _trigger: trigger,
        }
    }

    async fn send(&self, method: &str, target: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .client
            .request(
                method.parse().unwrap(),
                format!("http://{}{target}", self.gateway),
            )
            .header("authorization", test_support::operator());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_goes_to_the_component_that_owns_it() {
    let _shared = test_support::shared().await;
    let setup = Setup::start().await;
    let routes = [
        ("POST", "/api/orders", "order"),
        ("GET", "/api/orders", "order"),
        (
            "GET",
            "/api/orders?customerId=6f1c&status=pending&limit=5",
            "order",
        ),
        (
            "GET",
            "/api/orders/0190a5a8-7d8e-7000-8000-000000000001",
            "order",
        ),
        ("DELETE", "/api/orders/x/items/3?quantity=2", "order"),
        ("GET", "/api/stock", "stock"),
        ("GET", "/api/products", "stock"),
        ("GET", "/api/products?limit=2&after=4", "stock"),
        ("PUT", "/api/products/7", "stock"),
        ("POST", "/api/products/7/restock", "stock"),
        ("GET", "/api/ops/audit", "stock"),
        ("GET", "/api/ops/audit?limit=10&after=abc", "stock"),
        ("GET", "/api/payments", "payment"),
        ("GET", "/api/reports/products", "projections"),
        ("GET", "/api/reports/orders", "projections"),
        ("GET", "/api/ops/orders/stuck?olderThan=5", "order"),
        ("GET", "/api/ops/read-models", "projections"),
        ("POST", "/api/ops/read-models/rebuild", "projections"),
    ];
    for (method, target, owner) in routes {
        let body = (method == "PUT" || method == "POST").then(|| json!({"quantity": 5}));
        let response = setup.send(method, target, body.clone()).await;
        assert_eq!(response.status(), 200, "{method} {target}");
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["component"], owner, "{method} {target}");
        assert_eq!(seen["method"], method, "{method} {target}");
        assert_eq!(
            seen["target"], target,
            "{method} {target}: path and query unchanged"
        );
        if let Some(body) = body {
            assert_eq!(seen["body"], body.to_string(), "{method} {target}");
        }
    }

    // A prefix is a whole segment, and nothing outside the components' prefixes is forwarded.
    for target in [
        "/api/productsx",
        "/api/opsaudit",
        "/api/audit",
        "/api/ops/inbox",
        "/api/ops/elsewhere",
        "/api/nothing",
    ] {
        let response = setup.send("GET", target, None).await;
        assert_eq!(response.status(), 404, "{target}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_reaches_the_component_unchanged_and_its_401_comes_back() {
    let _shared = test_support::shared().await;
    let setup = Setup::start().await;
    let (_, customer) = test_support::customer();
    // A real token, an odd scheme's spelling and bytes a proxy might be tempted to normalise.
    let values = [
        customer.as_str(),
        "bearer   a.b.c",
        "Basic dXNlcjpwYXNz",
        "Bearer x\t y",
    ];
    for target in [
        "/api/orders",
        "/api/products/1",
        "/api/ops/audit",
        "/api/payments",
        "/api/reports/orders",
    ] {
        for value in values {
            let response = setup
                .client
                .get(format!("http://{}{target}", setup.gateway))
                .header("authorization", value)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{target}");
            let seen: Value = response.json().await.unwrap();
            let bytes: Vec<u8> = serde_json::from_value(seen["authorization"].clone()).unwrap();
            assert_eq!(bytes, value.as_bytes(), "{target}: Authorization changed");
        }

        let refused = setup
            .client
            .get(format!("http://{}{target}", setup.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{target}");
        assert_eq!(
            refused.headers()["www-authenticate"],
            r#"Bearer realm="shop""#
        );
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
    }
}
