//! The integration tests of `projections`, one binary: each module is one concern, against the
//! real servers `./dev test` starts. One binary links the crate and its dependencies once; the
//! fault tests, which stop shared servers, run alone (`World::alone`) while every other test
//! holds a shared turn (`World::new`).

// Test code may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod common;
mod faults;
mod reports;
