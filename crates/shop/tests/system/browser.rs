//! The operator console in a real headless Chromium (test-support's `browser` feature) against
//! a real stack, through the entry point: what an operator and a viewer see and can do, page by
//! page, with the live sections updating the open page.
//!
//! With `CONSOLE_SCREENSHOTS=DIR` set, the tests also save the overview, a journey and the
//! dead-letters page as PNGs into DIR, relative to the repository's root (the README's pictures
//! are made so, into `docs/images`).

use std::time::Duration;

use contracts::headers as h;
use contracts::topics;
use serde_json::{Value, json};
use test_support::browser::Browser;
use test_support::eventually;
use test_support::kafka::{RawProducer, Record};
use test_support::stack::Stack;
use uuid::Uuid;

use crate::common::SHOP;
use crate::hostile;

/// Buttons that change something; a viewer's pages have none of them.
const ACTIONS: [&str; 7] = [
    "Redrive",
    "Discard…",
    "Redrive every match…",
    "Discard every match…",
    "Reprice",
    "Restock",
    "Rebuild",
];

/// Opens the one-time link `shop login-url NAME` prints, signs in with it and lands on the
/// overview as an operator.
async fn sign_in_with_printed_link(stack: &Stack, name: &str) -> Browser {
    let link = stack.shop(&["login-url", name]);
    let link = link.trim();
    assert!(
        link.starts_with(&stack.api("/console/login?token=")),
        "{link}"
    );
    let browser = Browser::start().await.unwrap();
    browser.goto(link).await.unwrap();
    browser.click_text("Sign in").await.unwrap();
    browser
        .wait_for_text(&format!("{name} · ops"))
        .await
        .unwrap();
    assert_eq!(browser.current_url().await.unwrap(), stack.api("/console"));
    browser
}

/// The path of every form of the page that posts.
async fn post_forms(browser: &Browser) -> Vec<String> {
    let actions = browser
        .eval(
            "return Array.from(document.querySelectorAll('form'))
                .filter(f => f.method === 'post')
                .map(f => new URL(f.action).pathname);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(actions).unwrap()
}

/// The labels of the page's buttons, trimmed.
async fn buttons(browser: &Browser) -> Vec<String> {
    let labels = browser
        .eval(
            "return Array.from(document.querySelectorAll('button, input[type=submit]'))
                .map(b => (b.tagName === 'INPUT' ? b.value : b.innerText).trim());",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(labels).unwrap()
}

/// The visible text of the element `#id`.
async fn section(browser: &Browser, id: &str) -> String {
    let text = browser
        .eval(
            "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
            vec![json!(id)],
        )
        .await
        .unwrap();
    text.as_str().unwrap_or_default().to_owned()
}

/// Marks the open document, so a later check can tell that it was never reloaded or left.
async fn mark(browser: &Browser) {
    browser
        .eval("window.stillThisDocument = true;", vec![])
        .await
        .unwrap();
}

async fn still_marked(browser: &Browser) -> bool {
    browser
        .eval("return window.stillThisDocument === true;", vec![])
        .await
        .unwrap()
        == json!(true)
}

/// Clicks `button`, waits until its confirmation page says `asks`, and checks that asking
/// changed nothing: the dead letter at `letter` (its operator API path) still waits.
async fn asks_first(browser: &Browser, stack: &Stack, button: &str, asks: &str, letter: &str) {
    browser.click_text(button).await.unwrap();
    browser.wait_for_text(asks).await.unwrap();
    assert_eq!(
        stack.ops_get(letter).await["resolution"],
        Value::Null,
        "{button} acted before it was confirmed"
    );
}

/// Saves a PNG of the window as `name` when `CONSOLE_SCREENSHOTS` names a directory.
async fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") {
        // Tests run in the crate's directory; the root is where a person names the directory from.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        browser.set_window_size(1280, 800).await.unwrap();
        browser.screenshot(root.join(dir).join(name)).await.unwrap();
    }
}

/// SYSTEM.md §11: an operator signs in with the printed link and sees every component on the
/// overview; an order left pending (payment down) is on the stuck list, its journey shows the
/// hops so far and the one it waits on, and the open journey turns to `timed_out` by itself when
/// the saga's deadline passes.
#[tokio::test]
async fn an_operator_sees_every_component_and_watches_a_stuck_order_time_out() {
    let mut stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "projections", "gateway"],
        // Long enough to look at the order while it is pending, short enough to watch it fail.
        &[("SHOP_SAGA__DEADLINE_SECONDS", "30")],
    )
    .await;
    let customer = Uuid::new_v4();
    let done = stack
        .place(customer, json!([{"productId": 1, "quantity": 1}]))
        .await;
    let done = done["orderId"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.settled(&done, Duration::from_secs(30)).await["status"],
        "completed"
    );

    let mut browser = sign_in_with_printed_link(&stack, "ada").await;
    for component in ["order", "stock", "payment", "projections"] {
        browser
            .wait_for_text(&format!("{component} ✓"))
            .await
            .unwrap();
    }
    let overview = section(&browser, "overview-figures").await;
    assert!(!overview.contains("unreachable"), "{overview}");
    for figure in [
        "Completed",
        "Saga latency p99",
        "Outbox backlog",
        "Consumer lag",
        "Read models",
    ] {
        assert!(overview.contains(figure), "{figure} missing: {overview}");
    }
    // The completed order is counted (the figures come from the order service's metrics).
    browser.wait_for_text("1 in all").await.unwrap();
    screenshot(&browser, "console-overview.png").await;

    // Payment down: the next order stays pending and is listed as stuck.
    stack.stop("payment").await;
    let stuck = stack
        .place(customer, json!([{"productId": 2, "quantity": 1}]))
        .await;
    let stuck = stuck["orderId"].as_str().unwrap().to_owned();
    browser
        .goto(&stack.api("/console/orders?olderThan=0"))
        .await
        .unwrap();
    let listed = section(&browser, "stuck-list").await;
    assert!(listed.contains(&stuck), "{listed}");
    assert!(!listed.contains(&done), "a completed order is not stuck");

    // Its journey: the hops so far, and the one it waits on.
    browser
        .click(&format!("#stuck-list a[href=\"/console/orders/{stuck}\"]"))
        .await
        .unwrap();
    browser
        .wait_for_text("Waiting: payment has not applied StockReserved")
        .await
        .unwrap();
    let journey = section(&browser, "journey").await;
    for step in [
        "event OrderPlaced",
        "message OrderPlaced",
        "applied OrderPlaced",
        "message StockReserved",
    ] {
        assert!(journey.contains(step), "{step} missing: {journey}");
    }
    assert!(journey.contains("pending"), "{journey}");
    assert!(!journey.contains("timed_out"), "{journey}");

    // The deadline passes: the open page shows the failure without being reloaded.
    mark(&browser).await;
    browser.set_timeout(Duration::from_secs(45));
    browser.wait_for_text("timed_out").await.unwrap();
    browser.wait_for_text("event OrderFailed").await.unwrap();
    assert!(
        still_marked(&browser).await,
        "the journey updated in place, not by a reload"
    );
    let journey = section(&browser, "journey").await;
    assert!(journey.contains("failed"), "{journey}");
    assert!(!journey.contains("Waiting:"), "{journey}");
    assert_eq!(stack.order(&stuck).await["failureReason"], "timed_out");

    // Failed, it is no longer stuck.
    browser
        .goto(&stack.api("/console/orders?olderThan=0"))
        .await
        .unwrap();
    assert!(
        section(&browser, "stuck-list")
            .await
            .contains("No saga is stuck."),
        "{}",
        section(&browser, "stuck-list").await
    );

    browser.close().await.unwrap();
    stack.remove().await.unwrap();
}

/// SYSTEM.md §11: a viewer reads every page, dead letters included, and is offered no action;
/// an action without the session's CSRF token is refused and changes nothing; an operator
/// redrives a dead letter from its page once its cause is fixed, and the order's journey, open
/// in another tab, shows it complete without being reloaded. Then a poison message published
/// straight to a topic: the operator finds it by its reason, reads its payload and headers and
/// discards it after the dry run's confirmation, audited; the component that parked it is the
/// process the stack started.
#[tokio::test]
async fn a_viewer_only_reads_a_forged_form_is_refused_and_an_operator_redrives_and_discards() {
    let stack = Stack::start(SHOP).await;
    let pids = stack.pids();
    let payment = stack.pool("payment").await;
    // The fault: payment's database refuses this customer's payments (a check violation, so
    // the consumer parks the message at once).
    let customer = Uuid::new_v4();
    stack.refuse_payments_of(&payment, customer).await;
    let order = stack
        .place(customer, json!([{"productId": 1, "quantity": 1}]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    let waiting = || stack.ops_get("/api/ops/dead-letters?consumer=payment");
    let letters = eventually(
        Duration::from_secs(30),
        "payment to park the reservation",
        || async {
            let letters = waiting().await;
            Ok((!letters.as_array().unwrap().is_empty()).then_some(letters))
        },
    )
    .await
    .unwrap();
    let letter = letters[0]["id"].as_str().unwrap().to_owned();
    let letter_link = format!("a[href=\"/console/dead-letters/{letter}\"]");

    // A viewer, signed in with a token pasted into the form: every page reads, none offers an
    // action.
    let viewer = Browser::start().await.unwrap();
    viewer.goto(&stack.api("/console/login")).await.unwrap();
    let token = test_support::viewer();
    viewer
        .fill("#token", token.strip_prefix("Bearer ").unwrap())
        .await
        .unwrap();
    viewer.click_text("Sign in").await.unwrap();
    viewer.wait_for_text("Read-only").await.unwrap();
    let pages = [
        ("/console".to_owned(), "Stuck sagas"),
        ("/console/orders".to_owned(), "Stuck sagas (pending over"),
        (format!("/console/orders/{id}"), "message StockReserved"),
        ("/console/catalog".to_owned(), "Catalog and stock"),
        ("/console/read-models".to_owned(), "Read models"),
        ("/console/dead-letters".to_owned(), "StockReserved"),
        (format!("/console/dead-letters/{letter}"), "refused"),
        ("/console/audit".to_owned(), "Every operator action"),
    ];
    for (path, shows) in &pages {
        viewer.goto(&stack.api(path)).await.unwrap();
        viewer.wait_for_text(shows).await.unwrap();
        viewer.wait_for_text("· viewer").await.unwrap();
        assert_eq!(post_forms(&viewer).await, ["/console/logout"], "{path}");
        let offered: Vec<String> = buttons(&viewer)
            .await
            .into_iter()
            .filter(|b| ACTIONS.contains(&b.as_str()))
            .collect();
        assert!(offered.is_empty(), "{path} offers a viewer {offered:?}");
    }
    viewer
        .goto(&stack.api("/console/dead-letters"))
        .await
        .unwrap();
    viewer.wait_for_element(&letter_link).await.unwrap();
    // A viewer who builds the form by hand, with the session's own token, is refused too.
    viewer
        .eval(
            "const csrf = document.querySelector('input[name=csrf]').value;
             const form = document.createElement('form');
             form.method = 'post';
             form.action = '/console/dead-letters/redrive';
             for (const [name, value] of [['csrf', csrf], ['letterId', arguments[0]], ['dryRun', 'false']]) {
                 const input = document.createElement('input');
                 input.type = 'hidden'; input.name = name; input.value = value;
                 form.appendChild(input);
             }
             document.body.appendChild(form);
             form.submit();",
            vec![json!(letter)],
        )
        .await
        .unwrap();
    viewer.wait_for_text("needs the ops role").await.unwrap();
    viewer.close().await.unwrap();

    // An operator, with the journey open in one tab.
    let browser = sign_in_with_printed_link(&stack, "grace").await;
    browser
        .goto(&stack.api(&format!("/console/orders/{id}")))
        .await
        .unwrap();
    browser
        .wait_for_text("Waiting: payment has not applied StockReserved")
        .await
        .unwrap();
    mark(&browser).await;
    let journey_tab = browser.client().window().await.unwrap();
    let letters_tab = browser.client().new_window(true).await.unwrap().handle;
    browser
        .client()
        .switch_to_window(letters_tab)
        .await
        .unwrap();

    // The operator's pages offer what the viewer's did not.
    browser
        .goto(&stack.api("/console/dead-letters"))
        .await
        .unwrap();
    browser.wait_for_element(&letter_link).await.unwrap();
    let forms = post_forms(&browser).await;
    for action in [
        "/console/dead-letters/redrive",
        "/console/dead-letters/discard",
    ] {
        assert!(forms.iter().any(|f| f == action), "{action}: {forms:?}");
    }
    screenshot(&browser, "console-dead-letters.png").await;
    browser.click(&letter_link).await.unwrap();
    browser
        .wait_for_text("payments of this customer are refused")
        .await
        .unwrap();

    // The letter's Redrive with its CSRF field altered: refused, and nothing moves.
    browser
        .eval(
            "document.querySelector('form[action=\"/console/dead-letters/redrive\"] input[name=csrf]')
                .value = 'forged';",
            vec![],
        )
        .await
        .unwrap();
    browser.click_text("Redrive").await.unwrap();
    browser
        .wait_for_text("CSRF token is missing or wrong")
        .await
        .unwrap();
    assert_eq!(waiting().await.as_array().unwrap().len(), 1);
    assert_eq!(stack.order(&id).await["status"], "pending");
    let audit = stack.ops_get("/api/ops/dead-letters/audit").await;
    assert_eq!(audit, json!([]), "a refused action is not done: {audit:#}");

    // The cause fixed, every letter payment parked is redriven: a dry run counts them first,
    // and only its confirmation acts.
    sqlx::raw_sql("DROP TRIGGER refuse_customer ON payments")
        .execute(&payment)
        .await
        .unwrap();
    browser
        .goto(&stack.api("/console/dead-letters?consumer=payment"))
        .await
        .unwrap();
    browser.wait_for_element(&letter_link).await.unwrap();
    browser.click_text("Redrive every match…").await.unwrap();
    browser
        .wait_for_text("1 waiting letters match this filter.")
        .await
        .unwrap();
    assert_eq!(
        waiting().await.as_array().unwrap().len(),
        1,
        "a dry run redrives nothing"
    );
    browser.click_text("redrive 1 letters").await.unwrap();
    browser
        .wait_for_text("Redriven: 1 of 1 matching letters.")
        .await
        .unwrap();
    browser
        .wait_for_text("No dead letter matches.")
        .await
        .unwrap();

    // The journey tab, left open, shows the order complete by itself.
    browser
        .client()
        .switch_to_window(journey_tab)
        .await
        .unwrap();
    browser
        .wait_for("the open journey to show the order completed", || async {
            let journey = section(&browser, "journey").await;
            Ok(
                (journey.contains("completed") && journey.contains("message PaymentCaptured"))
                    .then_some(()),
            )
        })
        .await
        .unwrap();
    assert!(
        still_marked(&browser).await,
        "the journey updated in place, not by a reload"
    );
    assert!(!section(&browser, "journey").await.contains("Waiting:"));
    assert_eq!(stack.order(&id).await["status"], "completed");
    screenshot(&browser, "console-journey.png").await;

    // Audited under the operator's name.
    browser.goto(&stack.api("/console/audit")).await.unwrap();
    browser.wait_for_text("dead-letter.redrive").await.unwrap();
    browser.wait_for_text("grace").await.unwrap();

    // A poison message on the stock topic, as no correct producer sends it: a reservation
    // whose amount has three decimal places, with the headers the relay writes. Payment parks
    // it at once (out of range is a permanent failure).
    let poisoned_order = Uuid::new_v4();
    let headers = hostile::headers("StockReserved", "2");
    let message_id = headers
        .iter()
        .find(|(name, _)| name == h::MESSAGE_ID)
        .map(|(_, id)| id.clone())
        .unwrap();
    RawProducer::new(&test_support::settings())
        .unwrap()
        .send(
            &format!("{}{}", stack.prefix, topics::STOCK),
            &Record {
                key: Some(poisoned_order.to_string()),
                payload: Some(hostile::reserved(poisoned_order, json!(1), "10.001")),
                headers,
                ..Record::default()
            },
        )
        .await
        .unwrap();
    let poison = eventually(
        Duration::from_secs(30),
        "payment to park the poison message",
        || async {
            let letters = stack
                .ops_get("/api/ops/dead-letters?reason=decimal%20places")
                .await;
            Ok(letters.as_array().unwrap().first().cloned())
        },
    )
    .await
    .unwrap();
    assert_eq!(poison["messageId"], message_id.as_str(), "{poison:#}");
    assert_eq!(poison["key"], poisoned_order.to_string(), "{poison:#}");
    let reason = poison["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("10.001"), "{poison:#}");
    let poison_id = poison["id"].as_str().unwrap().to_owned();

    // The component the operator API names as its parker survived it: the same process the
    // stack started, still up on the overview.
    let parker = poison["consumer"].as_str().unwrap();
    assert_eq!(parker, "payment", "{poison:#}");
    assert_eq!(stack.pids(), pids, "a component restarted");
    let components = stack.ops_get("/api/ops/overview").await["components"].clone();
    assert!(
        components
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == parker && c["up"] == true),
        "{parker} is not up: {components:#}"
    );

    // The operator finds it by its reason, among the dead letters.
    browser
        .goto(&stack.api("/console/dead-letters"))
        .await
        .unwrap();
    browser
        .submit_form("form.filters", &[("reason", "decimal places")])
        .await
        .unwrap();
    browser
        .wait_for("the filtered list", || async {
            let url = browser.current_url().await?;
            Ok(url.contains("reason=decimal+places").then_some(()))
        })
        .await
        .unwrap();
    let poison_link = format!("a[href=\"/console/dead-letters/{poison_id}\"]");
    browser.wait_for_element(&poison_link).await.unwrap();
    browser.wait_for_text(&reason).await.unwrap();

    // Its page shows the payload as published and every header, the parking ones included.
    browser.click(&poison_link).await.unwrap();
    browser
        .wait_for_text("\"amount\": \"10.001\"")
        .await
        .unwrap();
    let page = browser.text().await.unwrap();
    let origin = format!("{}{}/", stack.prefix, topics::STOCK);
    for shown in [
        h::MESSAGE_ID,
        message_id.as_str(),
        h::MESSAGE_TYPE,
        h::CORRELATION_ID,
        h::DEAD_LETTER_REASON,
        h::DEAD_LETTER_CONSUMER,
        h::DEAD_LETTER_ORIGIN,
        origin.as_str(),
        reason.as_str(),
    ] {
        assert!(page.contains(shown), "{shown} missing: {page}");
    }

    // Its own Discard asks first; cancelled, the letter still waits.
    let one = format!("/api/ops/dead-letters/{poison_id}");
    asks_first(
        &browser,
        &stack,
        "Discard…",
        "will be marked discarded",
        &one,
    )
    .await;
    browser.click_text("Cancel").await.unwrap();
    browser
        .wait_for_text("\"amount\": \"10.001\"")
        .await
        .unwrap();

    // Discarded by filter: the dry run counts it and discards nothing; its confirmation acts.
    browser
        .goto(&stack.api("/console/dead-letters?reason=decimal+places"))
        .await
        .unwrap();
    asks_first(
        &browser,
        &stack,
        "Discard every match…",
        "1 waiting letters match this filter.",
        &one,
    )
    .await;
    browser.click_text("discard 1 letters").await.unwrap();
    browser
        .wait_for_text("Discarded: 1 of 1 matching letters.")
        .await
        .unwrap();
    let resolution = stack.ops_get(&one).await["resolution"].clone();
    assert_eq!(resolution["kind"], "discarded", "{resolution:#}");
    assert_eq!(resolution["actor"], "grace", "{resolution:#}");

    // The discard is audited: who, which letter, what it was and what became of it.
    let audit = stack
        .ops_get("/api/ops/dead-letters/audit?action=dead-letter.discard")
        .await;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit:#}");
    assert_eq!(entries[0]["actor"], "grace", "{audit:#}");
    assert_eq!(
        entries[0]["subject"],
        format!("dead-letter:{poison_id}"),
        "{audit:#}"
    );
    assert_eq!(entries[0]["before"]["reason"], reason.as_str(), "{audit:#}");
    assert_eq!(entries[0]["after"]["state"], "discarded", "{audit:#}");
    browser.goto(&stack.api("/console/audit")).await.unwrap();
    browser.wait_for_text("dead-letter.discard").await.unwrap();
    browser
        .wait_for_text(&format!("dead-letter:{poison_id}"))
        .await
        .unwrap();

    browser.close().await.unwrap();
    payment.close().await;
    stack.remove().await.unwrap();
}
