//! Dead letters: the records the readers of the system parked in `{prefix}shop.dead-letters`
//! (`messaging::dead_letters`), listed, inspected, redriven and discarded.
//!
//! # Where a letter lives
//!
//! The letters stay in Kafka, where the readers parked them; the console copies none of them.
//! Each call reads the topic on demand (`read`): a consumer that joins no group assigns itself
//! every partition, reads from where the window starts up to the high watermark it took at the
//! start of the call, and stops. A letter is named by its place in the topic, [`LetterId`]
//! (`{partition}-{offset}`), which never changes and never names another record.
//!
//! What became of a letter is the console's: `dead_letter_resolutions` holds one row per letter
//! an operator redrove or discarded (primary key: the letter's partition and offset), and the
//! listing joins it in (`store`). A letter without a row is *waiting*.
//!
//! # Bounded work
//!
//! A call reads at most the newest [`MAX_PER_PARTITION`] letters of each partition: a listing or
//! a bulk action never reads an unbounded topic into memory. What lies before that window is
//! not lost, only not read; [`Listing::unread`] and [`Outcome::unread`] say how many letters
//! that is (the API's `Dead-Letters-Unread` header), and an operator who needs them resolves the
//! newer ones first or reads them with the raw-Kafka tools (docs/operations.md). A listing keeps
//! at most the page it answers (plus a little slack) while it reads, whatever the window holds;
//! a bulk action works in chunks of [`CHUNK`] letters. [`DeadLetters::waiting`] reads no letter
//! at all: it counts offsets from the watermarks and subtracts the resolutions, which is exact
//! because the parkers never write transactionally (no control records, so every offset is a
//! letter) and the topic is not compacted.
//!
//! # Redrive is publish, then record
//!
//! Redriving a letter republishes its original record (same key, payload and headers, minus the
//! three `dead-letter-*` headers, plus `redriven-from: {partition}-{offset}`) to the topic and
//! partition it came from, waits for the broker's acknowledgement, and only then records
//! the resolution and its audit row in one transaction (`ON CONFLICT DO NOTHING`: a letter is
//! recorded once, and an action only counts and audits the rows it inserted).
//!
//! Publishing first is safe because the message keeps its `message-id`. A crash, a failed
//! commit or a lost race between the acknowledgement and the record leaves the letter waiting,
//! so it is offered again, and a second redrive publishes the same message again: every
//! consumer of the origin topic that applied it skips it by its inbox (the services) or its
//! ledger of message ids (the projections), and only a reader that never applied it does. A
//! message that arrives late does no harm either (SYSTEM.md §6): the saga's handlers are
//! revision-guarded, so a redriven `StockReserved` for an order that has failed or moved on
//! captures nothing and only the compensation it calls for happens. Recording first would be
//! the unsafe order: a crash after the commit would mark a letter redriven that never was.
//!
//! A redrive publishes only the letters it found waiting just before publishing (each chunk is
//! checked again against the table), so a letter discarded or redriven earlier is never
//! republished. One that a concurrent action resolves in that instant may go out once more,
//! with the same message id, which the readers absorb as above; it is recorded once.
//!
//! A letter is only redriven to where it came from: its `dead-letter-origin` topic must be one
//! of the system's topics under this deployment's prefix, and not the dead-letter topic itself
//! (a letter with any other origin is counted as refused and stays waiting: discard it). It goes
//! to its origin *partition*, not wherever a partitioner would put its key, so it lands among
//! the other messages of its order whatever partitioner the relays use.
//!
//! A bulk action runs in a task of its own: a client that disconnects or a request that times
//! out (the server's `request_timeout`) does not stop it half-way; its outcome is in the audit
//! trail and the listing.

mod api;
mod read;
mod store;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use contracts::headers as h;
use messaging::dead_letters::Record;
use platform::settings::KafkaSettings;
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

pub use api::{api, openapi};

use read::{Raw, Scan};

/// The most letters read per partition in one call, newest first: 50,000 letters of a few
/// kilobytes each are read in a second or two and never held in memory at once.
pub const MAX_PER_PARTITION: i64 = 50_000;
/// Letters a bulk action publishes and records per transaction.
pub const CHUNK: usize = 500;
/// How long Kafka may take to answer a metadata request, deliver the next letter or acknowledge
/// a redriven one before the call fails.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The dead letters of the system, read from Kafka, with what became of each in the console's
/// database. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The base of the readers' configuration: brokers and security ([`platform::kafka`]).
    client: ClientConfig,
    /// `{prefix}shop.dead-letters`.
    topic: String,
    /// The group id the readers configure and never join (librdkafka's `assign` needs one):
    /// no offset is ever committed under it.
    reader_group: String,
    /// The topics a letter may be redriven to: the system's, under the prefix, but not
    /// [`Inner::topic`].
    origins: Vec<String>,
    /// Metadata and watermarks only; each read assigns a consumer of its own.
    metadata: Arc<BaseConsumer>,
    producer: FutureProducer,
}

impl DeadLetters {
    /// Creates the Kafka clients (they connect on first use) for the deployment's prefix.
    pub fn new(kafka: &KafkaSettings, pool: PgPool) -> anyhow::Result<Self> {
        let prefix = &kafka.topic_prefix;
        let topic = format!("{prefix}{}", contracts::topics::DEAD_LETTERS);
        let origins = (messaging::topics::ALL.iter())
            .filter(|name| **name != contracts::topics::DEAD_LETTERS)
            .map(|name| format!("{prefix}{name}"))
            .collect();
        let metadata: BaseConsumer = platform::kafka::client_config(kafka).create()?;
        let producer: FutureProducer = platform::kafka::client_config(kafka)
            // In order and without duplicates per partition: letters of one order are
            // republished in the order they were parked.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            // A redrive is an operator's request: it fails within seconds rather than waiting
            // for a broker that is gone (librdkafka's default is five minutes).
            .set("message.timeout.ms", KAFKA_TIMEOUT.as_millis().to_string())
            .create()?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                client: platform::kafka::client_config(kafka),
                reader_group: format!("{prefix}shop-console-dead-letters"),
                topic,
                origins,
                metadata: Arc::new(metadata),
                producer,
            }),
        })
    }

    /// Newest first (by the time each letter was parked, then by id), at most `filter.limit`,
    /// after the cursor (keyset: the letter `filter.after`, which the previous page ended with).
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Letter>, Error> {
        Ok(self.listing(filter).await?.letters)
    }

    /// [`DeadLetters::list`], and how many older letters the window left unread.
    pub async fn listing(&self, filter: &Filter) -> Result<Listing, Error> {
        let inner = &self.inner;
        let window = inner.window(MAX_PER_PARTITION).await?;
        let unread = window.unread();
        let empty = Listing {
            letters: Vec::new(),
            unread,
        };
        if filter.limit == 0 {
            return Ok(empty);
        }
        let after = match filter.after {
            None => None,
            // A cursor that names no letter any more (gone with retention) had only older
            // letters after it, and those are gone too.
            Some(id) => match inner.read_at(id).await? {
                Some(raw) => Some(raw.sort_key()),
                None => return Ok(empty),
            },
        };
        let resolutions = store::resolutions_in(&inner.pool, &window).await?;
        let mut kept: Vec<Raw> = Vec::new();
        let mut scan = Scan::start(inner, &window.ranges())?;
        while let Some(raw) = scan.next().await? {
            if !filter.state.admits(resolutions.get(&raw.id()))
                || !filter.admits(&raw)
                || after.is_some_and(|after| raw.sort_key() >= after)
            {
                continue;
            }
            kept.push(raw);
            if kept.len() >= filter.limit.saturating_mul(2).saturating_add(64) {
                newest_first(&mut kept, filter.limit);
            }
        }
        newest_first(&mut kept, filter.limit);
        let letters = kept
            .iter()
            .map(|raw| raw.letter(resolutions.get(&raw.id()).cloned()))
            .collect();
        Ok(Listing { letters, unread })
    }

    /// One letter, with what became of it; `None` when the topic holds no such record (never
    /// parked, or gone with retention).
    pub async fn get(&self, id: LetterId) -> Result<Option<Letter>, Error> {
        let Some(raw) = self.inner.read_at(id).await? else {
            return Ok(None);
        };
        let resolution = store::resolution_of(&self.inner.pool, id).await?;
        Ok(Some(raw.letter(resolution)))
    }

    /// Counts only when `dry_run`; else republishes each selected waiting letter to its origin
    /// and records it (module docs). `matched` counts the waiting letters selected (a resolved
    /// one is skipped); `refused` those whose origin cannot be redriven. A single letter
    /// that does not exist is [`Error::NotFound`], one whose origin is refused
    /// [`Error::NotRedrivable`] (dry run or not).
    pub async fn redrive(
        &self,
        selection: &Selection,
        dry_run: bool,
        actor: &str,
    ) -> Result<Outcome, Error> {
        self.act(selection, Action::Redrive, dry_run, actor).await
    }

    /// Counts only when `dry_run`; else records each selected waiting letter as discarded (and
    /// audits it). The letter stays in Kafka until retention removes it.
    pub async fn discard(
        &self,
        selection: &Selection,
        dry_run: bool,
        actor: &str,
    ) -> Result<Outcome, Error> {
        self.act(selection, Action::Discard, dry_run, actor).await
    }

    /// Letters still waiting (neither redriven nor discarded) in the whole topic, for the
    /// overview. Reads no letter: offsets from the watermarks, minus the resolutions.
    pub async fn waiting(&self) -> Result<u64, Error> {
        let window = self.inner.window(i64::MAX).await?;
        let resolved = store::count_resolved(&self.inner.pool, &window).await?;
        Ok(window.letters().saturating_sub(resolved))
    }

    /// [`DeadLetters::redrive`] or [`DeadLetters::discard`], as `action` says: for callers
    /// that take the action as data (the API's handlers, the pages' forms).
    pub(crate) async fn act(
        &self,
        selection: &Selection,
        action: Action,
        dry_run: bool,
        actor: &str,
    ) -> Result<Outcome, Error> {
        let inner = self.inner.clone();
        let selection = selection.clone();
        let actor = actor.to_owned();
        // A task of its own, so that the action finishes whatever becomes of the request.
        tokio::spawn(async move {
            match selection {
                Selection::One(id) => inner.act_on_one(id, action, dry_run, &actor).await,
                Selection::Matching(filter) => {
                    inner
                        .act_on_matching(&filter, action, dry_run, &actor)
                        .await
                }
            }
        })
        .await
        .map_err(|e| Error::Interrupted(e.to_string()))?
    }
}

/// Keeps the `limit` newest of `letters`, newest first.
fn newest_first(letters: &mut Vec<Raw>, limit: usize) {
    letters.sort_unstable_by_key(|raw| std::cmp::Reverse(raw.sort_key()));
    letters.truncate(limit);
}

/// What an operator does with waiting letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Redrive,
    Discard,
}

impl Action {
    /// The verb, as the console's paths and buttons say it.
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Action::Redrive => "redrive",
            Action::Discard => "discard",
        }
    }

    fn kind(self) -> ResolutionKind {
        match self {
            Action::Redrive => ResolutionKind::Redriven,
            Action::Discard => ResolutionKind::Discarded,
        }
    }

    /// The audit trail's action.
    fn audit_name(self) -> &'static str {
        match self {
            Action::Redrive => "dead-letter.redrive",
            Action::Discard => "dead-letter.discard",
        }
    }
}

impl Inner {
    async fn act_on_one(
        &self,
        id: LetterId,
        action: Action,
        dry_run: bool,
        actor: &str,
    ) -> Result<Outcome, Error> {
        let Some(raw) = self.read_at(id).await? else {
            return Err(Error::NotFound(id));
        };
        let mut outcome = Outcome {
            matched: 0,
            done: 0,
            refused: 0,
            unread: 0,
            dry_run,
        };
        if store::resolution_of(&self.pool, id).await?.is_some() {
            return Ok(outcome);
        }
        if action == Action::Redrive {
            self.target(&raw)
                .map_err(|why| Error::NotRedrivable { id, why })?;
        }
        outcome.matched = 1;
        if !dry_run {
            outcome.done = self.apply(vec![raw], action, actor).await?;
        }
        Ok(outcome)
    }

    async fn act_on_matching(
        &self,
        filter: &Filter,
        action: Action,
        dry_run: bool,
        actor: &str,
    ) -> Result<Outcome, Error> {
        let window = self.window(MAX_PER_PARTITION).await?;
        let resolutions = store::resolutions_in(&self.pool, &window).await?;
        let mut outcome = Outcome {
            matched: 0,
            done: 0,
            refused: 0,
            unread: window.unread(),
            dry_run,
        };
        let mut chunk = Vec::new();
        let mut scan = Scan::start(self, &window.ranges())?;
        while let Some(raw) = scan.next().await? {
            if resolutions.contains_key(&raw.id()) || !filter.admits(&raw) {
                continue;
            }
            outcome.matched += 1;
            if action == Action::Redrive && self.target(&raw).is_err() {
                outcome.refused += 1;
                continue;
            }
            if dry_run {
                continue;
            }
            chunk.push(raw);
            if chunk.len() >= CHUNK {
                outcome.done += self
                    .apply(std::mem::take(&mut chunk), action, actor)
                    .await?;
            }
        }
        if !chunk.is_empty() {
            outcome.done += self.apply(chunk, action, actor).await?;
        }
        Ok(outcome)
    }

    /// Resolves `letters` (waiting when they were read; each redrivable for a redrive): the ones
    /// resolved meanwhile are dropped, the others published (for a redrive) and recorded. The
    /// number recorded.
    async fn apply(&self, letters: Vec<Raw>, action: Action, actor: &str) -> Result<u64, Error> {
        let ids: Vec<LetterId> = letters.iter().map(Raw::id).collect();
        let resolved = store::resolved_among(&self.pool, &ids).await?;
        let letters: Vec<Raw> = letters
            .into_iter()
            .filter(|raw| !resolved.contains(&raw.id()))
            .collect();
        let (acked, failure) = match action {
            Action::Discard => (
                letters.iter().map(|raw| (raw, None)).collect::<Vec<_>>(),
                None,
            ),
            Action::Redrive => self.publish(&letters).await,
        };
        let done = store::record(&self.pool, &acked, action, actor).await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(done),
        }
    }

    /// Republishes `letters` in their order and waits for every acknowledgement: the ones the
    /// broker took with where they went, and the first failure if any.
    async fn publish<'a>(
        &self,
        letters: &'a [Raw],
    ) -> (Vec<(&'a Raw, Option<String>)>, Option<Error>) {
        let mut sends = Vec::with_capacity(letters.len());
        for raw in letters {
            // Every letter here passed `target` when it was selected.
            let Ok(target) = self.target(raw) else {
                continue;
            };
            sends.push(async move {
                let record = &raw.record;
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
                for (key, value) in &record.headers {
                    if !DEAD_LETTER_HEADERS.contains(&key.as_str()) {
                        headers = headers.insert(Header {
                            key: key.as_str(),
                            value: value.as_deref(),
                        });
                    }
                }
                let from = raw.id().to_string();
                let headers = headers.insert(Header {
                    key: h::REDRIVEN_FROM,
                    value: Some(from.as_bytes()),
                });
                let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(target.topic)
                    .partition(target.partition)
                    .headers(headers);
                if let Some(key) = &record.key {
                    out = out.key(key.as_slice());
                }
                if let Some(payload) = &record.payload {
                    out = out.payload(payload.as_slice());
                }
                let sent = self.producer.send(out, KAFKA_TIMEOUT).await;
                let sent = sent.map(|delivery| {
                    format!(
                        "{}/{}/{}",
                        target.topic, delivery.partition, delivery.offset
                    )
                });
                (raw, sent.map_err(|(error, _)| error))
            });
        }
        // Polled in order, so enqueued in order: the idempotent producer keeps that order per
        // partition.
        let mut acked = Vec::with_capacity(sends.len());
        let mut failure = None;
        for (raw, sent) in futures::future::join_all(sends).await {
            match sent {
                Ok(position) => acked.push((raw, Some(position))),
                Err(error) => {
                    tracing::warn!(letter = %raw.id(), error = %error, "redriving a dead letter failed");
                    failure.get_or_insert(Error::Kafka(error));
                }
            }
        }
        (acked, failure)
    }

    /// Where a letter may be redriven: its origin topic and partition, if the topic is one of
    /// the system's other topics.
    fn target(&self, raw: &Raw) -> Result<Target<'_>, String> {
        let origin = raw
            .header(h::DEAD_LETTER_ORIGIN)
            .ok_or_else(|| format!("it has no {} header", h::DEAD_LETTER_ORIGIN))?;
        let mut parts = origin.rsplitn(3, '/');
        let (Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "its origin {origin:?} is not topic/partition/offset"
            ));
        };
        let (Ok(partition), Ok(_)) = (partition.parse::<i32>(), offset.parse::<i64>()) else {
            return Err(format!(
                "its origin {origin:?} is not topic/partition/offset"
            ));
        };
        let Some(topic) = self.origins.iter().find(|t| *t == topic) else {
            return Err(format!(
                "its origin topic {topic:?} is not one of the system's topics ({})",
                self.origins.join(", ")
            ));
        };
        if partition < 0 {
            return Err(format!("its origin {origin:?} names no partition"));
        }
        Ok(Target { topic, partition })
    }
}

/// The three headers parking adds, which a redrive takes off again.
const DEAD_LETTER_HEADERS: [&str; 3] = [
    h::DEAD_LETTER_REASON,
    h::DEAD_LETTER_CONSUMER,
    h::DEAD_LETTER_ORIGIN,
];

struct Target<'a> {
    topic: &'a str,
    partition: i32,
}

/// A letter's place in the dead-letter topic, its name: `{partition}-{offset}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LetterId {
    pub partition: i32,
    pub offset: i64,
}

/// The pattern of a [`LetterId`]'s text, as the API documents it: no sign, no leading zero, a
/// partition below 10^9 and an offset below 10^18, so every text it admits parses.
pub const LETTER_ID_PATTERN: &str = r"^(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,17})$";

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.partition, self.offset)
    }
}

/// A text that is not `{partition}-{offset}` ([`LETTER_ID_PATTERN`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a letter id is {{partition}}-{{offset}}, e.g. 0-12")]
pub struct NotALetterId;

impl FromStr for LetterId {
    type Err = NotALetterId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        fn number(text: &str, max_digits: usize) -> Option<&str> {
            let digits = (1..=max_digits).contains(&text.len())
                && text.bytes().all(|b| b.is_ascii_digit())
                && (text == "0" || !text.starts_with('0'));
            digits.then_some(text)
        }
        let (partition, offset) = text.split_once('-').ok_or(NotALetterId)?;
        let partition = number(partition, 9).and_then(|p| p.parse().ok());
        let offset = number(offset, 18).and_then(|o| o.parse().ok());
        match (partition, offset) {
            (Some(partition), Some(offset)) => Ok(LetterId { partition, offset }),
            _ => Err(NotALetterId),
        }
    }
}

impl Serialize for LetterId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LetterId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which letters a listing or a bulk action selects. Text filters are exact, except `reason`
/// (a substring, case-insensitive); `since` is inclusive and `until` exclusive, on the time the
/// letter was parked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Filter {
    /// The reader that parked it (`dead-letter-consumer`).
    pub consumer: Option<String>,
    /// The `message-type` header.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    /// A substring of `dead-letter-reason`, case-insensitive.
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Listings only: a bulk action always acts on waiting letters.
    pub state: State,
    /// Listings only.
    pub limit: usize,
    /// Listings only: the page starts after this letter.
    pub after: Option<LetterId>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            consumer: None,
            message_type: None,
            reason: None,
            since: None,
            until: None,
            state: State::Waiting,
            limit: platform::pagination::DEFAULT_LIMIT as usize,
            after: None,
        }
    }
}

impl Filter {
    /// Whether the letter matches the filters on what it carries (not its state).
    fn admits(&self, raw: &Raw) -> bool {
        let exact = |wanted: &Option<String>, name: &str| {
            wanted
                .as_deref()
                .is_none_or(|wanted| raw.header(name).as_deref() == Some(wanted))
        };
        exact(&self.consumer, h::DEAD_LETTER_CONSUMER)
            && exact(&self.message_type, h::MESSAGE_TYPE)
            && self.reason.as_deref().is_none_or(|wanted| {
                raw.header(h::DEAD_LETTER_REASON)
                    .is_some_and(|reason| reason.to_lowercase().contains(&wanted.to_lowercase()))
            })
            && self.since.is_none_or(|since| raw.parked_at >= since)
            && self.until.is_none_or(|until| raw.parked_at < until)
    }
}

/// What became of a letter, as a listing selects it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetterState)]
pub enum State {
    /// Neither redriven nor discarded.
    #[default]
    Waiting,
    Redriven,
    Discarded,
    All,
}

impl State {
    fn admits(self, resolution: Option<&Resolution>) -> bool {
        match (self, resolution) {
            (State::All, _) | (State::Waiting, None) => true,
            (State::Redriven, Some(r)) => r.kind == ResolutionKind::Redriven,
            (State::Discarded, Some(r)) => r.kind == ResolutionKind::Discarded,
            _ => false,
        }
    }
}

/// The letters an action applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Selection {
    One(LetterId),
    /// Every waiting letter the filter matches (its `state`, `limit` and `after` are ignored).
    Matching(Filter),
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetter)]
pub struct Letter {
    #[schema(value_type = String, pattern = r"^(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,17})$", example = "0-12")]
    pub id: LetterId,
    /// When it was parked: the record's timestamp in the dead-letter topic.
    pub parked_at: DateTime<Utc>,
    /// The reader that parked it (`dead-letter-consumer`): `order`, `stock`, `payment`,
    /// `projections-redis` or `projections-mongodb`.
    pub consumer: String,
    /// Why (`dead-letter-reason`).
    pub reason: String,
    /// Where it was read from (`dead-letter-origin`): `topic/partition/offset`, the topic with
    /// the deployment's prefix.
    pub origin: String,
    /// The `message-type` header, when the record has one.
    pub message_type: Option<String>,
    /// The `message-id` header, when the record has one.
    pub message_id: Option<String>,
    /// The record's key (the order id, or the product id on the catalog topic); bytes that are
    /// not UTF-8 are replaced by U+FFFD.
    pub key: Option<String>,
    /// Every header of the record, in order, the `dead-letter-*` ones included, as `{name,
    /// value}`; values that are not UTF-8 are shown with U+FFFD (a redrive republishes the
    /// original bytes).
    #[serde(with = "header_list")]
    #[schema(value_type = Vec<LetterHeader>)]
    pub headers: Vec<(String, Option<String>)>,
    pub payload: Payload,
    /// What an operator did with it; `null` while it waits.
    pub resolution: Option<Resolution>,
}

/// A header of a letter as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DeadLetterHeader)]
pub struct LetterHeader {
    pub name: String,
    /// `null` when the header has no value.
    pub value: Option<String>,
}

/// [`Letter::headers`] as a list of [`LetterHeader`] objects: a name and a value that may be
/// absent do not fit a JSON array of strings.
mod header_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::LetterHeader;

    #[derive(Serialize)]
    struct Borrowed<'a> {
        name: &'a str,
        value: Option<&'a str>,
    }

    pub fn serialize<S: Serializer>(
        headers: &[(String, Option<String>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(headers.iter().map(|(name, value)| Borrowed {
            name,
            value: value.as_deref(),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, Option<String>)>, D::Error> {
        let headers = Vec::<LetterHeader>::deserialize(deserializer)?;
        Ok(headers.into_iter().map(|h| (h.name, h.value)).collect())
    }
}

/// A record's payload as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", tag = "encoding", content = "data")]
#[schema(as = DeadLetterPayload)]
pub enum Payload {
    /// The payload is UTF-8 text (a JSON message, usually).
    Text(String),
    /// The payload is not UTF-8: its bytes in standard base64.
    Base64(String),
    /// The record has no payload at all (null, which is not the empty text).
    Absent,
}

impl Payload {
    fn of(bytes: Option<&[u8]>) -> Self {
        match bytes {
            None => Payload::Absent,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Payload::Text(text.to_owned()),
                Err(_) => Payload::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }
}

/// What an operator did with a letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetterResolution)]
pub struct Resolution {
    pub kind: ResolutionKind,
    /// Who: the token's `sub`.
    pub actor: String,
    pub at: DateTime<Utc>,
    /// Where the redriven record went: `topic/partition/offset`; `null` for a discard.
    pub redriven_to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetterResolutionKind)]
pub enum ResolutionKind {
    Redriven,
    Discarded,
}

impl ResolutionKind {
    fn name(self) -> &'static str {
        match self {
            ResolutionKind::Redriven => "redriven",
            ResolutionKind::Discarded => "discarded",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "redriven" => Some(ResolutionKind::Redriven),
            "discarded" => Some(ResolutionKind::Discarded),
            _ => None,
        }
    }
}

/// A page of letters, and how many older letters the window did not read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub letters: Vec<Letter>,
    /// Letters older than the newest [`MAX_PER_PARTITION`] of their partition: not read, so not
    /// listed (0 when the window held the whole topic).
    pub unread: u64,
}

/// What an action did, or would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetterOutcome)]
pub struct Outcome {
    /// Waiting letters selected.
    pub matched: u64,
    /// Letters redriven or discarded by this call: 0 for a dry run; fewer than `matched - refused`
    /// when some were resolved by someone else meanwhile.
    pub done: u64,
    /// Selected letters a redrive may not republish (their origin is not one of the system's
    /// topics); they stay waiting. Always 0 for a discard.
    pub refused: u64,
    /// Letters older than the newest [`MAX_PER_PARTITION`] of their partition, not considered.
    pub unread: u64,
    pub dry_run: bool,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no dead letter {0}")]
    NotFound(LetterId),
    #[error("dead letter {id} cannot be redriven: {why}")]
    NotRedrivable { id: LetterId, why: String },
    #[error("Kafka failed")]
    Kafka(#[from] KafkaError),
    #[error("Kafka did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the console's database failed")]
    Database(#[from] sqlx::Error),
    #[error("the action's task ended early: {0}")]
    Interrupted(String),
}

impl Raw {
    fn letter(&self, resolution: Option<Resolution>) -> Letter {
        let record: &Record = &self.record;
        let text = |name: &str| self.header(name).map(Cow::into_owned);
        Letter {
            id: self.id(),
            parked_at: self.parked_at,
            consumer: text(h::DEAD_LETTER_CONSUMER).unwrap_or_default(),
            reason: text(h::DEAD_LETTER_REASON).unwrap_or_default(),
            origin: text(h::DEAD_LETTER_ORIGIN).unwrap_or_default(),
            message_type: text(h::MESSAGE_TYPE),
            message_id: text(h::MESSAGE_ID),
            key: (record.key.as_deref()).map(|k| String::from_utf8_lossy(k).into_owned()),
            headers: (record.headers.iter())
                .map(|(k, v)| {
                    let value = v
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    (k.clone(), value)
                })
                .collect(),
            payload: Payload::of(record.payload.as_deref()),
            resolution,
        }
    }
}

/// Resolutions by letter, as [`store`] reads them.
type Resolutions = HashMap<LetterId, Resolution>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_id_reads_back_what_it_prints_and_nothing_else() {
        let id = LetterId {
            partition: 1,
            offset: 42,
        };
        assert_eq!(id.to_string(), "1-42");
        assert_eq!("1-42".parse::<LetterId>(), Ok(id));
        assert_eq!(
            "0-0".parse::<LetterId>(),
            Ok(LetterId {
                partition: 0,
                offset: 0
            })
        );
        assert!("999999999-999999999999999999".parse::<LetterId>().is_ok());
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "-1-2",
            "01-2",
            "1-02",
            "1-+2",
            "1--2",
            "a-1",
            "1-2-3",
            "1000000000-1",
            "1-1000000000000000000",
            " 1-2",
        ] {
            assert_eq!(bad.parse::<LetterId>(), Err(NotALetterId), "{bad:?}");
        }
    }

    #[test]
    fn a_payload_is_text_when_it_is_utf8_and_base64_otherwise() {
        assert_eq!(Payload::of(Some(b"{}")), Payload::Text("{}".to_owned()));
        assert_eq!(
            Payload::of(Some(&[0xff, 0x00, 0x01])),
            Payload::Base64("/wAB".to_owned())
        );
        assert_eq!(Payload::of(None), Payload::Absent);
        assert_eq!(
            serde_json::to_value(Payload::Text("x".to_owned())).ok(),
            Some(serde_json::json!({"encoding": "text", "data": "x"}))
        );
    }

    #[test]
    fn a_state_admits_the_letters_with_its_resolution() {
        let resolution = |kind| Resolution {
            kind,
            actor: "ops".to_owned(),
            at: DateTime::<Utc>::UNIX_EPOCH,
            redriven_to: None,
        };
        let redriven = resolution(ResolutionKind::Redriven);
        let discarded = resolution(ResolutionKind::Discarded);
        assert!(State::Waiting.admits(None));
        assert!(!State::Waiting.admits(Some(&redriven)));
        assert!(State::Redriven.admits(Some(&redriven)));
        assert!(!State::Redriven.admits(Some(&discarded)));
        assert!(!State::Redriven.admits(None));
        assert!(State::Discarded.admits(Some(&discarded)));
        assert!(State::All.admits(None) && State::All.admits(Some(&discarded)));
    }
}
