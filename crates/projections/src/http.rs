//! The reports API. Reads only the read models; a store that is down is a 503 problem.
//!
//! The reports sum every customer's orders, so they are for the shop's staff: a viewer's or an
//! operator's token (SYSTEM.md §8). No token is 401, a customer's is 403.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use platform::auth::{Identity, Role};
use platform::health::{Dependency, readiness};
use platform::http::Problem;

use crate::live::StoreError;
use crate::{OrdersModel, ProductsModel};

#[derive(Clone)]
pub struct AppState {
    pub products: Arc<ProductsModel>,
    pub orders: Arc<OrdersModel>,
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/reports/products", get(products_report))
        .route("/api/reports/orders", get(orders_report))
        .route("/health/ready", get(ready))
        .with_state(state)
}

#[tracing::instrument(skip_all)]
async fn products_report(State(state): State<AppState>, identity: Identity) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    match state.products.report().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => unavailable("redis", &e),
    }
}

#[tracing::instrument(skip_all)]
async fn orders_report(State(state): State<AppState>, identity: Identity) -> Response {
    if let Err(e) = identity.require(Role::Viewer) {
        return e.into_response();
    }
    match state.orders.report().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => unavailable("mongodb", &e),
    }
}

/// Logged once here with its cause; the client learns only which store is unavailable.
fn unavailable(store: &'static str, e: &StoreError) -> Response {
    tracing::warn!(store, error = ?e, "report unavailable");
    Problem::unavailable(format!("the {store} read model is unavailable")).into_response()
}

const CHECK: Duration = Duration::from_secs(2);

async fn ready(State(state): State<AppState>) -> Response {
    let (redis, mongodb) = tokio::join!(
        tokio::time::timeout(CHECK, state.products.ping()),
        tokio::time::timeout(CHECK, state.orders.ping()),
    );
    let flatten = |r: Result<Result<(), StoreError>, _>| match r {
        Ok(inner) => inner.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    readiness(&[
        Dependency::from_result("redis", flatten(redis)),
        Dependency::from_result("mongodb", flatten(mongodb)),
    ])
}
