//! Capturing a payment: at most one per order, never more than the customer's credit.
//! Runs in the caller's transaction (the consumer's, with its inbox row and outbox reply).

use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Captured {
        payment_id: Uuid,
    },
    Declined {
        available_credit: Decimal,
    },
    /// The order already has a payment: a redelivery or replay that the inbox did not see (for
    /// instance a message republished under a new id). Nothing changes.
    AlreadyPaid,
}

/// Captures `amount` from the customer's credit, or records a declined payment when the credit
/// is short. A new customer starts with `starting_credit`.
pub async fn capture(
    conn: &mut PgConnection,
    order_id: Uuid,
    customer_id: Uuid,
    amount: Decimal,
    starting_credit: Decimal,
) -> Result<Outcome, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payments WHERE order_id = $1)")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await?;
    if exists {
        return Ok(Outcome::AlreadyPaid);
    }
    sqlx::query(
        "INSERT INTO customers (customer_id, credit) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(customer_id)
    .bind(starting_credit)
    .execute(&mut *conn)
    .await?;
    // One statement decides and debits: concurrent payments of one customer serialise on the row.
    let debited: Option<Decimal> = sqlx::query_scalar(
        "UPDATE customers SET credit = credit - $2 WHERE customer_id = $1 AND credit >= $2
         RETURNING credit",
    )
    .bind(customer_id)
    .bind(amount)
    .fetch_optional(&mut *conn)
    .await?;

    let payment_id = Uuid::now_v7();
    let status = if debited.is_some() {
        "captured"
    } else {
        "declined"
    };
    sqlx::query(
        "INSERT INTO payments (payment_id, order_id, customer_id, amount, status)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(payment_id)
    .bind(order_id)
    .bind(customer_id)
    .bind(amount)
    .bind(status)
    .execute(&mut *conn)
    .await?;

    if debited.is_some() {
        return Ok(Outcome::Captured { payment_id });
    }
    let available_credit: Decimal =
        sqlx::query_scalar("SELECT credit FROM customers WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(conn)
            .await?;
    Ok(Outcome::Declined { available_credit })
}
