//! The order aggregate: `decide` holds every rule, `apply` folds facts and cannot fail.
//!
//! Saga position. An order is `pending` from `Placed` until `Completed` or `Failed`, and its
//! lines may change while it is pending; once it is completed or failed every change is refused
//! with 409. Every line change bumps `revision`. Stock holds each revision it is told of, and
//! payment captures the total of each revision stock holds, so the order completes when the
//! payment for its *current* revision is captured. A reply for an older revision is ignored,
//! because the reply for the newer revision is on its way. A declined payment fails the order
//! whatever revision it answers: payment never captures for that order again.
//!
//! Bounds. A pending order accepts at most [`MAX_CHANGES`] changes, and a saga that has not
//! settled by the service's deadline fails with `timed_out` (`TimeOut`; the clock is the
//! caller's, see `crate::deadline`). A reply that comes after either is ignored like any reply
//! to a settled order: the compensation it calls for is stock's and payment's.

use serde::{Deserialize, Serialize};

use super::values::{
    CustomerId, MAX_CHANGES, MAX_LINES, MAX_QUANTITY, Money, Price, ProductId, Quantity,
};
use contracts::orders::FailureReason;

/// One line: a quantity of a product at a unit price. An order may hold the same product at
/// two prices (two lines); the products report counts quantities per `(product, price)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Price,
}

impl Line {
    pub fn total(&self) -> Money {
        self.unit_price.money().times(self.quantity.get())
    }

    /// Same product at the same price: such lines merge.
    fn same_offer(&self, other: &Line) -> bool {
        self.product_id == other.product_id && self.unit_price == other.unit_price
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Completed,
    Failed,
}

/// What a caller asks of an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Place {
        customer_id: CustomerId,
        lines: Vec<Line>,
    },
    AddItem(Line),
    /// Removes `quantity` units of a product, newest lines first.
    RemoveItem {
        product_id: ProductId,
        quantity: Quantity,
    },
    /// Saga: stock could not hold every line of `revision`.
    RejectStock {
        revision: u32,
        reason: FailureReason,
    },
    /// Saga: the payment for `revision` was captured.
    ConfirmPayment {
        revision: u32,
        payment_id: uuid::Uuid,
    },
    /// Saga: the payment for `revision` was declined.
    DeclinePayment {
        revision: u32,
    },
    /// The saga's deadline passed (decided by whoever watches the clock).
    TimeOut,
}

/// What happened to an order. Stored in the event store; the `type` tag is the event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    OrderPlaced {
        customer_id: CustomerId,
        lines: Vec<Line>,
    },
    ItemAdded(Line),
    #[serde(rename_all = "camelCase")]
    ItemRemoved {
        product_id: ProductId,
        quantity: Quantity,
    },
    /// Retired: the order asked for payment itself before payment followed stock. Never decided
    /// any more; kept so that streams which recorded it still load (events are never rewritten).
    /// It changes nothing in the state.
    #[serde(rename_all = "camelCase")]
    PaymentRequested {
        revision: u32,
        amount: Money,
    },
    #[serde(rename_all = "camelCase")]
    OrderCompleted {
        payment_id: uuid::Uuid,
    },
    #[serde(rename_all = "camelCase")]
    OrderFailed {
        reason: FailureReason,
    },
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::OrderPlaced { .. } => "OrderPlaced",
            Event::ItemAdded(_) => "ItemAdded",
            Event::ItemRemoved { .. } => "ItemRemoved",
            Event::PaymentRequested { .. } => "PaymentRequested",
            Event::OrderCompleted { .. } => "OrderCompleted",
            Event::OrderFailed { .. } => "OrderFailed",
        }
    }
}

/// A rule the command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("an order needs at least one line")]
    EmptyOrder,
    #[error("an order may hold at most {MAX_LINES} lines")]
    TooManyLines,
    #[error("a line may hold at most {MAX_QUANTITY} units")]
    QuantityTooLarge,
    #[error("the order already exists")]
    AlreadyPlaced,
    #[error("the order does not exist")]
    NotPlaced,
    #[error("the order is {0:?} and can no longer change")]
    NotPending(Status),
    #[error(
        "the order holds {held} units of product {product}, fewer than the {requested} to remove"
    )]
    NotEnoughToRemove {
        product: i64,
        held: u32,
        requested: u32,
    },
    #[error("removing every unit would leave the order empty")]
    WouldBeEmpty,
    #[error("the order was already changed {MAX_CHANGES} times, the most a pending order accepts")]
    TooManyChanges,
}

/// The state of one order: the fold of its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub customer_id: CustomerId,
    pub status: Status,
    pub failure_reason: Option<FailureReason>,
    pub lines: Vec<Line>,
    /// Number of events applied; the stream version.
    pub version: u32,
    /// Number of line changes (placing is revision 1). Saga replies name the revision.
    pub revision: u32,
}

impl Default for Order {
    fn default() -> Self {
        Self {
            customer_id: CustomerId(uuid::Uuid::nil()),
            status: Status::Pending,
            failure_reason: None,
            lines: Vec::new(),
            version: 0,
            revision: 0,
        }
    }
}

impl Order {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Order::default(), Order::apply)
    }

    pub fn exists(&self) -> bool {
        self.version > 0
    }

    pub fn total(&self) -> Money {
        self.lines.iter().map(Line::total).sum()
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.status, Status::Completed | Status::Failed)
    }

    /// Units of `product` over all its lines.
    pub fn held(&self, product: ProductId) -> u32 {
        self.lines
            .iter()
            .filter(|l| l.product_id == product)
            .map(|l| l.quantity.get())
            .sum()
    }

    pub fn decide(&self, command: Command) -> Result<Vec<Event>, DomainError> {
        match command {
            Command::Place { customer_id, lines } => {
                if self.exists() {
                    return Err(DomainError::AlreadyPlaced);
                }
                let lines = merge_lines(Vec::new(), lines)?;
                if lines.is_empty() {
                    return Err(DomainError::EmptyOrder);
                }
                Ok(vec![Event::OrderPlaced { customer_id, lines }])
            }
            Command::AddItem(line) => {
                self.ensure_changeable()?;
                merge_lines(self.lines.clone(), vec![line])?;
                Ok(vec![Event::ItemAdded(line)])
            }
            Command::RemoveItem {
                product_id,
                quantity,
            } => {
                self.ensure_changeable()?;
                let held = self.held(product_id);
                if held < quantity.get() {
                    return Err(DomainError::NotEnoughToRemove {
                        product: product_id.get(),
                        held,
                        requested: quantity.get(),
                    });
                }
                if self.lines.iter().map(|l| l.quantity.get()).sum::<u32>() == quantity.get() {
                    return Err(DomainError::WouldBeEmpty);
                }
                Ok(vec![Event::ItemRemoved {
                    product_id,
                    quantity,
                }])
            }
            // Saga replies: a stale revision, a repeat, or a terminal order make them no-ops.
            Command::RejectStock { revision, reason } => {
                self.ensure_exists()?;
                if self.is_terminal() || revision != self.revision {
                    return Ok(vec![]);
                }
                Ok(vec![Event::OrderFailed { reason }])
            }
            Command::ConfirmPayment {
                revision,
                payment_id,
            } => {
                self.ensure_exists()?;
                if self.is_terminal() || revision != self.revision {
                    return Ok(vec![]);
                }
                Ok(vec![Event::OrderCompleted { payment_id }])
            }
            // Final at payment whatever the revision: no later revision will be paid for.
            Command::DeclinePayment { .. } => {
                self.ensure_exists()?;
                if self.is_terminal() {
                    return Ok(vec![]);
                }
                Ok(vec![Event::OrderFailed {
                    reason: FailureReason::PaymentDeclined,
                }])
            }
            // A settled order has nothing left to time out: the deadline and the settling
            // reply raced, and the reply won.
            Command::TimeOut => {
                self.ensure_exists()?;
                if self.is_terminal() {
                    return Ok(vec![]);
                }
                Ok(vec![Event::OrderFailed {
                    reason: FailureReason::TimedOut,
                }])
            }
        }
    }

    pub fn apply(mut self, event: &Event) -> Self {
        self.version += 1;
        match event {
            Event::OrderPlaced { customer_id, lines } => {
                self.customer_id = *customer_id;
                self.lines = lines.clone();
                self.revision = 1;
            }
            Event::ItemAdded(line) => {
                // `decide` checked the bounds. Should a stored fact ever exceed them (bounds
                // lowered later), it becomes a line of its own: a fact is never dropped.
                match self.lines.iter_mut().find(|l| l.same_offer(line)) {
                    Some(existing) => match existing.quantity.checked_add(line.quantity) {
                        Some(sum) => existing.quantity = sum,
                        None => self.lines.push(*line),
                    },
                    None => self.lines.push(*line),
                }
                self.revision += 1;
            }
            Event::ItemRemoved {
                product_id,
                quantity,
            } => {
                remove_newest_first(&mut self.lines, *product_id, quantity.get());
                self.revision += 1;
            }
            Event::PaymentRequested { .. } => {}
            Event::OrderCompleted { .. } => self.status = Status::Completed,
            Event::OrderFailed { reason } => {
                self.status = Status::Failed;
                self.failure_reason = Some(*reason);
            }
        }
        self
    }

    fn ensure_exists(&self) -> Result<(), DomainError> {
        if self.exists() {
            Ok(())
        } else {
            Err(DomainError::NotPlaced)
        }
    }

    fn ensure_changeable(&self) -> Result<(), DomainError> {
        self.ensure_exists()?;
        if self.status != Status::Pending {
            return Err(DomainError::NotPending(self.status));
        }
        // Placing is revision 1; every change adds one.
        if self.revision.saturating_sub(1) >= MAX_CHANGES {
            return Err(DomainError::TooManyChanges);
        }
        Ok(())
    }
}

/// Adds `new` lines to `lines`: a line with the same product and price grows, another is
/// appended. Enforces the per-line and per-order bounds.
fn merge_lines(mut lines: Vec<Line>, new: Vec<Line>) -> Result<Vec<Line>, DomainError> {
    for line in new {
        match lines.iter_mut().find(|l| l.same_offer(&line)) {
            Some(existing) => {
                existing.quantity = existing
                    .quantity
                    .checked_add(line.quantity)
                    .ok_or(DomainError::QuantityTooLarge)?;
            }
            None => lines.push(line),
        }
    }
    if lines.len() > MAX_LINES {
        return Err(DomainError::TooManyLines);
    }
    Ok(lines)
}

/// Takes `quantity` units of `product` off its newest lines first, dropping emptied lines.
fn remove_newest_first(lines: &mut Vec<Line>, product: ProductId, quantity: u32) {
    let mut left = quantity;
    let mut kept: Vec<Line> = Vec::with_capacity(lines.len());
    for line in lines.drain(..).rev() {
        if line.product_id == product && left > 0 {
            let take = left.min(line.quantity.get());
            left -= take;
            if let Some(rest) = line.quantity.checked_sub(take) {
                kept.push(Line {
                    quantity: rest,
                    ..line
                });
            }
        } else {
            kept.push(line);
        }
    }
    kept.reverse();
    *lines = kept;
}
