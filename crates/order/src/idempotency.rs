//! `Idempotency-Key` for placing orders. Keys are the customer's own: unique per
//! `(customer, key)`, so two customers never share or learn of each other's keys. The key is
//! stored in the transaction that places the order, so a retry finds that order, and two
//! concurrent requests with one key place one order (the second insert waits on the first's key
//! and then sees it).
//!
//! A key remembers the request as the customer sent it (products, quantities and the prices
//! they stated, if any), not as it was priced: a retry after a price change is still the same
//! request and returns the order placed at the old price.

use sqlx::PgPool;

use crate::commands::{self, CommandError, Context, Executed};
use crate::domain::{Command, CustomerId, OrderId};

/// Places `command` once for `(customer, key)`; `request` is the request's fingerprint.
pub async fn place_once(
    pool: &PgPool,
    customer: CustomerId,
    key: &str,
    request: &serde_json::Value,
    order_id: OrderId,
    command: Command,
    context: &Context,
) -> Result<Executed, CommandError> {
    // Two rounds suffice: either our insert wins, or a concurrent one committed and we read it.
    for _ in 0..2 {
        if let Some(existing) = find(pool, customer, key, request).await? {
            return Ok(existing);
        }
        let mut tx = pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (customer_id, key, order_id, request)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (customer_id, key) DO NOTHING",
        )
        .bind(customer.0)
        .bind(key)
        .bind(order_id.0)
        .bind(request)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            continue;
        }
        let executed = commands::execute_in(&mut tx, order_id, command.clone(), context).await?;
        tx.commit().await?;
        return Ok(executed);
    }
    Err(CommandError::Contended)
}

/// The order `(customer, key)` already placed, if the request matches the one stored with it;
/// [`CommandError::KeyReused`] if it does not.
pub async fn find(
    pool: &PgPool,
    customer: CustomerId,
    key: &str,
    request: &serde_json::Value,
) -> Result<Option<Executed>, CommandError> {
    let row: Option<(uuid::Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT order_id, request FROM idempotency_keys WHERE customer_id = $1 AND key = $2",
    )
    .bind(customer.0)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    let Some((order_id, stored)) = row else {
        return Ok(None);
    };
    if &stored != request {
        return Err(CommandError::KeyReused);
    }
    let (order, stream) = commands::load(pool, OrderId(order_id))
        .await?
        .ok_or(CommandError::Contended)?;
    Ok(Some(Executed {
        stream,
        order,
        appended: 0,
    }))
}
