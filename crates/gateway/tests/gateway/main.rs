//! The gateway's tests, one binary: the entry point's bounds against abuse, its routing and
//! instances, readiness, the OpenAPI document and the saga's telemetry observed in-process.
//!
//! Tests that change what the whole process or a shared server sees (the metrics recorder's
//! series and the process's memory, which the abuse tests measure; the local Kafka, which the
//! readiness test stops) run alone: they hold [`test_support::alone`], and every other test
//! that runs servers holds [`test_support::shared`].

// Test helpers may unwrap: a failure is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod abuse;
mod instances;
mod openapi;
mod readiness;
mod routing;
mod telemetry;
