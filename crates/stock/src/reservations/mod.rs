//! Reservations: an order's lines are held all together or not at all.
//!
//! The rules live in [`Ledger`], in memory and apart from storage: it starts from what a
//! transaction read and applies one message after another (tested below without a database);
//! `store` reads and writes it, so a whole micro-batch of messages costs the same few round
//! trips as one message:
//!
//! 1. read the batch's reservations and their lines ([`Ledger::load`]), outside any lock;
//! 2. take the stock lock, one transaction-scoped advisory lock, and read what is available of
//!    every product involved;
//! 3. decide each message in memory ([`Ledger::hold`], [`Ledger::release`], [`Ledger::commit`]);
//! 4. write every change and the replies announcing them in one statement ([`Ledger::save`]),
//!    guarded by what step 1 read.
//!
//! Everything runs inside the caller's transaction (the consumer's, with its inbox rows), so the
//! changes and the messages announcing them commit together. The lock ([`lock`]) serialises
//! every change to product rows, the operators' restocks included: all-or-nothing checks read
//! quantities no one else is changing, and batches that touch the same hot products in
//! different orders cannot deadlock. It is held for steps 2 to 4 and the commit only. Reservations are read before the lock: only one consumer
//! handles an order's messages, and if a rebalance ever let two race, the guard in step 4 fails
//! the later one, whose transaction is then rolled back and retried.
//!
//! Quantities are counted with checked arithmetic and written only if they fit the `integer`
//! columns: a message that would overflow them is a permanent failure ([`Error::Overflow`]),
//! never a panic or a wrapped number. Decoding bounds what a message may ask (lines, units), so
//! only a stock that is itself near the bounds of `integer` can get there.

mod store;

pub use store::{commit, hold, lock, release};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use contracts::stock::ReservationFailure;
use uuid::Uuid;

/// Units per product.
pub type Quantities = BTreeMap<i64, i64>;

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every product wanted can be held: the change per product (positive: take from available;
    /// negative: give back).
    Move(Quantities),
    /// Some products are unknown or short: nothing is to be held.
    Refuse(ReservationFailure, Vec<i64>),
}

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Another transaction changed a reservation between this one's read and write.
    #[error("a reservation changed concurrently")]
    Concurrent,
    /// A count left the range it is kept in: the message asked the impossible.
    #[error("{0} overflows")]
    Overflow(&'static str),
}

/// The database kinds are worth a retry (the retry reads the reservations again); an overflow
/// would overflow again.
impl From<Error> for messaging::consumer::HandlerError {
    fn from(e: Error) -> Self {
        match e {
            Error::Overflow(_) => Self::Permanent(e.to_string()),
            _ => Self::Transient(Box::new(e)),
        }
    }
}

/// `a + b`, or [`Error::Overflow`] naming `what`.
pub(crate) fn add(a: i64, b: i64, what: &'static str) -> Result<i64, Error> {
    a.checked_add(b).ok_or(Error::Overflow(what))
}

/// The state of a reservation (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Its lines are held (moved from available to reserved).
    Reserved,
    /// The latest revision could not be held; nothing is held.
    Failed,
    /// Given back because the order failed: declined, out of stock or timed out
    /// (compensation). Final.
    Released,
    /// The order completed: the units left `reserved` for good (sold). Final.
    Committed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Failed => "failed",
            Self::Released => "released",
            Self::Committed => "committed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            Self::Reserved,
            Self::Failed,
            Self::Released,
            Self::Committed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    fn is_final(self) -> bool {
        matches!(self, Self::Released | Self::Committed)
    }
}

/// An order's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub(crate) revision: i32,
    pub(crate) status: Status,
    /// Units per product, as held while `Reserved` (and as sold once `Committed`).
    pub(crate) lines: Quantities,
}

impl Reservation {
    /// What the reservation holds right now.
    fn held(&self) -> Quantities {
        match self.status {
            Status::Reserved => self.lines.clone(),
            _ => Quantities::new(),
        }
    }
}

/// Quantities wanted per product: lines of one product (at several prices) add up.
pub fn wanted(lines: &[contracts::Line]) -> Result<Quantities, Error> {
    let mut wanted = Quantities::new();
    for line in lines {
        let units = wanted.entry(line.product_id).or_insert(0);
        *units = add(*units, i64::from(line.quantity), "units wanted")?;
    }
    Ok(wanted)
}

/// The change per product that turns `held` into `wanted`, given what is `available` (products
/// missing from `available` do not exist).
pub fn plan(wanted: &Quantities, held: &Quantities, available: &Quantities) -> Result<Plan, Error> {
    let unknown: Vec<i64> = wanted
        .keys()
        .filter(|p| !available.contains_key(p))
        .copied()
        .collect();
    if !unknown.is_empty() {
        return Ok(Plan::Refuse(ReservationFailure::UnknownProduct, unknown));
    }
    let products: BTreeSet<i64> = wanted.keys().chain(held.keys()).copied().collect();
    let mut deltas = Quantities::new();
    let mut short = Vec::new();
    for product in &products {
        let delta = (wanted.get(product).copied().unwrap_or(0))
            .checked_sub(held.get(product).copied().unwrap_or(0))
            .ok_or(Error::Overflow("units to take"))?;
        if delta > available.get(product).copied().unwrap_or(0) {
            short.push(*product);
        }
        if delta != 0 {
            deltas.insert(*product, delta);
        }
    }
    Ok(if short.is_empty() {
        Plan::Move(deltas)
    } else {
        Plan::Refuse(ReservationFailure::OutOfStock, short)
    })
}

/// The reservations and product quantities one transaction works on, and its changes so far.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Each order's reservation as read (`None`: there was none): the guard of [`Ledger::save`].
    pub(crate) read: HashMap<Uuid, Option<Reservation>>,
    /// Reservations changed since, as they are now.
    pub(crate) changed: BTreeMap<Uuid, Reservation>,
    /// What is available now of the products read; a product missing here does not exist.
    pub(crate) available: Quantities,
    /// Units taken from `available` per product so far (negative: given back).
    pub(crate) taken: Quantities,
    /// Units added to `reserved` per product so far (negative: released or sold).
    pub(crate) reserved: Quantities,
    /// What was reserved of the products read, when they were read.
    pub(crate) reserved_read: Quantities,
}

impl Ledger {
    /// The order's reservation as it stands in this ledger.
    fn reservation(&self, order_id: Uuid) -> Option<&Reservation> {
        self.changed
            .get(&order_id)
            .or_else(|| self.read.get(&order_id).and_then(Option::as_ref))
    }

    /// Records the order's new reservation and moves units: `take` leaves available, `reserve`
    /// enters reserved (negative amounts go the other way). Every count is checked before any
    /// changes, so an overflow leaves the ledger as it was.
    fn change(
        &mut self,
        order_id: Uuid,
        reservation: Reservation,
        take: &Quantities,
        reserve: &Quantities,
    ) -> Result<(), Error> {
        let mut available = Vec::with_capacity(take.len());
        let mut taken = Vec::with_capacity(take.len());
        for (product, units) in take {
            let now = self.available.get(product).copied().unwrap_or(0);
            let left = now
                .checked_sub(*units)
                .ok_or(Error::Overflow("units available"))?;
            available.push((*product, left));
            let so_far = self.taken.get(product).copied().unwrap_or(0);
            taken.push((*product, add(so_far, *units, "units taken")?));
        }
        let mut reserved = Vec::with_capacity(reserve.len());
        for (product, units) in reserve {
            let so_far = self.reserved.get(product).copied().unwrap_or(0);
            reserved.push((*product, add(so_far, *units, "units reserved")?));
        }
        self.available.extend(available);
        self.taken.extend(taken);
        self.reserved.extend(reserved);
        // An order first seen here (not loaded) was never read: its guard is "absent".
        self.read.entry(order_id).or_insert(None);
        self.changed.insert(order_id, reservation);
        Ok(())
    }

    /// Makes the order's reservation hold exactly `lines` of `revision`: all of them, or none
    /// at all. A revision not newer than the one applied is ignored (a redelivery or a replay),
    /// and so is any message for a released or committed reservation. After an error the ledger
    /// must not be saved: the transaction is rolled back.
    pub fn hold(
        &mut self,
        order_id: Uuid,
        revision: u32,
        lines: &[contracts::Line],
    ) -> Result<Held, Error> {
        let revision = i32::try_from(revision).map_err(|_| Error::Overflow("revision"))?;
        let current = self.reservation(order_id);
        if current.is_some_and(|r| r.revision >= revision || r.status.is_final()) {
            return Ok(Held::Ignored);
        }
        let held = current.map(Reservation::held).unwrap_or_default();
        let wanted = wanted(lines)?;
        Ok(match plan(&wanted, &held, &self.available)? {
            Plan::Move(deltas) => {
                let reservation = Reservation {
                    revision,
                    status: Status::Reserved,
                    lines: wanted,
                };
                self.change(order_id, reservation, &deltas, &deltas)?;
                Held::Reserved
            }
            // All or nothing: whatever an earlier revision held goes back.
            Plan::Refuse(reason, product_ids) => {
                let give_back = negated(&held)?;
                let reservation = Reservation {
                    revision,
                    status: Status::Failed,
                    lines: Quantities::new(),
                };
                self.change(order_id, reservation, &give_back, &give_back)?;
                Held::Failed {
                    reason,
                    product_ids,
                }
            }
        })
    }

    /// The order is over without a sale (its payment was declined or it failed): whatever it
    /// holds goes back (compensation), and the reservation becomes final, so that no late
    /// revision of the order takes stock again. Returns whether this released it, that is
    /// whether it was not final already (released, or committed by a completed order): the
    /// release is then to be announced, even if nothing was held, because payment refunds on it
    /// and stops paying for the order.
    pub fn release(&mut self, order_id: Uuid) -> Result<bool, Error> {
        let current = self.reservation(order_id);
        if current.is_some_and(|r| r.status.is_final()) {
            return Ok(false);
        }
        let held = current.map(Reservation::held).unwrap_or_default();
        let reservation = Reservation {
            revision: current.map_or(0, |r| r.revision),
            status: Status::Released,
            lines: Quantities::new(),
        };
        let give_back = negated(&held)?;
        self.change(order_id, reservation, &give_back, &give_back)?;
        Ok(true)
    }

    /// The order completed: its held units are sold and leave `reserved` for good. The lines
    /// stay, as the record of what was sold. Returns whether anything was held.
    pub fn commit(&mut self, order_id: Uuid) -> Result<bool, Error> {
        let Some(current) = self.reservation(order_id) else {
            return Ok(false);
        };
        if current.status != Status::Reserved {
            return Ok(false);
        }
        let sold = negated(&current.lines)?;
        let reservation = Reservation {
            status: Status::Committed,
            ..current.clone()
        };
        self.change(order_id, reservation, &Quantities::new(), &sold)?;
        Ok(true)
    }
}

pub(crate) fn negated(quantities: &Quantities) -> Result<Quantities, Error> {
    (quantities.iter())
        .map(|(p, q)| Ok((*p, q.checked_neg().ok_or(Error::Overflow("units"))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(i64, i64)]) -> BTreeMap<i64, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_new_reservation_takes_what_is_wanted() {
        let plan = plan(&map(&[(1, 2), (2, 1)]), &map(&[]), &map(&[(1, 5), (2, 1)])).unwrap();
        assert_eq!(plan, Plan::Move(map(&[(1, 2), (2, 1)])));
    }

    #[test]
    fn a_change_moves_only_the_difference() {
        let plan = plan(
            &map(&[(1, 3), (3, 1)]),
            &map(&[(1, 5), (2, 1)]),
            &map(&[(1, 0), (2, 0), (3, 1)]),
        );
        assert_eq!(plan.unwrap(), Plan::Move(map(&[(1, -2), (2, -1), (3, 1)])));
    }

    #[test]
    fn unknown_products_fail_before_shortages() {
        let plan = plan(&map(&[(1, 999), (9, 1)]), &map(&[]), &map(&[(1, 5)])).unwrap();
        assert_eq!(
            plan,
            Plan::Refuse(ReservationFailure::UnknownProduct, vec![9])
        );
    }

    #[test]
    fn a_shortage_of_any_product_fails_the_whole_reservation() {
        let plan = plan(
            &map(&[(1, 1), (2, 3)]),
            &map(&[(2, 1)]),
            &map(&[(1, 5), (2, 1)]),
        );
        assert_eq!(
            plan.unwrap(),
            Plan::Refuse(ReservationFailure::OutOfStock, vec![2])
        );
    }

    #[test]
    fn a_count_that_overflows_is_an_error_and_changes_nothing() {
        let plan = plan(&map(&[(1, i64::MIN)]), &map(&[(1, 1)]), &map(&[(1, 5)]));
        assert!(matches!(plan, Err(Error::Overflow(_))), "{plan:?}");

        let mut ledger = ledger(&[(1, 5)]);
        ledger.taken = map(&[(1, i64::MAX)]);
        let order = Uuid::new_v4();
        let held = ledger.hold(order, 1, &[line(1, 1)]);
        assert!(
            matches!(held, Err(Error::Overflow("units taken"))),
            "{held:?}"
        );
        assert_eq!(ledger.available, map(&[(1, 5)]));
        assert!(ledger.changed.is_empty());
        let held = ledger.hold(order, u32::MAX, &[line(1, 1)]);
        assert!(matches!(held, Err(Error::Overflow("revision"))), "{held:?}");

        let permanent = messaging::consumer::HandlerError::from(Error::Overflow("units"));
        assert!(
            matches!(permanent, messaging::consumer::HandlerError::Permanent(_)),
            "{permanent:?}"
        );
    }

    fn line(product_id: i64, quantity: u32) -> contracts::Line {
        contracts::Line {
            product_id,
            quantity,
            unit_price: "1.00".parse().unwrap(),
        }
    }

    fn ledger(available: &[(i64, i64)]) -> Ledger {
        Ledger {
            available: map(available),
            ..Ledger::default()
        }
    }

    #[test]
    fn orders_of_one_batch_see_each_others_holds() {
        let mut ledger = ledger(&[(1, 3)]);
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            ledger.hold(first, 1, &[line(1, 2)]).unwrap(),
            Held::Reserved
        );
        assert_eq!(
            ledger.hold(second, 1, &[line(1, 2)]).unwrap(),
            Held::Failed {
                reason: ReservationFailure::OutOfStock,
                product_ids: vec![1],
            }
        );
        assert_eq!(ledger.available, map(&[(1, 1)]));
        assert_eq!(ledger.taken, map(&[(1, 2)]));
        assert_eq!(ledger.reserved, map(&[(1, 2)]));
    }

    #[test]
    fn one_orders_messages_in_one_batch_add_up() {
        let mut ledger = ledger(&[(1, 10), (2, 10)]);
        let order = Uuid::new_v4();
        assert_eq!(
            ledger.hold(order, 1, &[line(1, 4)]).unwrap(),
            Held::Reserved
        );
        assert_eq!(ledger.hold(order, 1, &[line(1, 4)]).unwrap(), Held::Ignored);
        assert_eq!(
            ledger.hold(order, 2, &[line(1, 1), line(2, 2)]).unwrap(),
            Held::Reserved
        );
        assert!(ledger.commit(order).unwrap());
        assert!(!ledger.commit(order).unwrap(), "committed twice");
        assert!(!ledger.release(order).unwrap(), "final");
        assert_eq!(ledger.hold(order, 3, &[line(1, 1)]).unwrap(), Held::Ignored);

        // Net: 1 + 2 units taken, reserved and then sold.
        assert_eq!(ledger.taken, map(&[(1, 1), (2, 2)]));
        assert_eq!(ledger.reserved, map(&[(1, 0), (2, 0)]));
        let saved = &ledger.changed[&order];
        assert_eq!(saved.status, Status::Committed);
        assert_eq!(saved.lines, map(&[(1, 1), (2, 2)]));
        assert_eq!(
            ledger.read[&order], None,
            "the guard: no reservation was read"
        );
    }

    #[test]
    fn a_release_gives_back_what_the_batch_held() {
        let mut ledger = ledger(&[(1, 5)]);
        let order = Uuid::new_v4();
        ledger.hold(order, 1, &[line(1, 5)]).unwrap();
        assert!(ledger.release(order).unwrap());
        assert_eq!(ledger.available, map(&[(1, 5)]));
        assert_eq!(ledger.taken, map(&[(1, 0)]));
        assert_eq!(ledger.changed[&order].status, Status::Released);
        assert!(!ledger.release(order).unwrap(), "released twice");
    }

    #[test]
    fn an_order_that_failed_holding_nothing_is_released_all_the_same() {
        let mut ledger = ledger(&[(1, 5)]);
        let (failed, unseen) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(matches!(
            ledger.hold(failed, 1, &[line(1, 6)]).unwrap(),
            Held::Failed { .. }
        ));
        assert!(ledger.release(failed).unwrap());
        assert!(ledger.release(unseen).unwrap());
        for order in [failed, unseen] {
            assert_eq!(ledger.changed[&order].status, Status::Released);
            assert_eq!(ledger.hold(order, 2, &[line(1, 1)]).unwrap(), Held::Ignored);
        }
        assert_eq!(ledger.available, map(&[(1, 5)]));
    }

    #[test]
    fn lines_of_one_product_at_two_prices_add_up() {
        let line = |p, q, price: &str| contracts::Line {
            product_id: p,
            quantity: q,
            unit_price: price.parse().unwrap(),
        };
        assert_eq!(
            wanted(&[line(1, 2, "1.00"), line(1, 3, "2.00"), line(2, 1, "1.00")]).unwrap(),
            map(&[(1, 5), (2, 1)])
        );
    }
}
