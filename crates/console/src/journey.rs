//! An order's journey (`/console/orders/{orderId}`, `GET /api/ops/orders/{orderId}/journey`):
//! one timeline across the services, built from what each really recorded.
//!
//! - **The order's events**, from the order service (its own API, with the caller's token).
//! - **Every message of the order on every topic**, from Kafka itself: all messages of an order
//!   are keyed by its id, so each topic is read from the time the order was placed (its id is a
//!   UUIDv7 and carries that time; `offsets_for_times` finds where to start) to its end, keeping
//!   the records of that key, with their partition, offset and headers (message id, causation,
//!   `traceparent`). The read is bounded ([`BUDGET`] records per partition); past it the
//!   journey says it is cut short.
//! - **When each consumer applied each message**: the services' inbox rows, asked of each
//!   service by message id (`messaging::ops`); the read models commit offsets rather than keep
//!   an inbox, so for them the journey says whether their group's committed offset passed the
//!   message.
//!
//! Linked by message and causation ids (each message names the one that caused it), with the
//! trace id of the `traceparent`. For a pending order the journey says which hop it waits on:
//! the consumers that have not applied its latest message, or, when all have, the answer that is
//! not on Kafka yet (the answering service's outbox and relay).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::headers as h;
use contracts::topics;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::Console;
use crate::lag::GROUPS;

/// Message types a service's consumer reads past without applying them (its handler's
/// `ignores`): no inbox row is to be expected for them. `crates/shop`'s boundary tests compare
/// this with the handlers.
pub const IGNORED: &[(&str, &str)] = &[
    ("order", "StockReserved"),
    ("order", "StockReleased"),
    ("stock", "PaymentCaptured"),
];

/// The most records read from one partition for one journey.
pub const BUDGET: usize = 200_000;
/// How long the Kafka part of a journey may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// The topics an order's saga writes to, and the service that writes each.
const SAGA_TOPICS: [(&str, &str); 3] = [
    (topics::ORDERS, "order"),
    (topics::STOCK, "stock"),
    (topics::PAYMENTS, "payment"),
];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Journey {
    pub order_id: Uuid,
    /// From the order id (a UUIDv7).
    pub placed_at: Option<DateTime<Utc>>,
    /// The order as the order service shows it; `None` if it could not be read.
    #[schema(value_type = Option<Object>)]
    pub order: Option<Value>,
    /// The trace of the order's saga (W3C trace id), from its messages' `traceparent`.
    pub trace_id: Option<String>,
    /// Everything recorded, oldest first.
    pub steps: Vec<Step>,
    /// For a pending order: the hop it waits on, in words.
    pub waiting_on: Option<String>,
    /// The Kafka read stopped at its budget before a partition's end.
    pub truncated: bool,
    /// Each read model, and whether its group's committed offset has passed every message of
    /// the order on `shop.orders` (the read models commit offsets rather than keep an inbox).
    pub read_models: Vec<ReadModel>,
    /// What could not be read.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadModel {
    pub group: String,
    pub projected: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub at: DateTime<Utc>,
    pub kind: StepKind,
    /// The service (or read model) that did it.
    pub by: String,
    /// The event or message type.
    pub what: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub message_id: Option<String>,
    pub causation_id: Option<String>,
    /// Headers of a message; the data of an event.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// An event appended to the order's stream.
    Event,
    /// A message on a topic.
    Message,
    /// A consumer applied a message.
    Applied,
}

/// A message of the order read from Kafka.
#[derive(Debug, Clone)]
struct Found {
    topic: String,
    partition: i32,
    offset: i64,
    at: DateTime<Utc>,
    headers: Vec<(String, String)>,
}

impl Found {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The journey of `order_id`, read with the caller's `authorization`.
pub async fn journey(console: &Console, authorization: &str, order_id: Uuid) -> Journey {
    let placed_at = order_id.get_timestamp().and_then(|t| {
        let (seconds, nanos) = t.to_unix();
        DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
    });
    let mut problems = Vec::new();
    let base = format!("/api/orders/{order_id}");
    let events_path = format!("{base}/events?limit=1000");
    let kafka = read_kafka(console, order_id, placed_at);
    let (order, events, found) = tokio::join!(
        crate::upstream::get(console, authorization, "order", &base),
        crate::upstream::get(console, authorization, "order", &events_path),
        kafka,
    );
    let order = order
        .map_err(|e| problems.push(format!("the order: {e}")))
        .ok();
    let mut steps = Vec::new();
    match events {
        Ok(Value::Array(events)) => steps.extend(events.iter().filter_map(event_step)),
        Ok(_) => {}
        Err(e) => problems.push(format!("the order's events: {e}")),
    }
    let (found, truncated) = found.unwrap_or_else(|e| {
        problems.push(format!("the order's messages on Kafka: {e}"));
        (Vec::new(), false)
    });
    let applied = applied(console, authorization, &found, &mut problems).await;
    let projected = projected(console, &found).await;
    let trace_id = found
        .iter()
        .find_map(|m| m.header(h::TRACEPARENT))
        .and_then(|tp| tp.split('-').nth(1))
        .map(str::to_owned);
    for message in &found {
        steps.push(Step {
            at: message.at,
            kind: StepKind::Message,
            by: publisher(&message.topic).to_owned(),
            what: message.header(h::MESSAGE_TYPE).unwrap_or("?").to_owned(),
            topic: Some(message.topic.clone()),
            partition: Some(message.partition),
            offset: Some(message.offset),
            message_id: message.header(h::MESSAGE_ID).map(str::to_owned),
            causation_id: message.header(h::CAUSATION_ID).map(str::to_owned),
            detail: Some(
                message
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        });
    }
    for (message_id, consumer, at) in &applied {
        let what = found
            .iter()
            .find(|m| m.header(h::MESSAGE_ID) == Some(message_id.as_str()))
            .and_then(|m| m.header(h::MESSAGE_TYPE))
            .unwrap_or("?");
        steps.push(Step {
            at: *at,
            kind: StepKind::Applied,
            by: consumer.clone(),
            what: what.to_owned(),
            topic: None,
            partition: None,
            offset: None,
            message_id: Some(message_id.clone()),
            causation_id: None,
            detail: None,
        });
    }
    steps.sort_by_key(|s| s.at);
    let pending = order
        .as_ref()
        .and_then(|o| o.get("status"))
        .and_then(Value::as_str)
        == Some("pending");
    let waiting_on = pending.then(|| waiting_on(&found, &applied));
    Journey {
        order_id,
        placed_at,
        order,
        trace_id,
        steps,
        waiting_on,
        truncated,
        read_models: projected
            .into_iter()
            .map(|(group, behind)| ReadModel {
                group,
                projected: !behind,
            })
            .collect(),
        problems,
    }
}

fn event_step(event: &Value) -> Option<Step> {
    let at = event
        .get("recordedAt")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())?
        .with_timezone(&Utc);
    Some(Step {
        at,
        kind: StepKind::Event,
        by: "order".to_owned(),
        what: event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        topic: None,
        partition: None,
        offset: None,
        message_id: None,
        causation_id: None,
        detail: event.get("data").map(Value::to_string),
    })
}

fn publisher(topic: &str) -> &'static str {
    SAGA_TOPICS
        .iter()
        .find(|(t, _)| *t == topic)
        .map_or("?", |(_, service)| service)
}

/// The services (not the read models) that apply messages of type `kind` on `topic`.
fn consumers(topic: &str, kind: &str) -> Vec<&'static str> {
    GROUPS
        .iter()
        .filter(|(group, topics)| !group.starts_with("projections") && topics.contains(&topic))
        .map(|(group, _)| *group)
        .filter(|group| !IGNORED.contains(&(*group, kind)))
        .collect()
}

/// What a pending order waits on, from its latest message and who applied it.
fn waiting_on(found: &[Found], applied: &[(String, String, DateTime<Utc>)]) -> String {
    let Some(last) = found.last() else {
        return "OrderPlaced is not on Kafka yet: look at the order service's outbox and relay"
            .to_owned();
    };
    let kind = last.header(h::MESSAGE_TYPE).unwrap_or("?");
    let id = last.header(h::MESSAGE_ID).unwrap_or_default();
    let missing: Vec<&str> = consumers(&last.topic, kind)
        .into_iter()
        .filter(|consumer| {
            !applied
                .iter()
                .any(|(message, by, _)| message == id && by == consumer)
        })
        .collect();
    let place = format!("{}/{}/{}", last.topic, last.partition, last.offset);
    if missing.is_empty() {
        format!(
            "every consumer applied {kind} ({place}); the answer to it is not on Kafka yet: look \
             at the answering service's outbox and relay"
        )
    } else {
        format!(
            "{} has not applied {kind} ({place}): look at its consumer lag, its logs and the dead \
             letters",
            missing.join(" and ")
        )
    }
}

/// `(message id, consumer, when)` of every message of `found` a service applied.
async fn applied(
    console: &Console,
    authorization: &str,
    found: &[Found],
    problems: &mut Vec<String>,
) -> Vec<(String, String, DateTime<Utc>)> {
    let ids: Vec<&str> = found
        .iter()
        .filter_map(|m| m.header(h::MESSAGE_ID))
        .take(messaging::ops::MAX_IDS)
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let ids = ids.join(",");
    let asks = ["order", "stock", "payment"].map(|service| {
        let path = format!("/api/ops/inbox?messageIds={ids}");
        async move {
            (
                service,
                crate::upstream::get(console, authorization, service, &path).await,
            )
        }
    });
    let [a, b, c] = asks;
    let (a, b, c) = tokio::join!(a, b, c);
    let mut applied = Vec::new();
    for (service, answer) in [a, b, c] {
        match answer.map(serde_json::from_value::<Vec<messaging::ops::Applied>>) {
            Ok(Ok(rows)) => applied.extend(
                rows.into_iter()
                    .map(|r| (r.message_id.to_string(), r.consumer, r.processed_at)),
            ),
            Ok(Err(e)) => problems.push(format!("the {service} service's inbox: {e}")),
            Err(e) => problems.push(format!("the {service} service's inbox: {e}")),
        }
    }
    applied
}

/// For each read model: whether its group's committed offset is still behind a message of the
/// order on `shop.orders`.
async fn projected(console: &Console, found: &[Found]) -> Vec<(String, bool)> {
    let Ok(lags) = console.lag().read().await else {
        return Vec::new();
    };
    ["projections-redis", "projections-mongodb"]
        .into_iter()
        .map(|group| {
            let behind = found.iter().filter(|m| m.topic == topics::ORDERS).any(|m| {
                lags.iter().any(|l| {
                    l.group == group
                        && l.topic == m.topic
                        && l.partition == m.partition
                        && l.committed.unwrap_or(0) <= m.offset
                })
            });
            (group.to_owned(), behind)
        })
        .collect()
}

/// The records keyed `order_id` on the saga's topics, from the order's placement on; and
/// whether a partition's budget ran out first.
async fn read_kafka(
    console: &Console,
    order_id: Uuid,
    placed_at: Option<DateTime<Utc>>,
) -> anyhow::Result<(Vec<Found>, bool)> {
    let kafka = console.settings().kafka.clone();
    let key = order_id.to_string();
    // A second of slack: the clocks of the order service and the broker may differ a little.
    let since = placed_at.map_or(0, |t| t.timestamp_millis().saturating_sub(1000));
    tokio::task::spawn_blocking(move || read_kafka_blocking(&kafka, &key, since)).await?
}

fn read_kafka_blocking(
    kafka: &platform::settings::KafkaSettings,
    key: &str,
    since_millis: i64,
) -> anyhow::Result<(Vec<Found>, bool)> {
    let consumer: BaseConsumer = platform::kafka::client_config(kafka)
        // An assignment needs a group; this one never joins it nor commits.
        .set(
            "group.id",
            format!("{}console-journey-reader", kafka.topic_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let mut wanted = TopicPartitionList::new();
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, _) in SAGA_TOPICS {
        let name = format!("{}{topic}", kafka.topic_prefix);
        let metadata = consumer.fetch_metadata(Some(&name), KAFKA_TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = consumer.fetch_watermarks(&name, p.id(), KAFKA_TIMEOUT)?;
                ends.insert((name.clone(), p.id()), high);
                wanted.add_partition_offset(&name, p.id(), Offset::Offset(since_millis))?;
            }
        }
    }
    let starts = consumer.offsets_for_times(wanted, KAFKA_TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<(String, i32), (i64, usize)> = HashMap::new();
    for element in starts.elements() {
        let topic = element.topic().to_owned();
        let end = ends
            .get(&(topic.clone(), element.partition()))
            .copied()
            .unwrap_or(0);
        // No record at or after the time: nothing of the order on this partition.
        let Offset::Offset(start) = element.offset() else {
            continue;
        };
        if start >= end {
            continue;
        }
        assignment.add_partition_offset(&topic, element.partition(), Offset::Offset(start))?;
        remaining.insert((topic, element.partition()), (end, BUDGET));
    }
    let mut found = Vec::new();
    let mut truncated = false;
    if remaining.is_empty() {
        return Ok((found, truncated));
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + KAFKA_TIMEOUT;
    while !remaining.is_empty() {
        if std::time::Instant::now() >= deadline {
            truncated = true;
            break;
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let place = (message.topic().to_owned(), message.partition());
        let Some((end, budget)) = remaining.get_mut(&place) else {
            continue;
        };
        *budget = budget.saturating_sub(1);
        let done = message.offset() + 1 >= *end;
        let spent = *budget == 0;
        if message.key() == Some(key.as_bytes()) {
            let millis = match message.timestamp() {
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
                Timestamp::NotAvailable => 0,
            };
            let headers = message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|hd| {
                            (
                                hd.key.to_owned(),
                                String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            found.push(Found {
                topic: message
                    .topic()
                    .strip_prefix(&kafka.topic_prefix)
                    .unwrap_or(message.topic())
                    .to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                at: DateTime::from_timestamp_millis(millis).unwrap_or_default(),
                headers,
            });
        }
        if done || spent {
            truncated |= spent && !done;
            remaining.remove(&place);
        }
    }
    found.sort_by(|a, b| a.at.cmp(&b.at).then(a.offset.cmp(&b.offset)));
    Ok((found, truncated))
}
