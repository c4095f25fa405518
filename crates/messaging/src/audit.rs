//! The audit trail of operator actions (SYSTEM.md I8): who did what, when, to what, and the
//! subject before and after.
//!
//! Every service's database has the `audit` table (a messaging migration, like the outbox), and
//! an operator action writes its row with [`record`] in the transaction of the change it makes:
//! the row commits with the change or not at all, so the trail neither misses an action nor
//! names one that did not happen. An action that changes nothing records nothing.
//!
//! [`list`] reads the trail newest first, a page at a time (keyset on the row id), optionally
//! for one actor or one action; the service that serves `/api/ops/audit` wraps it in its route.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Arguments, PgConnection};

/// One audited action, as stored and as every service's `/api/ops/audit` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AuditEntry, example = json!({
    "id": 7, "at": "2026-12-07T03:30:00Z", "actor": "0b9a3c2e-5f0e-4c55-9a43-1c2d3e4f5a6b",
    "action": "product.restock", "subject": "product:1",
    "before": {"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "available": 3, "version": 1},
    "after": {"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "available": 13, "version": 1}
}))]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who: the token's `sub` as sent.
    pub actor: String,
    /// What, e.g. `product.restock` or `dead-letter.redrive`.
    pub action: String,
    /// To what, e.g. `product:1` or `dead-letter:0-12`.
    pub subject: String,
    /// The subject before the action; `null` when it did not exist.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The subject after the action; `null` when it no longer exists.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// Records one action, inside the caller's transaction (the one that makes the change).
pub async fn record(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    subject: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (actor, action, subject, before, after) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(before)
    .bind(after)
    .execute(conn)
    .await?;
    Ok(())
}

/// Which entries a listing reads: the query of every `/api/ops/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// Only the actions of this actor (a token's `sub`, exactly).
    pub actor: Option<String>,
    /// Only this action, e.g. `product.restock` or `dead-letter.redrive`.
    pub action: Option<String>,
}

/// Up to `limit` entries matching `filter`, newest first, older than the entry `before_id`
/// (every entry when `None`).
///
/// Each combination of filters is a statement of its own rather than one with `$n IS NULL OR …`
/// conditions: the services force generic plans, and a generic plan cannot know which condition
/// applies, so it could not use the index of the filter that does.
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    // PostgreSQL text cannot hold NUL, so no entry has it; binding one would be an error.
    let nul = |value: &Option<String>| value.as_deref().is_some_and(|v| v.contains('\0'));
    if nul(&filter.actor) || nul(&filter.action) {
        return Ok(Vec::new());
    }
    let mut args = sqlx::postgres::PgArguments::default();
    let mut conditions = vec!["id < $1".to_owned()];
    let bound = (|| {
        args.add(before_id.unwrap_or(i64::MAX))?;
        if let Some(actor) = &filter.actor {
            args.add(actor.as_str())?;
            conditions.push(format!("actor = ${}", args.len()));
        }
        if let Some(action) = &filter.action {
            args.add(action.as_str())?;
            conditions.push(format!("action = ${}", args.len()));
        }
        args.add(limit)
    })();
    bound.map_err(sqlx::Error::Encode)?;
    let sql = format!(
        "SELECT id, at, actor, action, subject, before, after FROM audit
         WHERE {} ORDER BY id DESC LIMIT ${}",
        conditions.join(" AND "),
        args.len()
    );
    sqlx::query_as_with(&sql, args).fetch_all(conn).await
}
