//! The reservation rules against a real PostgreSQL database: all or nothing, revisions,
//! compensation, completion, redelivery, overflow and racing transactions; and the handler's
//! release of a failed order.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::Line;
use contracts::orders::{FailureReason, OrderFailed, OrderPlaced};
use contracts::stock::{ReservationFailure, StockReserved};
use messaging::consumer::{HandlerError, IncomingMessage};
use rust_decimal::Decimal;
use sqlx::PgPool;
use stock::reservations::{self, Error, Held};
use test_support::TestDatabase;
use uuid::Uuid;

use crate::messages::{handle, incoming, outgoing};

async fn database() -> TestDatabase {
    let db = TestDatabase::create().await.unwrap();
    stock::migrate(&db.pool).await.unwrap();
    db
}

fn line(product_id: i64, quantity: u32) -> Line {
    Line {
        product_id,
        quantity,
        unit_price: "1.00".parse().unwrap(),
    }
}

/// (available, reserved) of a product.
async fn product(pool: &PgPool, product_id: i64) -> (i32, i32) {
    sqlx::query_as("SELECT available, reserved FROM products WHERE product_id = $1")
        .bind(product_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn lines(pool: &PgPool, order_id: Uuid) -> Vec<(i64, i32)> {
    let (products, quantities): (Vec<i64>, Vec<i32>) =
        sqlx::query_as("SELECT product_ids, quantities FROM reservations WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(pool)
            .await
            .unwrap();
    products.into_iter().zip(quantities).collect()
}

async fn status(pool: &PgPool, order_id: Uuid) -> (i32, String) {
    sqlx::query_as("SELECT revision, status FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn hold(pool: &PgPool, order_id: Uuid, revision: u32, order: &[Line]) -> Held {
    let mut tx = pool.begin().await.unwrap();
    let held = reservations::hold(&mut tx, order_id, revision, order)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    held
}

async fn release(pool: &PgPool, order_id: Uuid) -> bool {
    let mut tx = pool.begin().await.unwrap();
    let released = reservations::release(&mut tx, order_id).await.unwrap();
    tx.commit().await.unwrap();
    released
}

async fn commit(pool: &PgPool, order_id: Uuid) -> bool {
    let mut tx = pool.begin().await.unwrap();
    let committed = reservations::commit(&mut tx, order_id).await.unwrap();
    tx.commit().await.unwrap();
    committed
}

#[tokio::test]
async fn an_order_is_held_whole_and_a_redelivery_changes_nothing() {
    let db = database().await;
    let order = Uuid::new_v4();
    let wanted = [line(1, 3), line(2, 1), line(1, 2)];

    assert_eq!(hold(&db.pool, order, 1, &wanted).await, Held::Reserved);
    assert_eq!(product(&db.pool, 1).await, (95, 5));
    assert_eq!(product(&db.pool, 2).await, (49, 1));
    assert_eq!(lines(&db.pool, order).await, [(1, 5), (2, 1)]);
    assert_eq!(status(&db.pool, order).await, (1, "reserved".to_owned()));

    assert_eq!(hold(&db.pool, order, 1, &wanted).await, Held::Ignored);
    assert_eq!(product(&db.pool, 1).await, (95, 5));
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn a_shortage_or_an_unknown_product_holds_nothing() {
    let db = database().await;
    let short = Uuid::new_v4();
    assert_eq!(
        hold(&db.pool, short, 1, &[line(1, 1), line(3, 26)]).await,
        Held::Failed {
            reason: ReservationFailure::OutOfStock,
            product_ids: vec![3],
        }
    );
    let unknown = Uuid::new_v4();
    assert_eq!(
        hold(&db.pool, unknown, 1, &[line(1, 1), line(9, 1)]).await,
        Held::Failed {
            reason: ReservationFailure::UnknownProduct,
            product_ids: vec![9],
        }
    );
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    assert_eq!(product(&db.pool, 3).await, (25, 0));
    assert_eq!(status(&db.pool, short).await, (1, "failed".to_owned()));
    assert!(lines(&db.pool, short).await.is_empty());
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn a_new_revision_moves_the_difference_and_an_old_one_is_ignored() {
    let db = database().await;
    let order = Uuid::new_v4();
    hold(&db.pool, order, 1, &[line(1, 5), line(2, 2)]).await;

    assert_eq!(
        hold(&db.pool, order, 2, &[line(1, 3), line(3, 1)]).await,
        Held::Reserved
    );
    assert_eq!(product(&db.pool, 1).await, (97, 3));
    assert_eq!(product(&db.pool, 2).await, (50, 0));
    assert_eq!(product(&db.pool, 3).await, (24, 1));
    assert_eq!(lines(&db.pool, order).await, [(1, 3), (3, 1)]);

    // Revision 1 again, late: ignored.
    assert_eq!(
        hold(&db.pool, order, 1, &[line(1, 5), line(2, 2)]).await,
        Held::Ignored
    );
    assert_eq!(lines(&db.pool, order).await, [(1, 3), (3, 1)]);

    // A revision that cannot be held gives back what the earlier one held.
    assert!(matches!(
        hold(&db.pool, order, 3, &[line(3, 100)]).await,
        Held::Failed { .. }
    ));
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    assert_eq!(product(&db.pool, 3).await, (25, 0));
    assert!(lines(&db.pool, order).await.is_empty());

    // And a later one that fits holds again.
    assert_eq!(
        hold(&db.pool, order, 4, &[line(2, 1)]).await,
        Held::Reserved
    );
    assert_eq!(product(&db.pool, 2).await, (49, 1));
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn a_release_gives_back_and_is_final() {
    let db = database().await;
    let order = Uuid::new_v4();
    hold(&db.pool, order, 1, &[line(1, 4)]).await;

    assert!(release(&db.pool, order).await);
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    assert_eq!(status(&db.pool, order).await, (1, "released".to_owned()));
    assert!(!release(&db.pool, order).await, "released twice");
    assert_eq!(hold(&db.pool, order, 2, &[line(1, 1)]).await, Held::Ignored);
    assert_eq!(product(&db.pool, 1).await, (100, 0));

    // Released before its order was ever seen (announced all the same, as the order is over):
    // the late order takes nothing.
    let early = Uuid::new_v4();
    assert!(release(&db.pool, early).await);
    assert!(!release(&db.pool, early).await, "released twice");
    assert_eq!(hold(&db.pool, early, 1, &[line(1, 1)]).await, Held::Ignored);
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn a_commit_sells_what_was_held_once() {
    let db = database().await;
    let order = Uuid::new_v4();
    hold(&db.pool, order, 1, &[line(1, 2), line(2, 3)]).await;

    assert!(commit(&db.pool, order).await);
    assert_eq!(product(&db.pool, 1).await, (98, 0));
    assert_eq!(product(&db.pool, 2).await, (47, 0));
    assert_eq!(status(&db.pool, order).await, (1, "committed".to_owned()));
    assert_eq!(
        lines(&db.pool, order).await,
        [(1, 2), (2, 3)],
        "the record of the sale"
    );

    assert!(!commit(&db.pool, order).await, "committed twice");
    assert!(!release(&db.pool, order).await, "released after completion");
    assert_eq!(product(&db.pool, 1).await, (98, 0));
    assert!(!commit(&db.pool, Uuid::new_v4()).await, "nothing to commit");
    db.drop_now().await.unwrap();
}

/// Two transactions apply the same order at once (as two consumers could for a moment during a
/// rebalance): the one that read the reservation before the other committed must not write.
#[tokio::test]
async fn a_transaction_that_read_a_stale_reservation_writes_nothing() {
    let db = database().await;
    let order = Uuid::new_v4();
    let mut first = db.pool.begin().await.unwrap();
    reservations::hold(&mut first, order, 1, &[line(1, 2)])
        .await
        .unwrap();

    // The second reads no reservation (the first has not committed), then waits for the lock.
    let pool = db.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let outcome = reservations::hold(&mut tx, order, 1, &[line(1, 2)]).await;
        if outcome.is_ok() {
            tx.commit().await.unwrap();
        }
        outcome
    });
    // Waiting for the advisory lock means its read is done: commit the first only then.
    let pool = db.pool.clone();
    test_support::eventually(
        Duration::from_secs(5),
        "the second to wait for the stock lock",
        || {
            let pool = pool.clone();
            async move {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = 'advisory'",
                )
                .fetch_one(&pool)
                .await?;
                Ok((waiting == 1).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    first.commit().await.unwrap();

    let outcome = second.await.unwrap();
    assert!(matches!(outcome, Err(Error::Concurrent)), "{outcome:?}");
    assert_eq!(product(&db.pool, 1).await, (98, 2), "held once");
    db.drop_now().await.unwrap();
}

/// Many orders at once over scarce, shared products: stock is never oversold and every unit is
/// either available or held by exactly the lines that say so.
#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let db = database().await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40u32 {
        let pool = db.pool.clone();
        tasks.spawn(async move {
            let order = Uuid::new_v4();
            let wanted = [line(3, 1 + n % 3), line(2, 1 + n % 2)];
            let held = hold(&pool, order, 1, &wanted).await;
            if n % 4 == 0 {
                release(&pool, order).await;
            }
            held
        });
    }
    let mut reserved = 0;
    while let Some(held) = tasks.join_next().await {
        if held.unwrap() == Held::Reserved {
            reserved += 1;
        }
    }
    assert!(reserved > 0 && reserved < 40, "{reserved} of 40 held");

    for (product_id, stock) in [(2, 50), (3, 25)] {
        let (available, held) = product(&db.pool, product_id).await;
        let in_lines: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(l.quantity), 0)
             FROM reservations r, UNNEST(r.product_ids, r.quantities) AS l(product_id, quantity)
             WHERE r.status = 'reserved' AND l.product_id = $1",
        )
        .bind(product_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(available >= 0);
        assert_eq!(i64::from(held), in_lines, "product {product_id}");
        assert_eq!(available + held, stock, "product {product_id}");
    }
    db.drop_now().await.unwrap();
}

/// A consumer's micro-batch: several messages, of several orders, decided against one ledger
/// and written in one statement with the replies.
#[tokio::test]
async fn a_batch_is_read_once_and_written_once() {
    let db = database().await;
    let (kept, sold, refused) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    hold(&db.pool, kept, 1, &[line(1, 2)]).await;

    let mut tx = db.pool.begin().await.unwrap();
    let mut ledger = reservations::Ledger::load(&mut tx, &[kept, sold, refused], &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(
        ledger.hold(kept, 2, &[line(1, 1), line(2, 1)]).unwrap(),
        Held::Reserved
    );
    assert_eq!(
        ledger.hold(sold, 1, &[line(3, 20)]).unwrap(),
        Held::Reserved
    );
    assert!(ledger.commit(sold).unwrap());
    assert!(matches!(
        ledger.hold(refused, 1, &[line(3, 6)]).unwrap(),
        Held::Failed { .. }
    ));
    let reply = |order_id| {
        outgoing(
            order_id,
            &StockReserved {
                order_id,
                customer_id: Uuid::new_v4(),
                revision: 2,
                amount: rust_decimal::Decimal::ONE,
            },
        )
    };
    ledger
        .save(&mut tx, &[reply(kept), reply(sold)])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The replies, not the seeded catalog's messages the migrations queued.
    let queued: Vec<String> =
        sqlx::query_scalar("SELECT message_key FROM outbox WHERE topic = $1 ORDER BY id")
            .bind(contracts::topics::STOCK)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(queued, [kept.to_string(), sold.to_string()]);
    assert_eq!(product(&db.pool, 1).await, (99, 1));
    assert_eq!(product(&db.pool, 2).await, (49, 1));
    assert_eq!(product(&db.pool, 3).await, (5, 0));
    assert_eq!(lines(&db.pool, kept).await, [(1, 1), (2, 1)]);
    assert_eq!(lines(&db.pool, sold).await, [(3, 20)]);
    assert!(lines(&db.pool, refused).await.is_empty());
    assert_eq!(status(&db.pool, kept).await, (2, "reserved".to_owned()));
    assert_eq!(status(&db.pool, sold).await, (1, "committed".to_owned()));
    assert_eq!(status(&db.pool, refused).await, (1, "failed".to_owned()));
    db.drop_now().await.unwrap();
}

/// Inserts `rows` released reservations of new orders.
async fn grow(conn: &mut sqlx::PgConnection, rows: i32) {
    sqlx::query(
        "INSERT INTO reservations (order_id, revision, status, product_ids, quantities)
         SELECT gen_random_uuid(), 1, 'released', '{1}', '{1}' FROM generate_series(1, $1)",
    )
    .bind(rows)
    .execute(conn)
    .await
    .unwrap();
}

/// The reservations read by key must not come from a generic plan made while the statistics
/// said the table was small: that plan would scan the table for every batch as it grows
/// (ARCHITECTURE.md, "Generic plans").
#[tokio::test]
async fn reading_reservations_never_scans_the_table_it_grew_from_empty() {
    let db = database().await;
    // One session: prepared statements and their plans belong to it.
    let mut conn = db.pool.acquire().await.unwrap();
    grow(&mut conn, 100).await;
    sqlx::query("ANALYZE reservations")
        .execute(&mut *conn)
        .await
        .unwrap();
    for _ in 0..10 {
        reservations::hold(&mut conn, Uuid::new_v4(), 1, &[line(1, 1)])
            .await
            .unwrap();
    }
    grow(&mut conn, 20_000).await;

    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let before = test_support::unreported_seq_scans(&mut tx, "reservations")
        .await
        .unwrap();
    let held = reservations::hold(&mut tx, Uuid::new_v4(), 1, &[line(1, 1)])
        .await
        .unwrap();
    assert!(matches!(held, Held::Reserved), "{held:?}");
    let after = test_support::unreported_seq_scans(&mut tx, "reservations")
        .await
        .unwrap();
    assert_eq!(after, before, "holding one order scanned every reservation");
    drop(tx);
    drop(conn);
    db.drop_now().await.unwrap();
}

/// A count that would leave the `integer` range is the message's permanent failure: nothing is
/// written, and the consumer dead-letters the message instead of retrying it forever.
#[tokio::test]
async fn a_change_that_would_overflow_the_stock_is_a_permanent_error() {
    let db = database().await;
    let order = Uuid::new_v4();
    hold(&db.pool, order, 1, &[line(1, 5)]).await;
    sqlx::query("UPDATE products SET available = 2147483647 - 2 WHERE product_id = 1")
        .execute(&db.pool)
        .await
        .unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    let outcome = reservations::release(&mut tx, order).await;
    assert!(matches!(outcome, Err(Error::Overflow(_))), "{outcome:?}");
    drop(tx);
    let handled = HandlerError::from(outcome.unwrap_err());
    assert!(matches!(handled, HandlerError::Permanent(_)), "{handled:?}");
    assert_eq!(product(&db.pool, 1).await, (2147483645, 5));
    assert_eq!(status(&db.pool, order).await, (1, "reserved".to_owned()));

    // The same for units that would leave `reserved` out of range.
    sqlx::query("UPDATE products SET reserved = 2147483647 - 1 WHERE product_id = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let outcome = reservations::hold(&mut tx, Uuid::new_v4(), 1, &[line(2, 2)]).await;
    assert!(
        matches!(outcome, Err(Error::Overflow("units reserved"))),
        "{outcome:?}"
    );
    // Closing the pool waits for every connection, this transaction's too.
    drop(tx);
    db.drop_now().await.unwrap();
}

fn placed(order_id: Uuid, lines: Vec<Line>) -> IncomingMessage {
    let total = lines
        .iter()
        .map(|l| l.unit_price * Decimal::from(l.quantity))
        .sum();
    let message = OrderPlaced {
        order_id,
        customer_id: Uuid::new_v4(),
        revision: 1,
        lines,
        total,
    };
    incoming(order_id, &message)
}

fn failed(order_id: Uuid, reason: FailureReason) -> IncomingMessage {
    let message = OrderFailed {
        order_id,
        customer_id: Uuid::new_v4(),
        reason,
        lines: vec![line(1, 1)],
        total: Decimal::ONE,
    };
    incoming(order_id, &message)
}

/// The types of the messages queued for an order, oldest first.
async fn replies(pool: &PgPool, order_id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT message_type FROM outbox WHERE message_key = $1 ORDER BY id")
        .bind(order_id.to_string())
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_order_that_timed_out_is_released_for_good_and_payment_told() {
    let db = database().await;
    let (held, refused) = (Uuid::new_v4(), Uuid::new_v4());
    handle(&db.pool, &[placed(held, vec![line(1, 3)])])
        .await
        .unwrap();
    handle(&db.pool, &[placed(refused, vec![line(3, 26)])])
        .await
        .unwrap();
    assert_eq!(product(&db.pool, 1).await, (97, 3));

    handle(
        &db.pool,
        &[
            failed(held, FailureReason::TimedOut),
            failed(refused, FailureReason::OutOfStock),
        ],
    )
    .await
    .unwrap();
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    assert_eq!(status(&db.pool, held).await, (1, "released".to_owned()));
    // Released whether it held anything or not: payment refunds on it and stops paying.
    assert_eq!(
        replies(&db.pool, held).await,
        ["StockReserved", "StockReleased"]
    );
    assert_eq!(
        replies(&db.pool, refused).await,
        ["StockReservationFailed", "StockReleased"]
    );

    // A redriven placement, and the failure again: nothing is held, nothing is said.
    handle(&db.pool, &[placed(held, vec![line(1, 3)])])
        .await
        .unwrap();
    handle(&db.pool, &[failed(held, FailureReason::TimedOut)])
        .await
        .unwrap();
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    assert_eq!(
        replies(&db.pool, held).await,
        ["StockReserved", "StockReleased"]
    );
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn an_order_message_out_of_range_is_a_permanent_failure() {
    let db = database().await;
    let order = Uuid::new_v4();
    let mut absurd = placed(order, vec![line(1, 1)]);
    absurd.payload = String::from_utf8(absurd.payload)
        .unwrap()
        .replace(r#""quantity":1"#, r#""quantity":4000000000"#)
        .into_bytes();
    let outcome = handle(&db.pool, &[absurd]).await;
    assert!(
        matches!(&outcome, Err(HandlerError::Permanent(reason)) if reason.contains("quantity")),
        "{outcome:?}"
    );
    assert_eq!(product(&db.pool, 1).await, (100, 0));
    db.drop_now().await.unwrap();
}
