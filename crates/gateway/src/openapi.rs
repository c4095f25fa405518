//! The system's OpenAPI 3 document, `GET /api/openapi.json`, and an interactive page over it,
//! `GET /api/docs`.
//!
//! The page is Swagger UI, vendored in `assets/swagger-ui` at a pinned version and embedded in
//! the binary: the gateway serves its script and stylesheet under `/api/docs/`, so the page
//! works on a host without internet and runs no code fetched from elsewhere at run time
//! (docs/decisions/0016-api-docs-page-vendored-swagger-ui.md says why Swagger UI and why
//! vendored). Its Content-Security-Policy allows only this origin, and no inline script or
//! style. Swagger UI's Authorize button comes from the document's `bearer` scheme: a token given
//! there goes with every "Try it out" request of an operation that requires it.
//!
//! Each service describes its own routes from its code (`order::http::openapi()`, …); this
//! module merges them and adds what the gateway answers itself (health, metrics, this document)
//! and the reports of the projections, which are described here by hand.
//!
//! The security scheme, `bearer`, is declared here, once for the system: every component
//! verifies the same tokens (`platform::auth`). A service states per operation which
//! operations need it (`security(("bearer" = []))`); those requirements are kept as they are.
//! A requirement a service document states for all its operations at once is copied onto each
//! of its operations that has none before the merge, so it never applies to the operations of
//! another component (the public health routes, say).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use platform::http::Problem;
use serde::Serialize;
use utoipa::OpenApi as _;
use utoipa::ToSchema;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi};

/// The name operations use to require a bearer token: `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

const BEARER_DESCRIPTION: &str = "A JWT in `Authorization: Bearer <token>`, verified by every component: \
signature, issuer, audience and expiry. Its `sub` is the customer id (a UUID) and its roles say what it may do: \
`customer` (the caller's own orders and payments), `viewer` (reads everything an operator reads: every order \
and payment, the stock, the reports, the audit trail) and `ops` (a viewer that may also change the catalog and \
restock). A missing or invalid token is 401 with `WWW-Authenticate: Bearer`; a role that may not is 403. \
Locally, `./dev token customer [UUID]`, `./dev token viewer` and `./dev token ops` print a token valid for \
an hour (signed with the key pair `./dev` keeps in `.local/auth/`); in production the tokens come from the \
OpenID Connect issuer the components are configured with.";

/// The whole API of the system, as served at `/api/openapi.json`.
pub fn document() -> OpenApi {
    let mut doc = GatewayDoc::openapi();
    doc.components
        .get_or_insert_with(Components::default)
        .add_security_scheme(BEARER, bearer_scheme());
    merge_service(&mut doc, order::http::openapi());
    merge_service(&mut doc, stock::http::openapi());
    merge_service(&mut doc, payment::http::openapi());
    merge_service(&mut doc, console::Console::openapi());
    merge_service(&mut doc, projections::ops::openapi());
    doc
}

fn bearer_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(BEARER_DESCRIPTION))
            .build(),
    )
}

/// Merges a service's document into the system's. Its operations keep their own security
/// requirements; a document-wide one becomes each of its operations' that states none, and the
/// system's own scheme wins over a service's of the same name.
pub fn merge_service(system: &mut OpenApi, mut service: OpenApi) {
    if let Some(requirements) = service.security.take() {
        for item in service.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                operation
                    .security
                    .get_or_insert_with(|| requirements.clone());
            }
        }
    }
    // A tag two services both use (`operations`) is declared once: the first description wins.
    if let (Some(tags), Some(theirs)) = (system.tags.as_ref(), service.tags.as_mut()) {
        theirs.retain(|tag| !tags.iter().any(|known| known.name == tag.name));
    }
    system.merge(service);
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

pub async fn openapi_json() -> Response {
    match document().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serialising the OpenAPI document failed");
            Problem::internal().into_response()
        }
    }
}

/// The version of Swagger UI in `assets/swagger-ui` (see its README). It is part of the paths of
/// its files, so a browser that cached one version's files for a year never mixes them with
/// another's.
macro_rules! swagger_ui_version {
    () => {
        "5.36.0"
    };
}

/// The API page: Swagger UI over `/api/openapi.json`. Every script and style it loads is a file
/// of [`DOCS_ASSETS`]; the icon is empty inline, so the browser asks for no `/favicon.ico`.
const DOCS_PAGE: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Shop API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/api/docs/swagger-ui-"#,
    swagger_ui_version!(),
    r#".css">
</head>
<body>
  <div id="swagger-ui">
    <noscript>The page needs JavaScript; the OpenAPI document is at <a href="/api/openapi.json">/api/openapi.json</a>.</noscript>
  </div>
  <script src="/api/docs/swagger-ui-"#,
    swagger_ui_version!(),
    r#".js"></script>
  <script src="/api/docs/docs.js"></script>
</body>
</html>
"#
);

/// A file the page loads, embedded in the binary.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    /// Whether the name changes with the content (the vendored files carry their version).
    versioned: bool,
    body: &'static [u8],
}

const DOCS_ASSETS: [Asset; 3] = [
    Asset {
        name: concat!("swagger-ui-", swagger_ui_version!(), ".js"),
        content_type: "text/javascript; charset=utf-8",
        versioned: true,
        body: include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        name: concat!("swagger-ui-", swagger_ui_version!(), ".css"),
        content_type: "text/css; charset=utf-8",
        versioned: true,
        body: include_bytes!("../assets/swagger-ui/swagger-ui.css"),
    },
    Asset {
        name: "docs.js",
        content_type: "text/javascript; charset=utf-8",
        versioned: false,
        body: include_bytes!("../assets/docs/docs.js"),
    },
];

/// The page's policy: scripts, styles and requests of this origin only, no inline script or
/// style, images of this origin or inline `data:` (Swagger UI's icons are `data:` SVGs in its
/// stylesheet), nothing framing the page, no form posting elsewhere.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

fn docs_headers(
    content_type: &'static str,
    cache: &'static str,
) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (
            header::CONTENT_SECURITY_POLICY,
            DOCS_CONTENT_SECURITY_POLICY,
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// `GET /api/docs`: the page, revalidated on every visit (it names the current assets).
pub async fn docs() -> Response {
    (
        docs_headers("text/html; charset=utf-8", "no-cache"),
        DOCS_PAGE,
    )
        .into_response()
}

/// `GET /api/docs/{file}`: a script or stylesheet of the page, from the binary. A versioned
/// file never changes under its name, so browsers keep it; `docs.js` may change with a build.
pub async fn docs_asset(Path(file): Path<String>) -> Response {
    let Some(asset) = DOCS_ASSETS.iter().find(|asset| asset.name == file) else {
        return Problem::not_found("No such file of the API page").into_response();
    };
    let cache = if asset.versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (docs_headers(asset.content_type, cache), asset.body).into_response()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Shop API",
        description = "An event-sourced shop: orders, stock and payments settled by a choreography saga over Kafka. \
Every error is an RFC 9457 problem document (`application/problem+json`). Money travels as a decimal string with two places. \
Every request is bounded, on any route: a body over 64 KiB is 413 (`payload-too-large`), a body that pauses too long 408, \
an answer not started within the request timeout 504 (`timeout`), a request past the concurrency limit 503 (`overloaded`) with `Retry-After`, \
a method other than GET, POST, PUT, DELETE, PATCH, HEAD or OPTIONS 405 (`method-not-allowed`), \
and a path with dot segments or encoded slashes 400. \
Who may call an operation is in its `security`: the `bearer` scheme says how to get a token and what each role may do; an operation without one is public.",
        version = "1",
    ),
    servers((url = "/", description = "The gateway (http://127.0.0.1:8080 locally)")),
    paths(
        products_report,
        orders_report,
        live,
        ready,
        metrics,
        openapi_document,
        docs_page,
    ),
    components(schemas(
        ProductReport,
        PriceQuantity,
        OrdersReport,
        SystemReadiness,
        ComponentReadiness,
        platform::openapi::ProblemDoc,
        platform::openapi::FieldErrorDoc,
        platform::openapi::ReadinessDoc,
        platform::openapi::DependencyDoc,
    )),
    tags(
        (name = "reports", description = "Read models fed by the projections"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct GatewayDoc;

/// Quantity ordered at each unit price of one product, over completed orders.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"productId": 1, "prices": [{"unitPrice": "12.50", "quantity": 3}]}))]
pub struct ProductReport {
    pub product_id: i64,
    pub prices: Vec<PriceQuantity>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceQuantity {
    /// A decimal string with two places.
    #[schema(example = "12.50")]
    pub unit_price: String,
    pub quantity: i64,
}

/// How many orders completed and failed, and their sum.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"total": 10, "completed": 8, "failed": 2}))]
pub struct OrdersReport {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
}

/// The gateway's readiness: every component's own, side by side.
#[derive(Serialize, ToSchema)]
pub struct SystemReadiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// By component: `order`, `stock`, `payment`, `projections`.
    pub components: std::collections::BTreeMap<String, ComponentReadiness>,
}

#[derive(Serialize, ToSchema)]
pub struct ComponentReadiness {
    /// Whether the component (one of its instances, if it has several) is ready.
    pub up: bool,
    /// The component's `/health/ready` body, or the error reaching it; for a component of
    /// several instances, `{instances: [{url, up, detail}]}`, each instance's.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

const PROBLEM: &str = "application/problem+json";

#[utoipa::path(
    get,
    path = "/api/reports/products",
    operation_id = "productsReport",
    tag = "reports",
    summary = "Quantity ordered per product and unit price, over completed orders",
    description = "For viewers and operators: it sums every customer's orders.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One entry per product", body = Vec<ProductReport>),
        (status = 401, description = "No valid bearer token", body = platform::openapi::ProblemDoc, content_type = PROBLEM,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"shop\"`, with `error=\"invalid_token\"` when a token was sent"))),
        (status = 403, description = "The token has neither the viewer nor the ops role", body = platform::openapi::ProblemDoc, content_type = PROBLEM),
        (status = 503, description = "The read model is unavailable", body = platform::openapi::ProblemDoc, content_type = PROBLEM),
    )
)]
#[allow(dead_code)]
fn products_report() {}

#[utoipa::path(
    get,
    path = "/api/reports/orders",
    operation_id = "ordersReport",
    tag = "reports",
    summary = "Orders completed and failed",
    description = "For viewers and operators: it counts every customer's orders.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The counts", body = OrdersReport),
        (status = 401, description = "No valid bearer token", body = platform::openapi::ProblemDoc, content_type = PROBLEM,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"shop\"`, with `error=\"invalid_token\"` when a token was sent"))),
        (status = 403, description = "The token has neither the viewer nor the ops role", body = platform::openapi::ProblemDoc, content_type = PROBLEM),
        (status = 503, description = "The read model is unavailable", body = platform::openapi::ProblemDoc, content_type = PROBLEM),
    )
)]
#[allow(dead_code)]
fn orders_report() {}

#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "live",
    tag = "operations",
    summary = "Liveness: the process answers",
    description = "Every component answers it on its own port too.",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain", example = "live"))
)]
#[allow(dead_code)]
fn live() {}

#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tag = "operations",
    summary = "Readiness of the whole system",
    description = "Each component's `/health/ready` (PostgreSQL and Kafka for the services; Redis and MongoDB for the projections), side by side. \
A component answers its own `/health/ready` with a `Readiness` body.",
    responses(
        (status = 200, description = "Every component is ready", body = SystemReadiness),
        (status = 503, description = "A component or one of its dependencies is down", body = SystemReadiness),
    )
)]
#[allow(dead_code)]
fn ready() {}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics of the component answering",
    description = "Text exposition format 0.0.4. Every component serves its own on its own port; see docs/operations.md.",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"))
)]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapiDocument",
    tag = "operations",
    summary = "This OpenAPI 3 document",
    responses((status = 200, description = "The document", body = Object, content_type = "application/json"))
)]
#[allow(dead_code)]
fn openapi_document() {}

#[utoipa::path(
    get,
    path = "/api/docs",
    operation_id = "docsPage",
    tag = "operations",
    summary = "An interactive page over this document",
    description = "Swagger UI, served with its script and stylesheet by the gateway itself (under `/api/docs/`, \
embedded in its binary at a pinned version): the page loads nothing from another host. Its Content-Security-Policy allows this origin only. \
Authorize takes a bearer token (the `bearer` scheme) for the operations that require one.",
    responses((status = 200, description = "An HTML page", body = String, content_type = "text/html"))
)]
#[allow(dead_code)]
fn docs_page() {}
