//! `Idempotency-Key` for placing orders: the key is stored in the transaction that places the
//! order, so a retry finds that order, and two concurrent requests with one key place one order
//! (the second insert waits on the first's key and then sees it).

use sqlx::PgPool;

use crate::commands::{self, CommandError, Context, Executed};
use crate::domain::{Command, OrderId};

pub async fn place_once(
    pool: &PgPool,
    key: String,
    order_id: OrderId,
    command: Command,
    context: &Context,
) -> Result<Executed, CommandError> {
    let request = fingerprint(&command);
    // Two rounds suffice: either our insert wins, or a concurrent one committed and we read it.
    for _ in 0..2 {
        if let Some(existing) = find(pool, &key, &request).await? {
            return Ok(existing);
        }
        let mut tx = pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (key, order_id, request) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&key)
        .bind(order_id.0)
        .bind(&request)
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

/// The order a key already placed, if the request matches the one stored with it.
async fn find(
    pool: &PgPool,
    key: &str,
    request: &serde_json::Value,
) -> Result<Option<Executed>, CommandError> {
    let row: Option<(uuid::Uuid, serde_json::Value)> =
        sqlx::query_as("SELECT order_id, request FROM idempotency_keys WHERE key = $1")
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

/// The parsed request, so `"12.5"` and `"12.50"` count as the same request.
fn fingerprint(command: &Command) -> serde_json::Value {
    match command {
        Command::Place { customer_id, lines } => {
            serde_json::json!({ "customerId": customer_id, "lines": lines })
        }
        _ => serde_json::Value::Null,
    }
}
