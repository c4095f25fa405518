//! The order service's replica of the catalog. The stock service owns the catalog and publishes
//! every change of a product as `ProductChanged` on `shop.catalog`; the order consumer applies
//! them here (in its inbox transaction), and placing an order or adding an item prices each line
//! from this table, so no request waits on another service.
//!
//! Each change carries the whole product and a version that grows with every change of it: a
//! change is applied only when its version is newer than the one held, so redeliveries, replays
//! and a late older change leave the replica as it is.

use std::collections::HashMap;

use contracts::catalog::ProductChanged;
use rust_decimal::Decimal;
use sqlx::PgExecutor;

use crate::domain::{Price, ProductId};

/// Applies `changes` (any order, any repeats): each product ends at its newest version, one
/// statement for the whole batch. Returns how many rows changed.
pub async fn apply(
    executor: impl PgExecutor<'_>,
    changes: &[ProductChanged],
) -> Result<u64, sqlx::Error> {
    // Only the newest change of each product in the batch goes in: one statement may not touch
    // a row twice.
    let mut newest: HashMap<i64, &ProductChanged> = HashMap::new();
    for change in changes {
        let slot = newest.entry(change.product_id).or_insert(change);
        if change.version > slot.version {
            *slot = change;
        }
    }
    let ids: Vec<i64> = newest.keys().copied().collect();
    let names: Vec<&str> = ids
        .iter()
        .filter_map(|id| newest.get(id))
        .map(|c| c.name.as_str())
        .collect();
    let prices: Vec<Decimal> = ids
        .iter()
        .filter_map(|id| newest.get(id))
        .map(|c| c.unit_price)
        .collect();
    let versions: Vec<i64> = ids
        .iter()
        .filter_map(|id| newest.get(id))
        .map(|c| i64::from(c.version))
        .collect();
    let result = sqlx::query(
        "INSERT INTO catalog (product_id, name, unit_price, version)
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::numeric[], $4::int8[])
         ON CONFLICT (product_id) DO UPDATE
            SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price,
                version = EXCLUDED.version, updated_at = now()
            WHERE catalog.version < EXCLUDED.version",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&prices)
    .bind(&versions)
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

/// The current price of each of `products` the replica knows; an unknown product is absent.
pub async fn prices(
    executor: impl PgExecutor<'_>,
    products: &[ProductId],
) -> Result<HashMap<ProductId, Price>, sqlx::Error> {
    let ids: Vec<i64> = products.iter().map(|p| p.get()).collect();
    let rows: Vec<(i64, Decimal)> =
        sqlx::query_as("SELECT product_id, unit_price FROM catalog WHERE product_id = ANY($1)")
            .bind(&ids)
            .fetch_all(executor)
            .await?;
    // A stored price passed `ProductChanged`'s validation and the table's checks; one that
    // does not parse as a price (never expected) counts as unknown rather than failing the
    // request.
    Ok(rows
        .into_iter()
        .filter_map(|(id, price)| {
            Some((ProductId::parse(id).ok()?, Price::from_decimal(price).ok()?))
        })
        .collect())
}
