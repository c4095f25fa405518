//! The console's pages, rendered on the server (maud): every page reads completely without
//! JavaScript; `live.js` only swaps in the sections that server-sent events bring
//! ([`events`]). Forms that change something carry the session's CSRF token and are offered to
//! operators only; a viewer sees a read-only banner and no action.

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::Console;
use crate::dead_letters::{
    Filter, Letter, LetterId, Payload, ResolutionKind, Selection, State as LetterState,
};
use crate::overview::{self, Overview};
use crate::session::{self, Session};

/// How often a live page gets new figures.
const LIVE_EVERY: Duration = Duration::from_secs(2);

// --- layout -----------------------------------------------------------------------------------

/// The page around `body`. `view` names the live view the page follows (`live.js`), if any.
fn layout(
    session: Option<&Session>,
    active: &str,
    title: &str,
    view: Option<(&str, Option<&str>)>,
    body: Markup,
) -> Markup {
    let nav = [
        ("overview", "/console", "Overview"),
        ("orders", "/console/orders", "Orders"),
        ("catalog", "/console/catalog", "Catalog"),
        ("read-models", "/console/read-models", "Read models"),
        ("dead-letters", "/console/dead-letters", "Dead letters"),
        ("audit", "/console/audit", "Audit"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · shop console" }
                link rel="stylesheet" href="/console/assets/console.css";
                @if view.is_some() {
                    script src="/console/assets/live.js" defer {}
                }
            }
            body data-view=[view.map(|v| v.0)] data-subject=[view.and_then(|v| v.1)] {
                header {
                    strong { "shop console" }
                    @if let Some(session) = session {
                        nav {
                            @for (key, href, label) in nav {
                                a href=(href) aria-current=[(key == active).then_some("page")] { (label) } " "
                            }
                        }
                        @if view.is_some() { span.live-state {} }
                        span.who {
                            (session.actor) " · " (if session.ops { "ops" } else { "viewer" }) " "
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    @if session.is_some_and(|s| !s.ops) {
                        p.banner role="status" { "Read-only: you are signed in as a viewer. Operator actions need the ops role." }
                    }
                    (body)
                }
            }
        }
    }
}

fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

fn error_page(session: Option<&Session>, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { "Something went wrong" }
        p.error { (message) }
        p { a href="/console" { "Back to the overview" } }
    };
    (status, page(layout(session, "", "Error", None, body))).into_response()
}

fn seconds(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.1} s"),
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}/s"))
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

// --- login ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    token: Option<String>,
}

pub(crate) async fn login_form(Query(query): Query<LoginQuery>) -> Response {
    page(login_page(query.token.as_deref(), None))
}

fn login_page(token: Option<&str>, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/console/login" {
            p {
                label for="token" { "A bearer token with the viewer or ops role" }
                textarea #token name="token" required autocomplete="off" spellcheck="false" { (token.unwrap_or_default()) }
            }
            button.primary type="submit" { "Sign in" }
        }
        p.muted {
            "Locally, " code { "./dev up" } " prints a one-time sign-in link, and " code { "./dev login" }
            " prints a new one; " code { "./dev token ops" } " prints a token to paste here."
        }
    };
    layout(None, "", "Sign in", None, body)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

pub(crate) async fn login(State(console): State<Console>, Form(form): Form<LoginForm>) -> Response {
    match session::login(&console, form.token.trim()).await {
        Ok((id, session)) => {
            let mut response = Redirect::to("/console").into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                session::set_cookie(&console, &id, &session),
            );
            response
        }
        Err(e) => {
            let status = match e {
                session::LoginError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
                session::LoginError::NoRole => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            (status, page(login_page(None, Some(&e.to_string())))).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn logout(
    State(console): State<Console>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused.into_response();
    }
    if let Some(id) = session::cookie(&headers, session::COOKIE) {
        if let Err(e) = session::logout(console.pool(), &id).await {
            tracing::warn!(error = %e, "ending a console session failed");
            return error_page(
                Some(&session),
                StatusCode::SERVICE_UNAVAILABLE,
                "The console's database is unavailable; try again.",
            );
        }
    }
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    response
}

// --- overview ---------------------------------------------------------------------------------

pub(crate) async fn overview(State(console): State<Console>, session: Session) -> Response {
    let figures = console.overview_now(&session.authorization()).await;
    let body = html! {
        h1 { "Overview" }
        div #overview-figures data-live { (overview_figures(&figures)) }
        h2 { "Stuck sagas" }
        div #overview-stuck data-live { (stuck_table(&figures.stuck, figures.more_stuck)) }
    };
    page(layout(
        Some(&session),
        "overview",
        "Overview",
        Some(("overview", None)),
        body,
    ))
}

/// The figures of the overview: the part of the page that updates live.
pub(crate) fn overview_figures(o: &Overview) -> Markup {
    html! {
        @for problem in &o.problems { p.error { "Could not read " (problem) } }
        div.cards {
            div.card { div.label { "Completed" } div.value.ok { (rate(o.sagas.completed_per_second)) } div.muted { (number(Some(o.sagas.completed))) " in all" } }
            div.card { div.label { "Failed" } div.value.bad { (rate(o.sagas.failed_per_second)) } div.muted { (number(Some(o.sagas.failed))) " in all" } }
            div.card { div.label { "Saga latency p50" } div.value { (seconds(o.sagas.latency_p50)) } }
            div.card { div.label { "Saga latency p99" } div.value { (seconds(o.sagas.latency_p99)) } }
            div.card {
                div.label { "Dead letters waiting" }
                div.value.bad[o.dead_letters_waiting.is_some_and(|n| n > 0)] {
                    a href="/console/dead-letters" { (o.dead_letters_waiting.map_or_else(|| "–".to_owned(), |n| n.to_string())) }
                }
            }
            div.card { div.label { "Stuck sagas" } div.value.warn[!o.stuck.is_empty()] { (o.stuck.len()) @if o.more_stuck { "+" } } }
        }
        h2 { "Components" }
        p {
            @for c in &o.components {
                span.ok[c.up].bad[!c.up] { (c.name) (if c.up { " ✓" } else { " ✗ unreachable" }) } " "
            }
        }
        h2 { "Failures by reason" }
        p {
            @for r in &o.sagas.failed_by_reason { (r.reason) ": " (number(Some(r.count))) " · " }
        }
        h2 { "Outbox backlog" }
        div.table-wrap { table {
            thead { tr { th { "service" } th.num { "rows waiting" } th.num { "oldest" } } }
            tbody { @for b in &o.outbox { tr {
                td { (b.service) } td.num { (number(b.pending)) } td.num { (seconds(b.oldest_age_seconds)) }
            } } }
        } }
        h2 { "Consumer lag" }
        div.table-wrap { table {
            thead { tr { th { "group" } th { "topic" } th.num { "partition" } th.num { "messages" } th.num { "behind" } } }
            tbody { @for l in &o.lag { tr {
                td { (l.group) } td { (l.topic) } td.num { (l.partition) }
                td.num.warn[l.messages > 0] { (l.messages) } td.num { (seconds(l.seconds)) }
            } } }
        } }
        h2 { "Read models" }
        div.table-wrap { table {
            thead { tr { th { "store" } th.num { "partition" } th.num { "events behind" } } }
            tbody { @for r in &o.read_models { tr {
                td { (r.store) } td.num { (r.partition) } td.num { (number(Some(r.events))) }
            } } }
        } }
        p.muted { "As of " (o.at.format("%H:%M:%S UTC")) }
    }
}

/// Stuck sagas, oldest first.
fn stuck_table(orders: &[Value], more: bool) -> Markup {
    html! {
        @if orders.is_empty() {
            p.ok { "No saga is stuck." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "order" } th { "customer" } th { "placed" } } }
                tbody { @for o in orders { tr {
                    td { a href={ "/console/orders/" (text(o, "orderId")) } { code { (text(o, "orderId")) } } }
                    td { code { (text(o, "customerId")) } }
                    td.warn { (age(text(o, "placedAt"))) }
                } } }
            } }
            @if more { p.muted { "More are stuck: " a href="/console/orders" { "see every stuck saga" } } }
        }
    }
}

/// "12 s ago" for an RFC 3339 time.
fn age(at: &str) -> String {
    match DateTime::parse_from_rfc3339(at) {
        Ok(at) => {
            let seconds = (Utc::now() - at.with_timezone(&Utc)).num_seconds().max(0);
            if seconds < 120 {
                format!("{seconds} s ago")
            } else if seconds < 7200 {
                format!("{} min ago", seconds / 60)
            } else {
                format!("{} h ago", seconds / 3600)
            }
        }
        Err(_) => at.to_owned(),
    }
}

// --- orders -----------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrdersQuery {
    order_id: Option<String>,
    customer_id: Option<String>,
    status: Option<String>,
    /// The stuck list's threshold, in seconds.
    older_than: Option<String>,
}

pub(crate) async fn orders(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<OrdersQuery>,
) -> Response {
    let auth = session.authorization();
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let order_id = nonempty(&query.order_id);
    let customer_id = nonempty(&query.customer_id);
    let status = nonempty(&query.status);
    let order = match &order_id {
        Some(id) => Some(order_with_events(&console, &auth, id).await),
        None => None,
    };
    let search = if customer_id.is_some() || status.is_some() {
        let mut url = format!("{}/api/orders?limit=50", console.component_url("order"));
        if let Some(c) = &customer_id {
            url.push_str(&format!("&customerId={}", urlencode(c)));
        }
        if let Some(s) = &status {
            url.push_str(&format!("&status={}", urlencode(s)));
        }
        Some(crate::upstream::get(&console, &auth, &url).await)
    } else {
        None
    };
    let older_than = query
        .older_than
        .as_deref()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(console.settings().console.stuck_after_seconds);
    let stuck = console.stuck(&auth, older_than, 100).await;
    let body = html! {
        h1 { "Orders" }
        form.filters method="get" action="/console/orders" {
            label { "Order id" input name="orderId" value=[order_id.as_deref()] placeholder="uuid"; }
            label { "Customer id" input name="customerId" value=[customer_id.as_deref()] placeholder="uuid"; }
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in ["pending", "completed", "failed"] { option value=(s) selected[status.as_deref() == Some(s)] { (s) } }
            } }
            label { "Stuck for at least (s)" input type="number" name="olderThan" min="0" max="2592000" value=(older_than) size="6"; }
            button type="submit" { "Search" }
        }
        @if let Some(order) = &order { (order) }
        @if let Some(search) = &search {
            h2 { "Orders found" }
            @match search {
                Ok(Value::Array(found)) if !found.is_empty() => {
                    div.table-wrap { table {
                        thead { tr { th { "order" } th { "customer" } th { "status" } th.num { "total" } th { "placed" } } }
                        tbody { @for o in found { tr {
                            td { a href={ "/console/orders/" (text(o, "orderId")) } { code { (text(o, "orderId")) } } }
                            td { code { (text(o, "customerId")) } }
                            td { (text(o, "status")) " " (text(o, "failureReason")) }
                            td.num { (text(o, "total")) }
                            td { (age(text(o, "createdAt"))) }
                        } } }
                    } }
                }
                Ok(_) => { p.muted { "No order matches." } }
                Err(e) => { p.error { (e) } }
            }
        }
        h2 { "Stuck sagas (pending over " (older_than) " s, oldest first)" }
        div #stuck-list data-live {
            @match &stuck {
                Ok((orders, more)) => { (stuck_table(orders, *more)) }
                Err(e) => { p.error { (e) } }
            }
        }
    };
    let threshold = older_than.to_string();
    page(layout(
        Some(&session),
        "orders",
        "Orders",
        Some(("orders", Some(&threshold))),
        body,
    ))
}

/// One order as the order service shows it, with its events.
async fn order_with_events(console: &Console, auth: &str, id: &str) -> Markup {
    let base = format!(
        "{}/api/orders/{}",
        console.component_url("order"),
        urlencode(id)
    );
    let events_url = format!("{base}/events?limit=1000");
    let (order, events) = tokio::join!(
        crate::upstream::get(console, auth, &base),
        crate::upstream::get(console, auth, &events_url),
    );
    html! {
        @match order {
            Err(e) => { p.error { (e) } }
            Ok(order) => {
                h2 { "Order " code { (text(&order, "orderId")) } " · " a href={ "/console/orders/" (text(&order, "orderId")) } { "its journey" } }
                div.cards {
                    div.card { div.label { "status" } div.value { (text(&order, "status")) } div.muted { (text(&order, "failureReason")) } }
                    div.card { div.label { "total" } div.value { (text(&order, "total")) } }
                    div.card { div.label { "customer" } div { code { (text(&order, "customerId")) } } }
                    div.card { div.label { "placed" } div { (age(text(&order, "createdAt"))) } }
                }
                h2 { "Events" }
                @match events {
                    Ok(Value::Array(events)) => {
                        div.table-wrap { table {
                            thead { tr { th.num { "version" } th { "type" } th { "recorded" } th { "data" } } }
                            tbody { @for e in &events { tr {
                                td.num { (e.get("version").and_then(Value::as_i64).unwrap_or_default()) }
                                td { (text(e, "type")) }
                                td { (text(e, "recordedAt")) }
                                td { code { (e.get("data").map(Value::to_string).unwrap_or_default()) } }
                            } } }
                        } }
                    }
                    Ok(_) => { p.muted { "No events." } }
                    Err(e) => { p.error { (e) } }
                }
            }
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

// --- an order's journey ---------------------------------------------------------------------

pub(crate) async fn journey(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
) -> Response {
    let Ok(order_id) = uuid::Uuid::try_parse(&order_id) else {
        return error_page(Some(&session), StatusCode::NOT_FOUND, "No such order.");
    };
    let journey = crate::journey::journey(&console, &session.authorization(), order_id).await;
    let subject = order_id.to_string();
    let body = html! {
        h1 { "Journey of order " code { (subject) } }
        div #journey data-live { (journey_section(&journey)) }
    };
    page(layout(
        Some(&session),
        "orders",
        "Journey",
        Some(("journey", Some(&subject))),
        body,
    ))
}

/// The journey's timeline: the part of the page that updates live while the order is pending.
pub(crate) fn journey_section(j: &crate::journey::Journey) -> Markup {
    use crate::journey::StepKind;
    let status = j
        .order
        .as_ref()
        .and_then(|o| o.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    html! {
        div.cards {
            div.card { div.label { "status" } div.value { (status) } div.muted {
                (j.order.as_ref().map(|o| text(o, "failureReason")).unwrap_or_default())
            } }
            div.card { div.label { "total" } div.value { (j.order.as_ref().map(|o| text(o, "total")).unwrap_or("–")) } }
            div.card { div.label { "placed" } div { (j.placed_at.map_or_else(|| "–".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())) } }
            div.card { div.label { "trace id" } div { code { (j.trace_id.as_deref().unwrap_or("–")) } } }
        }
        @if let Some(waiting) = &j.waiting_on { p.banner role="status" { "Waiting: " (waiting) } }
        @for problem in &j.problems { p.error { "Could not read " (problem) } }
        @if j.truncated { p.error { "The read of the topics stopped at its budget: later messages may be missing." } }
        p {
            @for r in &j.read_models {
                span.ok[r.projected].warn[!r.projected] {
                    (r.group) (if r.projected { ": projected" } else { ": not projected yet" })
                } " "
            }
        }
        div.table-wrap { table {
            thead { tr { th { "time" } th { "what" } th { "by" } th { "where" } th { "ids" } } }
            tbody { @for step in &j.steps { tr {
                td { (step.at.format("%H:%M:%S%.3f")) }
                td {
                    @match step.kind {
                        StepKind::Event => { "event " strong { (step.what) } }
                        StepKind::Message => { "message " strong { (step.what) } }
                        StepKind::Applied => { "applied " (step.what) }
                    }
                    @if let Some(detail) = &step.detail { details { summary { "details" } pre { (detail) } } }
                }
                td { (step.by) }
                td { @if let (Some(t), Some(p), Some(o)) = (&step.topic, step.partition, step.offset) { code { (t) "/" (p) "/" (o) } } }
                td.muted {
                    @if let Some(id) = &step.message_id { "message " code { (id) } br; }
                    @if let Some(id) = &step.causation_id { "caused by " code { (id) } }
                }
            } } }
        } }
        p.muted { "As of " (Utc::now().format("%H:%M:%S UTC")) }
    }
}

// --- dead letters -----------------------------------------------------------------------------

/// The filter fields of the dead-letter page and its forms.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct LetterQuery {
    #[serde(default)]
    consumer: String,
    #[serde(default, rename = "type")]
    message_type: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    notice: String,
}

impl LetterQuery {
    fn filter(&self, limit: usize) -> Result<Filter, String> {
        let some = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let state = match self.state.as_str() {
            "" | "waiting" => LetterState::Waiting,
            "redriven" => LetterState::Redriven,
            "discarded" => LetterState::Discarded,
            "all" => LetterState::All,
            other => return Err(format!("unknown state {other:?}")),
        };
        let after = match some(&self.after) {
            None => None,
            Some(id) => Some(
                id.parse::<LetterId>()
                    .map_err(|_| format!("{id:?} is not a letter id"))?,
            ),
        };
        Ok(Filter {
            consumer: some(&self.consumer),
            message_type: some(&self.message_type),
            reason: some(&self.reason),
            since: time(&self.since)?,
            until: time(&self.until)?,
            state,
            limit,
            after,
        })
    }

    /// The filter as hidden fields, for the forms that act on it.
    fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="consumer" value=(self.consumer);
            input type="hidden" name="type" value=(self.message_type);
            input type="hidden" name="reason" value=(self.reason);
            input type="hidden" name="since" value=(self.since);
            input type="hidden" name="until" value=(self.until);
        }
    }
}

/// A time from a `datetime-local` field (taken as UTC) or RFC 3339.
fn time(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(format!("{text:?} is not a time (YYYY-MM-DDTHH:MM, UTC)"))
}

const PAGE: usize = 50;

pub(crate) async fn dead_letters(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<LetterQuery>,
) -> Response {
    let filter = match query.filter(PAGE) {
        Ok(filter) => filter,
        Err(e) => return error_page(Some(&session), StatusCode::BAD_REQUEST, &e),
    };
    let letters = console.dead_letters().list(&filter).await;
    let body = html! {
        h1 { "Dead letters" }
        @if !query.notice.is_empty() { p.notice role="status" { (query.notice) } }
        form.filters method="get" action="/console/dead-letters" {
            label { "Consumer" input name="consumer" value=(query.consumer) placeholder="stock, payment, …"; }
            label { "Type" input name="type" value=(query.message_type) placeholder="StockReserved"; }
            label { "Reason contains" input name="reason" value=(query.reason); }
            label { "Since (UTC)" input type="datetime-local" name="since" value=(query.since); }
            label { "Until (UTC)" input type="datetime-local" name="until" value=(query.until); }
            label { "State" select name="state" {
                @for s in ["waiting", "redriven", "discarded", "all"] {
                    option value=(s) selected[query.state == s || (query.state.is_empty() && s == "waiting")] { (s) }
                }
            } }
            button type="submit" { "Filter" }
        }
        @if session.ops && filter.state == LetterState::Waiting {
            div.actions {
                form method="post" action="/console/dead-letters/redrive" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="dryRun" value="true";
                    (query.hidden())
                    button type="submit" { "Redrive every match…" }
                }
                form method="post" action="/console/dead-letters/discard" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="dryRun" value="true";
                    (query.hidden())
                    button type="submit" { "Discard every match…" }
                }
            }
        }
        @match &letters {
            Err(e) => { p.error { (e.to_string()) } }
            Ok(letters) if letters.is_empty() => { p.ok { "No dead letter matches." } }
            Ok(letters) => {
                div.table-wrap { table {
                    thead { tr { th { "letter" } th { "parked" } th { "consumer" } th { "type" } th { "reason" } th { "state" } } }
                    tbody { @for l in letters { tr {
                        td { a href={ "/console/dead-letters/" (l.id) } { code { (l.id) } } }
                        td { (l.parked_at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (l.consumer) }
                        td { (l.message_type.as_deref().unwrap_or("–")) }
                        td { (l.reason) }
                        td { (state_of(l)) }
                    } } }
                } }
                @if letters.len() >= PAGE {
                    @if let Some(last) = letters.last() {
                        p { a href={ "/console/dead-letters?" (next_query(&query, last.id)) } { "Older letters →" } }
                    }
                }
            }
        }
    };
    page(layout(
        Some(&session),
        "dead-letters",
        "Dead letters",
        None,
        body,
    ))
}

fn next_query(query: &LetterQuery, after: LetterId) -> String {
    format!(
        "consumer={}&type={}&reason={}&since={}&until={}&state={}&after={after}",
        urlencode(&query.consumer),
        urlencode(&query.message_type),
        urlencode(&query.reason),
        urlencode(&query.since),
        urlencode(&query.until),
        urlencode(&query.state),
    )
}

fn state_of(letter: &Letter) -> String {
    match &letter.resolution {
        None => "waiting".to_owned(),
        Some(r) => {
            let what = match r.kind {
                ResolutionKind::Redriven => "redriven",
                ResolutionKind::Discarded => "discarded",
            };
            format!(
                "{what} by {} at {}",
                r.actor,
                r.at.format("%Y-%m-%d %H:%M:%S")
            )
        }
    }
}

pub(crate) async fn dead_letter(
    State(console): State<Console>,
    session: Session,
    Path(letter_id): Path<String>,
) -> Response {
    let Ok(id) = letter_id.parse::<LetterId>() else {
        return error_page(
            Some(&session),
            StatusCode::NOT_FOUND,
            "No such dead letter.",
        );
    };
    let letter = match console.dead_letters().get(id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => {
            return error_page(
                Some(&session),
                StatusCode::NOT_FOUND,
                "No such dead letter.",
            );
        }
        Err(e) => {
            return error_page(
                Some(&session),
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            );
        }
    };
    let body = html! {
        h1 { "Dead letter " code { (letter.id) } }
        div.cards {
            div.card { div.label { "consumer" } div { (letter.consumer) } }
            div.card { div.label { "type" } div { (letter.message_type.as_deref().unwrap_or("–")) } }
            div.card { div.label { "parked" } div { (letter.parked_at.format("%Y-%m-%d %H:%M:%S UTC")) } }
            div.card { div.label { "state" } div { (state_of(&letter)) } }
        }
        h2 { "Reason" }
        pre { (letter.reason) }
        p { "From " code { (letter.origin) } ", key " code { (letter.key.as_deref().unwrap_or("–")) } ", message id " code { (letter.message_id.as_deref().unwrap_or("–")) } }
        @if session.ops && letter.resolution.is_none() {
            div.actions {
                form method="post" action="/console/dead-letters/redrive" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="letterId" value=(letter.id);
                    input type="hidden" name="dryRun" value="false";
                    button.primary type="submit" { "Redrive" }
                }
                form method="post" action="/console/dead-letters/discard" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="letterId" value=(letter.id);
                    input type="hidden" name="dryRun" value="false";
                    button.danger type="submit" { "Discard" }
                }
            }
        }
        h2 { "Headers" }
        div.table-wrap { table {
            tbody { @for (name, value) in &letter.headers { tr { th { (name) } td { code { (value.as_deref().unwrap_or("(null)")) } } } } }
        } }
        h2 { "Payload" }
        @match &letter.payload {
            Payload::Text(text) => { pre { (pretty(text)) } }
            Payload::Base64(b64) => { p.muted { "Not UTF-8; base64:" } pre { (b64) } }
            Payload::Absent => { p.muted { "The record has no payload." } }
        }
        p { a href="/console/dead-letters" { "← All dead letters" } }
    };
    page(layout(
        Some(&session),
        "dead-letters",
        "Dead letter",
        None,
        body,
    ))
}

/// JSON indented when it is JSON, else as it is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionForm {
    csrf: String,
    #[serde(default)]
    letter_id: String,
    dry_run: String,
    #[serde(flatten)]
    filter: LetterQuery,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Redrive,
    Discard,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Redrive => "redrive",
            Action::Discard => "discard",
        }
    }
}

pub(crate) async fn redrive(
    State(console): State<Console>,
    session: Session,
    Form(form): Form<ActionForm>,
) -> Response {
    act(console, session, form, Action::Redrive).await
}

pub(crate) async fn discard(
    State(console): State<Console>,
    session: Session,
    Form(form): Form<ActionForm>,
) -> Response {
    act(console, session, form, Action::Discard).await
}

/// One letter at once; many by filter only after a dry run showed how many, and a second,
/// confirming submission.
async fn act(console: Console, session: Session, form: ActionForm, action: Action) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused.into_response();
    }
    if let Err(refused) = session.require_ops() {
        return refused.into_response();
    }
    let dry_run = form.dry_run != "false";
    let selection = if form.letter_id.is_empty() {
        match form.filter.filter(usize::MAX) {
            Ok(mut filter) => {
                filter.state = LetterState::Waiting;
                Selection::Matching(filter)
            }
            Err(e) => return error_page(Some(&session), StatusCode::BAD_REQUEST, &e),
        }
    } else {
        match form.letter_id.parse::<LetterId>() {
            Ok(id) => Selection::One(id),
            Err(_) => {
                return error_page(Some(&session), StatusCode::BAD_REQUEST, "Not a letter id.");
            }
        }
    };
    let dead_letters = console.dead_letters();
    let outcome = match action {
        Action::Redrive => {
            dead_letters
                .redrive(&selection, dry_run, &session.actor)
                .await
        }
        Action::Discard => {
            dead_letters
                .discard(&selection, dry_run, &session.actor)
                .await
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            return error_page(
                Some(&session),
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            );
        }
    };
    if dry_run {
        let verb = action.name();
        let body = html! {
            h1 { "Confirm: " (verb) }
            p { (outcome.matched) " waiting letters match this filter." }
            @if outcome.matched > 0 {
                div.actions {
                    form method="post" action={ "/console/dead-letters/" (verb) } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        input type="hidden" name="dryRun" value="false";
                        (form.filter.hidden())
                        button.primary[matches!(action, Action::Redrive)].danger[matches!(action, Action::Discard)] type="submit" {
                            (verb) " " (outcome.matched) " letters"
                        }
                    }
                    a href="/console/dead-letters" { "Cancel" }
                }
            } @else {
                p { a href="/console/dead-letters" { "Back" } }
            }
        };
        return page(layout(
            Some(&session),
            "dead-letters",
            "Confirm",
            None,
            body,
        ));
    }
    let notice = match action {
        Action::Redrive => format!(
            "Redriven: {} of {} matching letters.",
            outcome.done, outcome.matched
        ),
        Action::Discard => format!(
            "Discarded: {} of {} matching letters.",
            outcome.done, outcome.matched
        ),
    };
    Redirect::to(&format!(
        "/console/dead-letters?notice={}",
        urlencode(&notice)
    ))
    .into_response()
}

// --- catalog and stock ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

pub(crate) async fn catalog(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let auth = session.authorization();
    let stock = console.component_url("stock");
    let (products_url, stock_url) = (
        format!("{stock}/api/products?limit=1000"),
        format!("{stock}/api/stock?limit=1000"),
    );
    let (products, units) = tokio::join!(
        crate::upstream::get(&console, &auth, &products_url),
        crate::upstream::get(&console, &auth, &stock_url),
    );
    let units: Vec<Value> = match &units {
        Ok(Value::Array(units)) => units.clone(),
        _ => Vec::new(),
    };
    let held = |id: i64| {
        units
            .iter()
            .find(|u| u.get("productId").and_then(Value::as_i64) == Some(id))
            .map(|u| {
                (
                    u.get("available")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                    u.get("reserved")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                )
            })
    };
    let body = html! {
        h1 { "Catalog and stock" }
        @if !query.notice.is_empty() { p.notice role="status" { (query.notice) } }
        @if let Err(e) = &units_error(&products) { p.error { (e) } }
        @if let Ok(Value::Array(products)) = &products {
            div.table-wrap { table {
                thead { tr {
                    th.num { "product" } th { "name" } th.num { "price" } th.num { "available" } th.num { "reserved" }
                    @if session.ops { th { "reprice" } th { "restock" } }
                } }
                tbody { @for p in products {
                    @let id = p.get("productId").and_then(Value::as_i64).unwrap_or_default();
                    @let (available, reserved) = held(id).unwrap_or_default();
                    tr {
                        td.num { (id) } td { (text(p, "name")) } td.num { (text(p, "unitPrice")) }
                        td.num { (available) } td.num { (reserved) }
                        @if session.ops {
                            td { form.filters method="post" action={ "/console/catalog/" (id) "/price" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="name" value=(text(p, "name"));
                                input name="unitPrice" value=(text(p, "unitPrice")) size="9" aria-label={ "new price of product " (id) } required pattern=r"[0-9]+(\.[0-9]{1,2})?";
                                button type="submit" { "Reprice" }
                            } }
                            td { form.filters method="post" action={ "/console/catalog/" (id) "/restock" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="number" name="quantity" min="1" max="1000000" size="7" aria-label={ "units to add to product " (id) } required;
                                button type="submit" { "Restock" }
                            } }
                        }
                    }
                } }
            } }
        }
    };
    page(layout(Some(&session), "catalog", "Catalog", None, body))
}

fn units_error(products: &Result<Value, String>) -> Result<(), String> {
    products.as_ref().map(|_| ()).map_err(Clone::clone)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PriceForm {
    csrf: String,
    name: String,
    unit_price: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RestockForm {
    csrf: String,
    quantity: String,
}

/// Reprices a product through the stock service, which checks the role again, audits the
/// change and announces it.
pub(crate) async fn reprice(
    State(console): State<Console>,
    session: Session,
    Path(product): Path<i64>,
    Form(form): Form<PriceForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf).and(session.require_ops()) {
        return refused.into_response();
    }
    let url = format!("{}/api/products/{product}", console.component_url("stock"));
    let body = serde_json::json!({ "name": form.name, "unitPrice": form.unit_price.trim() });
    let answer = crate::upstream::send(
        &console,
        &session.authorization(),
        reqwest::Method::PUT,
        &url,
        &body,
    )
    .await;
    catalog_done(
        answer,
        &format!("Product {product} now costs {}.", form.unit_price.trim()),
    )
}

pub(crate) async fn restock(
    State(console): State<Console>,
    session: Session,
    Path(product): Path<i64>,
    Form(form): Form<RestockForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf).and(session.require_ops()) {
        return refused.into_response();
    }
    let Ok(quantity) = form.quantity.trim().parse::<i64>() else {
        return catalog_done(Err("the quantity must be a whole number".to_owned()), "");
    };
    let url = format!(
        "{}/api/products/{product}/restock",
        console.component_url("stock")
    );
    let body = serde_json::json!({ "quantity": quantity });
    let answer = crate::upstream::send(
        &console,
        &session.authorization(),
        reqwest::Method::POST,
        &url,
        &body,
    )
    .await;
    catalog_done(
        answer,
        &format!("Product {product}: {quantity} units added."),
    )
}

fn catalog_done(answer: Result<Value, String>, done: &str) -> Response {
    let notice = match answer {
        Ok(_) => done.to_owned(),
        Err(e) => format!("Refused: {e}"),
    };
    Redirect::to(&format!("/console/catalog?notice={}", urlencode(&notice))).into_response()
}

// --- read models ------------------------------------------------------------------------------

pub(crate) async fn read_models(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let section = read_models_section(&console, &session).await;
    let body = html! {
        h1 { "Read models" }
        @if !query.notice.is_empty() { p.notice role="status" { (query.notice) } }
        div #read-models data-live { (section) }
        @if session.ops {
            h2 { "Rebuild" }
            p.muted { "A rebuild reads the order event store from the start into a new generation while the live projection goes on, then switches the reports to it at once." }
            form.filters method="post" action="/console/read-models/rebuild" {
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Read model" select name="store" {
                    option value="all" { "both" }
                    option value="redis" { "redis (products report)" }
                    option value="mongodb" { "mongodb (orders report)" }
                } }
                button.primary type="submit" { "Rebuild" }
            }
        }
    };
    page(layout(
        Some(&session),
        "read-models",
        "Read models",
        Some(("read-models", None)),
        body,
    ))
}

/// Generations, the latest rebuild and each store's lag: the live part of the page.
pub(crate) async fn read_models_section(console: &Console, session: &Session) -> Markup {
    let url = format!(
        "{}/api/ops/read-models",
        console.component_url("projections")
    );
    let metrics_url = format!("{}/metrics", console.component_url("projections"));
    let auth = session.authorization();
    let (state, metrics) = tokio::join!(
        crate::upstream::get(console, &auth, &url),
        crate::scrape::read(console.http(), &metrics_url),
    );
    html! {
        @match &state {
            Err(e) => { p.error { "Could not read the projections: " (e) } }
            Ok(state) => {
                div.table-wrap { table {
                    thead { tr { th { "store" } th { "current generation" } th { "being built" } th.num { "events behind (per partition)" } } }
                    tbody { @for m in state.get("models").and_then(Value::as_array).into_iter().flatten() {
                        @let store = text(m, "store");
                        tr {
                            td { (store) }
                            td { code { (m.pointer("/generations/current").and_then(Value::as_str).unwrap_or("–")) } }
                            td { code { (m.pointer("/generations/building").and_then(Value::as_str).unwrap_or("–")) } }
                            td.num {
                                @if let Some(metrics) = &metrics {
                                    @for s in metrics.matching("projection_lag", &[("store", store)]) {
                                        (s.label("partition").unwrap_or_default()) ": " (number(Some(s.value))) " "
                                    }
                                } @else { "–" }
                            }
                        }
                        @if let Some(error) = m.get("error").and_then(Value::as_str) { tr { td colspan="4" { p.error { (error) } } } }
                    } }
                } }
                @if let Some(r) = state.get("rebuild").filter(|r| !r.is_null()) {
                    h2 { "Latest rebuild" }
                    p {
                        (text(r, "store")) ", started by " (text(r, "by")) " " (age(text(r, "startedAt"))) ": "
                        (r.pointer("/progress/eventsRead").and_then(Value::as_u64).unwrap_or_default()) " events read, "
                        (r.pointer("/progress/completed").and_then(Value::as_u64).unwrap_or_default()) " completed and "
                        (r.pointer("/progress/failed").and_then(Value::as_u64).unwrap_or_default()) " failed orders counted; "
                        @if let Some(error) = r.get("error").and_then(Value::as_str) {
                            span.bad { "failed: " (error) }
                        } @else if r.get("finishedAt").is_some_and(|f| !f.is_null()) {
                            span.ok { "finished " (age(text(r, "finishedAt"))) }
                        } @else {
                            span.warn { "running" }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RebuildForm {
    csrf: String,
    store: String,
}

/// Starts a rebuild in the projections (which check the role again) and audits it here.
pub(crate) async fn rebuild(
    State(console): State<Console>,
    session: Session,
    Form(form): Form<RebuildForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf).and(session.require_ops()) {
        return refused.into_response();
    }
    let url = format!(
        "{}/api/ops/read-models/rebuild",
        console.component_url("projections")
    );
    let body = serde_json::json!({ "store": form.store });
    let answer = crate::upstream::send(
        &console,
        &session.authorization(),
        reqwest::Method::POST,
        &url,
        &body,
    )
    .await;
    let notice = match answer {
        Ok(started) => {
            let audited = async {
                let mut conn = console.pool().acquire().await?;
                messaging::audit::record(
                    &mut conn,
                    &session.actor,
                    "read-model.rebuild",
                    &format!("read-model:{}", form.store),
                    None,
                    Some(&started),
                )
                .await
            };
            match audited.await {
                Ok(()) => format!("Rebuild of {} started.", form.store),
                Err(e) => {
                    tracing::warn!(error = %e, "auditing a rebuild failed");
                    format!(
                        "Rebuild of {} started; recording it in the audit trail failed.",
                        form.store
                    )
                }
            }
        }
        Err(e) => format!("Refused: {e}"),
    };
    Redirect::to(&format!(
        "/console/read-models?notice={}",
        urlencode(&notice)
    ))
    .into_response()
}

// --- audit ------------------------------------------------------------------------------------

pub(crate) async fn audit(State(console): State<Console>, session: Session) -> Response {
    let own = async {
        let mut conn = console.pool().acquire().await?;
        messaging::audit::list(&mut conn, &messaging::audit::Filter::default(), None, 100).await
    };
    let stock_url = format!("{}/api/ops/audit?limit=100", console.component_url("stock"));
    let auth = session.authorization();
    let (own, stock) = tokio::join!(own, crate::upstream::get(&console, &auth, &stock_url));
    let mut rows: Vec<(String, String, String, String, String)> = Vec::new();
    let mut problems = Vec::new();
    match own {
        Ok(entries) => rows.extend(entries.into_iter().map(|e| {
            (
                e.at.to_rfc3339(),
                e.actor,
                e.action,
                e.subject,
                "console".to_owned(),
            )
        })),
        Err(e) => problems.push(format!("the console's trail: {e}")),
    }
    match stock {
        Ok(Value::Array(entries)) => rows.extend(entries.iter().map(|e| {
            (
                text(e, "at").to_owned(),
                text(e, "actor").to_owned(),
                text(e, "action").to_owned(),
                text(e, "subject").to_owned(),
                "stock".to_owned(),
            )
        })),
        Ok(_) => {}
        Err(e) => problems.push(format!("the stock service's trail: {e}")),
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    let body = html! {
        h1 { "Audit" }
        p.muted { "Every operator action: catalog changes and restocks (stock service), dead letters redriven or discarded and read-model rebuilds (console). Newest first, the latest hundred of each." }
        @for p in &problems { p.error { "Could not read " (p) } }
        div.table-wrap { table {
            thead { tr { th { "when" } th { "who" } th { "what" } th { "subject" } th { "where" } } }
            tbody { @for (at, actor, action, subject, source) in &rows { tr {
                td { (at) } td { (actor) } td { (action) } td { code { (subject) } } td { (source) }
            } } }
        } }
    };
    page(layout(Some(&session), "audit", "Audit", None, body))
}

// --- live -------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    view: String,
    subject: Option<String>,
}

/// Server-sent events of a live page: every couple of seconds, the new HTML of each of its
/// live sections. Each open page has its own stream and its own previous reading, and nothing
/// runs for a page nobody has open. A stream ends with its session (logout, expiry), and a
/// journey's once its order settled.
pub(crate) async fn events(
    State(console): State<Console>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Response {
    let view = match (query.view.as_str(), query.subject.as_deref()) {
        ("overview", _) => Live::Overview,
        ("orders", threshold) => Live::Orders(
            threshold
                .and_then(|t| t.parse().ok())
                .unwrap_or(console.settings().console.stuck_after_seconds),
        ),
        ("read-models", _) => Live::ReadModels,
        ("journey", Some(subject)) => match uuid::Uuid::try_parse(subject) {
            Ok(order_id) => Live::Journey(order_id),
            Err(_) => return error_page(Some(&session), StatusCode::NOT_FOUND, "No such order."),
        },
        _ => return error_page(Some(&session), StatusCode::NOT_FOUND, "No such live view."),
    };
    let state = Stream {
        console,
        session,
        cookie: session::cookie(&headers, session::COOKIE).unwrap_or_default(),
        view,
        previous: None,
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        if !state.first {
            tokio::time::sleep(LIVE_EVERY).await;
            if !session::alive(state.console.pool(), &state.cookie).await {
                return None;
            }
        }
        state.first = false;
        let sections = state.next().await;
        Some((sections_to_events(sections), state))
    });
    let stream = futures::StreamExt::flat_map(stream, futures::stream::iter);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Debug, Clone, Copy)]
enum Live {
    Overview,
    /// The stuck list, with its threshold in seconds.
    Orders(u32),
    ReadModels,
    Journey(uuid::Uuid),
}

/// One live page's stream.
struct Stream {
    console: Console,
    session: Session,
    cookie: String,
    view: Live,
    previous: Option<overview::Readings>,
    first: bool,
    done: bool,
}

impl Stream {
    async fn next(&mut self) -> Vec<(&'static str, Markup)> {
        let auth = self.session.authorization();
        match self.view {
            Live::Overview => {
                let (figures, reading) =
                    overview::overview(&self.console, &auth, self.previous.as_ref()).await;
                self.previous = Some(reading);
                vec![
                    ("overview-figures", overview_figures(&figures)),
                    (
                        "overview-stuck",
                        stuck_table(&figures.stuck, figures.more_stuck),
                    ),
                ]
            }
            Live::Orders(older_than) => {
                let stuck = self.console.stuck(&auth, older_than, 100).await;
                vec![(
                    "stuck-list",
                    match &stuck {
                        Ok((orders, more)) => stuck_table(orders, *more),
                        Err(e) => html! { p.error { (e) } },
                    },
                )]
            }
            Live::ReadModels => vec![(
                "read-models",
                read_models_section(&self.console, &self.session).await,
            )],
            Live::Journey(order_id) => {
                let journey = crate::journey::journey(&self.console, &auth, order_id).await;
                // A settled order's journey is complete: this is its last section.
                self.done = journey.order.is_some() && journey.waiting_on.is_none();
                vec![("journey", journey_section(&journey))]
            }
        }
    }
}

fn sections_to_events(sections: Vec<(&str, Markup)>) -> Vec<Result<Event, Infallible>> {
    sections
        .into_iter()
        .map(|(id, html)| {
            let data = serde_json::json!({ "id": id, "html": html.into_string() });
            Ok(Event::default().event("section").data(data.to_string()))
        })
        .collect()
}
