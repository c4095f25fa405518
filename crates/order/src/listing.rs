//! `GET /api/orders`: a page of orders, newest first, in one statement over the event store.
//!
//! Order ids are UUIDv7, so the newest orders have the greatest ids and the keyset cursor is
//! the last order id of a page. The statement picks the page's orders from their `OrderPlaced`
//! events (by customer through the partial index `events_orders_by_customer`, all of them by
//! walking the primary key backwards) and returns every event of those orders, so the views are
//! folded from one snapshot: an order's status is the one its filter saw.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::Status;
use crate::event_store::{COLUMNS, RecordedEvent};

/// Which orders a page lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub customer: Option<Uuid>,
    pub status: Option<Status>,
    /// Only orders with a smaller id (placed before) this one: the cursor.
    pub before: Option<Uuid>,
}

/// The events of up to `limit` orders matching `filter`, newest order first, each order's
/// events in version order.
pub async fn page(
    executor: impl PgExecutor<'_>,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    statement("", filter, limit)
        .build_query_as()
        .fetch_all(executor)
        .await
}

/// The plan of [`page`]'s statement for `filter` (`EXPLAIN`), one line per row: to check that
/// it reads by index.
pub async fn explain(
    executor: impl PgExecutor<'_>,
    filter: &Filter,
    limit: i64,
) -> Result<String, sqlx::Error> {
    let lines: Vec<String> = statement("EXPLAIN ", filter, limit)
        .build_query_scalar()
        .fetch_all(executor)
        .await?;
    Ok(lines.join("\n"))
}

fn statement<'a>(prefix: &str, filter: &Filter, limit: i64) -> QueryBuilder<'a, Postgres> {
    let mut query: QueryBuilder<'a, Postgres> = QueryBuilder::new(format!(
        "{prefix}WITH page AS (SELECT p.stream_id FROM events p
         WHERE p.event_type = 'OrderPlaced' AND p.version = 1"
    ));
    if let Some(customer) = filter.customer {
        // The expression of `events_orders_by_customer`, spelled the same, so the index serves.
        query.push(" AND (p.payload->>'customerId')::uuid = ");
        query.push_bind(customer);
    }
    if let Some(before) = filter.before {
        query.push(" AND p.stream_id < ");
        query.push_bind(before);
    }
    // A settled order has exactly one of these events; a pending one neither.
    query.push(match filter.status {
        None => "",
        Some(Status::Pending) => {
            " AND NOT EXISTS (SELECT 1 FROM events t WHERE t.stream_id = p.stream_id
                AND t.event_type IN ('OrderCompleted', 'OrderFailed'))"
        }
        Some(Status::Completed) => {
            " AND EXISTS (SELECT 1 FROM events t WHERE t.stream_id = p.stream_id
                AND t.event_type = 'OrderCompleted')"
        }
        Some(Status::Failed) => {
            " AND EXISTS (SELECT 1 FROM events t WHERE t.stream_id = p.stream_id
                AND t.event_type = 'OrderFailed')"
        }
    });
    query.push(" ORDER BY p.stream_id DESC LIMIT ");
    query.push_bind(limit);
    query.push(format!(
        ") SELECT {COLUMNS} FROM events WHERE stream_id IN (SELECT stream_id FROM page)
         ORDER BY stream_id DESC, version"
    ));
    query
}
