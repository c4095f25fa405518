//! Redrive and discard from the pages (`POST /console/dead-letters/{redrive,discard}`), and
//! the confirmation page of an action by filter.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
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
        let verb = action.verb();
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
