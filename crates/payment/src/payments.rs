//! Capturing a payment: one standing payment per order, for the revision of its lines that
//! stock holds, never more than the customer's credit. Runs in the caller's transaction (the
//! consumer's, with its inbox row).
//!
//! The common case, the first capture of an order, is two statements: one decides and debits,
//! one records the payment together with its reply in the outbox. Anything else (a decline, a
//! repeat, a new revision of an order already paid for) takes a slower path of plain
//! statements, as it is rare.
//!
//! # Revisions
//!
//! An order's lines may change until the order completes. Stock answers each revision it holds,
//! and each answer reaches payment in order (one key, one partition). A capture for a newer
//! revision refunds the order's standing capture and captures the new total; a reservation that
//! failed refunds it (see [`refund_earlier`]). A decline is final: the order fails on it,
//! whatever revision it answers, so later revisions are not paid for. Answers for a revision
//! not newer than one already paid for are repeats and change nothing.

use messaging::outbox::{self, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

/// Stock holds the lines of an order's `revision`, which cost `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    pub amount: Decimal,
}

/// The payment recorded for an order's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    Captured {
        payment_id: Uuid,
    },
    Declined {
        payment_id: Uuid,
        available_credit: Decimal,
    },
}

/// Captures the request's amount from the customer's credit, or records a declined payment
/// when the credit is short; a new customer starts with `starting_credit`. A capture of an
/// earlier revision of the order is refunded first. The payment row and `reply(payment)`,
/// queued in the outbox, are written by one statement.
///
/// `None` when the request is a repeat (the order has a payment for this revision or a later
/// one) or the order's payment was declined: nothing changes, nothing is sent.
pub async fn capture(
    conn: &mut PgConnection,
    request: Request,
    starting_credit: Decimal,
    reply: impl FnOnce(&Payment) -> OutgoingMessage,
) -> Result<Option<Payment>, sqlx::Error> {
    let payment_id = Uuid::now_v7();
    // The first payment of an order decides and debits in one statement, for a new customer as
    // for a known one: a new one is inserted already debited, a known one is debited only if
    // the credit covers the amount. Concurrent payments of one customer serialise on the row.
    // No row back: not debited, for one of the reasons `settle` sorts out.
    // (The proposed row must pass the CHECK even when it turns into the update: hence GREATEST.)
    let debited: Option<Decimal> = sqlx::query_scalar(
        "INSERT INTO customers AS c (customer_id, credit)
         SELECT $2, GREATEST($4 - $3, 0)
         WHERE NOT EXISTS (SELECT 1 FROM payments WHERE order_id = $1)
           AND ($4 >= $3 OR EXISTS (SELECT 1 FROM customers WHERE customer_id = $2))
         ON CONFLICT (customer_id) DO UPDATE SET credit = c.credit - $3 WHERE c.credit >= $3
         RETURNING credit",
    )
    .bind(request.order_id)
    .bind(request.customer_id)
    .bind(request.amount)
    .bind(starting_credit)
    .fetch_optional(&mut *conn)
    .await?;

    let payment = match debited {
        Some(_) => Payment::Captured { payment_id },
        None => match settle(conn, request, starting_credit).await? {
            Settled::Repeat => return Ok(None),
            Settled::Captured => Payment::Captured { payment_id },
            Settled::Short(available_credit) => Payment::Declined {
                payment_id,
                available_credit,
            },
        },
    };
    record(conn, request, &payment, &reply(&payment)).await?;
    Ok(Some(payment))
}

/// What the slow path of [`capture`] did.
enum Settled {
    /// The order's payment was declined, or this revision (or a later one) was already paid.
    Repeat,
    /// Debited.
    Captured,
    /// Not debited: the credit, given here, falls short.
    Short(Decimal),
}

/// The slow path of [`capture`]: skips a repeat, refunds the capture of an earlier revision,
/// then debits the customer (created with the starting credit if new) if the credit covers it.
async fn settle(
    conn: &mut PgConnection,
    request: Request,
    starting_credit: Decimal,
) -> Result<Settled, sqlx::Error> {
    let revision = revision(request.revision);
    let settled: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payments
                        WHERE order_id = $1 AND (revision >= $2 OR status = 'declined'))",
    )
    .bind(request.order_id)
    .bind(revision)
    .fetch_one(&mut *conn)
    .await?;
    if settled {
        return Ok(Settled::Repeat);
    }
    refund_earlier(conn, request.order_id, request.revision).await?;
    sqlx::query(
        "INSERT INTO customers (customer_id, credit) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(request.customer_id)
    .bind(starting_credit)
    .execute(&mut *conn)
    .await?;
    let debited: Option<Decimal> = sqlx::query_scalar(
        "UPDATE customers SET credit = credit - $2 WHERE customer_id = $1 AND credit >= $2
         RETURNING credit",
    )
    .bind(request.customer_id)
    .bind(request.amount)
    .fetch_optional(&mut *conn)
    .await?;
    if debited.is_some() {
        return Ok(Settled::Captured);
    }
    let credit = sqlx::query_scalar("SELECT credit FROM customers WHERE customer_id = $1")
        .bind(request.customer_id)
        .fetch_one(conn)
        .await?;
    Ok(Settled::Short(credit))
}

/// Refunds the order's standing capture if it paid for a revision older than `revision`:
/// stock no longer holds those lines, because a newer revision replaced them or could not be
/// held. The credit goes back to the customer. Returns the amount refunded, if any.
pub async fn refund_earlier(
    conn: &mut PgConnection,
    order_id: Uuid,
    revision: u32,
) -> Result<Option<Decimal>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH refunded AS (
             UPDATE payments SET status = 'refunded'
             WHERE order_id = $1 AND status = 'captured' AND revision < $2
             RETURNING customer_id, amount
         )
         UPDATE customers c SET credit = c.credit + r.amount
         FROM refunded r WHERE c.customer_id = r.customer_id
         RETURNING r.amount",
    )
    .bind(order_id)
    .bind(self::revision(revision))
    .fetch_optional(conn)
    .await
}

/// A revision as stored (`int4`); one beyond that range is stored as the largest.
fn revision(revision: u32) -> i32 {
    i32::try_from(revision).unwrap_or(i32::MAX)
}

/// Inserts the payment row and queues its reply, in one statement.
async fn record(
    conn: &mut PgConnection,
    request: Request,
    payment: &Payment,
    reply: &OutgoingMessage,
) -> Result<(), sqlx::Error> {
    let (payment_id, status) = match *payment {
        Payment::Captured { payment_id } => (payment_id, "captured"),
        Payment::Declined { payment_id, .. } => (payment_id, "declined"),
    };
    let mut args = PgArguments::default();
    let bound = (|| {
        args.add(payment_id)?;
        args.add(request.order_id)?;
        args.add(request.customer_id)?;
        args.add(request.amount)?;
        args.add(status)?;
        args.add(revision(request.revision))?;
        outbox::add_rows(&mut args, std::slice::from_ref(reply))
    })();
    bound.map_err(sqlx::Error::Encode)?;
    let sql = format!(
        "WITH queued AS ({})
         INSERT INTO payments (payment_id, order_id, customer_id, amount, status, revision)
         VALUES ($1, $2, $3, $4, $5, $6)",
        outbox::insert_rows_sql(7)
    );
    sqlx::query_with(&sql, args).execute(conn).await?;
    Ok(())
}
