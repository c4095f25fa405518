//! A batch of messages through a service's consumer handler, as the consumer hands it over but
//! without the consumer: for tests of what a handler decides and writes.

use messaging::consumer::{Handler, HandlerError, IncomingMessage, Traced};
use sqlx::{PgConnection, PgPool};

/// Runs `messages` through `handler` on `conn`, in whatever transaction the caller holds. The
/// messages carry no span (the consumer's spans only continue traces).
pub async fn handle_on<H: Handler>(
    handler: &H,
    conn: &mut PgConnection,
    messages: &[IncomingMessage],
) -> Result<(), HandlerError> {
    let traced: Vec<Traced<'_>> = (messages.iter())
        .map(|message| Traced {
            message,
            span: tracing::Span::none(),
        })
        .collect();
    handler.handle(conn, &traced).await
}

/// Runs `messages` through `handler` in a transaction of their own, committed if the handler
/// succeeds (and rolled back otherwise), as the consumer applies a micro-batch.
///
/// # Panics
///
/// When PostgreSQL cannot begin or commit the transaction: the test fails.
pub async fn handle<H: Handler>(
    handler: &H,
    pool: &PgPool,
    messages: &[IncomingMessage],
) -> Result<(), HandlerError> {
    let mut tx = pool.begin().await.expect("a transaction");
    handle_on(handler, &mut tx, messages).await?;
    tx.commit().await.expect("the transaction commits");
    Ok(())
}
