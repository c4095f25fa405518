//! System tests: the real `shop` binary, one process per component, against the real
//! PostgreSQL and Kafka. Every test starts its own stack (fresh databases, its own topic prefix
//! and ports), so tests neither share stock nor see each other's messages.

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod browser;
#[path = "../common/mod.rs"]
mod common;
mod console;
mod dead_letters;
mod hostile;
mod load;
mod replay;
mod saga;
mod secure;
mod token;
