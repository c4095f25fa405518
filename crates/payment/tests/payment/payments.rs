//! Capturing payments against a real PostgreSQL database: new and known customers, short
//! credit, repeats, new revisions of an order, refunds, releases and late messages, whole
//! batches decided in one transaction, and racing payments of shared customers.

#![allow(clippy::unwrap_used)]

use contracts::Contract;
use contracts::payments::PaymentCaptured;
use contracts::stock::{StockReleased, StockReserved};
use messaging::consumer::{HandlerError, IncomingMessage};
use messaging::outbox::{Metadata, OutgoingMessage};
use payment::handler::PaymentHandler;
use payment::payments::{Accounts, Payment, Request};
use rust_decimal::Decimal;
use sqlx::PgPool;
use test_support::TestDatabase;
use uuid::Uuid;

const STARTING: &str = "100.00";

async fn database() -> TestDatabase {
    let db = TestDatabase::create().await.unwrap();
    payment::migrate(&db.pool).await.unwrap();
    db
}

fn money(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Any reply will do here: what matters is that it is queued with the payment.
fn reply(order_id: Uuid) -> impl FnOnce(&Payment) -> OutgoingMessage {
    move |payment| {
        let payment_id = match *payment {
            Payment::Captured { payment_id } | Payment::Declined { payment_id, .. } => payment_id,
        };
        let message = PaymentCaptured {
            order_id,
            payment_id,
            customer_id: Uuid::nil(),
            revision: 1,
            amount: Decimal::ZERO,
        };
        let metadata = Metadata {
            message_id: Uuid::now_v7(),
            correlation_id: order_id,
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        };
        OutgoingMessage::new(order_id, &message, metadata)
    }
}

async fn capture(
    pool: &PgPool,
    customer_id: Uuid,
    order_id: Uuid,
    amount: &str,
) -> Option<Payment> {
    capture_revision(pool, customer_id, order_id, 1, amount).await
}

async fn capture_revision(
    pool: &PgPool,
    customer_id: Uuid,
    order_id: Uuid,
    revision: u32,
    amount: &str,
) -> Option<Payment> {
    let mut tx = pool.begin().await.unwrap();
    let request = Request {
        order_id,
        customer_id,
        revision,
        amount: money(amount),
    };
    let payment = pay_in(&mut tx, request).await;
    tx.commit().await.unwrap();
    payment
}

/// One request in the caller's transaction, as the handler decides a batch of one.
async fn pay_in(conn: &mut sqlx::PgConnection, request: Request) -> Option<Payment> {
    let (order, customer) = ([request.order_id], [request.customer_id]);
    let mut accounts = Accounts::load(conn, &order, &customer, money(STARTING))
        .await
        .unwrap();
    let payment = accounts.capture(request, Uuid::now_v7()).unwrap();
    let replies: Vec<OutgoingMessage> =
        payment.iter().map(|p| reply(request.order_id)(p)).collect();
    accounts.save(conn, &replies).await.unwrap();
    payment
}

async fn credit(pool: &PgPool, customer_id: Uuid) -> Option<Decimal> {
    sqlx::query_scalar("SELECT credit FROM customers WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// (status of the order's standing payment, outbox rows for the order)
async fn recorded(pool: &PgPool, order_id: Uuid) -> (Option<String>, i64) {
    let status = sqlx::query_scalar(
        "SELECT status FROM payments WHERE order_id = $1 AND status <> 'refunded'",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await
    .unwrap();
    let queued = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_key = $1")
        .bind(order_id.to_string())
        .fetch_one(pool)
        .await
        .unwrap();
    (status, queued)
}

#[tokio::test]
async fn a_new_customer_pays_from_the_starting_credit() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    let payment = capture(&db.pool, customer, order, "30.50").await;
    assert!(
        matches!(payment, Some(Payment::Captured { .. })),
        "{payment:?}"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("69.50")));
    assert_eq!(
        recorded(&db.pool, order).await,
        (Some("captured".into()), 1)
    );
}

#[tokio::test]
async fn a_new_customer_short_of_the_starting_credit_is_declined_and_keeps_it() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    let payment = capture(&db.pool, customer, order, "100.01").await;
    assert!(
        matches!(payment, Some(Payment::Declined { available_credit, .. }) if available_credit == money(STARTING)),
        "{payment:?}"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    assert_eq!(
        recorded(&db.pool, order).await,
        (Some("declined".into()), 1)
    );
}

#[tokio::test]
async fn a_known_customer_is_debited_until_the_credit_runs_short() {
    let db = database().await;
    let customer = Uuid::new_v4();
    let first = capture(&db.pool, customer, Uuid::new_v4(), "80.00").await;
    assert!(matches!(first, Some(Payment::Captured { .. })));
    let exact = capture(&db.pool, customer, Uuid::new_v4(), "15.00").await;
    assert!(matches!(exact, Some(Payment::Captured { .. })));

    let order = Uuid::new_v4();
    let short = capture(&db.pool, customer, order, "5.01").await;
    assert!(
        matches!(short, Some(Payment::Declined { available_credit, .. }) if available_credit == money("5.00")),
        "{short:?}"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("5.00")));
    assert_eq!(
        recorded(&db.pool, order).await,
        (Some("declined".into()), 1)
    );
    let rest = capture(&db.pool, customer, Uuid::new_v4(), "5.00").await;
    assert!(matches!(rest, Some(Payment::Captured { .. })));
    assert_eq!(credit(&db.pool, customer).await, Some(money("0.00")));
}

#[tokio::test]
async fn an_order_is_paid_or_declined_once_whatever_repeats() {
    let db = database().await;
    let customer = Uuid::new_v4();
    let (paid, declined) = (Uuid::new_v4(), Uuid::new_v4());
    capture(&db.pool, customer, paid, "10.00").await.unwrap();
    capture(&db.pool, customer, declined, "500.00")
        .await
        .unwrap();

    assert_eq!(capture(&db.pool, customer, paid, "10.00").await, None);
    // A repeat of the declined order, even one the credit would now cover, changes nothing.
    assert_eq!(capture(&db.pool, customer, declined, "1.00").await, None);
    assert_eq!(credit(&db.pool, customer).await, Some(money("90.00")));
    assert_eq!(recorded(&db.pool, paid).await, (Some("captured".into()), 1));
    assert_eq!(
        recorded(&db.pool, declined).await,
        (Some("declined".into()), 1)
    );
}

/// The order's payments as (revision, status, amount), oldest revision first.
async fn payments_of(pool: &PgPool, order_id: Uuid) -> Vec<(i32, String, Decimal)> {
    sqlx::query_as(
        "SELECT revision, status, amount FROM payments WHERE order_id = $1 ORDER BY revision",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn reservation_failed(pool: &PgPool, order_id: Uuid, revision: u32) -> Option<Decimal> {
    let mut tx = pool.begin().await.unwrap();
    let mut accounts = Accounts::load(&mut tx, &[order_id], &[], money(STARTING))
        .await
        .unwrap();
    let refunded = accounts.reservation_failed(order_id, revision).unwrap();
    accounts.save(&mut tx, &[]).await.unwrap();
    tx.commit().await.unwrap();
    refunded
}

#[tokio::test]
async fn a_newer_revision_refunds_the_capture_and_captures_its_own_total() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    capture_revision(&db.pool, customer, order, 1, "30.00")
        .await
        .unwrap();
    let second = capture_revision(&db.pool, customer, order, 2, "45.00").await;
    assert!(
        matches!(second, Some(Payment::Captured { .. })),
        "{second:?}"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("55.00")));
    assert_eq!(
        payments_of(&db.pool, order).await,
        [
            (1, "refunded".to_owned(), money("30.00")),
            (2, "captured".to_owned(), money("45.00"))
        ]
    );

    // Older or repeated revisions change nothing and send nothing.
    assert_eq!(
        capture_revision(&db.pool, customer, order, 1, "30.00").await,
        None
    );
    assert_eq!(
        capture_revision(&db.pool, customer, order, 2, "45.00").await,
        None
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("55.00")));
    assert_eq!(
        recorded(&db.pool, order).await,
        (Some("captured".into()), 2)
    );
}

#[tokio::test]
async fn a_newer_revision_the_credit_cannot_cover_is_declined_and_the_capture_refunded() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    capture_revision(&db.pool, customer, order, 1, "60.00")
        .await
        .unwrap();
    // 100.00 would cover it once the 60.00 are back; 100.01 does not.
    let second = capture_revision(&db.pool, customer, order, 2, "100.01").await;
    assert!(
        matches!(second, Some(Payment::Declined { available_credit, .. }) if available_credit == money(STARTING)),
        "{second:?}"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    assert_eq!(
        payments_of(&db.pool, order).await,
        [
            (1, "refunded".to_owned(), money("60.00")),
            (2, "declined".to_owned(), money("100.01"))
        ]
    );
    // A decline is final: a later revision the credit would cover is not paid for.
    assert_eq!(
        capture_revision(&db.pool, customer, order, 3, "1.00").await,
        None
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
}

#[tokio::test]
async fn a_failed_reservation_refunds_the_capture_once_and_a_later_revision_pays_again() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    capture_revision(&db.pool, customer, order, 1, "25.00")
        .await
        .unwrap();
    assert_eq!(
        reservation_failed(&db.pool, order, 1).await,
        None,
        "same revision"
    );
    assert_eq!(
        reservation_failed(&db.pool, order, 2).await,
        Some(money("25.00"))
    );
    assert_eq!(
        reservation_failed(&db.pool, order, 2).await,
        None,
        "a repeat"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    assert_eq!(recorded(&db.pool, order).await, (None, 1));

    // Stock held revision 3 after failing revision 2: payment captures it.
    let third = capture_revision(&db.pool, customer, order, 3, "10.00").await;
    assert!(matches!(third, Some(Payment::Captured { .. })), "{third:?}");
    assert_eq!(reservation_failed(&db.pool, order, 2).await, None, "stale");
    assert_eq!(credit(&db.pool, customer).await, Some(money("90.00")));
    // Nothing for an order that was never paid.
    assert_eq!(reservation_failed(&db.pool, Uuid::new_v4(), 5).await, None);
}

async fn release(pool: &PgPool, order_id: Uuid) -> Option<Decimal> {
    let mut tx = pool.begin().await.unwrap();
    let mut accounts = Accounts::load(&mut tx, &[order_id], &[], money(STARTING))
        .await
        .unwrap();
    let refunded = accounts.release(order_id).unwrap();
    accounts.save(&mut tx, &[]).await.unwrap();
    tx.commit().await.unwrap();
    refunded
}

/// (highest revision answered, final) as stored.
async fn answered(pool: &PgPool, order_id: Uuid) -> Option<(i32, bool)> {
    sqlx::query_as("SELECT revision, final FROM orders_answered WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_release_refunds_the_capture_and_nothing_later_is_paid_for() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    capture_revision(&db.pool, customer, order, 1, "30.00")
        .await
        .unwrap();
    assert_eq!(release(&db.pool, order).await, Some(money("30.00")));
    assert_eq!(answered(&db.pool, order).await, Some((1, true)));
    assert_eq!(release(&db.pool, order).await, None, "a repeat");

    // Revision 1 redriven, and a revision stock could never hold after the release.
    assert_eq!(
        capture_revision(&db.pool, customer, order, 1, "30.00").await,
        None
    );
    assert_eq!(
        capture_revision(&db.pool, customer, order, 2, "10.00").await,
        None
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    assert_eq!(
        payments_of(&db.pool, order).await,
        [(1, "refunded".to_owned(), money("30.00"))]
    );
    assert_eq!(recorded(&db.pool, order).await, (None, 1));
}

#[tokio::test]
async fn a_reservation_that_arrives_after_the_release_captures_nothing() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    // The order failed before payment heard of it (its reservation was dead-lettered, say).
    assert_eq!(release(&db.pool, order).await, None);
    assert_eq!(answered(&db.pool, order).await, Some((0, true)));
    assert_eq!(capture(&db.pool, customer, order, "30.00").await, None);
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    assert!(payments_of(&db.pool, order).await.is_empty());
}

#[tokio::test]
async fn a_redriven_revision_is_not_paid_for_once_a_later_one_was_answered() {
    let db = database().await;
    let (customer, order, failed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    capture_revision(&db.pool, customer, order, 1, "10.00")
        .await
        .unwrap();
    capture_revision(&db.pool, customer, order, 2, "20.00")
        .await
        .unwrap();
    // Revision 1 redriven after the capture of revision 2.
    assert_eq!(
        capture_revision(&db.pool, customer, order, 1, "10.00").await,
        None
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("80.00")));
    assert_eq!(answered(&db.pool, order).await, Some((2, false)));

    // Another order's revision 2 failed at stock before payment ever saw revision 1: revision 1
    // arriving late is not paid for, though nothing was captured for the order yet.
    assert_eq!(reservation_failed(&db.pool, failed, 2).await, None);
    assert_eq!(answered(&db.pool, failed).await, Some((2, false)));
    assert_eq!(
        capture_revision(&db.pool, customer, failed, 1, "5.00").await,
        None
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("80.00")));
    assert!(payments_of(&db.pool, failed).await.is_empty());
}

#[tokio::test]
async fn racing_payments_of_one_new_customer_never_spend_more_than_the_credit() {
    let db = database().await;
    let customer = Uuid::new_v4();
    let payments = (0..16).map(|_| {
        let pool = db.pool.clone();
        tokio::spawn(async move { capture(&pool, customer, Uuid::new_v4(), "7.00").await })
    });
    let mut captured = 0;
    for payment in futures::future::join_all(payments).await {
        if let Some(Payment::Captured { .. }) = payment.unwrap() {
            captured += 1;
        }
    }
    // 100.00 covers 14 payments of 7.00, and every one of the 16 was decided.
    assert_eq!(captured, 14);
    assert_eq!(credit(&db.pool, customer).await, Some(money("2.00")));
    let (rows, spent): (i64, Decimal) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(amount) FILTER (WHERE status = 'captured'), 0)
         FROM payments WHERE customer_id = $1",
    )
    .bind(customer)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((rows, spent), (16, money("98.00")));
}

/// A batch of requests in one transaction, as the handler decides a micro-batch: one load, the
/// requests in order, one save. Returns each request's payment.
async fn pay_batch(pool: &PgPool, requests: &[Request]) -> Vec<Option<Payment>> {
    let mut tx = pool.begin().await.unwrap();
    let orders: Vec<Uuid> = requests.iter().map(|r| r.order_id).collect();
    let customers: Vec<Uuid> = requests.iter().map(|r| r.customer_id).collect();
    let mut accounts = Accounts::load(&mut tx, &orders, &customers, money(STARTING))
        .await
        .unwrap();
    let mut payments = Vec::new();
    let mut replies = Vec::new();
    for request in requests {
        let payment = accounts.capture(*request, Uuid::now_v7()).unwrap();
        replies.extend(payment.iter().map(|p| reply(request.order_id)(p)));
        payments.push(payment);
    }
    accounts.save(&mut tx, &replies).await.unwrap();
    tx.commit().await.unwrap();
    payments
}

fn request(customer_id: Uuid, order_id: Uuid, revision: u32, amount: &str) -> Request {
    Request {
        order_id,
        customer_id,
        revision,
        amount: money(amount),
    }
}

#[tokio::test]
async fn a_batch_decides_each_request_on_what_the_ones_before_it_left() {
    let db = database().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let known = Uuid::new_v4();
    capture(&db.pool, bob, known, "40.00").await.unwrap();
    let (a1, a2, a3, changed, b1) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let decided = pay_batch(
        &db.pool,
        &[
            request(alice, a1, 1, "60.00"),
            // The first capture left 40.00: short.
            request(alice, a2, 1, "40.01"),
            request(alice, a3, 1, "40.00"),
            // Bob's order paid before the batch, then changed twice within it.
            request(bob, known, 2, "50.00"),
            request(bob, known, 3, "70.00"),
            request(bob, known, 2, "50.00"),
            request(bob, changed, 1, "30.00"),
            // A repeat within the batch.
            request(alice, a1, 1, "60.00"),
            request(bob, b1, 1, "0.01"),
        ],
    )
    .await;
    let kinds: Vec<&str> = (decided.iter())
        .map(|p| match p {
            Some(Payment::Captured { .. }) => "captured",
            Some(Payment::Declined { .. }) => "declined",
            None => "-",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "captured", "declined", "captured", "captured", "captured", "-", "captured", "-",
            "declined"
        ]
    );
    assert!(
        matches!(decided[1], Some(Payment::Declined { available_credit, .. }) if available_credit == money("40.00"))
    );
    assert_eq!(credit(&db.pool, alice).await, Some(money("0.00")));
    assert_eq!(credit(&db.pool, bob).await, Some(money("0.00")));
    assert_eq!(
        payments_of(&db.pool, known).await,
        [
            (1, "refunded".to_owned(), money("40.00")),
            (2, "refunded".to_owned(), money("50.00")),
            (3, "captured".to_owned(), money("70.00"))
        ]
    );
    assert_eq!(
        recorded(&db.pool, known).await,
        (Some("captured".into()), 3)
    );
    assert_eq!(recorded(&db.pool, a2).await, (Some("declined".into()), 1));
    assert_eq!(recorded(&db.pool, a1).await, (Some("captured".into()), 1));
}

#[tokio::test]
async fn racing_batches_that_share_customers_in_any_order_neither_deadlock_nor_overspend() {
    let db = database().await;
    let customers: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    // Each batch pays 5.00 from every customer, in its own order of customers.
    let batches = (0..24).map(|i| {
        let pool = db.pool.clone();
        let mut order = customers.clone();
        order.rotate_left(i % customers.len());
        if i % 2 == 1 {
            order.reverse();
        }
        tokio::spawn(async move {
            let requests: Vec<Request> = (order.iter())
                .map(|c| request(*c, Uuid::new_v4(), 1, "5.00"))
                .collect();
            pay_batch(&pool, &requests).await
        })
    });
    let mut captured = 0;
    for batch in futures::future::join_all(batches).await {
        for payment in batch.unwrap() {
            if let Some(Payment::Captured { .. }) = payment {
                captured += 1;
            }
        }
    }
    // 100.00 covers 20 payments of 5.00 per customer.
    assert_eq!(captured, 20 * customers.len());
    for customer in &customers {
        assert_eq!(credit(&db.pool, *customer).await, Some(money("0.00")));
    }
}

/// Inserts `rows` payments of new orders by new customers, and the customers.
async fn grow(conn: &mut sqlx::PgConnection, rows: i32) {
    sqlx::query(
        "WITH paid AS (
             INSERT INTO payments (payment_id, order_id, customer_id, amount, status, revision)
             SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1, 'captured', 1
             FROM generate_series(1, $1)
             RETURNING order_id, customer_id
         ), answered AS (
             INSERT INTO orders_answered (order_id, revision, final)
             SELECT order_id, 1, false FROM paid
         )
         INSERT INTO customers (customer_id, credit) SELECT customer_id, 99 FROM paid",
    )
    .bind(rows)
    .execute(conn)
    .await
    .unwrap();
}

/// A capture (and a decline) must not come from a generic plan made while the statistics said
/// the tables were small: that plan would scan every payment for every capture as the table
/// grows (ARCHITECTURE.md, "Generic plans").
#[tokio::test]
async fn a_capture_never_scans_the_tables_they_grew_from_empty() {
    let db = database().await;
    // One session: prepared statements and their plans belong to it.
    let mut conn = db.pool.acquire().await.unwrap();
    let customer = Uuid::new_v4();
    // Captured while the credit lasts, declined above it.
    let pay = async |conn: &mut sqlx::PgConnection, amount: &str| {
        let request = Request {
            order_id: Uuid::new_v4(),
            customer_id: customer,
            revision: 1,
            amount: money(amount),
        };
        pay_in(conn, request).await
    };
    grow(&mut conn, 100).await;
    sqlx::query("ANALYZE payments, customers, orders_answered")
        .execute(&mut *conn)
        .await
        .unwrap();
    for _ in 0..10 {
        pay(&mut conn, "1.00").await;
        pay(&mut conn, "1000.00").await;
    }
    grow(&mut conn, 20_000).await;

    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let scans = async |tx: &mut sqlx::PgConnection| {
        let payments = test_support::unreported_seq_scans(tx, "payments").await;
        let customers = test_support::unreported_seq_scans(tx, "customers").await;
        let answered = test_support::unreported_seq_scans(tx, "orders_answered").await;
        (payments.unwrap(), customers.unwrap(), answered.unwrap())
    };
    let before = scans(&mut tx).await;
    let captured = pay(&mut tx, "1.00").await;
    assert!(
        matches!(captured, Some(Payment::Captured { .. })),
        "{captured:?}"
    );
    let declined = pay(&mut tx, "1000.00").await;
    assert!(
        matches!(declined, Some(Payment::Declined { .. })),
        "{declined:?}"
    );
    assert_eq!(
        scans(&mut tx).await,
        before,
        "a payment scanned a whole table"
    );
    drop(tx);
    drop(conn);
    db.drop_now().await.unwrap();
}

/// A message of the stock topic as the consumer hands it over, with `payload` as it came.
fn incoming(order_id: Uuid, message_type: &str, version: u16, payload: String) -> IncomingMessage {
    IncomingMessage {
        topic: contracts::topics::STOCK.to_owned(),
        partition: 0,
        offset: 0,
        key: Some(order_id.to_string()),
        message_type: message_type.to_owned(),
        schema_version: version,
        payload: payload.into_bytes(),
        metadata: Metadata {
            message_id: Uuid::now_v7(),
            correlation_id: order_id,
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        },
    }
}

fn reserved(customer_id: Uuid, order_id: Uuid, revision: u32, amount: &str) -> IncomingMessage {
    let payload = format!(
        r#"{{"orderId": "{order_id}", "customerId": "{customer_id}", "revision": {revision},
            "amount": "{amount}"}}"#
    );
    incoming(
        order_id,
        StockReserved::TYPE,
        StockReserved::VERSION,
        payload,
    )
}

fn released(order_id: Uuid) -> IncomingMessage {
    let payload = format!(r#"{{"orderId": "{order_id}"}}"#);
    incoming(
        order_id,
        StockReleased::TYPE,
        StockReleased::VERSION,
        payload,
    )
}

/// A batch through the handler, in a transaction committed if it succeeds.
async fn handle(pool: &PgPool, messages: &[IncomingMessage]) -> Result<(), HandlerError> {
    let handler = PaymentHandler {
        starting_credit: money(STARTING),
    };
    test_support::handler::handle(&handler, pool, messages).await
}

#[tokio::test]
async fn the_amount_that_once_made_payment_panic_is_a_permanent_failure() {
    let db = database().await;
    let (customer, good, bad) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let overflowing = reserved(customer, bad, 1, "-79228162514264337593543950335");
    let batch = [reserved(customer, good, 1, "10.00"), overflowing.clone()];
    let outcome = handle(&db.pool, &batch).await;
    assert!(
        matches!(&outcome, Err(HandlerError::Permanent(reason)) if reason.contains("amount")),
        "{outcome:?}"
    );
    // The consumer replays a failed batch message by message: the good one is paid for, the
    // bad one fails alone, again permanently (it is dead-lettered).
    handle(&db.pool, &batch[..1]).await.unwrap();
    let alone = handle(&db.pool, &[overflowing]).await;
    assert!(
        matches!(alone, Err(HandlerError::Permanent(_))),
        "{alone:?}"
    );
    assert_eq!(credit(&db.pool, customer).await, Some(money("90.00")));
    assert!(payments_of(&db.pool, bad).await.is_empty());
}

#[tokio::test]
async fn a_release_through_the_handler_refunds_and_a_redriven_reservation_captures_nothing() {
    let db = database().await;
    let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
    let first = reserved(customer, order, 1, "30.00");
    handle(&db.pool, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(credit(&db.pool, customer).await, Some(money("70.00")));

    handle(&db.pool, &[released(order)]).await.unwrap();
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    // Redriven from the dead letters: a new delivery of the same reservation.
    handle(&db.pool, &[first]).await.unwrap();
    assert_eq!(credit(&db.pool, customer).await, Some(money(STARTING)));
    assert_eq!(
        payments_of(&db.pool, order).await,
        [(1, "refunded".to_owned(), money("30.00"))]
    );
    // One reply: the capture. A release answers nothing.
    assert_eq!(recorded(&db.pool, order).await, (None, 1));
}
