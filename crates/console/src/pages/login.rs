//! Signing in (`/console/login`: a form for a token, or a one-time link) and out.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{error_page, layout, page};
use crate::Console;
use crate::session::{self, Session};

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
