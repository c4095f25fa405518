//! The OpenAPI document: valid OpenAPI 3 (checked by `openapi-spec-validator`, which `./dev
//! test` installs), listing every route of SYSTEM.md §8 with its problem responses, and served
//! by the gateway with its interactive page.
#![allow(clippy::unwrap_used)]

use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(&gateway::openapi::document().to_json().unwrap()).unwrap()
}

#[test]
fn the_document_is_valid_openapi_3() {
    let path = std::env::temp_dir().join(format!("shop-openapi-{}.json", std::process::id()));
    std::fs::write(
        &path,
        gateway::openapi::document().to_pretty_json().unwrap(),
    )
    .unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs (./dev test installs openapi-spec-validator)");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(document()["openapi"].as_str().unwrap().starts_with("3."));
}

#[test]
fn every_route_of_the_api_is_described() {
    let doc = document();
    let routes = [
        ("post", "/api/orders"),
        ("get", "/api/orders/{orderId}"),
        ("get", "/api/orders/{orderId}/events"),
        ("post", "/api/orders/{orderId}/items"),
        ("delete", "/api/orders/{orderId}/items/{productId}"),
        ("get", "/api/stock"),
        ("get", "/api/payments"),
        ("get", "/api/reports/products"),
        ("get", "/api/reports/orders"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/metrics"),
        ("get", "/api/openapi.json"),
        ("get", "/api/docs"),
    ];
    for (method, path) in routes {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not described");
        assert!(
            operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|status| status.starts_with('2')),
            "{method} {path} has no success response"
        );
    }
    let remove = &doc["paths"]["/api/orders/{orderId}/items/{productId}"]["delete"];
    assert!(
        remove["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "quantity" && p["in"] == "query")
    );
}

#[test]
fn errors_are_problem_documents_with_the_statuses_of_the_api() {
    let doc = document();
    let mut statuses = std::collections::BTreeSet::new();
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, operation) in item.as_object().unwrap() {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for (status, response) in responses {
                if status.starts_with('4')
                    || (status.starts_with('5')
                        && !response["content"]["application/problem+json"].is_null())
                {
                    let schema = &response["content"]["application/problem+json"]["schema"];
                    assert_eq!(schema["$ref"], "#/components/schemas/Problem", "{status}");
                    statuses.insert(status.clone());
                }
            }
        }
    }
    for status in ["400", "404", "409", "413", "415", "422", "503"] {
        assert!(
            statuses.contains(status),
            "no {status} problem in {statuses:?}"
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "errors"] {
        assert!(problem[field].is_object(), "Problem.{field}");
    }
    let order = &doc["components"]["schemas"]["Order"]["properties"];
    assert_eq!(
        order["total"]["type"], "string",
        "money is a decimal string"
    );
}

#[tokio::test]
async fn the_gateway_serves_the_document_and_its_page() {
    let settings = test_support::settings();
    let mut upstreams = gateway::Upstreams::from_settings(&settings);
    upstreams.order = "http://127.0.0.1:9".to_owned();
    let mut http = settings.http.clone();
    http.host = "127.0.0.1".to_owned();
    let server = platform::http::Server::bind(&http, 0, gateway::routes(upstreams).unwrap())
        .await
        .unwrap();
    let address = server.address().unwrap();
    let (trigger, shutdown) = platform::shutdown::channel();
    let task = tokio::spawn(server.run(shutdown));
    let client = reqwest::Client::new();

    let response = client
        .get(format!("http://{address}/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, document());

    let page = client
        .get(format!("http://{address}/api/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/api/openapi.json"));

    let metrics = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);

    // Other /api paths are still forwarded (here to an unreachable order service: 503).
    let forwarded = client
        .get(format!("http://{address}/api/orders/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 503);

    trigger.fire();
    task.await.unwrap().unwrap();
}
