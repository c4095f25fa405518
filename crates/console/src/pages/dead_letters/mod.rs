//! Dead letters (`/console/dead-letters`): the list and its filters, here; one letter
//! ([`letter`]); redrive and discard, one letter or every match after a dry run ([`actions`]).

mod actions;
mod letter;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{error_page, layout, page, urlencode};
use crate::Console;
use crate::dead_letters::{Filter, Letter, LetterId, ResolutionKind, State as LetterState};
use crate::session::Session;

pub(crate) use actions::{discard, redrive};
pub(crate) use letter::dead_letter;

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
