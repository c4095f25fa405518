//! Console sessions: logging in with a token, the session cookie, CSRF and the `Host` check.
//!
//! - **Login**: `GET /console/login` is a form for a bearer token; `./dev up` prints a link that
//!   fills it in (`?token=`), and the person confirms with a button, so a link prefetched or
//!   previewed logs nobody in. `POST /console/login` verifies the token like every service
//!   does (`platform::auth`), needs the `viewer` role, and lets a token with a `jti` log in once
//!   (`used_logins`): a login link leaked after use is worth nothing.
//! - **Session**: a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//!   `/console` (`Secure` when configured); the database keeps its SHA-256, who it is, the
//!   roles, a CSRF token and the bearer token the session presents to the services on its
//!   behalf, so each service still decides what this caller may read. It ends when the token
//!   expires (or earlier, `console.session_minutes`), or at logout.
//! - **CSRF**: every state-changing form carries the session's synchronizer token, compared in
//!   constant time; a request whose `Origin` (or, without one, `Referer`) names another site is
//!   refused as well. `SameSite=Strict` alone would leave out older browsers and same-site
//!   subdomains.
//! - **Host**: the console answers only `Host` values it knows (its own address, `localhost`,
//!   `console.hosts`): a page of another site that rebinds its DNS name to this address
//!   (DNS rebinding) is refused before anything else happens.

use std::collections::HashSet;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use platform::auth::{Identity, Role};
use platform::http::Problem;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq as _;

use crate::Console;

/// The session cookie.
pub const COOKIE: &str = "shop_console";

/// A logged-in person, read from the session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, as the token's `sub` said: the audit trail's actor.
    pub actor: String,
    /// `ops` may act; a viewer only reads.
    pub ops: bool,
    /// The synchronizer token the session's forms carry.
    pub csrf: String,
    /// The bearer token presented to the services for this session.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// The `Authorization` value for calls to the services on this session's behalf.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `Ok` when the session may act (the `ops` role), else a 403 problem.
    pub fn require_ops(&self) -> Result<(), Problem> {
        if self.ops {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Your role may not do this",
            )
            .detail("this needs the ops role; a viewer reads only"))
        }
    }

    /// Checks a form's CSRF token against the session's; a 403 problem when it is not the same.
    pub fn check_csrf(&self, sent: &str) -> Result<(), Problem> {
        if bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes())) {
            Ok(())
        } else {
            Err(csrf_refused(
                "the form's CSRF token is missing or wrong; reload the page",
            ))
        }
    }
}

fn csrf_refused(detail: &str) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "The request did not come from the console",
    )
    .detail(detail.to_owned())
}

/// Without a live session a page redirects to the login form.
impl FromRequestParts<Console> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let Some(id) = cookie(&parts.headers, COOKIE) else {
            return Err(to_login());
        };
        match find(console.pool(), &id).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::warn!(error = %e, "reading a console session failed");
                Err(Problem::unavailable("the console's database is unavailable").into_response())
            }
        }
    }
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

fn hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

fn random_secret() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    actor: String,
    roles: Vec<String>,
    csrf: String,
    token: String,
    expires_at: DateTime<Utc>,
}

async fn find(pool: &PgPool, id: &str) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT actor, roles, csrf, token, expires_at FROM sessions
         WHERE id_hash = $1 AND expires_at > now()",
    )
    .bind(hash(id))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| Session {
        actor: row.actor,
        ops: row.roles.iter().any(|r| r == Role::Ops.name()),
        csrf: row.csrf,
        token: row.token,
        expires_at: row.expires_at,
    }))
}

/// Why a login was refused, for the login form to say.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Token(platform::auth::AuthError),
    #[error("this token has no viewer or ops role")]
    NoRole,
    #[error("this login link was used already; ask for a new one (`./dev login`)")]
    Used,
    #[error("the console's database is unavailable; try again")]
    Database(#[from] sqlx::Error),
}

/// A new session for `token`: its cookie value and the session.
pub async fn login(console: &Console, token: &str) -> Result<(String, Session), LoginError> {
    let identity: Identity = console
        .verifier()
        .verify(token)
        .await
        .map_err(LoginError::Token)?;
    if !identity.has(Role::Viewer) {
        return Err(LoginError::NoRole);
    }
    let claims = Claims::of(token);
    let now = Utc::now();
    let longest =
        now + chrono::TimeDelta::minutes(i64::from(console.settings().console.session_minutes));
    let expires_at = claims
        .exp
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
        .map_or(longest, |exp| exp.min(longest));
    let mut tx = console.pool().begin().await?;
    if let Some(jti) = &claims.jti {
        let first = sqlx::query(
            "INSERT INTO used_logins (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if first.rows_affected() == 0 {
            return Err(LoginError::Used);
        }
    }
    let id = random_secret();
    let roles: Vec<&str> = [Role::Viewer, Role::Ops]
        .into_iter()
        .filter(|r| identity.has(*r))
        .map(Role::name)
        .collect();
    let csrf = random_secret();
    sqlx::query(
        "INSERT INTO sessions (id_hash, actor, roles, csrf, token, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash(&id))
    .bind(&identity.name)
    .bind(&roles)
    .bind(&csrf)
    .bind(token)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    // Sessions and used links past their time are of no use to anyone.
    sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM used_logins WHERE expires_at < now()")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let session = Session {
        ops: identity.has(Role::Ops),
        actor: identity.name,
        csrf,
        token: token.to_owned(),
        expires_at,
    };
    Ok((id, session))
}

/// Whether the session of the cookie `id` is still on (not ended, not expired). A database
/// that cannot answer ends nothing.
pub async fn alive(pool: &PgPool, id: &str) -> bool {
    find(pool, id)
        .await
        .map_or(true, |session| session.is_some())
}

/// Ends the session of the cookie `id`.
pub async fn logout(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(hash(id))
        .execute(pool)
        .await?;
    Ok(())
}

/// The `Set-Cookie` of a new session.
pub fn set_cookie(console: &Console, id: &str, session: &Session) -> HeaderValue {
    let seconds = (session.expires_at - Utc::now()).num_seconds().max(0);
    let secure = if console.settings().console.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={seconds}{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` that ends a session in the browser.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("shop_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The claims the console reads beyond `platform::auth`'s: when the token expires and its id.
/// Read only after the token verified, so they are the issuer's.
#[derive(Debug, Default, serde::Deserialize)]
struct Claims {
    exp: Option<i64>,
    jti: Option<String>,
}

impl Claims {
    fn of(token: &str) -> Self {
        token
            .split('.')
            .nth(1)
            .and_then(|payload| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .ok()
            })
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }
}

// --- Host and origin --------------------------------------------------------------------------

/// The `Host` values the console answers.
#[derive(Debug, Clone)]
pub struct Hosts(HashSet<String>);

impl Hosts {
    pub fn from_settings(settings: &platform::Settings) -> Self {
        let port = settings.http.gateway_port;
        let mut hosts: HashSet<String> = [
            format!("{}:{port}", settings.http.gateway_host),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]
        .into_iter()
        .collect();
        hosts.extend(
            settings
                .console
                .hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase),
        );
        Self(hosts)
    }

    pub fn allows(&self, host: &str) -> bool {
        self.0.contains(&host.to_ascii_lowercase())
    }

    /// Whether `origin` (`scheme://host[:port]`, as in `Origin`, or a `Referer` URL) is one of
    /// the console's own.
    fn allows_origin(&self, origin: &str) -> bool {
        let Some((_, rest)) = origin.split_once("://") else {
            return false;
        };
        let host = rest.split('/').next().unwrap_or_default();
        self.allows(host)
    }
}

/// Middleware of every console route: an unknown `Host` is refused (421), and a state-changing
/// request from another origin too (403). Pages get headers that keep them from being framed,
/// cached or leaking their address.
pub async fn guard(
    axum::extract::State(hosts): axum::extract::State<Hosts>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !hosts.allows(host) {
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown-host",
            "The console does not answer this host name",
        )
        .detail("add the name to SHOP_CONSOLE__HOSTS if it is yours")
        .into_response();
    }
    if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
        let headers = request.headers();
        let origin = headers
            .get(header::ORIGIN)
            .or_else(|| headers.get(header::REFERER))
            .and_then(|v| v.to_str().ok());
        if let Some(origin) = origin {
            if !hosts.allows_origin(origin) {
                return csrf_refused("the request came from another site").into_response();
            }
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: the page's address still never leaves for another
    // site, but a browser's form posts keep their `Origin`. Under `no-referrer` a browser sends
    // `Origin: null` with every POST, even to its own origin (Fetch, "append a request Origin
    // header"), and the check above refuses every form of the console, sign-in included.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; shop_console=abc; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn only_known_hosts_and_origins_are_allowed() {
        let hosts = Hosts::from_settings(&test_settings());
        assert!(hosts.allows("127.0.0.1:8080"));
        assert!(hosts.allows("LOCALHOST:8080"));
        assert!(hosts.allows("shop.example.com"));
        assert!(!hosts.allows("attacker.example:8080"));
        assert!(!hosts.allows("127.0.0.1:9999"));
        assert!(hosts.allows_origin("http://localhost:8080"));
        assert!(hosts.allows_origin("http://127.0.0.1:8080/console/dead-letters"));
        assert!(!hosts.allows_origin("http://attacker.example:8080"));
        assert!(!hosts.allows_origin("null"));
    }

    fn test_settings() -> platform::Settings {
        let mut settings = platform::Settings::load().unwrap_or_else(|e| panic!("{e}"));
        settings.http.gateway_port = 8080;
        settings.console.hosts = "shop.example.com".to_owned();
        settings
    }
}
