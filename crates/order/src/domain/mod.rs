//! The order domain: pure data and rules. No I/O, no clock, no randomness; the domain module
//! never touches sqlx, axum or Kafka.

mod order;
mod values;

#[cfg(test)]
mod tests;

pub use order::{Command, DomainError, Event, Line, Order, Status};
pub use values::{
    CustomerId, MAX_CHANGES, MAX_LINES, MAX_QUANTITY, MAX_UNIT_PRICE, Money, OrderId, Price,
    ProductId, Quantity, ValueError,
};
