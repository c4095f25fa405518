//! Capturing a payment: at most one per order, never more than the customer's credit.
//! Runs in the caller's transaction (the consumer's, with its inbox row).
//!
//! The common case, a capture, is two statements: one decides and debits, one records the
//! payment together with its reply in the outbox. A decline or a repeat takes a slower path of
//! plain reads, as it is rare.

use messaging::outbox::{self, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

/// One order's payment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Decimal,
}

/// The payment recorded for an order.
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
/// when the credit is short; a new customer starts with `starting_credit`. The payment row and
/// `reply(payment)`, queued in the outbox, are written by one statement.
///
/// `None` when the order already has a payment: a redelivery or replay that the inbox did not
/// see (for instance a message republished under a new id). Nothing changes, nothing is sent.
pub async fn capture(
    conn: &mut PgConnection,
    request: Request,
    starting_credit: Decimal,
    reply: impl FnOnce(&Payment) -> OutgoingMessage,
) -> Result<Option<Payment>, sqlx::Error> {
    let payment_id = Uuid::now_v7();
    // Decides and debits in one statement, for a new customer as for a known one: a new one is
    // inserted already debited, a known one is debited only if the credit covers the amount.
    // Concurrent payments of one customer serialise on the row; none runs for an order that
    // already has a payment. No row back: not debited, for one of the reasons read below.
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
        None => match declined_or_paid(conn, request, starting_credit).await? {
            Some(available_credit) => Payment::Declined {
                payment_id,
                available_credit,
            },
            None => return Ok(None),
        },
    };
    record(conn, request, &payment, &reply(&payment)).await?;
    Ok(Some(payment))
}

/// Why nothing was debited: `None` if the order already has a payment, otherwise the credit
/// that fell short (a new customer is created with the starting credit, untouched).
async fn declined_or_paid(
    conn: &mut PgConnection,
    request: Request,
    starting_credit: Decimal,
) -> Result<Option<Decimal>, sqlx::Error> {
    let paid: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payments WHERE order_id = $1)")
            .bind(request.order_id)
            .fetch_one(&mut *conn)
            .await?;
    if paid {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO customers (customer_id, credit) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(request.customer_id)
    .bind(starting_credit)
    .execute(&mut *conn)
    .await?;
    let credit = sqlx::query_scalar("SELECT credit FROM customers WHERE customer_id = $1")
        .bind(request.customer_id)
        .fetch_one(conn)
        .await?;
    Ok(Some(credit))
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
        outbox::add_rows(&mut args, std::slice::from_ref(reply))
    })();
    bound.map_err(sqlx::Error::Encode)?;
    let sql = format!(
        "WITH queued AS ({})
         INSERT INTO payments (payment_id, order_id, customer_id, amount, status)
         VALUES ($1, $2, $3, $4, $5)",
        outbox::insert_rows_sql(6)
    );
    sqlx::query_with(&sql, args).execute(conn).await?;
    Ok(())
}
