//! The console's sessions, guards and operator API against the real PostgreSQL and Kafka, served
//! in-process on a random port: login once per link, the cookie, CSRF, the `Host` check, roles,
//! live events, the overview and consumer lag.

// Test code may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use platform::auth::Role;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use test_support::TestDatabase;

struct App {
    address: String,
    client: reqwest::Client,
    settings: platform::Settings,
    db: Option<TestDatabase>,
}

impl App {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut settings = test_support::isolated_settings();
        // The console answers its own address only: the gateway's port is this one here.
        settings.http.gateway_port = port;
        messaging::topics::ensure(&settings.kafka, &messaging::topics::ALL)
            .await
            .unwrap();
        let db = TestDatabase::create().await.unwrap();
        console::MIGRATOR.run(&db.pool).await.unwrap();
        let app = console::Console::with_pool(&settings, db.pool.clone()).unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.routes()).await.unwrap();
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        Self {
            address: format!("http://127.0.0.1:{port}"),
            client,
            settings,
            db: Some(db),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Logs in with `token`; the raw answer.
    async fn login_with(&self, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/console/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    /// Logs in with a fresh token of `role`: the session cookie (`name=value`) and the page's
    /// CSRF token.
    async fn login(&self, role: Role) -> (String, String) {
        let token = test_support::token(uuid::Uuid::new_v4(), &[role]);
        let response = self.login_with(&token).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = session_cookie(response.headers()).expect("a session cookie");
        let page = self.page(&cookie, "/console/dead-letters").await;
        (cookie, csrf_of(&page))
    }

    async fn get(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, cookie: &str, path: &str) -> String {
        let response = self.get(cookie, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header(header::COOKIE, cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn api(&self, auth: &str, path: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path));
        let request = if auth.is_empty() {
            request
        } else {
            request.header(header::AUTHORIZATION, auth)
        };
        request.send().await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(db) = self.db.take() {
            db.drop_now().await.unwrap();
        }
    }
}

/// `shop_console=…` from a `Set-Cookie`, checking the attributes that keep it safe.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let set = headers.get(header::SET_COOKIE)?.to_str().ok()?;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    Some(set.split(';').next()?.to_owned())
}

fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

#[tokio::test]
async fn a_token_logs_in_once_and_the_session_cookie_opens_the_pages() {
    let app = App::start().await;
    // Without a session every page leads to the login form.
    let response = app.get("", "/console").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/console/login");
    let form = app.get("", "/console/login?token=abc").await;
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.text().await.unwrap().contains(">abc</textarea>"));

    let token = test_support::token(uuid::Uuid::new_v4(), &[Role::Ops]);
    let response = app.login_with(&token).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/console");
    let cookie = session_cookie(response.headers()).unwrap();
    let page = app.get(&cookie, "/console").await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let page = page.text().await.unwrap();
    assert!(page.contains("<h1>Overview</h1>"), "{page}");
    assert!(!page.contains("Read-only"), "an operator is not read-only");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");

    // The same token (the same `jti`) logs in no second time.
    let again = app.login_with(&token).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.text().await.unwrap().contains("used already"));
    app.stop().await;
}

#[tokio::test]
async fn only_viewers_and_operators_log_in() {
    let app = App::start().await;
    let (_, customer) = test_support::customer();
    let token = customer.trim_start_matches("Bearer ");
    assert_eq!(app.login_with(token).await.status(), StatusCode::FORBIDDEN);
    let refused = app.login_with("not.a.token").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(header::SET_COOKIE).is_none());
    app.stop().await;
}

#[tokio::test]
async fn actions_need_the_session_csrf_token_and_the_ops_role() {
    let app = App::start().await;
    let (ops, csrf) = app.login(Role::Ops).await;
    let discard = "/console/dead-letters/discard";
    // Without the token, or with another, nothing happens.
    let refused = app
        .post(&ops, discard, &[("dryRun", "true"), ("csrf", "")])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "urn:shop:problem:csrf");
    let refused = app
        .post(
            &ops,
            discard,
            &[("dryRun", "true"), ("csrf", "not-the-token")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // A form posted from another site is refused whatever it carries.
    let foreign = app
        .client
        .post(app.url(discard))
        .header(header::COOKIE, &ops)
        .header(header::ORIGIN, "http://attacker.example")
        .form(&[("csrf", csrf.as_str()), ("dryRun", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    // With it, a bulk action first shows how many letters it would touch.
    let dry_run = app
        .post(&ops, discard, &[("dryRun", "true"), ("csrf", &csrf)])
        .await;
    assert_eq!(dry_run.status(), StatusCode::OK);
    assert!(
        dry_run
            .text()
            .await
            .unwrap()
            .contains("waiting letters match this filter")
    );

    // A viewer reads with a banner, is offered no action, and is refused one.
    let (viewer, viewer_csrf) = app.login(Role::Viewer).await;
    let page = app.page(&viewer, "/console/dead-letters").await;
    assert!(page.contains("Read-only"), "{page}");
    assert!(!page.contains("/console/dead-letters/discard"), "{page}");
    let refused = app
        .post(
            &viewer,
            discard,
            &[("dryRun", "true"), ("csrf", &viewer_csrf)],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "urn:shop:problem:forbidden");
    app.stop().await;
}

#[tokio::test]
async fn the_console_answers_only_its_own_host_names() {
    let app = App::start().await;
    let response = app
        .client
        .get(app.url("/console/login"))
        .header(header::HOST, "rebound.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:shop:problem:unknown-host");
    let port = app.settings.http.gateway_port;
    let response = app
        .client
        .get(app.url("/console/login"))
        .header(header::HOST, format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn logging_out_ends_the_session_everywhere() {
    let app = App::start().await;
    let (cookie, csrf) = app.login(Role::Viewer).await;
    let refused = app
        .post(&cookie, "/console/logout", &[("csrf", "wrong")])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let out = app
        .post(&cookie, "/console/logout", &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = out.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = app.get(&cookie, "/console").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn a_live_page_gets_its_sections_as_server_sent_events() {
    let app = App::start().await;
    let (cookie, _) = app.login(Role::Viewer).await;
    let mut response = app.get(&cookie, "/console/events?view=overview").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("overview-stuck") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("sections within 20 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: section"), "{seen}");
    assert!(seen.contains("overview-figures"), "{seen}");
    let unknown = app.get(&cookie, "/console/events?view=nothing").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn the_operator_api_answers_viewers_with_the_overview_and_the_lag() {
    let app = App::start().await;
    for path in ["/api/ops/overview", "/api/ops/lag"] {
        assert_eq!(app.api("", path).await.status(), StatusCode::UNAUTHORIZED);
        let (_, customer) = test_support::customer();
        assert_eq!(
            app.api(&customer, path).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    // Records the groups have not read yet: lag in messages, and an age in seconds.
    let producer = test_support::kafka::RawProducer::new(&app.settings).unwrap();
    let topic = format!(
        "{}{}",
        app.settings.kafka.topic_prefix,
        contracts::topics::PAYMENTS
    );
    for _ in 0..3 {
        let record = test_support::kafka::Record {
            key: Some("k".to_owned()),
            payload: Some(b"{}".to_vec()),
            ..Default::default()
        };
        producer.send(&topic, &record).await.unwrap();
    }
    let lag: Value = app
        .api(&test_support::viewer(), "/api/ops/lag")
        .await
        .json()
        .await
        .unwrap();
    let lag = lag.as_array().unwrap();
    let groups: std::collections::BTreeSet<&str> =
        lag.iter().map(|l| l["group"].as_str().unwrap()).collect();
    assert_eq!(
        groups,
        [
            "order",
            "payment",
            "projections-mongodb",
            "projections-redis",
            "stock"
        ]
        .into()
    );
    let behind: Vec<&Value> = lag
        .iter()
        .filter(|l| l["group"] == "stock" && l["topic"] == contracts::topics::PAYMENTS)
        .filter(|l| l["messages"].as_i64().unwrap() > 0)
        .collect();
    assert_eq!(
        behind
            .iter()
            .map(|l| l["messages"].as_i64().unwrap())
            .sum::<i64>(),
        3,
        "{lag:?}"
    );
    assert!(
        behind
            .iter()
            .all(|l| l["seconds"].as_f64().is_some_and(|s| s >= 0.0)),
        "{behind:?}"
    );

    // The components are not running here: the overview says so and answers the rest.
    let overview = app.api(&test_support::viewer(), "/api/ops/overview").await;
    assert_eq!(overview.status(), StatusCode::OK);
    let overview: Value = overview.json().await.unwrap();
    assert_eq!(overview["components"].as_array().unwrap().len(), 4);
    assert!(overview["lag"].as_array().unwrap().len() >= lag.len());
    assert!(!overview["problems"].as_array().unwrap().is_empty());
    app.stop().await;
}
