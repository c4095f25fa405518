//! The integration tests of `stock`, one binary: each module is one concern, against the
//! real servers `./dev test` starts. One binary links the crate and its dependencies once.

// Test code may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod catalog;
mod listing;
mod messages;
mod reservations;
