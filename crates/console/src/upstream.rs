//! Calls to the services' own APIs on behalf of the caller: every read and action the console
//! makes for a page presents the caller's token, so each service decides what that caller may
//! see or do, as it would for the caller directly.
//!
//! A component may run as several instances (`SHOP_GATEWAY__ORDER_URLS`, …, as the gateway
//! reads them). They share one database, so any of them answers for the component: a call goes
//! to the first and moves on to the next only when the connection could not be made, so nothing
//! was sent and an action is never made twice, the gateway's rule.

use axum::http::header;
use serde_json::Value;

use crate::Console;

/// `GET path` of `component` with `authorization`: the JSON answer, or what went wrong in words
/// (the problem's detail or title when the service answered one).
pub(crate) async fn get(
    console: &Console,
    authorization: &str,
    component: &str,
    path: &str,
) -> Result<Value, String> {
    let response = request(console, component, path, |client, url| {
        client.get(url).header(header::AUTHORIZATION, authorization)
    })
    .await?;
    answer(response).await
}

/// `method path` of `component` with a JSON `body` and `authorization`, answered like [`get`].
pub(crate) async fn send(
    console: &Console,
    authorization: &str,
    method: reqwest::Method,
    component: &str,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let response = request(console, component, path, |client, url| {
        client
            .request(method.clone(), url)
            .header(header::AUTHORIZATION, authorization)
            .json(body)
    })
    .await?;
    answer(response).await
}

/// The response of the first instance of `component` that accepts a connection for the request
/// `build` makes to `path` under its base URL.
pub(crate) async fn request(
    console: &Console,
    component: &str,
    path: &str,
    build: impl Fn(&reqwest::Client, String) -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, String> {
    let mut unreachable = Vec::new();
    for base in console.instances(component) {
        match build(console.http(), format!("{base}{path}")).send().await {
            Ok(response) => return Ok(response),
            Err(e) if e.is_connect() => unreachable.push(format!("{base} ({e})")),
            Err(e) => return Err(format!("the {component} service did not answer ({e})")),
        }
    }
    Err(format!(
        "the {component} service is unreachable: {}; start it (./dev start {component})",
        unreachable.join(", ")
    ))
}

async fn answer(response: reqwest::Response) -> Result<Value, String> {
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
