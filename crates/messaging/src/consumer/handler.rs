//! What a consumer hands its handler: the message, its span, and how the handler answers.

use std::future::Future;

use contracts::DecodeError;
use sqlx::PgConnection;

use crate::outbox::Metadata;

/// A message as a handler sees it: routing, contract name and version, payload and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    /// The logical topic (without the deployment's prefix), e.g. `shop.orders`.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key: an order id, or a product id on the catalog topic.
    pub key: Option<String>,
    pub message_type: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
    pub metadata: Metadata,
}

impl IncomingMessage {
    /// Decodes the payload with a topic's `decode` (e.g. `OrderMessage::decode`). A payload that
    /// does not decode is permanent: retrying cannot fix it.
    pub fn decode<T>(
        &self,
        decode: impl FnOnce(&str, u16, &[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, HandlerError> {
        decode(&self.message_type, self.schema_version, &self.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))
    }
}

/// Why a handler did not apply a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later (database down, serialisation failure): retried with backoff.
    #[error("transient: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Will never succeed (unknown type, invalid content): dead-lettered with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Database errors are transient here; the consumer loop then classifies them by their
/// SQLSTATE (see the module docs): a data exception or a violated constraint is permanent
/// whatever the handler called it.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(Box::new(e))
    }
}

/// Applies messages inside the consumer's transaction.
///
/// `conn` is that transaction: everything the handler writes through it (state, outbox rows)
/// commits together with the messages' inbox rows, or not at all. A handler must not commit.
pub trait Handler: Send + Sync + 'static {
    /// Applies a micro-batch: `messages`, in their partitions' order, inside one transaction.
    /// Under load a batch carries many messages, which usually contend for the same rows: read
    /// them once, decide each message in memory, write once (stock, payment and the order saga
    /// do). When a batch fails it is rolled back and each of its messages replayed alone, as a
    /// batch of one, so a handler must not assume it sees a message once. Entering a message's
    /// `span` while deciding it keeps its trace.
    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        messages: &'a [Traced<'a>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Whether the message is of a *known* type this handler has nothing to do with (a topic
    /// carries more facts than each reader needs). Such messages are passed over without a
    /// transaction or an inbox row: there is no effect to apply once. Unknown types must not be
    /// ignored here, so that they still reach the handler and the dead-letter topic.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        let _ = message;
        false
    }
}

/// A message of a batch, with the span it is applied in (continuing its producer's trace).
#[derive(Debug)]
pub struct Traced<'a> {
    pub message: &'a IncomingMessage,
    pub span: tracing::Span,
}

impl<'a> Traced<'a> {
    /// What `parse` makes of each message of `batch`, paired with the message; messages it has
    /// nothing for (`Ok(None)`) are left out. The first error fails the whole batch, whose
    /// messages are then replayed one by one, so that only the bad one is parked.
    pub fn parse_each<T>(
        batch: &[Self],
        mut parse: impl FnMut(&IncomingMessage) -> Result<Option<T>, HandlerError>,
    ) -> Result<Vec<(T, &Self)>, HandlerError> {
        let mut parsed = Vec::with_capacity(batch.len());
        for traced in batch {
            if let Some(item) = parse(traced.message)? {
                parsed.push((item, traced));
            }
        }
        Ok(parsed)
    }
}
