//! Executing a command: load the stream, decide, append the events and their messages to the
//! outbox, all in one transaction (the append is one statement). HTTP requests and saga
//! consumers share this path.

use chrono::{DateTime, Utc};
use contracts::orders::FailureReason;
use messaging::outbox::{Metadata, OutgoingMessage};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{Command, CustomerId, DomainError, Event, Order, OrderId};
use crate::event_store::{
    self, AppendError, EventMetadata, NewEvent, RecordedEvent, Saga, StreamAppend,
};
use crate::messages;
use crate::view::{self, CorruptEvent};

/// How often an HTTP command is re-decided after losing an optimistic-concurrency race.
const ATTEMPTS: usize = 5;

/// Who is asking and why: carried into event metadata and message headers.
#[derive(Debug, Clone)]
pub struct Context {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub traceparent: Option<String>,
    pub now: DateTime<Utc>,
    /// The customer asking, when a customer asks: the command then applies only to an order of
    /// that customer, and another's is [`CommandError::NotOwner`] (answered like an unknown
    /// order). `None` for the saga and the deadline, which act for the system.
    pub customer: Option<CustomerId>,
}

impl Context {
    /// A command from outside the system (an HTTP request); the order id correlates the saga.
    pub fn external(order_id: OrderId, traceparent: Option<String>) -> Self {
        Self {
            correlation_id: order_id.0,
            causation_id: None,
            traceparent,
            now: Utc::now(),
            customer: None,
        }
    }

    /// The same context, for a command `customer` asks for.
    pub fn acting_for(mut self, customer: CustomerId) -> Self {
        self.customer = Some(customer);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the order changed concurrently {ATTEMPTS} times in a row")]
    Contended,
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    #[error("the order is another customer's")]
    NotOwner,
    #[error(transparent)]
    Conflict(AppendError),
    #[error(transparent)]
    Corrupt(#[from] CorruptEvent),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<AppendError> for CommandError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Database(e) => CommandError::Database(e),
            conflict @ AppendError::Conflict { .. } => CommandError::Conflict(conflict),
        }
    }
}

/// The order after a command: its whole stream and its state.
#[derive(Debug, Clone)]
pub struct Executed {
    pub stream: Vec<RecordedEvent>,
    pub order: Order,
    /// How many events the command appended (0: it was a no-op).
    pub appended: usize,
}

/// Runs `command` inside the caller's transaction. A lost race surfaces as
/// [`CommandError::Conflict`] and leaves the transaction aborted: the caller rolls back and may
/// try again.
pub async fn execute_in(
    conn: &mut PgConnection,
    order_id: OrderId,
    command: Command,
    context: &Context,
) -> Result<Executed, CommandError> {
    tracing::Span::current().record("order_id", tracing::field::display(order_id.0));
    let stream = event_store::load(&mut *conn, order_id.0).await?;
    decide_and_append(conn, order_id, stream, command, context).await
}

/// Runs `command` on an order id just minted, so its stream is known to be empty: nothing to
/// load, and the append is one statement (events, outbox and the saga's `open_sagas` row
/// together), atomic without a transaction. One round trip to place an order.
pub async fn start(
    pool: &PgPool,
    order_id: OrderId,
    command: Command,
    context: &Context,
) -> Result<Executed, CommandError> {
    tracing::Span::current().record("order_id", tracing::field::display(order_id.0));
    decide_and_append(pool, order_id, Vec::new(), command, context).await
}

/// Decides `command` against `stream` and appends what it yields, with its messages.
async fn decide_and_append(
    executor: impl sqlx::PgExecutor<'_>,
    order_id: OrderId,
    mut stream: Vec<RecordedEvent>,
    command: Command,
    context: &Context,
) -> Result<Executed, CommandError> {
    let order = view::fold(&stream)?.unwrap_or_default();
    if let Some(customer) = context.customer
        && order.exists()
        && order.customer_id != customer
    {
        return Err(CommandError::NotOwner);
    }
    let decision = decide(order_id, &order, command, context)?;
    if decision.events.is_empty() {
        return Ok(Executed {
            stream,
            order,
            appended: 0,
        });
    }
    let append = StreamAppend {
        stream_id: order_id.0,
        expected_version: order.version,
        events: &decision.new_events,
        saga: decision.saga,
    };
    let recorded =
        event_store::append_many(executor, std::slice::from_ref(&append), &decision.messages)
            .await?;
    count_outcomes(&decision.events);
    let order = decision.apply_to(order);
    let appended = recorded.len();
    stream.extend(recorded);
    Ok(Executed {
        stream,
        order,
        appended,
    })
}

/// What a command decided against an order, ready to append: its events with their metadata,
/// the same events as the store takes them, the messages they publish, and whether they start
/// or settle the saga. Nothing is written.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub events: Vec<(Event, Metadata)>,
    pub new_events: Vec<NewEvent>,
    pub messages: Vec<OutgoingMessage>,
    pub saga: Saga,
}

impl Decision {
    /// The order once the decided events are applied.
    pub fn apply_to(&self, order: Order) -> Order {
        self.events.iter().fold(order, |o, (e, _)| o.apply(e))
    }
}

/// Decides `command` against `order` (in memory): the events, their metadata (ids, correlation
/// and causation from `context`, the current trace) and the messages they cause.
pub fn decide(
    order_id: OrderId,
    order: &Order,
    command: Command,
    context: &Context,
) -> Result<Decision, CommandError> {
    let events = order.decide(command)?;
    if events.is_empty() {
        return Ok(Decision::default());
    }
    let traceparent =
        platform::trace::current_traceparent().or_else(|| context.traceparent.clone());
    let events: Vec<(Event, Metadata)> = events
        .into_iter()
        .map(|event| {
            let metadata = Metadata {
                message_id: Uuid::now_v7(),
                correlation_id: context.correlation_id,
                causation_id: context.causation_id,
                traceparent: traceparent.clone(),
                occurred_at: context.now,
            };
            (event, metadata)
        })
        .collect();
    let new_events = (events.iter())
        .map(|(event, metadata)| new_event(event, metadata))
        .collect();
    let messages = messages::for_events(order_id, order, &events);
    let saga = saga_change(&events);
    Ok(Decision {
        events,
        new_events,
        messages,
        saga,
    })
}

/// Placing starts the saga (and its deadline); completing or failing settles it.
fn saga_change(events: &[(Event, Metadata)]) -> Saga {
    events
        .iter()
        .fold(Saga::Continues, |saga, (event, _)| match event {
            Event::OrderPlaced { .. } => Saga::Starts,
            Event::OrderCompleted { .. } | Event::OrderFailed { .. } => Saga::Settles,
            _ => saga,
        })
}

/// Runs `command` in a transaction of its own, re-deciding against the new state when another
/// writer got there first. Either both writers' commands apply in some order, or the later one
/// is refused by the rules against the state the earlier one left; never a lost update.
pub async fn execute(
    pool: &PgPool,
    order_id: OrderId,
    command: Command,
    context: &Context,
) -> Result<Executed, CommandError> {
    for _ in 0..ATTEMPTS {
        let mut tx = pool.begin().await?;
        match execute_in(&mut tx, order_id, command.clone(), context).await {
            Ok(executed) => {
                tx.commit().await?;
                return Ok(executed);
            }
            Err(CommandError::Conflict(_)) => {
                tx.rollback().await?;
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(CommandError::Contended)
}

/// `saga_outcomes_total{outcome, reason}` and `saga_duration_seconds{outcome}`. Counted when the
/// event is appended: a consumer batch that rolls back and replays may count an outcome twice,
/// which a rate over minutes absorbs. The duration runs from the order's placement, read from
/// its id (the correlation id of every message of its saga, a UUIDv7 that carries its creation
/// time), to the outcome's time.
pub fn count_outcomes(events: &[(Event, Metadata)]) {
    for (event, metadata) in events {
        let outcome = match event {
            Event::OrderCompleted { .. } => {
                metrics::counter!("saga_outcomes_total", "outcome" => "completed", "reason" => "")
                    .increment(1);
                "completed"
            }
            Event::OrderFailed { reason } => {
                metrics::counter!("saga_outcomes_total", "outcome" => "failed", "reason" => reason.as_str())
                    .increment(1);
                "failed"
            }
            _ => continue,
        };
        if let Some(seconds) = saga_seconds(metadata) {
            metrics::histogram!("saga_duration_seconds", "outcome" => outcome).record(seconds);
        }
    }
}

/// Seconds from the placement of the order `metadata` correlates to the time of `metadata`.
fn saga_seconds(metadata: &Metadata) -> Option<f64> {
    let (seconds, nanos) = metadata.correlation_id.get_timestamp()?.to_unix();
    let placed = DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)?;
    let micros = (metadata.occurred_at - placed).num_microseconds()?;
    // Clocks of two hosts may disagree by a little: never a negative duration.
    Some(micros.max(0) as f64 / 1e6)
}

/// Exports every `saga_outcomes_total` series at 0, so that an alert on its increase sees the
/// first outcome of each kind too.
pub fn export_outcomes() {
    metrics::counter!("saga_outcomes_total", "outcome" => "completed", "reason" => "").increment(0);
    for reason in [
        FailureReason::OutOfStock,
        FailureReason::UnknownProduct,
        FailureReason::PaymentDeclined,
        FailureReason::TimedOut,
    ] {
        metrics::counter!("saga_outcomes_total", "outcome" => "failed", "reason" => reason.as_str())
            .increment(0);
    }
}

fn new_event(event: &Event, metadata: &Metadata) -> NewEvent {
    // Events serialise as {"type", "data"}; the store keeps the type in a column of its own.
    let payload = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(mut tagged)) => tagged.remove("data").unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    NewEvent {
        event_type: event.event_type(),
        schema_version: 1,
        payload,
        metadata: EventMetadata {
            message_id: metadata.message_id,
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            traceparent: metadata.traceparent.clone(),
        },
    }
}

/// Reads an order: its stream folded. `None` for an unknown order.
pub async fn load(
    pool: &PgPool,
    order_id: OrderId,
) -> Result<Option<(Order, Vec<RecordedEvent>)>, CommandError> {
    let stream = event_store::load(pool, order_id.0).await?;
    Ok(view::fold(&stream)?.map(|order| (order, stream)))
}
