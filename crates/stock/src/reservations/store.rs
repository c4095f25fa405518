//! Where a [`Ledger`] comes from and goes to: the stock lock, one transaction's reads and its
//! one guarded write; and the same for one order at a time ([`hold`], [`release`], [`commit`]),
//! which the tests and tools use.

use std::collections::BTreeSet;

use messaging::outbox::{self, OutgoingMessage};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

use super::{Error, Held, Ledger, Quantities, Reservation, Status, add, wanted};

/// The key of the advisory lock that serialises stock transactions in this database.
const STOCK_LOCK: i64 = 0x73_746f_636b; // "stock"

/// Takes the stock lock, held until `conn`'s transaction ends. Every change to product rows
/// takes it before reading them: the consumer's batches ([`Ledger::load`]) and the operators'
/// restocks and catalog changes (`crate::catalog`). So a batch's all-or-nothing checks read
/// quantities no one else is changing, and a restock lands between two batches, never inside
/// one (I1, I2).
pub async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(STOCK_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

impl Ledger {
    /// Starts from what is stored: the reservations of `orders`, and — under the stock lock,
    /// taken here and held until the transaction ends — what is available of `products` and of
    /// every product those reservations hold.
    pub async fn load(
        conn: &mut PgConnection,
        orders: &[Uuid],
        products: &[i64],
    ) -> Result<Self, Error> {
        #[derive(sqlx::FromRow)]
        struct Row {
            order_id: Uuid,
            revision: i32,
            status: String,
            products: Vec<i64>,
            quantities: Vec<i32>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT order_id, revision, status, product_ids AS products, quantities
             FROM reservations WHERE order_id = ANY($1)",
        )
        .bind(orders)
        .fetch_all(&mut *conn)
        .await?;
        let mut ledger = Self {
            read: orders.iter().map(|order| (*order, None)).collect(),
            ..Self::default()
        };
        let mut involved: BTreeSet<i64> = products.iter().copied().collect();
        for row in rows {
            let status = Status::parse(&row.status).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown reservation status {:?}", row.status).into())
            })?;
            involved.extend(&row.products);
            let lines = (row.products.into_iter())
                .zip(row.quantities.into_iter().map(i64::from))
                .collect();
            let reservation = Reservation {
                revision: row.revision,
                status,
                lines,
            };
            ledger.read.insert(row.order_id, Some(reservation));
        }

        lock(conn).await?;
        let involved: Vec<i64> = involved.into_iter().collect();
        let rows: Vec<(i64, i32, i32)> = sqlx::query_as(
            "SELECT product_id, available, reserved FROM products WHERE product_id = ANY($1)",
        )
        .bind(&involved)
        .fetch_all(&mut *conn)
        .await?;
        for (product, available, reserved) in rows {
            ledger.available.insert(product, i64::from(available));
            ledger.reserved_read.insert(product, i64::from(reserved));
        }
        Ok(ledger)
    }
    /// Writes every change in one statement: reservation rows (with their lines), product
    /// quantities, and `replies`, the messages announcing the changes, to the outbox. A
    /// reservation row is written only if it is still as [`Ledger::load`] read it (absent, or
    /// at that revision and status); if any is not, [`Error::Concurrent`] says so and nothing
    /// of the transaction may commit. Must run in the transaction that loaded the ledger.
    pub async fn save(
        self,
        conn: &mut PgConnection,
        replies: &[OutgoingMessage],
    ) -> Result<(), Error> {
        if self.changed.is_empty() {
            outbox::enqueue(conn, replies).await?;
            return Ok(());
        }
        let mut orders = Vec::new();
        let (mut revisions, mut statuses) = (Vec::new(), Vec::new());
        let (mut read_revisions, mut read_statuses) = (Vec::new(), Vec::new());
        // Arrays of arrays must be rectangular, so each order's lines travel as array literals.
        let (mut line_products, mut line_quantities) = (Vec::new(), Vec::new());
        for (order, reservation) in &self.changed {
            let read = self.read.get(order).and_then(Option::as_ref);
            orders.push(*order);
            revisions.push(reservation.revision);
            statuses.push(reservation.status.as_str());
            read_revisions.push(read.map(|r| r.revision));
            read_statuses.push(read.map(|r| r.status.as_str()));
            line_products.push(array_literal(reservation.lines.keys().copied()));
            let quantities = (reservation.lines.values())
                .map(|q| int4(*q, "units of a line"))
                .collect::<Result<Vec<_>, _>>()?;
            line_quantities.push(array_literal(quantities.into_iter()));
        }
        let products: BTreeSet<i64> = self
            .taken
            .keys()
            .chain(self.reserved.keys())
            .copied()
            .collect();
        let amounts = |map: &Quantities, what| -> Result<Vec<i32>, Error> {
            (products.iter())
                .map(|p| int4(map.get(p).copied().unwrap_or(0), what))
                .collect()
        };
        let taken = amounts(&self.taken, "units taken")?;
        let reserved = amounts(&self.reserved, "units reserved")?;
        // What the statement computes must fit the `integer` columns too: checked here, so that
        // an overflow is this message's permanent failure rather than a database error.
        for product in &products {
            int4(
                self.available.get(product).copied().unwrap_or(0),
                "units available",
            )?;
            let reserved_read = self.reserved_read.get(product).copied().unwrap_or(0);
            let reserved = self.reserved.get(product).copied().unwrap_or(0);
            int4(
                add(reserved_read, reserved, "units reserved")?,
                "units reserved",
            )?;
        }
        let products: Vec<i64> = products.into_iter().collect();

        let mut args = PgArguments::default();
        let bound = (|| {
            args.add(&orders)?;
            args.add(&revisions)?;
            args.add(&statuses)?;
            args.add(&read_revisions)?;
            args.add(&read_statuses)?;
            args.add(&line_products)?;
            args.add(&line_quantities)?;
            args.add(&products)?;
            args.add(&taken)?;
            args.add(&reserved)?;
            outbox::queue_in_with(&mut args, replies)
        })();
        let queue = bound.map_err(sqlx::Error::Encode)?;
        // Every data-modifying CTE runs, whatever the final SELECT reads. Each changed order is
        // one row by key.
        let sql = format!(
            "WITH changed AS (
                 SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::int4[], $5::text[],
                                      $6::text[], $7::text[])
                     AS c(order_id, revision, status, read_revision, read_status,
                          product_ids, quantities)
             ), saved AS (
                 INSERT INTO reservations AS r (order_id, revision, status, product_ids, quantities)
                 SELECT order_id, revision, status, product_ids::int8[], quantities::int4[]
                 FROM changed
                 ON CONFLICT (order_id) DO UPDATE
                 SET revision = EXCLUDED.revision, status = EXCLUDED.status,
                     product_ids = EXCLUDED.product_ids, quantities = EXCLUDED.quantities,
                     updated_at = now()
                 WHERE (r.revision, r.status) = (SELECT c.read_revision, c.read_status
                                                FROM changed c WHERE c.order_id = r.order_id)
                 RETURNING 1
             ), shifted AS (
                 UPDATE products p
                 SET available = p.available - s.taken, reserved = p.reserved + s.reserved
                 FROM UNNEST($8::int8[], $9::int4[], $10::int4[]) AS s(product_id, taken, reserved)
                 WHERE p.product_id = s.product_id
             ){queue}
             SELECT count(*) FROM saved"
        );
        let saved: i64 = sqlx::query_scalar_with(&sql, args).fetch_one(conn).await?;
        if usize::try_from(saved) == Ok(orders.len()) {
            Ok(())
        } else {
            Err(Error::Concurrent)
        }
    }
}

/// `{1,2,3}`: a PostgreSQL array literal of integers.
fn array_literal<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|item| item.to_string()).collect();
    format!("{{{}}}", items.join(","))
}

/// A count as the `integer` columns keep it.
fn int4(quantity: i64, what: &'static str) -> Result<i32, Error> {
    i32::try_from(quantity).map_err(|_| Error::Overflow(what))
}

/// [`Ledger::hold`] of one order, read and written in `conn`'s transaction.
pub async fn hold(
    conn: &mut PgConnection,
    order_id: Uuid,
    revision: u32,
    lines: &[contracts::Line],
) -> Result<Held, Error> {
    let products: Vec<i64> = wanted(lines)?.into_keys().collect();
    let mut ledger = Ledger::load(conn, &[order_id], &products).await?;
    let held = ledger.hold(order_id, revision, lines)?;
    ledger.save(conn, &[]).await?;
    Ok(held)
}

/// [`Ledger::release`] of one order, read and written in `conn`'s transaction.
pub async fn release(conn: &mut PgConnection, order_id: Uuid) -> Result<bool, Error> {
    let mut ledger = Ledger::load(conn, &[order_id], &[]).await?;
    let released = ledger.release(order_id)?;
    ledger.save(conn, &[]).await?;
    Ok(released)
}

/// [`Ledger::commit`] of one order, read and written in `conn`'s transaction.
pub async fn commit(conn: &mut PgConnection, order_id: Uuid) -> Result<bool, Error> {
    let mut ledger = Ledger::load(conn, &[order_id], &[]).await?;
    let committed = ledger.commit(order_id)?;
    ledger.save(conn, &[]).await?;
    Ok(committed)
}
