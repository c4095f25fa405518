//! Stuck sagas: orders still pending after a while, oldest first (`GET /api/ops/orders/stuck`,
//! the console's stuck list).
//!
//! The saga's own bookkeeping answers this: `open_sagas` holds exactly the orders whose saga has
//! not settled, with the time each was placed (`deadline.rs`), and its index on
//! `(placed_at, order_id)` gives a page of the oldest without reading settled orders. Which hop
//! a stuck order waits on is not the order service's to know (stock's reservation goes straight
//! to payment); the order's journey shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

/// An order whose saga has not settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StuckOrder {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub placed_at: DateTime<Utc>,
}

/// Which pending orders a page lists.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// Only orders placed before this time (pending for a while, not just placed).
    pub placed_before: DateTime<Utc>,
    /// The cursor: only orders after this `(placed_at, order_id)`.
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

/// Up to `limit` pending orders matching `filter`, oldest first.
pub async fn page(
    executor: impl PgExecutor<'_>,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<StuckOrder>, sqlx::Error> {
    // Before every saga when there is no cursor: every `placed_at` is later than 1970.
    let (after_time, after_id) = filter.after.unwrap_or((DateTime::UNIX_EPOCH, Uuid::nil()));
    sqlx::query_as(STATEMENT)
        .bind(filter.placed_before)
        .bind(after_time)
        .bind(after_id)
        .bind(limit)
        .fetch_all(executor)
        .await
}

/// The statement of [`page`]: a page of `open_sagas` by its age index, then each order's first
/// event (its customer) by the events' primary key.
pub const STATEMENT: &str = "SELECT s.order_id, (p.payload->>'customerId')::uuid AS customer_id,
        s.placed_at
 FROM (SELECT order_id, placed_at FROM open_sagas
       WHERE placed_at < $1 AND (placed_at, order_id) > ($2, $3)
       ORDER BY placed_at, order_id
       LIMIT $4) s
 JOIN events p ON p.stream_id = s.order_id AND p.version = 1
 ORDER BY s.placed_at, s.order_id";

/// The cursor of a listed order: its placement time in microseconds and its id.
pub fn cursor(order: &StuckOrder) -> String {
    format!(
        "{}.{}",
        order.placed_at.timestamp_micros(),
        order.order_id.simple()
    )
}

/// The inverse of [`cursor`]; `None` for anything else.
pub fn parse_cursor(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = raw.split_once('.')?;
    let placed_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((placed_at, Uuid::try_parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_order_it_names() {
        let order = StuckOrder {
            order_id: Uuid::now_v7(),
            customer_id: Uuid::new_v4(),
            placed_at: DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap_or_default(),
        };
        assert_eq!(
            parse_cursor(&cursor(&order)),
            Some((order.placed_at, order.order_id))
        );
        assert_eq!(parse_cursor("12.not-a-uuid"), None);
        assert_eq!(parse_cursor("x.0192f0c17d2e7b3a9c4d5e6f7a8b9c0d"), None);
    }
}
