//! The orders report in MongoDB: how many orders completed and how many failed.
//!
//! Collections of one generation `G` (see the crate docs for the effectively-once argument):
//!
//! - `order_counters_G` — one document per writer: `_id` is the Kafka partition (`"-1"` for a
//!   rebuild), with `completed`, `failed` and `offset`, the last offset it counted. Exactly one
//!   writer updates a document, with an `$inc` guarded by the offset it read.
//! - `order_ledger_G` — one document per counted message: `_id` is the message id, `p`/`o`
//!   the partition and offset that own it. A unique-`_id` insert decides the owner.
//!
//! and `projection_meta`, whose document `orders` names the `current` generation (`"0"` when
//! absent) and, during a rebuild, the one `building`.
//!
//! Money is not stored here; were it, it would be integer cents (FerretDB has no Decimal128).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use serde::Serialize;

use crate::facts::{Change, Fact};
use crate::live::{Applied, Generations, ReadModel, StoreError};

const META: &str = "projection_meta";
const META_ID: &str = "orders";
const COUNTERS: &str = "order_counters_";
const LEDGER: &str = "order_ledger_";
const DUPLICATE_KEY: i32 = 11000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrdersReport {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
}

/// The orders read model. Cheap to clone; the driver connects lazily and reconnects itself.
#[derive(Clone)]
pub struct OrdersModel {
    database: Database,
}

impl OrdersModel {
    /// Parses the URL; does not connect (MongoDB may be down at start).
    pub async fn new(settings: &platform::settings::MongoSettings) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(&settings.url)
            .await
            .map_err(StoreError::mongo)?;
        // Fail fast while the server is down: the live loop retries with its own backoff.
        options.server_selection_timeout = Some(Duration::from_secs(3));
        options.connect_timeout = Some(Duration::from_secs(3));
        options.app_name = Some("shop-projections".to_owned());
        let client = Client::with_options(options).map_err(StoreError::mongo)?;
        Ok(Self {
            database: client.database(&settings.database),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(StoreError::mongo)?;
        Ok(())
    }

    fn counters(&self, generation: &str) -> Collection<Document> {
        self.database.collection(&format!("{COUNTERS}{generation}"))
    }

    fn ledger(&self, generation: &str) -> Collection<Document> {
        self.database.collection(&format!("{LEDGER}{generation}"))
    }

    fn meta(&self) -> Collection<Document> {
        self.database.collection(META)
    }

    /// The current generation, and the one a running rebuild builds.
    pub async fn generations(&self) -> Result<Generations, StoreError> {
        let meta = self
            .meta()
            .find_one(doc! { "_id": META_ID })
            .await
            .map_err(StoreError::mongo)?;
        Ok(match meta {
            None => Generations {
                current: "0".to_owned(),
                building: None,
            },
            Some(d) => Generations {
                current: d.get_str("current").unwrap_or("0").to_owned(),
                building: d.get_str("building").ok().map(str::to_owned),
            },
        })
    }

    /// The report from the current generation: the sum over its counter documents.
    pub async fn report(&self) -> Result<OrdersReport, StoreError> {
        // A rebuild may switch (and drop the old generation) between reading the meta record
        // and the counters; reading the meta record again tells, and the read is repeated.
        for _ in 0..5 {
            let before = self.generations().await?.current;
            let docs: Vec<Document> = self
                .counters(&before)
                .find(doc! {})
                .await
                .map_err(StoreError::mongo)?
                .try_collect()
                .await
                .map_err(StoreError::mongo)?;
            if self.generations().await?.current != before {
                continue;
            }
            let mut report = OrdersReport::default();
            for d in &docs {
                report.completed += int(d, "completed");
                report.failed += int(d, "failed");
            }
            report.total = report.completed + report.failed;
            return Ok(report);
        }
        Err(StoreError::Contended("the current generation".to_owned()))
    }

    /// Counts one writer's facts (all of `partition`, in offset order) into `generation`.
    async fn apply_partition(
        &self,
        generation: &str,
        partition: i32,
        facts: &[&Fact],
    ) -> Result<Applied, StoreError> {
        let counters = self.counters(generation);
        let id = partition.to_string();
        let checkpoint = match counters
            .find_one(doc! { "_id": &id })
            .await
            .map_err(StoreError::mongo)?
        {
            Some(d) => int(&d, "offset"),
            None => {
                let fresh =
                    doc! { "_id": &id, "offset": -1_i64, "completed": 0_i64, "failed": 0_i64 };
                if let Err(e) = counters.insert_one(fresh).await
                    && !is_duplicate_key(&e)
                {
                    return Err(StoreError::mongo(e));
                }
                -1
            }
        };
        // At or below the checkpoint: counted (or skipped as someone else's) before.
        let fresh: Vec<&Fact> = facts
            .iter()
            .copied()
            .filter(|f| f.offset > checkpoint && f.change.is_terminal())
            .collect();
        let (Some(last), false) = (facts.iter().map(|f| f.offset).max(), fresh.is_empty()) else {
            return Ok(Applied::default());
        };
        let ledger = self.ledger(generation);
        let entries: Vec<Document> = fresh
            .iter()
            .map(|f| doc! { "_id": f.message_id.to_string(), "p": partition, "o": f.offset })
            .collect();
        // Usually every entry is new and this one round trip settles ownership; only the
        // entries refused as duplicates need their owner looked up.
        let refused: Vec<String> = match ledger.insert_many(entries).ordered(false).await {
            Ok(_) => Vec::new(),
            Err(e) => match duplicate_indexes(&e) {
                Some(indexes) => indexes
                    .into_iter()
                    .filter_map(|i| fresh.get(i))
                    .map(|f| f.message_id.to_string())
                    .collect(),
                None => return Err(StoreError::mongo(e)),
            },
        };
        let mut owners: HashMap<String, (i64, i64)> = HashMap::new();
        if !refused.is_empty() {
            let found: Vec<Document> = ledger
                .find(doc! { "_id": { "$in": &refused } })
                .await
                .map_err(StoreError::mongo)?
                .try_collect()
                .await
                .map_err(StoreError::mongo)?;
            for d in found {
                if let Ok(id) = d.get_str("_id") {
                    owners.insert(id.to_owned(), (int(&d, "p"), int(&d, "o")));
                }
            }
        }
        let (mut completed, mut failed, mut duplicates) = (0_i64, 0_i64, 0_u64);
        for f in &fresh {
            let id = f.message_id.to_string();
            // Inserted now, or refused and found to be owned by this very (partition, offset).
            let owned = !refused.contains(&id)
                || owners.get(&id) == Some(&(i64::from(partition), f.offset));
            match (&f.change, owned) {
                (Change::Completed(_), true) => completed += 1,
                (Change::Failed, true) => failed += 1,
                _ => duplicates += 1,
            }
        }
        let updated = counters
            .update_one(
                doc! { "_id": &id, "offset": checkpoint },
                doc! {
                    "$inc": { "completed": completed, "failed": failed },
                    "$set": { "offset": last },
                },
            )
            .await
            .map_err(StoreError::mongo)?;
        if updated.matched_count != 1 {
            return Err(StoreError::Contended(format!(
                "the checkpoint of partition {partition} in generation {generation}"
            )));
        }
        Ok(Applied {
            counted: (completed + failed) as u64,
            duplicates,
        })
    }

    async fn apply_to(&self, generation: &str, facts: &[Fact]) -> Result<Applied, StoreError> {
        let mut by_partition: BTreeMap<i32, Vec<&Fact>> = BTreeMap::new();
        for f in facts {
            by_partition.entry(f.partition).or_default().push(f);
        }
        let mut total = Applied::default();
        for (partition, facts) in by_partition {
            let applied = self.apply_partition(generation, partition, &facts).await?;
            total.counted += applied.counted;
            total.duplicates += applied.duplicates;
        }
        Ok(total)
    }

    /// Starts a rebuild into a fresh generation; drops every generation that is not current
    /// (an unfinished earlier rebuild's, or one a late write re-created after a switch).
    pub async fn begin_rebuild(&self) -> Result<String, StoreError> {
        let generation = crate::products::new_generation();
        self.meta()
            .update_one(
                doc! { "_id": META_ID },
                doc! { "$set": { "building": &generation } },
            )
            .upsert(true)
            .await
            .map_err(StoreError::mongo)?;
        let current = self.generations().await?.current;
        self.drop_generations_except(&[&current, &generation])
            .await?;
        Ok(generation)
    }

    /// Counts facts read from the event store into the generation being built. They use
    /// partition `-1` with a running sequence as offsets: a writer of its own.
    pub async fn apply_rebuild(
        &self,
        generation: &str,
        facts: &[Fact],
    ) -> Result<Applied, StoreError> {
        if self.generations().await?.building.as_deref() != Some(generation) {
            return Err(StoreError::Contended(format!(
                "generation {generation}: another rebuild superseded it"
            )));
        }
        self.apply_to(generation, facts).await
    }

    /// Makes `generation` current and drops the one it replaces.
    pub async fn finish_rebuild(&self, generation: &str) -> Result<(), StoreError> {
        let switched = self
            .meta()
            .update_one(
                doc! { "_id": META_ID, "building": generation },
                doc! { "$set": { "current": generation }, "$unset": { "building": "" } },
            )
            .await
            .map_err(StoreError::mongo)?;
        if switched.matched_count != 1 {
            return Err(StoreError::Contended(format!(
                "generation {generation}: another rebuild superseded it"
            )));
        }
        self.drop_generations_except(&[generation]).await
    }

    async fn drop_generations_except(&self, keep: &[&str]) -> Result<(), StoreError> {
        let names = self
            .database
            .list_collection_names()
            .await
            .map_err(StoreError::mongo)?;
        for name in names {
            let generation = name
                .strip_prefix(COUNTERS)
                .or_else(|| name.strip_prefix(LEDGER));
            if let Some(generation) = generation
                && !keep.contains(&generation)
            {
                self.database
                    .collection::<Document>(&name)
                    .drop()
                    .await
                    .map_err(StoreError::mongo)?;
            }
        }
        Ok(())
    }
}

impl ReadModel for OrdersModel {
    const STORE: &'static str = "mongodb";

    /// Reads the generations *after* the batch was received (see the crate docs), then counts
    /// the batch into the current one and, during a rebuild, into the one being built.
    async fn apply(&self, facts: &[Fact]) -> Result<Applied, StoreError> {
        if !facts.iter().any(|f| f.change.is_terminal()) {
            return Ok(Applied::default());
        }
        let generations = self.generations().await?;
        let applied = self.apply_to(&generations.current, facts).await?;
        if let Some(building) = generations.building.filter(|b| *b != generations.current) {
            self.apply_to(&building, facts).await?;
        }
        Ok(applied)
    }
}

/// An integer field, whichever integer type the server returned it as.
fn int(d: &Document, key: &str) -> i64 {
    match d.get(key) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

/// The indexes an unordered `insert_many` refused, if every refusal was a duplicate key.
fn duplicate_indexes(e: &mongodb::error::Error) -> Option<Vec<usize>> {
    match &*e.kind {
        ErrorKind::InsertMany(m) if m.write_concern_error.is_none() => {
            let errors = m.write_errors.as_ref()?;
            errors
                .iter()
                .map(|w| (w.code == DUPLICATE_KEY).then_some(w.index))
                .collect()
        }
        _ => None,
    }
}
