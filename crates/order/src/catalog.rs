//! The order service's replica of the catalog. The stock service owns the catalog and publishes
//! every change of a product as `ProductChanged` on `shop.catalog`; the order consumer applies
//! them here (in its inbox transaction), and placing an order or adding an item prices each line
//! from this table, so no request waits on another service.
//!
//! Each change carries the whole product and a version that grows with every change of it: a
//! change is applied only when its version is newer than the one held, so redeliveries, replays
//! and a late older change leave the replica as it is.
//!
//! Placing reads prices through a [`PriceCache`]: a price read from the table less than
//! [`FRESH`] ago is used again without a round trip, except where it would refuse the request
//! (a stated price that differs, a product not found), which is decided on the table itself.
//! So a price change reaches an order that states no price within the replica's lag plus
//! [`FRESH`], and never makes a customer who stated the new price wait for the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// How long a price read from the replica is used again without reading it anew.
pub const FRESH: Duration = Duration::from_secs(1);

/// Prices the order service read from its replica lately, by product; shared by the requests
/// of one process. Holds only products the replica knows, so it is as large as the catalog at
/// most.
#[derive(Debug, Clone, Default)]
pub struct PriceCache {
    read: Arc<Mutex<HashMap<ProductId, (Price, Instant)>>>,
}

impl PriceCache {
    /// The prices of `products`: from the cache where read less than [`FRESH`] ago, the rest
    /// from the table in one statement (all of them when `from_table`). A product missing from
    /// the answer is not in the catalog.
    pub async fn prices(
        &self,
        executor: impl PgExecutor<'_>,
        products: &[ProductId],
        from_table: bool,
    ) -> Result<HashMap<ProductId, Price>, sqlx::Error> {
        let mut found = HashMap::with_capacity(products.len());
        let mut missing = Vec::new();
        {
            let read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
            for product in products {
                match read.get(product) {
                    Some((price, at)) if !from_table && at.elapsed() < FRESH => {
                        found.insert(*product, *price);
                    }
                    _ => missing.push(*product),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let fetched = prices(executor, &missing).await?;
        let now = Instant::now();
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        for (product, price) in fetched {
            read.insert(product, (price, now));
            found.insert(product, price);
        }
        Ok(found)
    }
}
