//! Dead letters: the records the readers of the system parked in `{prefix}shop.dead-letters`
//! (`messaging::dead_letters`), listed, inspected, redriven and discarded.
//!
//! SKELETON: the interface the console's pages use; the implementation is being written.

use platform::settings::KafkaSettings;
use sqlx::PgPool;

/// The dead letters of the system, read from Kafka, with what became of each in the console's
/// database. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    #[allow(dead_code)]
    pool: PgPool,
    #[allow(dead_code)]
    topic: String,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaSettings, pool: PgPool) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            topic: format!("{}{}", kafka.topic_prefix, contracts::topics::DEAD_LETTERS),
        })
    }
}

/// `/api/ops/dead-letters...`.
pub fn api(_dead_letters: DeadLetters) -> axum::Router {
    axum::Router::new()
}

/// SKELETON types of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LetterId {
    pub partition: i32,
    pub offset: i64,
}
impl std::fmt::Display for LetterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.partition, self.offset)
    }
}
impl std::str::FromStr for LetterId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (p, o) = s.split_once('-').ok_or(())?;
        Ok(Self {
            partition: p.parse().map_err(|_| ())?,
            offset: o.parse().map_err(|_| ())?,
        })
    }
}
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Waiting,
    Redriven,
    Discarded,
    All,
}
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub consumer: Option<String>,
    pub message_type: Option<String>,
    pub reason: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub state: State,
    pub limit: usize,
    pub after: Option<LetterId>,
}
pub enum Selection {
    One(LetterId),
    Matching(Filter),
}
#[derive(Debug, Clone)]
pub enum Payload {
    Text(String),
    Base64(String),
}
#[derive(Debug, Clone, Copy)]
pub enum ResolutionKind {
    Redriven,
    Discarded,
}
#[derive(Debug, Clone)]
pub struct Resolution {
    pub kind: ResolutionKind,
    pub actor: String,
    pub at: chrono::DateTime<chrono::Utc>,
}
#[derive(Debug, Clone)]
pub struct Letter {
    pub id: LetterId,
    pub parked_at: chrono::DateTime<chrono::Utc>,
    pub consumer: String,
    pub reason: String,
    pub origin: String,
    pub message_type: Option<String>,
    pub message_id: Option<String>,
    pub key: Option<String>,
    pub headers: Vec<(String, Option<String>)>,
    pub payload: Payload,
    pub resolution: Option<Resolution>,
}
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub matched: u64,
    pub done: u64,
    pub dry_run: bool,
}
#[derive(Debug, thiserror::Error)]
#[error("dead letters: {0}")]
pub struct Error(String);

impl DeadLetters {
    pub async fn list(&self, _filter: &Filter) -> Result<Vec<Letter>, Error> {
        Ok(Vec::new())
    }
    pub async fn get(&self, _id: LetterId) -> Result<Option<Letter>, Error> {
        Ok(None)
    }
    pub async fn redrive(
        &self,
        _s: &Selection,
        dry_run: bool,
        _actor: &str,
    ) -> Result<Outcome, Error> {
        Ok(Outcome {
            matched: 0,
            done: 0,
            dry_run,
        })
    }
    pub async fn discard(
        &self,
        _s: &Selection,
        dry_run: bool,
        _actor: &str,
    ) -> Result<Outcome, Error> {
        Ok(Outcome {
            matched: 0,
            done: 0,
            dry_run,
        })
    }
}

/// SKELETON.
pub fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApi::default()
}

impl DeadLetters {
    /// SKELETON.
    pub async fn waiting(&self) -> Result<u64, Error> {
        Ok(0)
    }
}
