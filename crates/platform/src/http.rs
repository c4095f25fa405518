//! HTTP plumbing every component shares: RFC 9457 problem documents and a JSON extractor whose
//! rejections are problems too, so no error ever leaves as plain text or a stack trace. The
//! server itself, and the bounds it puts on every request, is [`crate::server`].

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An RFC 9457 problem document. `kind` is a stable slug; the `type` URI is built from it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: Option<String>,
    /// Per-field violations of a 422, as `{field, message}`.
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The `type` URI of a problem slug.
pub fn problem_type(kind: &str) -> String {
    format!("urn:shop:problem:{kind}")
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            status,
            kind,
            title,
            detail: None,
            errors: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "The request is malformed",
        )
        .detail(detail)
    }

    pub fn not_found(title: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", title)
    }

    /// A 500 that says nothing about the cause; the cause is logged once by the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "A dependency is unavailable; try again",
        )
        .detail(detail)
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: problem_type(self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail.as_deref(),
            errors: &self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            bytes,
        )
            .into_response()
    }
}

/// `axum::Json` whose rejections are problems: malformed JSON and wrong types are 400 (axum
/// would say 422 for types, which this API keeps for semantic violations), a missing JSON
/// content type is 415 and a body over the limit is 413.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => Problem::bad_request(source_text(&e)),
        JsonRejection::JsonSyntaxError(e) => Problem::bad_request(source_text(&e)),
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "The body must be JSON",
        )
        .detail("send Content-Type: application/json"),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
        }
        other => Problem::bad_request(other.body_text()),
    }
}

pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "The request body is too large",
    )
}

/// serde's own words ("invalid type: string \"x\", expected u32 at line 1 column 9"), without
/// axum's prefix.
fn source_text(error: &dyn std::error::Error) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// `axum::extract::Query` with a problem as rejection.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(Problem::bad_request(source_text(&e)))
            }
            Err(other) => Err(Problem::bad_request(other.body_text())),
        }
    }
}

/// The fallback of every router: unknown routes are problems too.
pub async fn no_route() -> Problem {
    Problem::not_found("No such resource")
}

pub use crate::server::Server;
