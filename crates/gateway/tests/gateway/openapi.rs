//! The OpenAPI document: valid OpenAPI 3 (checked by `openapi-spec-validator`, which `./dev
//! test` installs), listing every route of SYSTEM.md §8 with its problem responses, and served
//! by the gateway with its interactive page, which a real headless Chromium renders (`./dev
//! test` installs Debian's chromium and chromium-driver).

use std::path::Path;

use serde_json::Value;
use test_support::browser::Browser;

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
        ("get", "/api/ops/overview"),
        ("get", "/api/ops/lag"),
        ("get", "/api/ops/orders/stuck"),
        ("get", "/api/ops/orders/{orderId}/journey"),
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
                    // The problem document, or one with extension members (409
                    // price-changed names the current price): RFC 9457's members either way.
                    let schema = &response["content"]["application/problem+json"]["schema"];
                    let name = schema["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                        .unwrap_or_else(|| panic!("{status}: {schema}"));
                    let properties = &doc["components"]["schemas"][name]["properties"];
                    for member in ["type", "title", "status"] {
                        assert!(
                            !properties[member].is_null(),
                            "{status}: {name} has no {member}"
                        );
                    }
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

#[test]
fn the_bearer_scheme_is_declared_with_the_roles_and_how_to_get_a_token() {
    let doc = document();
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
    let description = bearer["description"].as_str().unwrap();
    for needed in [
        "`customer`",
        "`viewer`",
        "`ops`",
        "./dev token customer",
        "./dev token viewer",
        "./dev token ops",
        "401",
        "403",
    ] {
        assert!(description.contains(needed), "{needed} in {description}");
    }
    // No document-wide requirement: each operation states its own, so public routes stay
    // public.
    assert!(doc["security"].is_null(), "{}", doc["security"]);
    for path in [
        "/health/live",
        "/health/ready",
        "/api/openapi.json",
        "/api/docs",
    ] {
        assert!(
            doc["paths"][path]["get"]["security"].is_null(),
            "{path} is public"
        );
    }
}

#[test]
fn the_reports_need_a_viewer_token() {
    let doc = document();
    for path in ["/api/reports/products", "/api/reports/orders"] {
        let operation = &doc["paths"][path]["get"];
        assert_eq!(
            operation["security"],
            serde_json::json!([{"bearer": []}]),
            "{path}"
        );
        let unauthorized = &operation["responses"]["401"];
        assert_eq!(
            unauthorized["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
        assert!(operation["responses"]["403"].is_object(), "{path}");
    }
}

/// Every requirement names a declared scheme, and an operation that needs a token says what
/// happens without one (401).
#[test]
fn every_operation_that_needs_a_token_documents_401() {
    let doc = document();
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(requirements) = operation["security"].as_array() else {
                continue;
            };
            let needs_token = requirements.iter().any(|r| {
                let r = r.as_object().unwrap();
                for name in r.keys() {
                    assert!(schemes.contains_key(name), "{method} {path}: scheme {name}");
                }
                !r.is_empty()
            });
            if needs_token {
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} needs a token but documents no 401"
                );
            }
        }
    }
}

/// What a service states survives the merge: an operation's own requirement as it is, a
/// document-wide one on each of that service's operations, and the system's `bearer` scheme
/// over a service's scheme of the same name.
#[test]
fn security_requirements_of_a_service_survive_the_merge() {
    use utoipa::OpenApi as _;

    #[utoipa::path(get, path = "/api/things", security(("bearer" = [])),
        responses((status = 200, description = "ok")))]
    #[allow(dead_code)]
    fn things() {}

    #[utoipa::path(get, path = "/api/things/public", security(()),
        responses((status = 200, description = "ok")))]
    #[allow(dead_code)]
    fn public_thing() {}

    #[utoipa::path(post, path = "/api/things", responses((status = 200, description = "ok")))]
    #[allow(dead_code)]
    fn add_thing() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(things, public_thing, add_thing),
        security(("other" = ["write"])),
        modifiers(&OwnScheme)
    )]
    struct ThingsDoc;

    struct OwnScheme;
    impl utoipa::Modify for OwnScheme {
        fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
            use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
            openapi
                .components
                .get_or_insert_with(Default::default)
                .add_security_scheme(
                    "bearer",
                    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-token"))),
                );
        }
    }

    let mut system = gateway::openapi::document();
    gateway::openapi::merge_service(&mut system, ThingsDoc::openapi());
    let doc: Value = serde_json::from_str(&system.to_json().unwrap()).unwrap();
    let things = &doc["paths"]["/api/things"];
    assert_eq!(
        things["get"]["security"],
        serde_json::json!([{"bearer": []}])
    );
    assert_eq!(
        things["post"]["security"],
        serde_json::json!([{"other": ["write"]}])
    );
    assert_eq!(
        doc["paths"]["/api/things/public"]["get"]["security"],
        serde_json::json!([{}])
    );
    assert!(doc["security"].is_null(), "{}", doc["security"]);
    assert!(doc["paths"]["/health/ready"]["get"]["security"].is_null());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["type"],
        "http"
    );
}

/// The gateway alone, on a free port, every component behind it unreachable: what it serves
/// here it serves itself.
struct Gateway {
    address: std::net::SocketAddr,
    trigger: platform::shutdown::Trigger,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    async fn start() -> Gateway {
        let settings = test_support::settings();
        let nobody = "http://127.0.0.1:9".to_owned();
        let upstreams = gateway::Upstreams {
            order: nobody.clone(),
            stock: nobody.clone(),
            payment: nobody.clone(),
            projections: nobody,
        };
        let mut http = settings.http.clone();
        http.host = "127.0.0.1".to_owned();
        let server = platform::http::Server::bind(&http, 0, gateway::routes(upstreams).unwrap())
            .await
            .unwrap();
        let address = server.address().unwrap();
        let (trigger, shutdown) = platform::shutdown::channel();
        let task = tokio::spawn(server.run(shutdown));
        Gateway {
            address,
            trigger,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn stop(self) {
        self.trigger.fire();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_gateway_serves_the_document_and_its_page() {
    let _shared = test_support::shared().await;
    let gateway = Gateway::start().await;
    let client = reqwest::Client::new();

    let response = client
        .get(gateway.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, document());
    assert_eq!(
        served["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let page = client.get(gateway.url("/api/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-security-policy"],
        gateway::openapi::DOCS_CONTENT_SECURITY_POLICY
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    // Every script and stylesheet the page names is the gateway's own, and it serves them
    // itself (every component is unreachable here), with the same policy.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|value| value.starts_with("/api/docs/"))
        .collect();
    assert_eq!(assets.len(), 3, "{assets:?}");
    for asset in &assets {
        assert!(asset.starts_with("/api/docs/"), "{asset}");
        let response = client.get(gateway.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let expected = if asset.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(
            content_type.starts_with(expected),
            "{asset}: {content_type}"
        );
        assert_eq!(
            response.headers()["content-security-policy"],
            gateway::openapi::DOCS_CONTENT_SECURITY_POLICY
        );
        assert!(response.bytes().await.unwrap().len() > 100, "{asset}");
    }
    assert!(html.contains("/api/openapi.json"));
    assert!(!html.contains("<script>"), "no inline script: {html}");

    // Any other file under /api/docs is none of the gateway's and none of a component's.
    for path in ["/api/docs/nothing.js", "/api/docs/a/b", "/api/docs/"] {
        let missing = client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(missing.status(), 404, "{path}");
        assert_eq!(
            missing.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }

    let metrics = client.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    // Other /api paths are still forwarded (here to an unreachable order service: 503).
    let forwarded = client
        .get(gateway.url("/api/orders/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 503);

    gateway.stop().await;
}

/// The page in a real headless Chromium, on a host without internet: it renders the operations
/// of the document (a blank page fails here), loads nothing from another host, breaks nothing
/// of its own policy, and a token given to Authorize goes with the requests it sends.
#[tokio::test]
async fn the_page_renders_the_document_in_a_browser_from_this_host_alone() {
    let _shared = test_support::shared().await;
    let gateway = Gateway::start().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&gateway.url("/api/docs")).await.unwrap();

    // Swagger UI rendered the document: its title, an operation by id and by path.
    browser
        .wait_for_element("#operations-orders-placeOrder")
        .await
        .unwrap();
    for text in ["Shop API", "placeOrder", "/api/orders", "Authorize"] {
        browser.wait_for_text(text).await.unwrap();
    }
    browser
        .screenshot(Path::new(env!("CARGO_TARGET_TMPDIR")).join("api-docs.png"))
        .await
        .unwrap();

    // Everything came from the gateway: its scripts, its stylesheet and the document.
    let loaded = browser.loaded().await.unwrap();
    for resource in &loaded {
        assert!(
            resource.protocol == "data:"
                || (resource.protocol == "http:" && resource.hostname == "127.0.0.1"),
            "loaded from elsewhere: {resource:?}"
        );
    }
    for needed in [
        "/api/docs/swagger-ui-",
        "/api/docs/docs.js",
        "/api/openapi.json",
    ] {
        assert!(
            loaded.iter().any(|resource| resource.url.contains(needed)),
            "{needed} not loaded: {loaded:?}"
        );
    }
    // No load failed, no script error, nothing the Content-Security-Policy refused.
    let errors: Vec<_> = browser
        .console()
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.level == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // The `bearer` scheme's Authorize: the token goes with "Try it out" of an operation that
    // needs one (here answered 503: nothing stands behind this gateway).
    let token = test_support::viewer();
    let token = token.strip_prefix("Bearer ").unwrap();
    browser.click(".auth-wrapper .authorize").await.unwrap();
    browser.fill(".modal-ux input", token).await.unwrap();
    browser
        .click(".modal-ux .auth-btn-wrapper .authorize")
        .await
        .unwrap();
    browser.wait_for_text("Logout").await.unwrap();
    browser.click_text("Close").await.unwrap();
    browser
        .click("#operations-reports-ordersReport .opblock-summary-control")
        .await
        .unwrap();
    browser.click_text("Try it out").await.unwrap();
    browser.click_text("Execute").await.unwrap();
    let curl = browser
        .wait_for_element(".curl-command")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        curl.contains(&format!("Authorization: Bearer {token}")),
        "{curl}"
    );
    let status = browser
        .wait_for_element(".live-responses-table .response .response-col_status")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.starts_with("503"), "{status}");
    let errors: Vec<_> = browser
        .console()
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.message.contains("Content Security Policy"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    browser.close().await.unwrap();
    gateway.stop().await;
}
