//! Where [`Accounts`] comes from and goes to: one transaction's reads and its one write.
//!
//! 1. read the payments of the batch's orders and what was answered for them, in one
//!    statement;
//! 2. lock the batch's customers and read their credit, in one statement that also creates a
//!    customer seen for the first time, with the starting credit;
//! 3. (the rules decide each message in memory);
//! 4. refund stored payments that were refunded, when there are any, in a statement of their
//!    own; then write the credits, the new payments, what was answered per order and the
//!    replies announcing them in one statement.

use std::collections::BTreeSet;

use messaging::outbox::{self, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

use super::{Accounts, Answered, Entry, Error, Status};

impl Accounts {
    /// Starts from what is stored: the payments of `orders`, and the credit of `customers` and
    /// of every customer those orders paid, locked until the transaction ends. A customer not
    /// stored yet is created with `starting_credit`.
    pub async fn load(
        conn: &mut PgConnection,
        orders: &[Uuid],
        customers: &[Uuid],
        starting_credit: Decimal,
    ) -> Result<Self, Error> {
        /// A payment, or (with `is_final`) what was answered for the order.
        #[derive(sqlx::FromRow)]
        struct Row {
            order_id: Uuid,
            revision: i32,
            payment_id: Option<Uuid>,
            customer_id: Option<Uuid>,
            amount: Option<Decimal>,
            status: Option<String>,
            is_final: Option<bool>,
        }
        // One round trip for both tables; each half is a read by key.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT order_id, revision, payment_id, customer_id, amount, status,
                    NULL::boolean AS is_final
             FROM payments WHERE order_id = ANY($1)
             UNION ALL
             SELECT order_id, revision, NULL, NULL, NULL, NULL, final
             FROM orders_answered WHERE order_id = ANY($1)",
        )
        .bind(orders)
        .fetch_all(&mut *conn)
        .await?;
        let mut accounts = Self::default();
        let mut involved: BTreeSet<Uuid> = customers.iter().copied().collect();
        for row in rows {
            let answered = accounts.answered.entry(row.order_id).or_default();
            answered.revision = answered.revision.max(row.revision);
            let (Some(payment_id), Some(customer_id), Some(amount), Some(status)) =
                (row.payment_id, row.customer_id, row.amount, row.status)
            else {
                answered.is_final |= row.is_final.unwrap_or(false);
                continue;
            };
            let status = Status::parse(&status).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown payment status {status:?}").into())
            })?;
            // A payment answers its revision, even if stored before `orders_answered` was.
            answered.is_final |= status == Status::Declined;
            if status == Status::Captured {
                involved.insert(customer_id);
            }
            accounts
                .payments
                .entry(row.order_id)
                .or_default()
                .push(Entry {
                    payment_id,
                    customer_id,
                    amount,
                    revision: row.revision,
                    status,
                    new: false,
                });
        }
        if involved.is_empty() {
            return Ok(accounts);
        }
        // Inserts the new customers and locks the known ones (the no-op update takes the row
        // lock), in the array's order: sorted, the one order every transaction locks in.
        let involved: Vec<Uuid> = involved.into_iter().collect();
        let credits: Vec<(Uuid, Decimal)> = sqlx::query_as(
            "INSERT INTO customers AS c (customer_id, credit)
             SELECT customer_id, $2 FROM UNNEST($1::uuid[]) AS customer_id
             ON CONFLICT (customer_id) DO UPDATE SET credit = c.credit
             RETURNING customer_id, credit",
        )
        .bind(&involved)
        .bind(starting_credit)
        .fetch_all(&mut *conn)
        .await?;
        accounts.credit = credits.into_iter().collect();
        Ok(accounts)
    }

    /// Writes every change: the refunds of stored payments (a statement of their own, as they
    /// are rare and must precede a new capture of the same order), then the credits, what was
    /// answered per order, the new payments and `replies`, the messages announcing them, in one
    /// statement. Must run in the transaction that loaded the accounts.
    pub async fn save(
        self,
        conn: &mut PgConnection,
        replies: &[OutgoingMessage],
    ) -> Result<(), Error> {
        if !self.refunded.is_empty() {
            let refunded = sqlx::query(
                "UPDATE payments SET status = 'refunded'
                 WHERE payment_id = ANY($1) AND status = 'captured'",
            )
            .bind(&self.refunded)
            .execute(&mut *conn)
            .await?;
            if usize::try_from(refunded.rows_affected()) != Ok(self.refunded.len()) {
                return Err(Error::Concurrent);
            }
        }
        let new: Vec<(&Uuid, &Entry)> = (self.payments.iter())
            .flat_map(|(order, payments)| payments.iter().map(move |p| (order, p)))
            .filter(|(_, p)| p.new)
            .collect();
        if new.is_empty()
            && self.credited.is_empty()
            && self.answers.is_empty()
            && replies.is_empty()
        {
            return Ok(());
        }
        let customers: Vec<Uuid> = self.credited.iter().copied().collect();
        let credits: Vec<Decimal> = (self.credited.iter())
            .map(|c| self.credit.get(c).copied().unwrap_or_default())
            .collect();
        let answered: Vec<(Uuid, Answered)> = (self.answers.iter())
            .map(|order| (*order, self.answered(*order)))
            .collect();
        let mut args = PgArguments::default();
        let bound = (|| {
            args.add(&customers)?;
            args.add(&credits)?;
            args.add(new.iter().map(|(_, p)| p.payment_id).collect::<Vec<_>>())?;
            args.add(new.iter().map(|(order, _)| **order).collect::<Vec<_>>())?;
            args.add(new.iter().map(|(_, p)| p.customer_id).collect::<Vec<_>>())?;
            args.add(new.iter().map(|(_, p)| p.amount).collect::<Vec<_>>())?;
            args.add(
                new.iter()
                    .map(|(_, p)| p.status.as_str())
                    .collect::<Vec<_>>(),
            )?;
            args.add(new.iter().map(|(_, p)| p.revision).collect::<Vec<_>>())?;
            args.add(answered.iter().map(|(o, _)| *o).collect::<Vec<_>>())?;
            args.add(answered.iter().map(|(_, a)| a.revision).collect::<Vec<_>>())?;
            args.add(answered.iter().map(|(_, a)| a.is_final).collect::<Vec<_>>())?;
            outbox::queue_in_with(&mut args, replies)
        })();
        let queue = bound.map_err(sqlx::Error::Encode)?;
        // Every data-modifying CTE runs, whatever the main statement reads. An answer only
        // grows, whatever another transaction wrote meanwhile.
        let sql = format!(
            "WITH credited AS (
                 UPDATE customers AS c SET credit = v.credit
                 FROM UNNEST($1::uuid[], $2::numeric[]) AS v(customer_id, credit)
                 WHERE c.customer_id = v.customer_id
             ), answered AS (
                 INSERT INTO orders_answered AS a (order_id, revision, final)
                 SELECT * FROM UNNEST($9::uuid[], $10::int4[], $11::bool[])
                 ON CONFLICT (order_id) DO UPDATE
                 SET revision = GREATEST(a.revision, EXCLUDED.revision),
                     final = a.final OR EXCLUDED.final
             ){queue}
             INSERT INTO payments (payment_id, order_id, customer_id, amount, status, revision)
             SELECT * FROM UNNEST($3::uuid[], $4::uuid[], $5::uuid[], $6::numeric[], $7::text[],
                                  $8::int4[])"
        );
        sqlx::query_with(&sql, args).execute(conn).await?;
        Ok(())
    }
}
