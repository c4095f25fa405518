//! Redrive and discard from the pages (`POST /console/dead-letters/{redrive,discard}`), and
//! the confirmation page of an action by filter.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::LetterQuery;
use crate::Console;
use crate::dead_letters::{Action, LetterId, Selection, State as LetterState};
use crate::pages::layout::{error_page, layout, page, urlencode};
use crate::session::Session;

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

/// A dry run shows what the action would touch and asks for a second, confirming submission:
/// always for many letters by filter, and for one letter's discard; otherwise one letter at once.
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
    let outcome = console
        .dead_letters()
        .act(&selection, action, dry_run, &session.actor)
        .await;
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
        let body = match &selection {
            Selection::One(id) => confirm_one(&session, action, *id, outcome.matched),
            Selection::Matching(_) => confirm_many(&session, action, &form.filter, outcome.matched),
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

/// The confirmation of an action on one letter; `matched` is 0 when it is no longer waiting.
fn confirm_one(session: &Session, action: Action, id: LetterId, matched: u64) -> Markup {
    let verb = action.verb();
    let back = format!("/console/dead-letters/{id}");
    html! {
        h1 { "Confirm: " (verb) }
        @if matched > 0 {
            p { "Dead letter " code { (id) } @match action {
                Action::Discard => " will be marked discarded. It stays in the dead-letter topic and in the audit, and is never redriven after.",
                Action::Redrive => " will be published again to the topic it came from.",
            } }
            div.actions {
                form method="post" action={ "/console/dead-letters/" (verb) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="letterId" value=(id);
                    input type="hidden" name="dryRun" value="false";
                    button.primary[matches!(action, Action::Redrive)].danger[matches!(action, Action::Discard)] type="submit" {
                        (verb) " this letter"
                    }
                }
                a href=(back) { "Cancel" }
            }
        } @else {
            p { "Dead letter " code { (id) } " is no longer waiting: someone redrove or discarded it." }
            p { a href=(back) { "Back" } }
        }
    }
}

/// The confirmation of an action on every waiting letter that matches `filter`.
fn confirm_many(session: &Session, action: Action, filter: &LetterQuery, matched: u64) -> Markup {
    let verb = action.verb();
    html! {
        h1 { "Confirm: " (verb) }
        p { (matched) " waiting letters match this filter." }
        @if matched > 0 {
            div.actions {
                form method="post" action={ "/console/dead-letters/" (verb) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="dryRun" value="false";
                    (filter.hidden())
                    button.primary[matches!(action, Action::Redrive)].danger[matches!(action, Action::Discard)] type="submit" {
                        (verb) " " (matched) " letters"
                    }
                }
                a href="/console/dead-letters" { "Cancel" }
            }
        } @else {
            p { a href="/console/dead-letters" { "Back" } }
        }
    }
}
