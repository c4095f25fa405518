//! The order's part in the choreography: stock and payment outcomes become commands on the
//! order, executed in the idempotent consumer's transaction (events, outbox and inbox rows
//! commit together). The rules that make late, repeated or stale replies harmless live in the
//! aggregate (`Order::decide`).
//!
//! A micro-batch is decided like stock's: one read of every order it names, each message
//! decided in memory against the order as the messages before it left it, and one append of
//! every stream with the messages they cause. However many messages it carries, a batch costs
//! the same two statements. If another writer moved one of the orders meanwhile, the append
//! fails and the consumer replays the batch one message per transaction.

use std::collections::HashMap;

use contracts::payments::PaymentMessage;
use contracts::stock::{ReservationFailure, StockMessage};
use contracts::{orders::FailureReason, topics};
use messaging::consumer::{Handler, HandlerError, IncomingMessage, Traced};
use messaging::outbox::OutgoingMessage;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::commands::{self, CommandError, Context};
use crate::domain::{Command, Order, OrderId};
use crate::event_store::{self, NewEvent, RecordedEvent, Saga, StreamAppend};
use crate::view;

pub struct SagaHandler;

/// The command a message asks of an order, if any.
fn command_of(message: &IncomingMessage) -> Result<Option<(Uuid, Command)>, HandlerError> {
    Ok(Some(match message.topic.as_str() {
        topics::STOCK => match message.decode(StockMessage::decode)? {
            StockMessage::StockReservationFailed(m) => (
                m.order_id,
                Command::RejectStock {
                    revision: m.revision,
                    reason: match m.reason {
                        ReservationFailure::OutOfStock => FailureReason::OutOfStock,
                        ReservationFailure::UnknownProduct => FailureReason::UnknownProduct,
                    },
                },
            ),
            StockMessage::StockReserved(_) | StockMessage::StockReleased(_) => return Ok(None),
        },
        topics::PAYMENTS => match message.decode(PaymentMessage::decode)? {
            PaymentMessage::PaymentCaptured(m) => (
                m.order_id,
                Command::ConfirmPayment {
                    revision: m.revision,
                    payment_id: m.payment_id,
                },
            ),
            PaymentMessage::PaymentDeclined(m) => (
                m.order_id,
                Command::DeclinePayment {
                    revision: m.revision,
                },
            ),
        },
        other => {
            return Err(HandlerError::Permanent(format!(
                "order does not consume {other}"
            )));
        }
    }))
}

fn handler_error(e: CommandError) -> HandlerError {
    match e {
        // Lost a race with an HTTP command: the batch rolls back and is retried, and the
        // command is decided again against the new state.
        CommandError::Conflict(e) => HandlerError::Transient(Box::new(e)),
        CommandError::Database(e) => e.into(),
        e @ (CommandError::Domain(_) | CommandError::Corrupt(_) | CommandError::NotOwner) => {
            HandlerError::Permanent(e.to_string())
        }
        e @ (CommandError::Contended | CommandError::KeyReused) => {
            HandlerError::Transient(Box::new(e))
        }
    }
}

/// One order within a batch: as loaded, and as the batch's decisions so far leave it.
struct Pending {
    loaded_version: u32,
    order: Order,
    new_events: Vec<NewEvent>,
    saga: Saga,
}

impl Handler for SagaHandler {
    /// A reservation is payment's to act on, and a released one is the end of a compensation
    /// the order already failed for.
    fn ignores(&self, message: &IncomingMessage) -> bool {
        use contracts::Contract;
        use contracts::stock::{StockReleased, StockReserved};
        [StockReserved::TYPE, StockReleased::TYPE].contains(&message.message_type.as_str())
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        messages: &[Traced<'_>],
    ) -> Result<(), HandlerError> {
        let commands = Traced::parse_each(messages, command_of)?;
        if commands.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<Uuid> = commands.iter().map(|((id, _), _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut streams: HashMap<Uuid, Vec<RecordedEvent>> = HashMap::new();
        for event in event_store::load_many(&mut *conn, &ids).await? {
            streams.entry(event.stream_id).or_default().push(event);
        }

        let mut pending: HashMap<Uuid, Pending> = HashMap::new();
        let mut decided = Vec::new();
        let mut outgoing: Vec<OutgoingMessage> = Vec::new();
        for ((order_id, command), traced) in commands {
            // Decided in the message's span, so that its events and messages continue its trace.
            traced
                .span
                .record("order_id", tracing::field::display(order_id));
            let _entered = traced.span.enter();
            let state = match pending.entry(order_id) {
                std::collections::hash_map::Entry::Occupied(state) => state.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let stream = streams.remove(&order_id).unwrap_or_default();
                    let order = view::fold(&stream)
                        .map_err(|e| handler_error(e.into()))?
                        .unwrap_or_default();
                    slot.insert(Pending {
                        loaded_version: order.version,
                        order,
                        new_events: Vec::new(),
                        saga: Saga::Continues,
                    })
                }
            };
            let context = Context {
                correlation_id: traced.message.metadata.correlation_id,
                causation_id: Some(traced.message.metadata.message_id),
                traceparent: traced.message.metadata.traceparent.clone(),
                now: chrono::Utc::now(),
                customer: None,
            };
            let decision = commands::decide(OrderId(order_id), &state.order, command, &context)
                .map_err(handler_error)?;
            state.order = decision.apply_to(state.order.clone());
            state.new_events.extend(decision.new_events);
            if decision.saga != Saga::Continues {
                state.saga = decision.saga;
            }
            outgoing.extend(decision.messages);
            decided.extend(decision.events);
        }

        let appends: Vec<StreamAppend<'_>> = (pending.iter())
            .filter(|(_, state)| !state.new_events.is_empty())
            .map(|(order_id, state)| StreamAppend {
                stream_id: *order_id,
                expected_version: state.loaded_version,
                events: &state.new_events,
                saga: state.saga,
            })
            .collect();
        if appends.is_empty() {
            return Ok(());
        }
        event_store::append_many(&mut *conn, &appends, &outgoing)
            .await
            .map_err(|e| handler_error(e.into()))?;
        commands::count_outcomes(&decided);
        Ok(())
    }
}
