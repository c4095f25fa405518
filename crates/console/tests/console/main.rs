//! The integration tests of `console`, one binary: sessions, guards and the operator API
//! (`sessions`), dead letters (`dead_letters`), against the real PostgreSQL and Kafka that
//! `./dev test` starts.

// Test code may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod dead_letters;
mod sessions;
