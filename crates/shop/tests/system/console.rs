//! The operator API over real processes, through the entry point: an order's journey across the
//! services, the stuck list and the overview while a service is down, and the hop a stuck
//! order waits on.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::eventually;
use test_support::stack::Stack;
use uuid::Uuid;

use crate::common::SHOP;

fn kinds(journey: &Value, kind: &str) -> Vec<String> {
    journey["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            format!(
                "{} {}",
                s["by"].as_str().unwrap(),
                s["what"].as_str().unwrap()
            )
        })
        .collect()
}

/// Places an order of one unit of product 1 for `customer` and waits until it completed.
async fn completed_order(stack: &Stack, customer: Uuid) -> String {
    let order = stack
        .place(customer, json!([{"productId": 1, "quantity": 1}]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.settled(&id, Duration::from_secs(30)).await["status"],
        "completed"
    );
    id
}

/// Each service applied the message of the hop before it: the journey read every inbox.
fn assert_every_hop_applied(journey: &Value) {
    let applied = kinds(journey, "applied");
    for expected in [
        "stock OrderPlaced",
        "payment StockReserved",
        "order PaymentCaptured",
    ] {
        assert!(
            applied.contains(&expected.to_owned()),
            "{expected} missing: {journey:#}"
        );
    }
}

#[tokio::test]
async fn a_journey_shows_every_hop_and_a_stuck_order_names_the_one_it_waits_on() {
    let mut stack = Stack::start(SHOP).await;
    let customer = Uuid::new_v4();
    let id = completed_order(&stack, customer).await;

    let journey = stack
        .ops_get(&format!("/api/ops/orders/{id}/journey"))
        .await;
    assert_eq!(
        kinds(&journey, "event"),
        ["order OrderPlaced", "order OrderCompleted"]
    );
    let messages = kinds(&journey, "message");
    for expected in [
        "order OrderPlaced",
        "stock StockReserved",
        "payment PaymentCaptured",
        "order OrderCompleted",
    ] {
        assert!(
            messages.contains(&expected.to_owned()),
            "{expected} missing: {journey:#}"
        );
    }
    assert_every_hop_applied(&journey);
    // Each message is placed on its topic, and names the message that caused it.
    let reserved = journey["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "message" && s["what"] == "StockReserved")
        .unwrap();
    assert!(reserved["topic"].as_str().unwrap().ends_with("shop.stock"));
    assert!(reserved["offset"].as_i64().is_some() && reserved["causationId"].as_str().is_some());
    assert_eq!(
        journey["traceId"].as_str().map(str::len),
        Some(32),
        "{journey:#}"
    );
    assert!(journey["waitingOn"].is_null());

    // With payment down, an order stays pending: it is listed as stuck, and its journey says
    // that payment has not applied the reservation.
    stack.stop("payment").await;
    let stuck = stack
        .place(customer, json!([{"productId": 2, "quantity": 1}]))
        .await;
    let stuck_id = stuck["orderId"].as_str().unwrap().to_owned();
    let journey = eventually(
        Duration::from_secs(30),
        "the order to wait on payment",
        || {
            let path = format!("/api/ops/orders/{stuck_id}/journey");
            let stack = &stack;
            async move {
                let journey = stack.ops_get(&path).await;
                let waiting = journey["waitingOn"].as_str().unwrap_or_default().to_owned();

                Ok(waiting
                    .starts_with("payment has not applied StockReserved")
                    .then_some(journey))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(journey["order"]["status"], "pending");
    let listed = stack.ops_get("/api/ops/orders/stuck?olderThan=0").await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [stuck_id.as_str()]);
    let overview = stack.ops_get("/api/ops/overview").await;
    let payment = overview["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "payment")
        .unwrap();
    assert_eq!(payment["up"], false, "{overview:#}");
    assert!(
        overview["sagas"]["completed"].as_f64().unwrap() >= 1.0,
        "{overview:#}"
    );
    let lagging: i64 = overview["lag"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["group"] == "payment")
        .map(|l| l["messages"].as_i64().unwrap())
        .sum();
    assert!(
        lagging >= 1,
        "payment's group is behind by the reservation: {overview:#}"
    );

    // Back up, the order completes and leaves the stuck list.
    stack.spawn("payment").await;
    assert_eq!(
        stack.settled(&stuck_id, Duration::from_secs(30)).await["status"],
        "completed"
    );
    let listed = stack.ops_get("/api/ops/orders/stuck?olderThan=0").await;
    assert_eq!(listed, json!([]));
    stack.remove().await.unwrap();
}

/// A component of several instances (SYSTEM.md §9): the console reads each one through an
/// instance that answers, and its overview shows every instance. Here the first instance of
/// every component is an address nothing listens on, so each read must move on to the second.
#[tokio::test]
async fn the_console_reads_each_component_through_an_instance_that_answers() {
    let mut stack =
        Stack::start_with(SHOP, &["order", "stock", "payment", "projections"], &[]).await;
    let nothing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for component in ["order", "stock", "payment", "projections"] {
        let urls = format!(
            "http://127.0.0.1:{nothing},http://127.0.0.1:{}",
            stack.port(component)
        );
        stack.set_env(
            &format!("SHOP_GATEWAY__{}_URLS", component.to_uppercase()),
            &urls,
        );
    }
    stack.spawn("gateway").await;
    let id = completed_order(&stack, Uuid::new_v4()).await;

    // The journey reads the order and every service's inbox.
    let journey = stack
        .ops_get(&format!("/api/ops/orders/{id}/journey"))
        .await;
    assert_eq!(journey["order"]["status"], "completed", "{journey:#}");
    assert_every_hop_applied(&journey);

    // The overview: each component up through its second instance, the first shown down, and
    // the figures read from the one that answers.
    let overview = stack.ops_get("/api/ops/overview").await;
    for component in overview["components"].as_array().unwrap() {
        let ups: Vec<bool> = component["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["up"].as_bool().unwrap())
            .collect();
        assert_eq!(ups, [false, true], "{overview:#}");
        assert_eq!(component["up"], true, "{overview:#}");
    }
    assert!(
        overview["sagas"]["completed"].as_f64().unwrap() >= 1.0,
        "{overview:#}"
    );
    for outbox in overview["outbox"].as_array().unwrap() {
        assert!(outbox["pending"].is_number(), "{overview:#}");
    }
    assert_eq!(overview["problems"], json!([]), "{overview:#}");
    stack.remove().await.unwrap();
}

/// `SHOP_CONSOLE__ENABLED=false`: the entry point serves the shop, answers the console's pages
/// and its own `/api/ops` routes 404, and never makes the console's database.
#[tokio::test]
async fn with_the_console_off_the_entry_point_serves_the_shop_and_no_console() {
    let stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "gateway"],
        &[("gateway:SHOP_CONSOLE__ENABLED", "false")],
    )
    .await;
    let id = completed_order(&stack, Uuid::new_v4()).await;
    for path in [
        "/console",
        "/console/login",
        "/api/ops/overview",
        "/api/ops/lag",
        "/api/ops/dead-letters",
        &format!("/api/ops/orders/{id}/journey"),
    ] {
        let answer = stack
            .as_operator(stack.client.get(stack.api(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path}");
    }
    // The order service's own operator routes still answer through the entry point.
    stack.ops_get("/api/ops/orders/stuck?olderThan=0").await;
    let console_database = format!("test_{}_console", stack.id);
    let made: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&console_database)
            .fetch_one(&stack.pool("order").await)
            .await
            .unwrap();
    assert!(!made, "{console_database} was made");
    stack.remove().await.unwrap();
}

/// The value of `name="csrf"` in a page.
fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

/// An operator signs in with the link `shop login-url` prints and works through the pages: the
/// overview, an order's journey, a restock and a reprice from the catalog page, the audit.
#[tokio::test]
async fn an_operator_signs_in_with_the_printed_link_and_works_through_the_pages() {
    let stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "projections", "gateway"],
        &[],
    )
    .await;
    let customer = Uuid::new_v4();
    let order = stack
        .place(customer, json!([{"productId": 3, "quantity": 1}]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    stack.settled(&id, Duration::from_secs(30)).await;

    let link = stack.shop(&["login-url", "ada"]);
    let link = link.trim();
    let path = link
        .split_once("/console/")
        .map(|(_, rest)| format!("/console/{rest}"))
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client.get(stack.api(&path)).send().await.unwrap();
    assert_eq!(form.status(), reqwest::StatusCode::OK);
    let token = path.split_once("token=").unwrap().1;
    let signed_in = client
        .post(stack.api("/console/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |path: String| {
        let (client, cookie, url) = (client.clone(), cookie.clone(), stack.api(&path));
        async move {
            let response = client
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
            response.text().await.unwrap()
        }
    };
    let overview = page("/console".to_owned()).await;
    assert!(overview.contains("ada · ops"), "{overview}");
    assert!(overview.contains("/console/assets/live.js"));
    let journey = page(format!("/console/orders/{id}")).await;
    for expected in [
        "OrderPlaced",
        "StockReserved",
        "PaymentCaptured",
        "OrderCompleted",
        "shop.stock/",
    ] {
        assert!(
            journey.contains(expected),
            "{expected} missing from the journey page"
        );
    }

    let catalog = page("/console/catalog".to_owned()).await;
    let csrf = csrf_of(&catalog);
    let before = stack.stock().await[&3].0;
    let restocked = client
        .post(stack.api("/console/catalog/3/restock"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("quantity", "7")])
        .send()
        .await
        .unwrap();
    assert_eq!(restocked.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(stack.stock().await[&3].0, before + 7);
    let repriced = client
        .post(stack.api("/console/catalog/3/price"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Monitor"),
            ("unitPrice", "455.50"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(repriced.status(), reqwest::StatusCode::SEE_OTHER);
    let notice = repriced.headers()["location"].to_str().unwrap().to_owned();
    assert!(notice.contains("455.50"), "{notice}");
    let catalog = page("/console/catalog".to_owned()).await;
    assert!(catalog.contains("455.50"), "{catalog}");
    // Without the form's token the same request changes nothing.
    let refused = client
        .post(stack.api("/console/catalog/3/restock"))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged"), ("quantity", "7")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(stack.stock().await[&3].0, before + 7);

    // A rebuild of the read models, started from its page and followed to its end.
    let read_models = page("/console/read-models".to_owned()).await;
    assert!(read_models.contains("current generation"), "{read_models}");
    let started = client
        .post(stack.api("/console/read-models/rebuild"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("store", "all")])
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), reqwest::StatusCode::SEE_OTHER);
    let notice = started.headers()["location"].to_str().unwrap().to_owned();
    assert!(notice.contains("started"), "{notice}");
    eventually(Duration::from_secs(30), "the rebuild to finish", || {
        let page = page("/console/read-models".to_owned());
        async move { Ok(page.await.contains("finished").then_some(())) }
    })
    .await
    .unwrap();

    let audit = page("/console/audit".to_owned()).await;
    assert!(
        audit.contains("product.restock") && audit.contains("ada"),
        "{audit}"
    );
    assert!(audit.contains("read-model.rebuild"), "{audit}");
    // The link signs in once.
    let again = client
        .post(stack.api("/console/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::UNAUTHORIZED);
    stack.remove().await.unwrap();
}
