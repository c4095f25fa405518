//! What became of the letters: `dead_letter_resolutions` in the console's database, and the
//! audit rows written with each.
//!
//! Every statement reads by the primary key `(letter_partition, letter_offset)`: a range of one
//! partition, or a join with an array of ids. The console's sessions run with sequential scans
//! off (`platform::postgres::connect`), and these need none.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::read::{Raw, Window};
use super::{Action, LetterId, Resolution, ResolutionKind, Resolutions};
use contracts::headers as h;

type Row = (i32, i64, String, String, DateTime<Utc>, Option<String>);

fn resolution((partition, offset, kind, actor, at, redriven_to): Row) -> (LetterId, Resolution) {
    // The table's CHECK admits the two kinds only.
    let kind = ResolutionKind::parse(&kind).unwrap_or(ResolutionKind::Discarded);
    (
        LetterId { partition, offset },
        Resolution {
            kind,
            actor,
            at,
            redriven_to,
        },
    )
}

/// The resolutions of the letters in the window.
pub(super) async fn resolutions_in(
    pool: &PgPool,
    window: &Window,
) -> Result<Resolutions, sqlx::Error> {
    let mut found = Resolutions::new();
    for p in &window.partitions {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT letter_partition, letter_offset, resolution, actor, at, redriven_to
             FROM dead_letter_resolutions
             WHERE letter_partition = $1 AND letter_offset >= $2 AND letter_offset < $3",
        )
        .bind(p.partition)
        .bind(p.start)
        .bind(p.high)
        .fetch_all(pool)
        .await?;
        found.extend(rows.into_iter().map(resolution));
    }
    Ok(found)
}

/// The resolution of one letter.
pub(super) async fn resolution_of(
    pool: &PgPool,
    id: LetterId,
) -> Result<Option<Resolution>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT letter_partition, letter_offset, resolution, actor, at, redriven_to
         FROM dead_letter_resolutions WHERE letter_partition = $1 AND letter_offset = $2",
    )
    .bind(id.partition)
    .bind(id.offset)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| resolution(row).1))
}

/// Which of `ids` are resolved.
pub(super) async fn resolved_among(
    pool: &PgPool,
    ids: &[LetterId],
) -> Result<HashSet<LetterId>, sqlx::Error> {
    let (partitions, offsets) = columns(ids);
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT r.letter_partition, r.letter_offset
         FROM UNNEST($1::integer[], $2::bigint[]) AS wanted (letter_partition, letter_offset)
         JOIN dead_letter_resolutions r USING (letter_partition, letter_offset)",
    )
    .bind(partitions)
    .bind(offsets)
    .fetch_all(pool)
    .await?;
    Ok((rows.into_iter())
        .map(|(partition, offset)| LetterId { partition, offset })
        .collect())
}

/// How many letters between each partition's window start and its high watermark are
/// resolved.
pub(super) async fn count_resolved(pool: &PgPool, window: &Window) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    for p in &window.partitions {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dead_letter_resolutions
             WHERE letter_partition = $1 AND letter_offset >= $2 AND letter_offset < $3",
        )
        .bind(p.partition)
        .bind(p.start)
        .bind(p.high)
        .fetch_one(pool)
        .await?;
        total = total.saturating_add(u64::try_from(count).unwrap_or(0));
    }
    Ok(total)
}

/// Records `letters` as resolved by `action` (each with where it was redriven to), with one
/// audit row per letter recorded, in one transaction. A letter already resolved is left as it
/// is and not audited again. The number recorded.
pub(super) async fn record(
    pool: &PgPool,
    letters: &[(&Raw, Option<String>)],
    action: Action,
    actor: &str,
) -> Result<u64, sqlx::Error> {
    if letters.is_empty() {
        return Ok(0);
    }
    let ids: Vec<LetterId> = letters.iter().map(|(raw, _)| raw.id()).collect();
    let (partitions, offsets) = columns(&ids);
    let targets: Vec<Option<&str>> = letters.iter().map(|(_, to)| to.as_deref()).collect();
    let kind = action.kind();
    let mut tx = pool.begin().await?;
    let inserted: Vec<(i32, i64)> = sqlx::query_as(
        "INSERT INTO dead_letter_resolutions
             (letter_partition, letter_offset, resolution, actor, redriven_to)
         SELECT letter_partition, letter_offset, $3, $4, redriven_to
         FROM UNNEST($1::integer[], $2::bigint[], $5::text[])
             AS letter (letter_partition, letter_offset, redriven_to)
         ON CONFLICT (letter_partition, letter_offset) DO NOTHING
         RETURNING letter_partition, letter_offset",
    )
    .bind(partitions)
    .bind(offsets)
    .bind(kind.name())
    .bind(actor)
    .bind(targets)
    .fetch_all(&mut *tx)
    .await?;
    let inserted: HashSet<LetterId> = (inserted.into_iter())
        .map(|(partition, offset)| LetterId { partition, offset })
        .collect();
    for (raw, redriven_to) in letters {
        let id = raw.id();
        if !inserted.contains(&id) {
            continue;
        }
        let before = json!({
            "state": "waiting",
            "consumer": raw.header(h::DEAD_LETTER_CONSUMER),
            "reason": raw.header(h::DEAD_LETTER_REASON),
            "origin": raw.header(h::DEAD_LETTER_ORIGIN),
            "messageType": raw.header(h::MESSAGE_TYPE),
            "messageId": raw.header(h::MESSAGE_ID),
        });
        let after = match redriven_to {
            Some(to) => json!({"state": kind.name(), "redrivenTo": to}),
            None => json!({"state": kind.name()}),
        };
        messaging::audit::record(
            &mut tx,
            actor,
            action.audit_name(),
            &format!("dead-letter:{id}"),
            Some(&before),
            Some(&after),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(u64::try_from(inserted.len()).unwrap_or(u64::MAX))
}

fn columns(ids: &[LetterId]) -> (Vec<i32>, Vec<i64>) {
    ids.iter().map(|id| (id.partition, id.offset)).unzip()
}
