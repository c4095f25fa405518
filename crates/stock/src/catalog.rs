//! The catalog and inventory: each product's name and price beside its units, changed by
//! operators (SYSTEM.md §3.7).
//!
//! - [`put`] adds a product (no units, version 1) or renames or reprices it (version + 1). The
//!   row, a `ProductChanged` carrying the whole product (on the catalog topic, keyed by
//!   product) and the audit row commit in one transaction; a put that changes nothing writes
//!   nothing, so repeating one is harmless and announces nothing twice.
//! - [`restock`] adds units, with its audit row.
//!
//! Both take the stock lock first ([`reservations::lock`]), the lock every consumer batch holds
//! while it reads and writes quantities: a restock lands between two batches, never inside one,
//! so a batch's all-or-nothing check and its write see the same stock (I1, I2). Under the lock,
//! the writes of one product are serialised, so the outbox rows of its key are in commit order,
//! as the relay needs, and its versions grow by one without gaps.

use chrono::Utc;
use contracts::catalog::{ProductChanged, product_key};
use messaging::outbox::{self, Metadata, OutgoingMessage};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::reservations;

/// The most units one restock adds.
pub const MAX_RESTOCK: i32 = 1_000_000;

/// A product as everyone may read it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "available": 98, "version": 1}))]
pub struct Product {
    #[schema(minimum = 1)]
    pub product_id: i64,
    pub name: String,
    /// The current price, a decimal string with two places. Orders placed from now on pay it.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "45.00")]
    pub unit_price: Decimal,
    /// Units free to order.
    #[schema(minimum = 0)]
    pub available: i32,
    /// Grows by one with every change of name or price (the `version` of `ProductChanged`).
    #[schema(minimum = 1)]
    pub version: i32,
}

/// What [`put`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Put {
    Added(Product),
    Changed(Product),
    /// The product already had this name and price: nothing was written.
    Unchanged(Product),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("no such product")]
    NotFound,
    /// A count would leave the range its column keeps.
    #[error("{0} would overflow")]
    Overflow(&'static str),
}

const COLUMNS: &str = "product_id, name, unit_price, available, version";

/// Up to `limit` products after `after`, by product id.
pub async fn list(pool: &PgPool, after: i64, limit: i64) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_id > $1 ORDER BY product_id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

async fn read(conn: &mut PgConnection, product_id: i64) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_id = $1"
    ))
    .bind(product_id)
    .fetch_optional(conn)
    .await
}

/// Adds the product or changes its name and price, on behalf of `actor`. `name` and
/// `unit_price` are valid (the caller checked them against the contract's bounds).
pub async fn put(
    pool: &PgPool,
    actor: &str,
    product_id: i64,
    name: &str,
    unit_price: Decimal,
) -> Result<Put, Error> {
    let mut tx = pool.begin().await?;
    reservations::lock(&mut tx).await?;
    let before = read(&mut tx, product_id).await?;
    let after: Product = match &before {
        Some(p) if p.name == name && p.unit_price == unit_price => {
            return Ok(Put::Unchanged(p.clone()));
        }
        Some(p) => {
            let version = p.version.checked_add(1).ok_or(Error::Overflow("version"))?;
            sqlx::query_as(&format!(
                "UPDATE products SET name = $2, unit_price = $3, version = $4
                 WHERE product_id = $1 RETURNING {COLUMNS}"
            ))
            .bind(product_id)
            .bind(name)
            .bind(unit_price)
            .bind(version)
            .fetch_one(&mut *tx)
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "INSERT INTO products (product_id, name, unit_price, available, reserved, version)
                 VALUES ($1, $2, $3, 0, 0, 1) RETURNING {COLUMNS}"
            ))
            .bind(product_id)
            .bind(name)
            .bind(unit_price)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let message = ProductChanged {
        product_id,
        name: after.name.clone(),
        unit_price: after.unit_price,
        version: u32::try_from(after.version).map_err(|_| Error::Overflow("version"))?,
    };
    let message_id = Uuid::now_v7();
    let metadata = Metadata {
        message_id,
        // A catalog change starts a story of its own.
        correlation_id: message_id,
        causation_id: None,
        traceparent: platform::trace::current_traceparent(),
        occurred_at: Utc::now(),
    };
    outbox::enqueue(
        &mut tx,
        &[OutgoingMessage::keyed(
            product_key(product_id),
            &message,
            metadata,
        )],
    )
    .await?;
    let action = if before.is_some() {
        "product.change"
    } else {
        "product.add"
    };
    audit(&mut tx, actor, action, before.as_ref(), &after).await?;
    tx.commit().await?;
    Ok(if before.is_some() {
        Put::Changed(after)
    } else {
        Put::Added(after)
    })
}

/// Adds `quantity` units (1 to [`MAX_RESTOCK`], checked by the caller) to the product, on
/// behalf of `actor`. [`Error::Overflow`] when `available` would leave the `integer` range.
pub async fn restock(
    pool: &PgPool,
    actor: &str,
    product_id: i64,
    quantity: i32,
) -> Result<Product, Error> {
    let mut tx = pool.begin().await?;
    reservations::lock(&mut tx).await?;
    let before = read(&mut tx, product_id).await?.ok_or(Error::NotFound)?;
    let available = (before.available)
        .checked_add(quantity)
        .ok_or(Error::Overflow("units available"))?;
    let after: Product = sqlx::query_as(&format!(
        "UPDATE products SET available = $2 WHERE product_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(product_id)
    .bind(available)
    .fetch_one(&mut *tx)
    .await?;
    audit(&mut tx, actor, "product.restock", Some(&before), &after).await?;
    tx.commit().await?;
    Ok(after)
}

/// The audit row of a change to a product: the whole product before and after.
async fn audit(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    before: Option<&Product>,
    after: &Product,
) -> Result<(), sqlx::Error> {
    let subject = format!("product:{}", after.product_id);
    let json = |p: &Product| serde_json::to_value(p).map_err(|e| sqlx::Error::Encode(e.into()));
    let before = before.map(json).transpose()?;
    let after = json(after)?;
    messaging::audit::record(conn, actor, action, &subject, before.as_ref(), Some(&after)).await
}
