//! The operator's endpoints beside the E2B API: `GET /metrics` (Prometheus), `GET /health`
//! (liveness), `GET /health/ready` (readiness) and the dashboard's page (`/dashboard/`). Each has its own authentication (none
//! for health checks, which load balancers call without secrets; the metrics token or an
//! API key for metrics), so they are not behind the API's key check.

mod health;
mod metrics;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::api::AppState;

/// Settings of the operator's endpoints (from `ServeConfig`).
#[derive(Debug, Clone, Default)]
pub struct OpsConfig {
    /// The data dir, whose filesystem the host metrics report.
    pub data_dir: Option<PathBuf>,
    /// A bearer token that may read `/metrics` (besides the API keys), so a Prometheus
    /// server does not need an API key that can also create sandboxes.
    pub metrics_token: Option<String>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .merge(crate::dashboard::router())
        .with_state(state)
}

/// Shared by the handlers.
pub type Config = Arc<OpsConfig>;
