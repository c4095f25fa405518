//! Capturing payments: one standing payment per order, for the revision of its lines that
//! stock holds, never more than the customer's credit. Runs in the caller's transaction (the
//! consumer's, with its inbox rows).
//!
//! The rules live in [`Accounts`], in memory and apart from storage: it starts from what a
//! transaction read ([`store`]: `Accounts::load`) and decides one message after another
//! ([`Accounts::capture`], [`Accounts::reservation_failed`], [`Accounts::release`]); nothing
//! here reads a clock, mints an id or touches the database, so the tests below state each rule
//! as given / when / then. `store` writes what was decided (`Accounts::save`), so a whole
//! micro-batch costs the same round trips as one message.
//!
//! # Revisions
//!
//! An order's lines may change until the order completes. Stock answers each revision it holds,
//! and each answer reaches payment in order (one key, one partition). A capture for a newer
//! revision refunds the order's standing capture and captures the new total; a reservation that
//! failed refunds it (see [`Accounts::reservation_failed`]).
//!
//! Payment keeps, per order, the highest revision it has answered — captured, declined, or
//! failed at stock — and whether the order is final (the `orders_answered` table). A
//! reservation for a revision not newer than that is a repeat, or late (a message redriven from
//! the dead letters), and changes nothing. An order is final once its payment was declined (the
//! order fails on it, whatever revision it answers) or stock released it (`StockReleased`: the
//! order failed, for any reason, a deadline included); its standing capture is then refunded and
//! no reservation of it is paid for again, so a failed order keeps no capture (I3) whatever
//! order its messages arrive in.
//!
//! # Ranges
//!
//! Decoding refuses amounts out of range, and the arithmetic here is checked all the same: an
//! amount that is negative or would take a credit out of its `numeric(14,2)` range is a
//! permanent failure ([`Error::OutOfRange`]), never a panic.
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

mod store;

use std::collections::{BTreeSet, HashMap};

use contracts::validate::MAX_MONEY;
use rust_decimal::Decimal;
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
    /// A value the message carries, or one computed from it, is out of the range payment keeps.
    #[error("out of range: {0}")]
    OutOfRange(String),
}

/// Both database kinds are worth a retry (the retry reads again); a customer not loaded is
/// the caller's bug, and a value out of range the message's: retrying the same batch would hit
/// either again.
impl From<Error> for messaging::consumer::HandlerError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLoaded(_) | Error::OutOfRange(_) => Self::Permanent(e.to_string()),
            Error::Database(_) | Error::Concurrent => Self::Transient(Box::new(e)),
        }
    }
}

/// The state of a payment (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// The amount left the customer's credit.
    Captured,
    /// The credit fell short; nothing was taken. Final for the order.
    Declined,
    /// Captured, then given back: stock no longer holds that revision's lines.
    Refunded,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Declined => "declined",
            Self::Refunded => "refunded",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Captured, Self::Declined, Self::Refunded]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// One payment of an order.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) payment_id: Uuid,
    pub(crate) customer_id: Uuid,
    pub(crate) amount: Decimal,
    pub(crate) revision: i32,
    pub(crate) status: Status,
    /// Decided in this transaction (to insert), rather than read.
    pub(crate) new: bool,
}

/// What payment has answered for an order (its `orders_answered` row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The highest revision captured, declined or failed at stock; 0 for none.
    pub(crate) revision: i32,
    /// Declined or released: never paid for again.
    pub(crate) is_final: bool,
}

/// The credit of the customers and the payments of the orders one transaction works on, and its
/// changes so far.
#[derive(Debug, Default)]
pub struct Accounts {
    /// Each order's payments, as read and as decided since.
    pub(crate) payments: HashMap<Uuid, Vec<Entry>>,
    /// What was answered per order, as read and as decided since.
    pub(crate) answered: HashMap<Uuid, Answered>,
    /// Orders whose answer changed.
    pub(crate) answers: BTreeSet<Uuid>,
    /// Each locked customer's credit, as it is now.
    pub(crate) credit: HashMap<Uuid, Decimal>,
    /// Customers whose credit changed.
    pub(crate) credited: BTreeSet<Uuid>,
    /// Payments read as captured and refunded since.
    pub(crate) refunded: Vec<Uuid>,
}

impl Accounts {
    /// Captures the request's amount from the customer's credit, or declines it when the
    /// credit is short. A capture of an earlier revision of the order is refunded first.
    ///
    /// `None` when the request is a repeat or late (the order was answered for this revision or
    /// a later one) or the order is final (declined or released): nothing is captured, nothing
    /// is sent, and a final order's standing capture, should there be one, is refunded. After
    /// an error the accounts must not be saved: the transaction is rolled back. `payment_id`
    /// names the payment, captured or declined, should there be one.
    pub fn capture(
        &mut self,
        request: Request,
        payment_id: Uuid,
    ) -> Result<Option<Payment>, Error> {
        let revision = revision(request.revision)?;
        if request.amount < Decimal::ZERO || request.amount > MAX_MONEY {
            return Err(Error::OutOfRange(format!("amount {}", request.amount)));
        }
        let answered = self.answered(request.order_id);
        if answered.is_final {
            self.refund_standing(request.order_id)?;
            return Ok(None);
        }
        if revision <= answered.revision {
            return Ok(None);
        }
        // Stock holds this revision's lines now, no longer the ones the standing capture paid.
        self.refund_standing(request.order_id)?;
        let credit = self
            .credit
            .get_mut(&request.customer_id)
            .ok_or(Error::NotLoaded(request.customer_id))?;
        let (status, payment) = if *credit >= request.amount {
            *credit = (credit.checked_sub(request.amount))
                .ok_or_else(|| Error::OutOfRange(format!("credit - {}", request.amount)))?;
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
        // A decline is final: the order fails on it whatever revision it answers.
        self.answer(
            request.order_id,
            Answered {
                revision,
                is_final: status == Status::Declined,
            },
        );
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

    /// Stock could not hold the order's `revision`, so it holds none of the order's lines: the
    /// standing capture, which paid for an older revision, is refunded. A revision not newer
    /// than the one answered (a repeat, or late) or a final order changes nothing. Returns the
    /// amount refunded, if any.
    pub fn reservation_failed(
        &mut self,
        order_id: Uuid,
        revision: u32,
    ) -> Result<Option<Decimal>, Error> {
        let revision = self::revision(revision)?;
        let answered = self.answered(order_id);
        if answered.is_final || revision <= answered.revision {
            return Ok(None);
        }
        self.answer(
            order_id,
            Answered {
                revision,
                is_final: false,
            },
        );
        self.refund_standing(order_id)
    }

    /// Stock released the order: it failed, for whatever reason. The standing capture is
    /// refunded and the order becomes final: no reservation of it is paid for again, however
    /// late it arrives. Returns the amount refunded, if any.
    pub fn release(&mut self, order_id: Uuid) -> Result<Option<Decimal>, Error> {
        let refunded = self.refund_standing(order_id)?;
        let answered = self.answered(order_id);
        if !answered.is_final {
            self.answer(
                order_id,
                Answered {
                    is_final: true,
                    ..answered
                },
            );
        }
        Ok(refunded)
    }

    pub(crate) fn answered(&self, order_id: Uuid) -> Answered {
        self.answered.get(&order_id).copied().unwrap_or_default()
    }

    fn answer(&mut self, order_id: Uuid, answered: Answered) {
        self.answered.insert(order_id, answered);
        self.answers.insert(order_id);
    }

    /// Refunds the order's standing capture, if it has one: the credit goes back to the
    /// customer. Returns the amount refunded.
    fn refund_standing(&mut self, order_id: Uuid) -> Result<Option<Decimal>, Error> {
        let Some(standing) = self
            .payments
            .get_mut(&order_id)
            .and_then(|payments| (payments.iter_mut()).find(|p| p.status == Status::Captured))
        else {
            return Ok(None);
        };
        let credit = self
            .credit
            .get_mut(&standing.customer_id)
            .ok_or(Error::NotLoaded(standing.customer_id))?;
        *credit = (credit.checked_add(standing.amount))
            .filter(|credit| *credit <= MAX_MONEY)
            .ok_or_else(|| Error::OutOfRange(format!("credit + {}", standing.amount)))?;
        self.credited.insert(standing.customer_id);
        standing.status = Status::Refunded;
        if !standing.new {
            self.refunded.push(standing.payment_id);
        }
        Ok(Some(standing.amount))
    }
}

/// A revision as stored (`int4`).
fn revision(revision: u32) -> Result<i32, Error> {
    i32::try_from(revision).map_err(|_| Error::OutOfRange(format!("revision {revision}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Accounts in memory, with one customer's credit locked.
    fn accounts(customer: Uuid, credit: &str) -> Accounts {
        Accounts {
            credit: HashMap::from([(customer, money(credit))]),
            ..Accounts::default()
        }
    }

    fn request(customer_id: Uuid, order_id: Uuid, revision: u32, amount: &str) -> Request {
        Request {
            order_id,
            customer_id,
            revision,
            amount: money(amount),
        }
    }

    fn captured(payment: Result<Option<Payment>, Error>) -> bool {
        matches!(payment, Ok(Some(Payment::Captured { .. })))
    }

    #[test]
    fn an_amount_out_of_range_is_a_permanent_error_not_a_panic() {
        let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
        let mut accounts = accounts(customer, "100.00");
        for amount in [Decimal::MIN, money("-0.01"), Decimal::MAX] {
            let outcome = accounts.capture(
                Request {
                    amount,
                    ..request(customer, order, 1, "0")
                },
                Uuid::now_v7(),
            );
            assert!(matches!(outcome, Err(Error::OutOfRange(_))), "{outcome:?}");
        }
        let outcome = accounts.capture(request(customer, order, u32::MAX, "1.00"), Uuid::now_v7());
        assert!(matches!(outcome, Err(Error::OutOfRange(_))), "{outcome:?}");
        assert_eq!(accounts.credit[&customer], money("100.00"));
        assert!(accounts.payments.is_empty() && accounts.answers.is_empty());
        let handled = messaging::consumer::HandlerError::from(Error::OutOfRange("x".into()));
        assert!(
            matches!(handled, messaging::consumer::HandlerError::Permanent(_)),
            "{handled:?}"
        );
    }

    #[test]
    fn a_refund_that_would_take_the_credit_out_of_range_is_an_error() {
        let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
        let mut accounts = accounts(customer, "100.00");
        assert!(captured(
            accounts.capture(request(customer, order, 1, "60.00"), Uuid::now_v7())
        ));
        accounts.credit.insert(customer, MAX_MONEY);
        let refund = accounts.release(order);
        assert!(matches!(refund, Err(Error::OutOfRange(_))), "{refund:?}");
    }

    #[test]
    fn a_reservation_after_the_release_captures_nothing() {
        let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
        let mut accounts = accounts(customer, "100.00");
        assert_eq!(accounts.release(order).unwrap(), None);
        assert_eq!(
            accounts
                .capture(request(customer, order, 1, "10.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(
            accounts
                .capture(request(customer, order, 2, "10.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(accounts.reservation_failed(order, 3).unwrap(), None);
        assert_eq!(accounts.credit[&customer], money("100.00"));
        let answered = accounts.answered(order);
        assert!(answered.is_final && answered.revision == 0, "{answered:?}");
    }

    #[test]
    fn a_release_after_a_capture_refunds_it_and_is_final() {
        let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
        let mut accounts = accounts(customer, "100.00");
        assert!(captured(
            accounts.capture(request(customer, order, 1, "30.00"), Uuid::now_v7())
        ));
        assert_eq!(accounts.release(order).unwrap(), Some(money("30.00")));
        assert_eq!(accounts.release(order).unwrap(), None, "released twice");
        // Later revisions, redriven or not, are not paid for.
        assert_eq!(
            accounts
                .capture(request(customer, order, 2, "5.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(accounts.credit[&customer], money("100.00"));
    }

    #[test]
    fn answers_for_older_revisions_change_nothing_failures_included() {
        let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
        let mut accounts = accounts(customer, "100.00");
        assert!(captured(
            accounts.capture(request(customer, order, 1, "30.00"), Uuid::now_v7())
        ));
        assert!(captured(
            accounts.capture(request(customer, order, 2, "40.00"), Uuid::now_v7())
        ));
        // Revision 1 redriven after revision 2 was captured.
        assert_eq!(
            accounts
                .capture(request(customer, order, 1, "30.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(accounts.credit[&customer], money("60.00"));

        // Revision 3 failed at stock: the capture of 2 is refunded, and revision 3 (or 2)
        // redriven later is not paid for, though payment never captured revision 3.
        assert_eq!(
            accounts.reservation_failed(order, 3).unwrap(),
            Some(money("40.00"))
        );
        assert_eq!(
            accounts
                .capture(request(customer, order, 3, "50.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(
            accounts
                .capture(request(customer, order, 2, "40.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(accounts.credit[&customer], money("100.00"));
        // The order is not over: stock may hold revision 4.
        assert!(captured(
            accounts.capture(request(customer, order, 4, "20.00"), Uuid::now_v7())
        ));
        assert_eq!(accounts.credit[&customer], money("80.00"));
    }

    #[test]
    fn a_decline_is_final() {
        let (customer, order) = (Uuid::new_v4(), Uuid::new_v4());
        let mut accounts = accounts(customer, "10.00");
        let declined = accounts.capture(request(customer, order, 1, "20.00"), Uuid::now_v7());
        assert!(
            matches!(declined, Ok(Some(Payment::Declined { .. }))),
            "{declined:?}"
        );
        assert_eq!(
            accounts
                .capture(request(customer, order, 2, "1.00"), Uuid::now_v7())
                .unwrap(),
            None
        );
        assert_eq!(accounts.reservation_failed(order, 3).unwrap(), None);
        assert_eq!(accounts.credit[&customer], money("10.00"));
    }
}
