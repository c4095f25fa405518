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
