//! `/health/live` and `/health/ready`. Readiness reports each dependency the component needs
//! and answers 503 while any is down.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::PgPool;

/// The state of one dependency.
#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    pub name: &'static str,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Dependency {
    pub fn from_result<E: std::fmt::Display>(name: &'static str, result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self {
                name,
                up: true,
                error: None,
            },
            Err(e) => Self {
                name,
                up: false,
                error: Some(e.to_string()),
            },
        }
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `SELECT 1` within two seconds.
pub async fn postgres(pool: &PgPool) -> Dependency {
    let check = async {
        let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
    Dependency::from_result("postgres", result)
}

#[derive(Serialize)]
struct Readiness<'a> {
    status: &'static str,
    dependencies: &'a [Dependency],
}

/// 200 when every dependency is up, else 503; the body lists each one, plus Kafka as last seen
/// by the process's [`crate::kafka::KafkaProbe`] when it runs one.
pub fn readiness(dependencies: &[Dependency]) -> Response {
    let mut dependencies = dependencies.to_vec();
    if let Some(kafka) = crate::kafka::latest() {
        if !dependencies.iter().any(|d| d.name == kafka.name) {
            dependencies.push(kafka);
        }
    }
    let dependencies = dependencies.as_slice();
    let ready = dependencies.iter().all(|d| d.up);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        dependencies,
    };
    (status, axum::Json(body)).into_response()
}

pub async fn live() -> &'static str {
    "live"
}
