//! `GET /stasis/nodes`, `POST /stasis/nodes/{id}/drain` and `/activate` (API key): the
//! cluster's nodes as the registry has them (`stasis node ls`, `stasis node drain`).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState};

fn wire(n: &stasis_store::NodeRow, this: &str) -> Value {
    json!({
        "nodeID": n.id,
        "url": n.url,
        "state": n.state.as_str(),
        "capacity": n.capacity,
        "free": n.free,
        "heartbeatAt": stasis_proto::timestamp::rfc3339_millis(n.heartbeat_at),
        "leaseUntil": stasis_proto::timestamp::rfc3339_millis(n.lease_until),
        "joinedAt": stasis_proto::timestamp::rfc3339_millis(n.joined_at),
        "self": n.id == this,
    })
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let this = state.lifecycle.node_id().to_string();
    let nodes = state.lifecycle.nodes().await?;
    Ok(Json(Value::Array(nodes.iter().map(|n| wire(n, &this)).collect())))
}

pub async fn drain(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let n = state.lifecycle.drain_node(&id).await?;
    Ok(Json(wire(&n, state.lifecycle.node_id())))
}

pub async fn activate(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let n = state.lifecycle.activate_node(&id).await?;
    Ok(Json(wire(&n, state.lifecycle.node_id())))
}
