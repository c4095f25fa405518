//! Reservations: an order's lines are held all together or not at all.
//!
//! Every function runs inside the caller's transaction (the consumer's, with its inbox row), so
//! a reservation and the message announcing it commit together. All stock transactions first
//! take one transaction-scoped advisory lock: stock work is serialised. That costs little (the
//! consumer applies many messages per transaction) and rules out deadlocks between batches that
//! touch the same hot products in different orders.

use std::collections::BTreeMap;

use contracts::stock::ReservationFailure;
use sqlx::PgConnection;
use uuid::Uuid;

/// The key of the advisory lock that serialises stock transactions in this database.
const STOCK_LOCK: i64 = 0x73_746f_636b; // "stock"

/// What `hold` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Every line of the revision is held.
    Reserved,
    /// Nothing is held: some products are unknown or short.
    Failed {
        reason: ReservationFailure,
        product_ids: Vec<i64>,
    },
    /// The message was older than what is already applied, or the reservation is final.
    Ignored,
}

/// Quantities wanted per product: lines of one product (at several prices) add up.
pub fn wanted(lines: &[contracts::Line]) -> BTreeMap<i64, i64> {
    let mut wanted = BTreeMap::new();
    for line in lines {
        *wanted.entry(line.product_id).or_insert(0) += i64::from(line.quantity);
    }
    wanted
}

/// The change per product that turns `held` into `wanted`, given what is `available` (products
/// missing from `available` do not exist). Positive: take from available; negative: give back.
pub fn plan(
    wanted: &BTreeMap<i64, i64>,
    held: &BTreeMap<i64, i64>,
    available: &BTreeMap<i64, i64>,
) -> Result<BTreeMap<i64, i64>, (ReservationFailure, Vec<i64>)> {
    let unknown: Vec<i64> = wanted
        .keys()
        .filter(|p| !available.contains_key(p))
        .copied()
        .collect();
    if !unknown.is_empty() {
        return Err((ReservationFailure::UnknownProduct, unknown));
    }
    let products: std::collections::BTreeSet<i64> =
        wanted.keys().chain(held.keys()).copied().collect();
    let mut deltas = BTreeMap::new();
    let mut short = Vec::new();
    for product in &products {
        let delta =
            wanted.get(product).copied().unwrap_or(0) - held.get(product).copied().unwrap_or(0);
        if delta > available.get(product).copied().unwrap_or(0) {
            short.push(*product);
        }
        if delta != 0 {
            deltas.insert(*product, delta);
        }
    }
    if short.is_empty() {
        Ok(deltas)
    } else {
        Err((ReservationFailure::OutOfStock, short))
    }
}

async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(STOCK_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

async fn reservation(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<(i32, String)>, sqlx::Error> {
    sqlx::query_as("SELECT revision, status FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

async fn held_lines(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<BTreeMap<i64, i64>, sqlx::Error> {
    let rows: Vec<(i64, i32)> =
        sqlx::query_as("SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1")
            .bind(order_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(p, q)| (p, i64::from(q))).collect())
}

/// Moves `delta` units per product from available to reserved (negative: back).
async fn shift(conn: &mut PgConnection, deltas: &BTreeMap<i64, i64>) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let products: Vec<i64> = deltas.keys().copied().collect();
    let amounts: Vec<i32> = deltas
        .values()
        .map(|d| i32::try_from(*d).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "UPDATE products p SET available = p.available - d.delta, reserved = p.reserved + d.delta
         FROM UNNEST($1::int8[], $2::int4[]) AS d(product_id, delta)
         WHERE p.product_id = d.product_id",
    )
    .bind(&products)
    .bind(&amounts)
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_lines(
    conn: &mut PgConnection,
    order_id: Uuid,
    lines: &BTreeMap<i64, i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM reservation_lines WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    let products: Vec<i64> = lines.keys().copied().collect();
    let quantities: Vec<i32> = lines
        .values()
        .map(|q| i32::try_from(*q).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO reservation_lines (order_id, product_id, quantity)
         SELECT $1, p, q FROM UNNEST($2::int8[], $3::int4[]) AS l(p, q)",
    )
    .bind(order_id)
    .bind(&products)
    .bind(&quantities)
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_status(
    conn: &mut PgConnection,
    order_id: Uuid,
    revision: i32,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservations (order_id, revision, status) VALUES ($1, $2, $3)
         ON CONFLICT (order_id) DO UPDATE
         SET revision = EXCLUDED.revision, status = EXCLUDED.status, updated_at = now()",
    )
    .bind(order_id)
    .bind(revision)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes the order's reservation hold exactly `lines` of `revision`: all of them, or none at all.
/// A revision not newer than the one applied is ignored (a redelivery or a replay), and so is
/// any message for a released or committed reservation.
pub async fn hold(
    conn: &mut PgConnection,
    order_id: Uuid,
    revision: u32,
    lines: &[contracts::Line],
) -> Result<Held, sqlx::Error> {
    lock(conn).await?;
    let revision = i32::try_from(revision).unwrap_or(i32::MAX);
    let current = reservation(conn, order_id).await?;
    let held = match &current {
        Some((applied, _)) if *applied >= revision => return Ok(Held::Ignored),
        Some((_, status)) if status == "released" || status == "committed" => {
            return Ok(Held::Ignored);
        }
        Some((_, status)) if status == "reserved" => held_lines(conn, order_id).await?,
        _ => BTreeMap::new(),
    };

    let wanted = wanted(lines);
    let products: Vec<i64> = wanted.keys().chain(held.keys()).copied().collect();
    let available: BTreeMap<i64, i64> = sqlx::query_as::<_, (i64, i32)>(
        "SELECT product_id, available FROM products WHERE product_id = ANY($1)",
    )
    .bind(&products)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(p, a)| (p, i64::from(a)))
    .collect();

    match plan(&wanted, &held, &available) {
        Ok(deltas) => {
            shift(conn, &deltas).await?;
            set_status(conn, order_id, revision, "reserved").await?;
            set_lines(conn, order_id, &wanted).await?;
            Ok(Held::Reserved)
        }
        Err((reason, product_ids)) => {
            // All or nothing: whatever an earlier revision held goes back.
            let give_back = held.iter().map(|(p, q)| (*p, -q)).collect();
            shift(conn, &give_back).await?;
            set_status(conn, order_id, revision, "failed").await?;
            set_lines(conn, order_id, &BTreeMap::new()).await?;
            Ok(Held::Failed {
                reason,
                product_ids,
            })
        }
    }
}

/// Gives an order's held units back (compensation). Returns whether anything was held. The
/// reservation becomes final: a late revision of the order can no longer take stock.
pub async fn release(conn: &mut PgConnection, order_id: Uuid) -> Result<bool, sqlx::Error> {
    lock(conn).await?;
    let current = reservation(conn, order_id).await?;
    if matches!(&current, Some((_, s)) if s == "released" || s == "committed") {
        return Ok(false);
    }
    let held = match &current {
        Some((_, status)) if status == "reserved" => held_lines(conn, order_id).await?,
        _ => BTreeMap::new(),
    };
    let give_back = held.iter().map(|(p, q)| (*p, -q)).collect();
    shift(conn, &give_back).await?;
    set_status(conn, order_id, current.map_or(0, |(r, _)| r), "released").await?;
    set_lines(conn, order_id, &BTreeMap::new()).await?;
    Ok(!held.is_empty())
}

/// The order completed: its held units are sold and leave `reserved` for good.
pub async fn commit(conn: &mut PgConnection, order_id: Uuid) -> Result<bool, sqlx::Error> {
    lock(conn).await?;
    let Some((revision, status)) = reservation(conn, order_id).await? else {
        return Ok(false);
    };
    if status != "reserved" {
        return Ok(false);
    }
    let held = held_lines(conn, order_id).await?;
    let products: Vec<i64> = held.keys().copied().collect();
    let quantities: Vec<i32> = held
        .values()
        .map(|q| i32::try_from(*q).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "UPDATE products p SET reserved = p.reserved - s.quantity
         FROM UNNEST($1::int8[], $2::int4[]) AS s(product_id, quantity)
         WHERE p.product_id = s.product_id",
    )
    .bind(&products)
    .bind(&quantities)
    .execute(&mut *conn)
    .await?;
    set_status(conn, order_id, revision, "committed").await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(i64, i64)]) -> BTreeMap<i64, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_new_reservation_takes_what_is_wanted() {
        let plan = plan(&map(&[(1, 2), (2, 1)]), &map(&[]), &map(&[(1, 5), (2, 1)]));
        assert_eq!(plan, Ok(map(&[(1, 2), (2, 1)])));
    }

    #[test]
    fn a_change_moves_only_the_difference() {
        let plan = plan(
            &map(&[(1, 3), (3, 1)]),
            &map(&[(1, 5), (2, 1)]),
            &map(&[(1, 0), (2, 0), (3, 1)]),
        );
        assert_eq!(plan, Ok(map(&[(1, -2), (2, -1), (3, 1)])));
    }

    #[test]
    fn unknown_products_fail_before_shortages() {
        let plan = plan(&map(&[(1, 999), (9, 1)]), &map(&[]), &map(&[(1, 5)]));
        assert_eq!(plan, Err((ReservationFailure::UnknownProduct, vec![9])));
    }

    #[test]
    fn a_shortage_of_any_product_fails_the_whole_reservation() {
        let plan = plan(
            &map(&[(1, 1), (2, 3)]),
            &map(&[(2, 1)]),
            &map(&[(1, 5), (2, 1)]),
        );
        assert_eq!(plan, Err((ReservationFailure::OutOfStock, vec![2])));
    }

    #[test]
    fn lines_of_one_product_at_two_prices_add_up() {
        let line = |p, q, price: &str| contracts::Line {
            product_id: p,
            quantity: q,
            unit_price: price.parse().unwrap(),
        };
        assert_eq!(
            wanted(&[line(1, 2, "1.00"), line(1, 3, "2.00"), line(2, 1, "1.00")]),
            map(&[(1, 5), (2, 1)])
        );
    }
}
