//! `GET /api/ops/inbox?messageIds=…` on every service's own port: when this service's consumer
//! applied each of the given messages (its inbox rows), for the console's journey of an order.
//!
//! It is a viewer's read like the rest of `/api/ops`, but not a route of the entry point and
//! not in the OpenAPI document: its question ("which of these ids did you apply?") is one the
//! console asks each service in turn, with ids it read from Kafka.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use platform::auth::{Identity, Role};
use platform::http::Problem;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// The most ids one question may name.
pub const MAX_IDS: usize = 500;

#[derive(Clone)]
pub struct InboxState {
    pub pool: PgPool,
    /// The service's consumer: its inbox rows are `(consumer, message_id)`.
    pub consumer: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxQuery {
    /// Message ids, comma-separated.
    message_ids: String,
}

/// One message the consumer applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub consumer: String,
    pub message_id: Uuid,
    pub processed_at: DateTime<Utc>,
}

pub async fn inbox(
    State(state): State<InboxState>,
    identity: Identity,
    Query(query): Query<InboxQuery>,
) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    let ids: Result<Vec<Uuid>, _> = query
        .message_ids
        .split(',')
        .filter(|id| !id.is_empty())
        .map(Uuid::try_parse)
        .collect();
    let Ok(ids) = ids else {
        return Problem::bad_request("messageIds must be UUIDs, comma-separated").into_response();
    };
    if ids.len() > MAX_IDS {
        return Problem::bad_request(format!("at most {MAX_IDS} message ids at once"))
            .into_response();
    }
    // The inbox's primary key `(consumer, message_id)` answers this by index.
    let applied: Result<Vec<Applied>, _> = sqlx::query_as(
        "SELECT consumer, message_id, processed_at FROM inbox
         WHERE consumer = $1 AND message_id = ANY($2)",
    )
    .bind(&state.consumer)
    .bind(&ids)
    .fetch_all(&state.pool)
    .await;
    match applied {
        Ok(applied) => axum::Json(applied).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the inbox failed");
            Problem::unavailable("the service's database is unavailable").into_response()
        }
    }
}
