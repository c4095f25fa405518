//! The overview's figures (`GET /api/ops/overview`, the console's first page): saga outcomes
//! per second and latency, outbox backlog per service, consumer lag, read-model lag, dead
//! letters waiting and the oldest stuck sagas.
//!
//! Rates and latency quantiles are differences between two readings of the components'
//! metrics: the previous reading of the same viewer (the live page keeps its own), or the last
//! one anybody took, if it is recent. Without one, the totals are shown and the rates are not.
//!
//! A component of several instances is read instance by instance: its counters and histograms
//! add up across them, its outbox backlog (each instance samples the one table) is the largest
//! any of them reports, and it is up while one of them answers.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Console;
use crate::lag::PartitionLag;
use crate::scrape::{self, Metrics};

/// The components whose metrics the overview reads.
const COMPONENTS: [&str; 4] = ["order", "stock", "payment", "projections"];
/// The services with an outbox.
const SERVICES: [&str; 3] = ["order", "stock", "payment"];
/// A previous reading older than this gives no rate: an average over a long time hides what
/// is happening now.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One reading of every component's metrics, instance by instance.
#[derive(Debug, Clone)]
pub struct Readings {
    at: Instant,
    components: Vec<ComponentReading>,
}

#[derive(Debug, Clone)]
struct ComponentReading {
    name: &'static str,
    instances: Vec<scrape::InstanceReading>,
    /// The instances that answered, as one ([`Metrics::combined`]).
    combined: Option<Metrics>,
}

impl Readings {
    fn component(&self, name: &str) -> Option<&ComponentReading> {
        self.components.iter().find(|c| c.name == name)
    }

    fn of(&self, component: &str) -> Option<&Metrics> {
        self.component(component).and_then(|c| c.combined.as_ref())
    }

    /// The largest sum of `name` any instance of `component` reports: for a gauge of state the
    /// instances share, which each reports whole. `None` when no instance answered.
    fn shared_gauge(&self, component: &str, name: &str) -> Option<f64> {
        self.component(component)?
            .instances
            .iter()
            .filter_map(|i| i.metrics.as_ref())
            .map(|m| m.sum(name, &[]))
            .reduce(f64::max)
    }
}

/// Reads every instance of every component at once.
pub async fn read(console: &Console) -> Readings {
    let at = Instant::now();
    let reads = COMPONENTS.map(|name| async move {
        let instances = scrape::read_instances(console, name).await;
        let answered: Vec<&Metrics> = instances
            .iter()
            .filter_map(|i| i.metrics.as_ref())
            .collect();
        let combined = (!answered.is_empty()).then(|| Metrics::combined(answered));
        ComponentReading {
            name,
            instances,
            combined,
        }
    });
    Readings {
        at,
        components: futures::future::join_all(reads).await,
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub at: DateTime<Utc>,
    /// Each component, and whether its metrics could be read.
    pub components: Vec<ComponentUp>,
    pub sagas: Sagas,
    pub outbox: Vec<OutboxBacklog>,
    /// Every consumer group on every partition of its topics.
    pub lag: Vec<PartitionLag>,
    pub read_models: Vec<ReadModelLag>,
    /// Dead letters neither redriven nor discarded; `None` when Kafka could not be read.
    pub dead_letters_waiting: Option<u64>,
    /// The oldest stuck sagas (at most ten), from the order service.
    pub stuck: Vec<serde_json::Value>,
    /// More sagas are stuck than listed.
    pub more_stuck: bool,
    /// What could not be read, for the page to say.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentUp {
    pub name: String,
    /// At least one instance answered.
    pub up: bool,
    /// Each instance (`SHOP_GATEWAY__*_URLS`, one when there is one).
    pub instances: Vec<InstanceUp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUp {
    /// Its base URL.
    pub url: String,
    /// Its metrics could be read.
    pub up: bool,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sagas {
    /// Since the order service started.
    pub completed: f64,
    pub failed: f64,
    /// Failed sagas by reason, since the order service started.
    pub failed_by_reason: Vec<ReasonCount>,
    /// Per second between the two readings; `None` without a previous reading.
    pub completed_per_second: Option<f64>,
    pub failed_per_second: Option<f64>,
    /// Placement to outcome, of the sagas settled between the two readings, in seconds.
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    pub reason: String,
    pub count: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxBacklog {
    pub service: String,
    /// Rows not yet published; `None` when the service's metrics could not be read.
    pub pending: Option<f64>,
    pub oldest_age_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadModelLag {
    pub store: String,
    pub partition: String,
    /// Events of the partition not yet projected.
    pub events: f64,
}

/// The overview now. `previous` is the reading to compute rates against; the new reading is
/// returned for the next call. `authorization` is the caller's, presented to the order service
/// for the stuck sagas.
pub async fn overview(
    console: &Console,
    authorization: &str,
    previous: Option<&Readings>,
) -> (Overview, Readings) {
    let stuck_after = console.settings().console.stuck_after_seconds;
    let (now, lag, waiting, stuck) = tokio::join!(
        read(console),
        console.lag().read(),
        console.dead_letters().waiting(),
        console.stuck(authorization, stuck_after, 10),
    );
    let mut problems = Vec::new();
    let lag = lag.unwrap_or_else(|e| {
        problems.push(format!("consumer lag: {e:#}"));
        Vec::new()
    });
    let dead_letters_waiting = match waiting {
        Ok(n) => Some(n),
        Err(e) => {
            problems.push(format!("dead letters: {e}"));
            None
        }
    };
    let (stuck, more_stuck) = stuck.unwrap_or_else(|e| {
        problems.push(format!("stuck sagas: {e}"));
        (Vec::new(), false)
    });
    let previous = previous.filter(|p| now.at.duration_since(p.at) <= RATE_WINDOW);
    let components = now
        .components
        .iter()
        .map(|c| ComponentUp {
            name: c.name.to_owned(),
            up: c.combined.is_some(),
            instances: c
                .instances
                .iter()
                .map(|i| InstanceUp {
                    url: i.url.clone(),
                    up: i.metrics.is_some(),
                })
                .collect(),
        })
        .collect();
    let overview = Overview {
        at: Utc::now(),
        components,
        sagas: sagas(previous, &now),
        outbox: SERVICES
            .iter()
            .map(|service| OutboxBacklog {
                service: (*service).to_owned(),
                pending: now.shared_gauge(service, "outbox_pending"),
                oldest_age_seconds: now.shared_gauge(service, "outbox_oldest_pending_age_seconds"),
            })
            .collect(),
        lag,
        read_models: now
            .of("projections")
            .map(|m| {
                m.matching("projection_lag", &[])
                    .map(|s| ReadModelLag {
                        store: s.label("store").unwrap_or_default().to_owned(),
                        partition: s.label("partition").unwrap_or_default().to_owned(),
                        events: s.value,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        dead_letters_waiting,
        stuck,
        more_stuck,
        problems,
    };
    (overview, now)
}

fn sagas(previous: Option<&Readings>, now: &Readings) -> Sagas {
    let Some(order) = now.of("order") else {
        return Sagas::default();
    };
    let completed = order.sum("saga_outcomes_total", &[("outcome", "completed")]);
    let failed = order.sum("saga_outcomes_total", &[("outcome", "failed")]);
    let failed_by_reason = order
        .matching("saga_outcomes_total", &[("outcome", "failed")])
        .map(|s| ReasonCount {
            reason: s.label("reason").unwrap_or_default().to_owned(),
            count: s.value,
        })
        .collect();
    let before = previous.and_then(|p| Some((p.of("order")?, now.at.duration_since(p.at))));
    let rate = |total: f64, outcome: &str| {
        let (metrics, elapsed) = before?;
        let seconds = elapsed.as_secs_f64();
        (seconds > 0.0).then(|| {
            let earlier = metrics.sum("saga_outcomes_total", &[("outcome", outcome)]);
            // A restarted order service starts its counters at 0 again.
            (total - earlier).max(0.0) / seconds
        })
    };
    let quantile = |q: f64| {
        let (metrics, _) = before?;
        scrape::quantile(metrics, order, "saga_duration_seconds", &[], q)
    };
    Sagas {
        completed,
        failed,
        failed_by_reason,
        completed_per_second: rate(completed, "completed"),
        failed_per_second: rate(failed, "failed"),
        latency_p50: quantile(0.5),
        latency_p99: quantile(0.99),
    }
}
