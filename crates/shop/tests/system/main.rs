//! System tests: the real `shop` binary, one process per component, against the real
//! PostgreSQL and Kafka. Every test starts its own stack (fresh databases, its own topic prefix
//! and ports), so tests neither share stock nor see each other's messages.
//!
//! The fault drills stop shared servers and the fuzzer loads the host, so they run alone
//! ([`test_support::stack::Stack::start_alone`]); every other test holds a shared turn, which
//! its stack takes when it starts (`test_support::shared`).

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod browser;
#[path = "../common/mod.rs"]
mod common;
mod console;
mod dead_letters;
mod faults;
mod fuzz;
mod hostile;
mod load;
mod replay;
mod saga;
mod secure;
mod token;
