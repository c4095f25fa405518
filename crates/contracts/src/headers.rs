//! Kafka header names. Metadata travels in headers so a consumer can route, dedupe and trace a
//! message without parsing its payload.

/// Unique per message (UUID); consumers dedupe on it.
pub const MESSAGE_ID: &str = "message-id";
/// The contract name, e.g. `OrderPlaced`.
pub const MESSAGE_TYPE: &str = "message-type";
/// The contract's schema version, e.g. `1`.
pub const SCHEMA_VERSION: &str = "schema-version";
/// Shared by every message of one saga (the order's first message id).
pub const CORRELATION_ID: &str = "correlation-id";
/// The message id that caused this one.
pub const CAUSATION_ID: &str = "causation-id";
/// W3C trace context, so one trace follows an order across services.
pub const TRACEPARENT: &str = "traceparent";
/// RFC 3339 time the fact happened.
pub const OCCURRED_AT: &str = "occurred-at";
/// Set on dead letters: why the consumer parked the message.
pub const DEAD_LETTER_REASON: &str = "dead-letter-reason";
/// Set on dead letters: the consumer group that parked it.
pub const DEAD_LETTER_CONSUMER: &str = "dead-letter-consumer";
/// Set on dead letters: where the original was (`topic/partition/offset`).
pub const DEAD_LETTER_ORIGIN: &str = "dead-letter-origin";
/// Set on a message the operator console republished from the dead letters: the letter it came
/// from (`{partition}-{offset}` in the dead-letter topic). Its `message-id` is the original's,
/// so a reader that applied the message already skips it.
pub const REDRIVEN_FROM: &str = "redriven-from";
