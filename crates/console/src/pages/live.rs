//! The live sections (`/console/events`): server-sent events that bring a page's sections anew
//! for `live.js` to swap in.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::journey::journey_section;
use super::layout::error_page;
use super::overview::overview_figures;
use super::read_models::read_models_section;
use super::stuck::stuck_table;
use crate::Console;
use crate::overview;
use crate::session::{self, Session};

/// How often a live page gets new figures.
const LIVE_EVERY: Duration = Duration::from_secs(2);

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
