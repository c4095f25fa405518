//! `/api/ops/read-models`: each read model's generations and a rebuild an operator starts from
//! the console (SYSTEM.md §11), with its progress.
//!
//! The rebuild is the one `shop projections rebuild` runs ([`crate::rebuild`]), here in the
//! projections' own process, as a task: the request that starts it answers at once (202) and
//! the state says how far it got. One rebuild runs at a time (a second is 409); the live
//! projections go on meanwhile, as the crate docs explain. The console audits who started it.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use platform::auth::{Identity, Role};
use platform::http::{Json, Problem};
use serde::{Deserialize, Serialize};

use crate::live::Generations;
use crate::rebuild::{Progress, Rebuilt, Targets};
use crate::{OrdersModel, ProductsModel};

/// What the routes share.
#[derive(Clone)]
pub struct OpsState {
    pub products: ProductsModel,
    pub orders: OrdersModel,
    pub postgres: platform::settings::PostgresSettings,
    /// The order service's database: the event store a rebuild reads.
    pub order_database: String,
    job: Arc<Mutex<Option<Job>>>,
}

impl OpsState {
    pub fn new(
        settings: &platform::Settings,
        products: ProductsModel,
        orders: OrdersModel,
    ) -> Self {
        Self {
            products,
            orders,
            postgres: settings.postgres.clone(),
            order_database: settings.postgres.databases.order.clone(),
            job: Arc::new(Mutex::new(None)),
        }
    }
}

/// The latest rebuild started in this process.
struct Job {
    store: Store,
    by: String,
    started_at: DateTime<Utc>,
    progress: Arc<Progress>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Redis,
    Mongodb,
    All,
}

impl Store {
    fn targets(self) -> Targets {
        match self {
            Store::Redis => Targets {
                redis: true,
                mongodb: false,
            },
            Store::Mongodb => Targets {
                redis: false,
                mongodb: true,
            },
            Store::All => Targets::BOTH,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadModels {
    /// `redis` (the products report) and `mongodb` (the orders report).
    pub models: Vec<ModelState>,
    /// The latest rebuild started in this process, if any.
    pub rebuild: Option<RebuildState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelState {
    pub store: String,
    /// `None` when the store could not be read (`error` says why).
    pub generations: Option<Generations>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildState {
    pub store: Store,
    /// Who started it (the token's `sub`).
    pub by: String,
    pub started_at: DateTime<Utc>,
    /// Events read, and terminal facts counted, so far.
    pub progress: Rebuilt,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it stopped, if it failed.
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildRequest {
    pub store: Store,
}

fn state_of(job: &Job) -> RebuildState {
    RebuildState {
        store: job.store,
        by: job.by.clone(),
        started_at: job.started_at,
        progress: job.progress.now(),
        finished_at: job.finished_at,
        error: job.error.clone(),
    }
}

#[utoipa::path(
    get,
    path = "/api/ops/read-models",
    operation_id = "getReadModels",
    tag = "operations",
    summary = "The read models' generations and the latest rebuild",
    description = "For each read model, the generation the reports read and the one a running rebuild builds; the latest rebuild started by `POST /api/ops/read-models/rebuild`, with its progress. A viewer or operator.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The read models", body = ReadModels),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not a viewer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn read_models(State(state): State<OpsState>, identity: Identity) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    axum::Json(snapshot(&state).await).into_response()
}

async fn snapshot(state: &OpsState) -> ReadModels {
    let (redis, mongodb) = tokio::join!(state.products.generations(), state.orders.generations());
    let model = |store: &str, read: Result<Generations, crate::live::StoreError>| match read {
        Ok(generations) => ModelState {
            store: store.to_owned(),
            generations: Some(generations),
            error: None,
        },
        Err(e) => ModelState {
            store: store.to_owned(),
            generations: None,
            error: Some(e.to_string()),
        },
    };
    let rebuild = state
        .job
        .lock()
        .ok()
        .and_then(|job| job.as_ref().map(state_of));
    ReadModels {
        models: vec![model("redis", redis), model("mongodb", mongodb)],
        rebuild,
    }
}

#[utoipa::path(
    post,
    path = "/api/ops/read-models/rebuild",
    operation_id = "rebuildReadModels",
    tag = "operations",
    summary = "Rebuild read models from the event store",
    description = "Starts rebuilding `redis`, `mongodb` or `all` from the order event store while the system runs: a fresh generation is built beside the current one and replaces it atomically when complete, so reports never see a half-built model. Answers at once; follow the progress with `GET /api/ops/read-models`. One rebuild at a time. Operators only.",
    security(("bearer" = [])),
    request_body = RebuildRequest,
    responses(
        (status = 202, description = "Started", body = RebuildState),
        (status = 400, description = "Malformed body", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "Not an operator", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild is running", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn rebuild(
    State(state): State<OpsState>,
    identity: Identity,
    Json(request): Json<RebuildRequest>,
) -> Response {
    if let Err(e) = identity.require(Role::Ops) {
        return e.into_response();
    }
    let progress = Arc::new(Progress::default());
    let started = {
        let Ok(mut job) = state.job.lock() else {
            return Problem::internal().into_response();
        };
        if job.as_ref().is_some_and(|j| j.finished_at.is_none()) {
            return Problem::new(
                StatusCode::CONFLICT,
                "rebuild-running",
                "A rebuild is running",
            )
            .detail("wait for it to finish (GET /api/ops/read-models)")
            .into_response();
        }
        let started = Job {
            store: request.store,
            by: identity.name.clone(),
            started_at: Utc::now(),
            progress: Arc::clone(&progress),
            finished_at: None,
            error: None,
        };
        let answer = state_of(&started);
        *job = Some(started);
        answer
    };
    tracing::info!(store = ?request.store, by = %identity.name, "read-model rebuild started");
    tokio::spawn(run(state, request.store, progress));
    (StatusCode::ACCEPTED, axum::Json(started)).into_response()
}

async fn run(state: OpsState, store: Store, progress: Arc<Progress>) {
    let targets = store.targets();
    let outcome = async {
        let pool = platform::postgres::connect(&state.postgres, &state.order_database).await?;
        let done = crate::rebuild::rebuild(
            &pool,
            targets.redis.then_some(&state.products),
            targets.mongodb.then_some(&state.orders),
            &progress,
        )
        .await;
        pool.close().await;
        done
    }
    .await;
    if let Err(e) = &outcome {
        tracing::warn!(error = ?e, "read-model rebuild failed");
    }
    if let Ok(mut job) = state.job.lock() {
        if let Some(job) = job.as_mut() {
            job.finished_at = Some(Utc::now());
            job.error = outcome.err().map(|e| format!("{e:#}"));
        }
    }
}

/// The OpenAPI paths of these routes, for the system's document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(read_models, rebuild),
    components(schemas(ReadModels, ModelState, RebuildState, RebuildRequest, Store, Rebuilt, Generations)),
    tags((name = "operations", description = "What operators read and do (viewer reads, ops acts)"))
)]
struct ApiDoc;
