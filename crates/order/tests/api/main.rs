//! Integration tests of the order service against the real PostgreSQL (`./dev test` starts it).
//! Each test gets a fresh database and its own service instance on a random port.

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod catalog;
mod commands;
mod deadline;
mod event_store;
mod helpers;
mod identity;
mod migrations;
mod orders;
mod pages;
mod saga;
mod stuck;
