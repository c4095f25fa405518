//! The order service's one consumer: saga replies (stock, payments) go to [`SagaHandler`],
//! catalog changes to the replica ([`crate::catalog`]). Both apply in the consumer's transaction,
//! with the batch's inbox rows.

use contracts::catalog::CatalogMessage;
use contracts::topics;
use messaging::consumer::{Handler, HandlerError, IncomingMessage, Traced};
use sqlx::PgConnection;

use crate::catalog;
use crate::saga::SagaHandler;

pub struct OrderHandler;

impl Handler for OrderHandler {
    fn ignores(&self, message: &IncomingMessage) -> bool {
        SagaHandler.ignores(message)
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        messages: &[Traced<'_>],
    ) -> Result<(), HandlerError> {
        let (changes, replies): (Vec<Traced<'_>>, Vec<Traced<'_>>) = messages
            .iter()
            .map(|t| Traced {
                message: t.message,
                span: t.span.clone(),
            })
            .partition(|t| t.message.topic == topics::CATALOG);
        if !changes.is_empty() {
            let changes = Traced::parse_each(&changes, |message| {
                match message.decode(CatalogMessage::decode)? {
                    CatalogMessage::ProductChanged(change) => Ok(Some(change)),
                }
            })?;
            let changes: Vec<_> = changes.into_iter().map(|(change, _)| change).collect();
            catalog::apply(&mut *conn, &changes).await?;
        }
        if !replies.is_empty() {
            SagaHandler.handle(conn, &replies).await?;
        }
        Ok(())
    }
}
