//! `/health/live` and `/health/ready`. Readiness reports each dependency the component needs
//! and answers 503 while any is down, and each [`Condition`] a part of the process registered
//! (a consumer with a stuck partition) while it reports a problem.

use std::sync::{Arc, Mutex, Weak};
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

/// 200 when every dependency is up, else 503; the body lists each one, plus every registered
/// [`Condition`] (Kafka as last seen by the process's Kafka probe, when it runs one; stuck
/// consumer partitions).
pub fn readiness(dependencies: &[Dependency]) -> Response {
    let mut dependencies = dependencies.to_vec();
    dependencies.extend(conditions());
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

/// A state a part of the process keeps up to date for readiness, e.g. a consumer saying which
/// of its partitions are stuck. It counts while a handle lives: registered by
/// [`Condition::register`], forgotten when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Condition(Arc<ConditionState>);

#[derive(Debug)]
struct ConditionState {
    name: &'static str,
    /// `None` while all is well.
    problem: Mutex<Option<String>>,
}

/// The conditions of this process; dropped ones are pruned when readiness is read.
static CONDITIONS: Mutex<Vec<Weak<ConditionState>>> = Mutex::new(Vec::new());

impl Condition {
    /// Registers a condition reported as the dependency `name`, up until [`Condition::set`]
    /// says otherwise.
    pub fn register(name: &'static str) -> Self {
        let state = Arc::new(ConditionState {
            name,
            problem: Mutex::new(None),
        });
        if let Ok(mut all) = CONDITIONS.lock() {
            all.push(Arc::downgrade(&state));
        }
        Self(state)
    }

    /// `Some(problem)`: not ready, for that reason; `None`: ready.
    pub fn set(&self, problem: Option<String>) {
        if let Ok(mut current) = self.0.problem.lock() {
            *current = problem;
        }
    }

    pub fn dependency(&self) -> Dependency {
        let problem = self.0.problem.lock().ok().and_then(|p| p.clone());
        Dependency {
            name: self.0.name,
            up: problem.is_none(),
            error: problem,
        }
    }
}

/// Every live [`Condition`] of this process, as dependencies.
pub fn conditions() -> Vec<Dependency> {
    let Ok(mut all) = CONDITIONS.lock() else {
        return Vec::new();
    };
    all.retain(|c| c.strong_count() > 0);
    all.iter()
        .filter_map(Weak::upgrade)
        .map(|state| Condition(state).dependency())
        .collect()
}

pub async fn live() -> &'static str {
    "live"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(problem: &str) -> Option<Dependency> {
        conditions()
            .into_iter()
            .find(|d| d.error.as_deref() == Some(problem))
    }

    #[test]
    fn a_condition_counts_while_its_handle_lives() {
        let condition = Condition::register("test-condition");
        assert!(condition.dependency().up);
        condition.set(Some("stuck on purpose".to_owned()));
        let reported = find("stuck on purpose").expect("reported while set");
        assert_eq!(reported.name, "test-condition");
        assert!(!reported.up);
        let clone = condition.clone();
        drop(condition);
        assert!(find("stuck on purpose").is_some(), "a clone keeps it");
        drop(clone);
        assert!(find("stuck on purpose").is_none(), "dropped, forgotten");
    }
}
