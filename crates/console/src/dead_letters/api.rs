//! `/api/ops/dead-letters…`: the dead letters in the operator API. Who may call what (SYSTEM.md
//! §8, §10):
//!
//! | route | who |
//! |---|---|
//! | `GET /api/ops/dead-letters` ([`list`]) | viewer |
//! | `GET /api/ops/dead-letters/{letterId}` ([`one`]) | viewer |
//! | `POST /api/ops/dead-letters/redrive` ([`redrive`]) | ops |
//! | `POST /api/ops/dead-letters/discard` ([`discard`]) | ops |
//! | `GET /api/ops/dead-letters/audit` ([`audit`]) | viewer |
//!
//! The role is checked by the extractors [`Viewer`] and [`Operator`], before the query or the
//! body is read: a caller without the role gets 401 or 403 whatever else the request says.
//! Malformed requests are 400, requests that break a rule 422, and [`Refusal`] is the one place
//! where [`Error`] becomes a response.

use std::borrow::Cow;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use platform::auth::{AuthError, Identity, Role};
use platform::http::{FieldError, Json, Problem, Query};
use platform::openapi::BearerScheme;
use platform::pagination::{IdPageQuery, PageQuery};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, OneOfBuilder, Ref, Schema, Type,
};
use utoipa::{PartialSchema as _, ToSchema};

use super::{
    Action, DeadLetters, Error, Filter, Letter, LetterHeader, LetterId, Outcome, Payload,
    Resolution, ResolutionKind, Selection, State as LetterState,
};

/// Text filters longer than this are refused: no consumer name, message type or reason
/// fragment is.
const MAX_FILTER_CHARS: usize = 200;

/// The response header of a listing whose window left older letters unread.
pub const UNREAD_HEADER: &str = "dead-letters-unread";

/// `/api/ops/dead-letters…`; the caller adds the `Extension(Verifier)` layer.
pub fn api(dead_letters: DeadLetters) -> Router {
    Router::new()
        .route("/api/ops/dead-letters", get(list))
        .route("/api/ops/dead-letters/audit", get(audit))
        .route("/api/ops/dead-letters/redrive", post(redrive))
        .route("/api/ops/dead-letters/discard", post(discard))
        .route("/api/ops/dead-letters/{letter_id}", get(one))
        .with_state(dead_letters)
}

/// A caller with the viewer role (or ops, which implies it). Reads need no name.
pub struct Viewer;

/// A caller with the ops role.
pub struct Operator(pub Identity);

async fn identity_with<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    role: Role,
) -> Result<Identity, Response> {
    let identity = Identity::from_request_parts(parts, state).await?;
    identity
        .require(role)
        .map_err(IntoResponse::into_response)?;
    Ok(identity)
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        identity_with(parts, state, Role::Viewer)
            .await
            .map(|_| Viewer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        identity_with(parts, state, Role::Ops).await.map(Operator)
    }
}

/// Why a request was not served.
pub struct Refusal(Response);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Self(problem.into_response())
    }
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        Self(error.into_response())
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        let problem = match &error {
            Error::NotFound(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "dead-letter-not-found",
                "No such dead letter",
            )
            .detail(error.to_string()),
            // The letter's own state refuses it, not the request: 409.
            Error::NotRedrivable { .. } => Problem::new(
                StatusCode::CONFLICT,
                "not-redrivable",
                "The dead letter cannot be redriven",
            )
            .detail(format!("{error}; discard it instead")),
            Error::Kafka(_) | Error::Timeout(_) => {
                tracing::warn!(error = %chain(&error), "dead letters: Kafka failed");
                Problem::unavailable("Kafka is unavailable")
            }
            Error::Database(_) => {
                tracing::warn!(error = %chain(&error), "dead letters: the database failed");
                Problem::unavailable("the console's database is unavailable")
            }
            Error::Interrupted(_) => {
                tracing::error!(error = %chain(&error), "dead letters: an action failed");
                Problem::internal()
            }
        };
        Self(problem.into_response())
    }
}

/// The error and its causes, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A page of dead letters: `?limit=&after=`, the cursor being a letter id.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LetterPageQuery {
    /// Items per page, 1 to 1000; 100 when absent.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
    /// Where the page starts: the cursor of the previous page's `Link: rel="next"` (the id of
    /// the last letter it listed).
    #[param(
        pattern = r"^(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,17})$",
        example = "0-12"
    )]
    pub after: Option<String>,
}

/// The filters of the listing. Empty text filters count as absent.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the letters this reader parked (`dead-letter-consumer`, exactly): `order`,
    /// `stock`, `payment`, `projections-redis` or `projections-mongodb`.
    #[param(max_length = 200)]
    pub consumer: Option<String>,
    /// Only the letters of this message type (the `message-type` header, exactly), e.g.
    /// `StockReserved`.
    #[serde(rename = "type")]
    #[param(max_length = 200)]
    pub message_type: Option<String>,
    /// Only the letters whose reason contains this text, ignoring case.
    #[param(max_length = 200)]
    pub reason: Option<String>,
    /// Only the letters parked at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only the letters parked before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// `waiting` (the default), `redriven`, `discarded` or `all`.
    #[param(inline)]
    pub state: Option<LetterState>,
}

/// Every letter a bulk action selects: the waiting letters matching all of these. An empty
/// object selects every waiting letter.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DeadLetterFilter)]
pub struct SelectionFilter {
    /// The reader that parked it (`dead-letter-consumer`), exactly.
    #[schema(max_length = 200)]
    pub consumer: Option<String>,
    /// The `message-type` header, exactly.
    #[serde(rename = "type")]
    #[schema(max_length = 200)]
    pub message_type: Option<String>,
    /// A substring of the reason, ignoring case.
    #[schema(max_length = 200)]
    pub reason: Option<String>,
    /// Parked at or after.
    pub since: Option<DateTime<Utc>>,
    /// Parked before.
    pub until: Option<DateTime<Utc>>,
}

/// What to redrive or discard: one letter (`letterId`) or every waiting letter a filter
/// matches (`filter`), exactly one of the two; and whether only to count (`dryRun`, required).
///
/// Read as one object, so that serde names the field that is missing or unknown; the document
/// states the two shapes it may take ([`ActionRequest::schema`]).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    pub letter_id: Option<String>,
    pub filter: Option<SelectionFilter>,
    pub dry_run: bool,
}

impl utoipa::PartialSchema for ActionRequest {
    /// `oneOf` the two shapes, each closed (`additionalProperties: false`), so that a document
    /// reader knows a body with both `letterId` and `filter`, or neither, is refused.
    fn schema() -> RefOr<Schema> {
        let dry_run = || {
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(
                    "`true` only counts what the action would select; `false` acts. No default: a client must say which.",
                ))
        };
        let one = ObjectBuilder::new()
            .title(Some("One letter"))
            .property(
                "letterId",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(super::LETTER_ID_PATTERN))
                    .description(Some("The letter, `{partition}-{offset}`."))
                    .examples(["0-12"]),
            )
            .required("letterId")
            .property("dryRun", dry_run())
            .required("dryRun")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let matching = ObjectBuilder::new()
            .title(Some("Every waiting letter a filter matches"))
            .property("filter", Ref::from_schema_name(SelectionFilter::name()))
            .required("filter")
            .property("dryRun", dry_run())
            .required("dryRun")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new()
            .item(one)
            .item(matching)
            .description(Some(
                "One letter (`letterId`) or every waiting letter a filter matches (`filter`), and whether only to count (`dryRun`).",
            ))
            .examples([json!({"filter": {"consumer": "stock", "type": "OrderPlaced"}, "dryRun": true})])
            .into()
    }
}

impl ToSchema for ActionRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DeadLetterAction")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            SelectionFilter::name().into_owned(),
            SelectionFilter::schema(),
        ));
    }
}

/// A letter in a listing: everything but its headers and payload (`GET
/// /api/ops/dead-letters/{letterId}` has them).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetterSummary, example = json!({
    "id": "0-12", "parkedAt": "2026-12-07T03:30:00.123Z", "consumer": "stock",
    "reason": "malformed OrderPlaced payload: expected value at line 1 column 1",
    "origin": "shop.orders/1/4711", "messageType": "OrderPlaced",
    "messageId": "0192f0c1-7d2e-7b3a-9c4d-5e6f7a8b9c0d",
    "key": "0192f0c1-7d2e-7b3a-9c4d-000000000001", "resolution": null
}))]
pub struct LetterSummary {
    #[schema(value_type = String, pattern = r"^(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,17})$", example = "0-12")]
    pub id: LetterId,
    pub parked_at: DateTime<Utc>,
    pub consumer: String,
    pub reason: String,
    pub origin: String,
    pub message_type: Option<String>,
    pub message_id: Option<String>,
    pub key: Option<String>,
    pub resolution: Option<Resolution>,
}

impl From<Letter> for LetterSummary {
    fn from(letter: Letter) -> Self {
        Self {
            id: letter.id,
            parked_at: letter.parked_at,
            consumer: letter.consumer,
            reason: letter.reason,
            origin: letter.origin,
            message_type: letter.message_type,
            message_id: letter.message_id,
            key: letter.key,
            resolution: letter.resolution,
        }
    }
}

/// Empty text is no filter; longer than [`MAX_FILTER_CHARS`] is a violation of `field`.
fn text_filter(value: Option<String>, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = value.filter(|v| !v.is_empty())?;
    if value.chars().count() > MAX_FILTER_CHARS {
        errors.push(FieldError {
            field: field.to_owned(),
            message: format!("{field} is at most {MAX_FILTER_CHARS} characters"),
        });
    }
    Some(value)
}

/// A [`Filter`] on what letters carry, or the 422 listing every rule it breaks.
fn filter(
    consumer: Option<String>,
    message_type: Option<String>,
    reason: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    prefix: &str,
) -> Result<Filter, Problem> {
    let mut errors = Vec::new();
    let consumer = text_filter(consumer, &format!("{prefix}consumer"), &mut errors);
    let message_type = text_filter(message_type, &format!("{prefix}type"), &mut errors);
    let reason = text_filter(reason, &format!("{prefix}reason"), &mut errors);
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(Filter {
        consumer,
        message_type,
        reason,
        since,
        until,
        ..Filter::default()
    })
}

fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-dead-letter-request",
        "The request breaks a rule of the dead letters",
    )
    .errors(errors)
}

impl ActionRequest {
    fn selection(self) -> Result<Selection, Problem> {
        match (self.letter_id, self.filter) {
            (Some(id), None) => id.parse().map(Selection::One).map_err(|e| {
                invalid(vec![FieldError {
                    field: "letterId".to_owned(),
                    message: e.to_string(),
                }])
            }),
            (None, Some(f)) => filter(
                f.consumer,
                f.message_type,
                f.reason,
                f.since,
                f.until,
                "filter.",
            )
            .map(Selection::Matching),
            // The document admits neither shape: malformed, as a missing field would be.
            _ => Err(Problem::bad_request(
                "send exactly one of letterId and filter",
            )),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/ops/dead-letters",
    operation_id = "listDeadLetters",
    tag = "ops",
    summary = "The dead letters, newest first",
    description = "Viewers and operators. The letters parked in the dead-letter topic, newest first (by the time they were parked), without their headers and payload. Paginated: follow `Link: rel=\"next\"` until it is absent; the filters carry over to every page. Each call reads at most the newest 50,000 letters of each partition of the topic; `Dead-Letters-Unread` says how many older ones it left out.",
    params(LetterPageQuery, ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The letters, at most `limit`", body = Vec<LetterSummary>,
            headers(
                ("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"),
                ("Dead-Letters-Unread" = u64, description = "Present when the topic holds more than 50,000 letters in a partition: how many older letters this listing did not read")
            )),
        (status = 400, description = "Malformed `limit`, `after`, `since`, `until` or `state`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "The token has neither the viewer nor the ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of 1..=1000, or a text filter over 200 characters", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Kafka or the console's database is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list(
    State(dead_letters): State<DeadLetters>,
    _viewer: Viewer,
    Query(page): Query<LetterPageQuery>,
    Query(query): Query<ListQuery>,
    uri: Uri,
) -> Result<Response, Refusal> {
    if page
        .after
        .as_deref()
        .is_some_and(|after| after.parse::<LetterId>().is_err())
    {
        return Err(Problem::bad_request(
            "`after` is not a cursor of this list; follow the Link header",
        )
        .into());
    }
    let page = PageQuery {
        limit: page.limit,
        after: page.after,
    }
    .page()?;
    let after = page.cursor(|raw| raw.parse::<LetterId>().ok())?;
    let mut filter = filter(
        query.consumer,
        query.message_type,
        query.reason,
        query.since,
        query.until,
        "",
    )?;
    filter.state = query.state.unwrap_or_default();
    filter.limit = usize::try_from(page.fetch()).unwrap_or(usize::MAX);
    filter.after = after;
    let listing = dead_letters.listing(&filter).await?;
    let letters: Vec<LetterSummary> = listing.letters.into_iter().map(Into::into).collect();
    let mut response = page.respond(&uri, letters, |letter| letter.id.to_string());
    if listing.unread > 0 {
        response.headers_mut().insert(
            HeaderName::from_static(UNREAD_HEADER),
            HeaderValue::from(listing.unread),
        );
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/ops/dead-letters/{letterId}",
    operation_id = "getDeadLetter",
    tag = "ops",
    summary = "One dead letter with its headers and payload",
    description = "Viewers and operators. The record as parked: every header (the `dead-letter-*` ones included) and the payload, as text when it is UTF-8 and in base64 otherwise; and what became of it.",
    params(("letterId" = String, Path, description = "`{partition}-{offset}` in the dead-letter topic", pattern = r"^(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,17})$", example = "0-12")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The letter", body = Letter),
        (status = 400, description = "Malformed letter id", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "The token has neither the viewer nor the ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The topic holds no such letter (never parked, or gone with Kafka's retention)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Kafka or the console's database is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn one(
    State(dead_letters): State<DeadLetters>,
    _viewer: Viewer,
    letter_id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Letter>, Refusal> {
    let id = letter_id
        .ok()
        .and_then(|Path(id)| id.parse::<LetterId>().ok())
        .ok_or_else(|| Problem::bad_request("a letter id is {partition}-{offset}, e.g. 0-12"))?;
    match dead_letters.get(id).await? {
        Some(letter) => Ok(axum::Json(letter)),
        None => Err(Error::NotFound(id).into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/ops/dead-letters/redrive",
    operation_id = "redriveDeadLetters",
    tag = "ops",
    summary = "Redrive one dead letter, or every waiting one a filter matches",
    description = "Operators. Republishes each selected waiting letter to the topic and partition it was read from, with its key, payload and original headers (without the `dead-letter-*` ones, with `redriven-from: {letterId}`), waits for Kafka's acknowledgement, then records it as redriven with an audit entry. The message keeps its `message-id`, so readers that applied it already skip it; a letter already redriven or discarded is skipped. A letter whose origin is not one of the system's topics is refused (one letter: 409; by filter: counted in `refused`). Send `dryRun: true` first to learn how many letters a filter selects. Each call considers at most the newest 50,000 letters of each partition (`unread` says how many older ones it did not). The action runs to its end even if the request times out.",
    request_body = ActionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was (or, with `dryRun`, would be) done", body = Outcome),
        ActionRefusal,
        (status = 409, description = "The letter's origin is not one of the system's topics: it cannot be redriven (discard it)", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Kafka or the console's database is unavailable; letters redriven before the failure are recorded", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn redrive(
    State(dead_letters): State<DeadLetters>,
    operator: Operator,
    Json(request): Json<ActionRequest>,
) -> Result<axum::Json<Outcome>, Refusal> {
    act(&dead_letters, Action::Redrive, operator, request).await
}

#[utoipa::path(
    post,
    path = "/api/ops/dead-letters/discard",
    operation_id = "discardDeadLetters",
    tag = "ops",
    summary = "Discard one dead letter, or every waiting one a filter matches",
    description = "Operators. Records each selected waiting letter as discarded, with an audit entry; the record stays in Kafka until its retention. A letter already redriven or discarded is skipped. Send `dryRun: true` first to learn how many letters a filter selects. Each call considers at most the newest 50,000 letters of each partition.",
    request_body = ActionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was (or, with `dryRun`, would be) done", body = Outcome),
        ActionRefusal,
        (status = 503, description = "Kafka or the console's database is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn discard(
    State(dead_letters): State<DeadLetters>,
    operator: Operator,
    Json(request): Json<ActionRequest>,
) -> Result<axum::Json<Outcome>, Refusal> {
    act(&dead_letters, Action::Discard, operator, request).await
}

/// Redrive and discard read the same request and answer alike; only the action differs.
async fn act(
    dead_letters: &DeadLetters,
    action: Action,
    Operator(identity): Operator,
    request: ActionRequest,
) -> Result<axum::Json<Outcome>, Refusal> {
    let dry_run = request.dry_run;
    let selection = request.selection()?;
    let outcome = dead_letters
        .act(&selection, action, dry_run, &identity.name)
        .await?;
    Ok(axum::Json(outcome))
}

/// The refusals redrive and discard share, declared once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum ActionRefusal {
    #[response(
        status = 400,
        description = "Malformed JSON, an unknown field, `dryRun` missing, or not exactly one of `letterId` and `filter`",
        content_type = "application/problem+json"
    )]
    Malformed(platform::openapi::ProblemDoc),
    #[response(
        status = 401,
        description = "No valid bearer token (`WWW-Authenticate` says why)",
        content_type = "application/problem+json"
    )]
    Unauthorized(platform::openapi::ProblemDoc),
    #[response(
        status = 403,
        description = "The token lacks the ops role",
        content_type = "application/problem+json"
    )]
    Forbidden(platform::openapi::ProblemDoc),
    #[response(
        status = 404,
        description = "The topic holds no such letter",
        content_type = "application/problem+json"
    )]
    NoSuchLetter(platform::openapi::ProblemDoc),
    #[response(
        status = 415,
        description = "The body is not JSON",
        content_type = "application/problem+json"
    )]
    NotJson(platform::openapi::ProblemDoc),
    #[response(
        status = 422,
        description = "A malformed `letterId`, or a text filter over 200 characters",
        content_type = "application/problem+json"
    )]
    Invalid(platform::openapi::ProblemDoc),
}

#[utoipa::path(
    get,
    path = "/api/ops/dead-letters/audit",
    operation_id = "listConsoleAudit",
    tag = "ops",
    summary = "The audit trail of the console's actions (dead letters redriven and discarded)",
    description = "Viewers and operators. Newest first, paginated: follow `Link: rel=\"next\"` until it is absent. The filters carry over to every page.",
    params(IdPageQuery, messaging::audit::Filter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entries, at most `limit`", body = Vec<messaging::audit::Entry>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "The token has neither the viewer nor the ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::InvalidLimit,
        (status = 503, description = "The console's database is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn audit(
    State(dead_letters): State<DeadLetters>,
    _viewer: Viewer,
    Query(page): Query<IdPageQuery>,
    Query(filter): Query<messaging::audit::Filter>,
    uri: Uri,
) -> Result<Response, Refusal> {
    let page = page.page()?;
    let before = page.cursor(|raw| raw.parse::<i64>().ok())?;
    let entries = async {
        let mut conn = dead_letters.inner.pool.acquire().await?;
        messaging::audit::list(&mut conn, &filter, before, page.fetch()).await
    };
    let entries = (entries.await).map_err(Error::Database)?;
    Ok(page.respond(&uri, entries, |e| e.id.to_string()))
}

/// The OpenAPI document of these routes, merged into the system's by the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, one, redrive, discard, audit),
    components(schemas(
        LetterSummary,
        Letter,
        LetterHeader,
        Payload,
        Resolution,
        ResolutionKind,
        LetterState,
        ActionRequest,
        SelectionFilter,
        Outcome,
        messaging::audit::Entry
    )),
    modifiers(&BearerScheme),
    tags((name = "ops", description = "The operator API"))
)]
struct ApiDoc;
