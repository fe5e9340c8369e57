//! Stasis's own endpoints, beside E2B's: `GET /stasis/lifecycle` reports the lifecycle's
//! failed actions (counters since the daemon started, per operation; every sandbox with
//! a failed action on its row, including one stuck `killing`, which E2B's endpoints do
//! not show). `GET /metrics` exports the same counters
//! (`stasis_lifecycle_failed_actions_total`, `ops/metrics.rs`).

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::wire::LastError;
use super::{ApiError, AppState};
use crate::lifecycle::FailedActionCounts;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleStatus {
    failed_actions: FailedActionCounts,
    failing: Vec<Failing>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failing {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    /// The row's own state (`running`, `paused`, `killing`, ...).
    state: &'static str,
    last_error: LastError,
}

pub async fn lifecycle(State(state): State<AppState>) -> Result<Json<LifecycleStatus>, ApiError> {
    let rows = state.lifecycle.with_failed_actions().await?;
    let failing = rows
        .iter()
        .filter_map(|r| {
            Some(Failing {
                sandbox_id: r.id.clone(),
                state: r.state.as_str(),
                last_error: LastError::from_failed(r.last_error.as_ref()?),
            })
        })
        .collect();
    Ok(Json(LifecycleStatus { failed_actions: state.lifecycle.failed_actions(), failing }))
}

/// `GET /stasis/templates`: the templates sandboxes can be created from (the dashboard's
/// list), with whether each starts with a service running.
pub async fn templates(State(state): State<AppState>) -> Json<Vec<stasis_runtime::TemplateInfo>> {
    Json(state.lifecycle.templates().await)
}
