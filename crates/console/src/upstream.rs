//! Calls to the services' own APIs on behalf of the caller: every read and action the console
//! makes for a page presents the caller's token, so each service decides what that caller may
//! see or do, as it would for the caller directly.

use axum::http::header;
use serde_json::Value;

use crate::Console;

/// `GET url` with `authorization`: the JSON answer, or what went wrong in words (the problem's
/// detail or title when the service answered one).
pub(crate) async fn get(
    console: &Console,
    authorization: &str,
    url: &str,
) -> Result<Value, String> {
    let request = console
        .http()
        .get(url)
        .header(header::AUTHORIZATION, authorization);
    answer(request).await
}

/// `method url` with a JSON `body` and `authorization`, answered like [`get`].
pub(crate) async fn send(
    console: &Console,
    authorization: &str,
    method: reqwest::Method,
    url: &str,
    body: &Value,
) -> Result<Value, String> {
    let request = console
        .http()
        .request(method, url)
        .header(header::AUTHORIZATION, authorization)
        .json(body);
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("the service is unreachable ({e})"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let detail = body
        .get("detail")
        .or_else(|| body.get("title"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(format!("{status}: {detail}"))
}
