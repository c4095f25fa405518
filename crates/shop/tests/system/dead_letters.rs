//! Dead letters through the operator API, over real processes: parked by a real fault, found,
//! redriven after a dry run once the fault is fixed, applied once, audited.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::eventually;
use test_support::stack::Stack;
use uuid::Uuid;

use crate::common::SHOP;

async fn post(stack: &Stack, auth: &str, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
    let response = stack
        .client
        .post(stack.api(path))
        .header("authorization", auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// SYSTEM.md §11: a message parked because of a fault that was then fixed is redriven after a
/// dry run, applied once, and its order completes; the action is audited.
#[tokio::test]
async fn a_dead_letter_is_redriven_after_its_cause_is_fixed_and_its_order_completes() {
    let stack = Stack::start(SHOP).await;
    let payment = stack.pool("payment").await;
    // The fault: payment's database refuses this customer's payments (a check violation, so
    // the consumer parks the message at once instead of retrying it).
    let customer = Uuid::new_v4();
    stack.refuse_payments_of(&payment, customer).await;
    let order = stack
        .place(customer, json!([{"productId": 1, "quantity": 1}]))
        .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    let letters = eventually(
        Duration::from_secs(30),
        "payment to park the reservation",
        || async {
            let letters = stack
                .ops_get("/api/ops/dead-letters?consumer=payment")
                .await;
            Ok((!letters.as_array().unwrap().is_empty()).then_some(letters))
        },
    )
    .await
    .unwrap();
    let letter = &letters[0];
    assert_eq!(letter["messageType"], "StockReserved", "{letter:#}");
    assert_eq!(letter["key"], id.as_str());
    assert!(
        letter["reason"].as_str().unwrap().contains("refused"),
        "{letter:#}"
    );
    assert_eq!(stack.order(&id).await["status"], "pending");

    // A viewer may look but not act; an operator first sees how many letters would go.
    let filter = json!({"filter": {"consumer": "payment"}, "dryRun": true});
    let (status, _) = post(
        &stack,
        &test_support::viewer(),
        "/api/ops/dead-letters/redrive",
        filter.clone(),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    let operator = test_support::operator();
    let (status, dry_run) = post(&stack, &operator, "/api/ops/dead-letters/redrive", filter).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{dry_run}");
    assert_eq!(
        (dry_run["matched"].as_u64(), dry_run["done"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        stack.order(&id).await["status"],
        "pending",
        "a dry run changes nothing"
    );

    // The cause fixed, the redrive applies the reservation once and the order completes.
    sqlx::raw_sql("DROP TRIGGER refuse_customer ON payments")
        .execute(&payment)
        .await
        .unwrap();
    let (status, done) = post(
        &stack,
        &operator,
        "/api/ops/dead-letters/redrive",
        json!({"filter": {"consumer": "payment"}, "dryRun": false}),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{done}");
    assert_eq!(
        (done["matched"].as_u64(), done["done"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        stack.settled(&id, Duration::from_secs(30)).await["status"],
        "completed"
    );
    let captured: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'captured'",
    )
    .bind(Uuid::parse_str(&id).unwrap())
    .fetch_one(&payment)
    .await
    .unwrap();
    assert_eq!(captured, 1);

    // Redriven once: it is no longer waiting, a second redrive finds nothing, and the audit
    // trail names who did it.
    assert_eq!(
        stack
            .ops_get("/api/ops/dead-letters?consumer=payment")
            .await,
        json!([])
    );
    let (_, again) = post(
        &stack,
        &operator,
        "/api/ops/dead-letters/redrive",
        json!({"filter": {"consumer": "payment"}, "dryRun": false}),
    )
    .await;
    assert_eq!(again["matched"].as_u64(), Some(0), "{again}");
    let audit = stack.ops_get("/api/ops/dead-letters/audit").await;
    assert_eq!(audit[0]["action"], "dead-letter.redrive", "{audit:#}");
    payment.close().await;
    stack.remove().await.unwrap();
}
