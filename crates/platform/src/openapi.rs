//! OpenAPI schemas shared by every component's document: the RFC 9457 problem document of
//! [`crate::http::Problem`] and the readiness body of [`crate::health`].

use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document: every error of the API (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    as = Problem,
    example = json!({
        "type": "urn:shop:problem:order-not-found",
        "title": "No such order",
        "status": 404
    })
)]
pub struct ProblemDoc {
    /// A stable URI naming the kind of problem, `urn:shop:problem:{slug}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A stable, human-readable summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence; never an internal message.
    pub detail: Option<String>,
    /// Per-field violations (422 only).
    pub errors: Option<Vec<FieldErrorDoc>>,
}

/// One violated field of a 422.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDoc {
    /// Where in the request, e.g. `items[0].quantity`.
    pub field: String,
    pub message: String,
}

/// The state of one dependency in a readiness answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Dependency)]
pub struct DependencyDoc {
    /// `postgres`, `kafka`, `redis`, `mongodb`.
    pub name: String,
    pub up: bool,
    pub error: Option<String>,
}

/// A component's readiness: 200 when every dependency is up, else 503.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Readiness)]
pub struct ReadinessDoc {
    /// `ready` or `unavailable`.
    pub status: String,
    pub dependencies: Vec<DependencyDoc>,
}

/// The 401 of every operation that needs a bearer token, declared once: list it in an
/// operation's `responses(…, platform::openapi::Unauthorized, …)`.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "No valid bearer token (`WWW-Authenticate` says why)",
    content_type = "application/problem+json"
)]
pub struct Unauthorized(#[allow(dead_code)] ProblemDoc);

/// The 422 of a paginated list whose only rule beyond its cursor is the page size
/// ([`crate::pagination`]), declared once.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 422,
    description = "`limit` out of 1..=1000",
    content_type = "application/problem+json"
)]
pub struct InvalidLimit(#[allow(dead_code)] ProblemDoc);

/// Declares the `bearer` scheme (a JWT) that operations' `security(("bearer" = []))` names, so a
/// component's document stands on its own: `modifiers(&platform::openapi::BearerScheme)`. The
/// gateway's merged document keeps one copy, with its own description.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}
