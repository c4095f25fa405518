//! Capturing payments: one standing payment per order, for the revision of its lines that
//! stock holds, never more than the customer's credit. Runs in the caller's transaction (the
//! consumer's, with its inbox rows).
//!
//! The rules live in [`Accounts`], in memory, as stock's live in its ledger: it starts from
//! what a transaction read and applies one message after another, so a whole micro-batch of
//! messages costs the same three round trips as one message:
//!
//! 1. read the payments of the batch's orders ([`Accounts::load`]);
//! 2. lock the batch's customers and read their credit, in one statement that also creates a
//!    customer seen for the first time, with the starting credit;
//! 3. decide each message in memory ([`Accounts::capture`], [`Accounts::refund_earlier`]);
//! 4. write the credits, the new payments and the replies announcing them in one statement
//!    ([`Accounts::save`]).
//!
//! # Revisions
//!
//! An order's lines may change until the order completes. Stock answers each revision it holds,
//! and each answer reaches payment in order (one key, one partition). A capture for a newer
//! revision refunds the order's standing capture and captures the new total; a reservation that
//! failed refunds it (see [`Accounts::refund_earlier`]). A decline is final: the order fails on
//! it, whatever revision it answers, so later revisions are not paid for. Answers for a revision
//! not newer than one already paid for are repeats and change nothing.
//!
//! # Concurrency
//!
//! Payments of one customer arrive on any partition (keys are order ids), so concurrent
//! transactions may share customers. They serialise on the customer's row, locked in step 2
//! until the transaction ends; every transaction locks its customers in one key order, so two
//! of them never deadlock, and the `CHECK (credit >= 0)` stays the last line of defence.
//! Payments are read without a lock: only one consumer handles an order's messages. If a
//! rebalance ever let two race on an order, the unique indexes (one payment per revision, one
//! standing payment per order) or the guarded refund fail the later one, whose transaction is
//! then rolled back and retried.

use std::collections::{BTreeSet, HashMap};

use messaging::outbox::{self, OutgoingMessage};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

/// Stock holds the lines of an order's `revision`, which cost `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub revision: u32,
    pub amount: Decimal,
}

/// The payment recorded for an order's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    Captured {
        payment_id: Uuid,
    },
    Declined {
        payment_id: Uuid,
        available_credit: Decimal,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Another transaction refunded a payment between this one's read and write.
    #[error("a payment changed concurrently")]
    Concurrent,
    /// A bug: the customer's credit was not locked by [`Accounts::load`].
    #[error("customer {0} was not loaded")]
    NotLoaded(Uuid),
}

/// Both database kinds are worth a retry (the retry reads again); a customer not loaded is
/// the caller's bug, and retrying the same batch would hit it again.
impl From<Error> for messaging::consumer::HandlerError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLoaded(_) => Self::Permanent(e.to_string()),
            _ => Self::Transient(Box::new(e)),
        }
    }
}

/// The state of a payment (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// The amount left the customer's credit.
    Captured,
    /// The credit fell short; nothing was taken. Final for the order.
    Declined,
    /// Captured, then given back: stock no longer holds that revision's lines.
    Refunded,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Declined => "declined",
            Self::Refunded => "refunded",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Captured, Self::Declined, Self::Refunded]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// One payment of an order.
#[derive(Debug, Clone)]
struct Entry {
    payment_id: Uuid,
    customer_id: Uuid,
    amount: Decimal,
    revision: i32,
    status: Status,
    /// Decided in this transaction (to insert), rather than read.
    new: bool,
}

/// The credit of the customers and the payments of the orders one transaction works on, and its
/// changes so far.
#[derive(Debug, Default)]
pub struct Accounts {
    /// Each order's payments, as read and as decided since.
    payments: HashMap<Uuid, Vec<Entry>>,
    /// Each locked customer's credit, as it is now.
    credit: HashMap<Uuid, Decimal>,
    /// Customers whose credit changed.
    credited: BTreeSet<Uuid>,
    /// Payments read as captured and refunded since.
    refunded: Vec<Uuid>,
}

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
        #[derive(sqlx::FromRow)]
        struct Row {
            payment_id: Uuid,
            order_id: Uuid,
            customer_id: Uuid,
            amount: Decimal,
            revision: i32,
            status: String,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT payment_id, order_id, customer_id, amount, revision, status
             FROM payments WHERE order_id = ANY($1)",
        )
        .bind(orders)
        .fetch_all(&mut *conn)
        .await?;
        let mut accounts = Self::default();
        let mut involved: BTreeSet<Uuid> = customers.iter().copied().collect();
        for row in rows {
            let status = Status::parse(&row.status).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown payment status {:?}", row.status).into())
            })?;
            if status == Status::Captured {
                involved.insert(row.customer_id);
            }
            accounts
                .payments
                .entry(row.order_id)
                .or_default()
                .push(Entry {
                    payment_id: row.payment_id,
                    customer_id: row.customer_id,
                    amount: row.amount,
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

    /// Captures the request's amount from the customer's credit, or declines it when the
    /// credit is short. A capture of an earlier revision of the order is refunded first.
    ///
    /// `None` when the request is a repeat (the order has a payment for this revision or a
    /// later one) or the order's payment was declined: nothing changes, nothing is sent. After
    /// an error the accounts must not be saved: the transaction is rolled back.
    pub fn capture(&mut self, request: Request) -> Result<Option<Payment>, Error> {
        let revision = revision(request.revision);
        let settled = self
            .payments
            .get(&request.order_id)
            .is_some_and(|payments| {
                (payments.iter()).any(|p| p.revision >= revision || p.status == Status::Declined)
            });
        if settled {
            return Ok(None);
        }
        self.refund_earlier(request.order_id, request.revision)?;
        let credit = self
            .credit
            .get_mut(&request.customer_id)
            .ok_or(Error::NotLoaded(request.customer_id))?;
        let payment_id = Uuid::now_v7();
        let (status, payment) = if *credit >= request.amount {
            *credit -= request.amount;
            self.credited.insert(request.customer_id);
            (Status::Captured, Payment::Captured { payment_id })
        } else {
            let available_credit = *credit;
            let declined = Payment::Declined {
                payment_id,
                available_credit,
            };
            (Status::Declined, declined)
        };
        self.payments
            .entry(request.order_id)
            .or_default()
            .push(Entry {
                payment_id,
                customer_id: request.customer_id,
                amount: request.amount,
                revision,
                status,
                new: true,
            });
        Ok(Some(payment))
    }

    /// Refunds the order's standing capture if it paid for a revision older than `revision`:
    /// stock no longer holds those lines, because a newer revision replaced them or could not
    /// be held. The credit goes back to the customer. Returns the amount refunded, if any.
    pub fn refund_earlier(
        &mut self,
        order_id: Uuid,
        revision: u32,
    ) -> Result<Option<Decimal>, Error> {
        let revision = self::revision(revision);
        let Some(standing) = self.payments.get_mut(&order_id).and_then(|payments| {
            (payments.iter_mut()).find(|p| p.status == Status::Captured && p.revision < revision)
        }) else {
            return Ok(None);
        };
        let credit = self
            .credit
            .get_mut(&standing.customer_id)
            .ok_or(Error::NotLoaded(standing.customer_id))?;
        *credit += standing.amount;
        self.credited.insert(standing.customer_id);
        standing.status = Status::Refunded;
        if !standing.new {
            self.refunded.push(standing.payment_id);
        }
        Ok(Some(standing.amount))
    }

    /// Writes every change: the refunds of stored payments (a statement of their own, as they
    /// are rare and must precede a new capture of the same order), then the credits, the new
    /// payments and `replies`, the messages announcing them, in one statement. Must run in the
    /// transaction that loaded the accounts.
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
        if new.is_empty() && self.credited.is_empty() && replies.is_empty() {
            return Ok(());
        }
        let customers: Vec<Uuid> = self.credited.iter().copied().collect();
        let credits: Vec<Decimal> = (self.credited.iter())
            .map(|c| self.credit.get(c).copied().unwrap_or_default())
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
            outbox::queue_in_with(&mut args, replies)
        })();
        let queue = bound.map_err(sqlx::Error::Encode)?;
        // Every data-modifying CTE runs, whatever the main statement reads.
        let sql = format!(
            "WITH credited AS (
                 UPDATE customers AS c SET credit = v.credit
                 FROM UNNEST($1::uuid[], $2::numeric[]) AS v(customer_id, credit)
                 WHERE c.customer_id = v.customer_id
             ){queue}
             INSERT INTO payments (payment_id, order_id, customer_id, amount, status, revision)
             SELECT * FROM UNNEST($3::uuid[], $4::uuid[], $5::uuid[], $6::numeric[], $7::text[],
                                  $8::int4[])"
        );
        sqlx::query_with(&sql, args).execute(conn).await?;
        Ok(())
    }
}

/// A revision as stored (`int4`); one beyond that range is stored as the largest.
fn revision(revision: u32) -> i32 {
    i32::try_from(revision).unwrap_or(i32::MAX)
}
