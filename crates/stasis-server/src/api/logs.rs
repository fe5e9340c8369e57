//! A sandbox's logs and events: its lifecycle events (created, paused with timings,
//! resumed, killed, failed because...) served as E2B's sandbox logs (`GET
//! /sandboxes/{id}/logs`, v1, and `/v2/sandboxes/{id}/logs`) and in full, with their kind,
//! fields and sequence number, at `GET /stasis/sandboxes/{id}/events` (what `stasis
//! sandbox logs -f` and `events` follow). They stay readable for a while after the sandbox
//! is killed.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use stasis_store::{EventQuery, Level, SandboxEvent};

use super::sandboxes::SandboxPath;
use super::{ApiError, AppState};

type ApiResult<T> = Result<T, ApiError>;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
}

/// E2B v1: `start` (ms since the epoch), `limit`.
#[derive(Deserialize)]
pub struct V1Query {
    start: Option<i64>,
    limit: Option<u32>,
}

/// E2B v2: `cursor` (ms since the epoch), `limit`, `direction`, `level`, `search`.
#[derive(Deserialize)]
pub struct V2Query {
    cursor: Option<i64>,
    limit: Option<u32>,
    direction: Option<String>,
    level: Option<String>,
    search: Option<String>,
}

/// Stasis: `after` (a sequence number), `limit`.
#[derive(Deserialize)]
pub struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct LogLine {
    timestamp: String,
    line: String,
}

#[derive(Serialize)]
pub struct LogEntry {
    timestamp: String,
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
}

impl From<&SandboxEvent> for LogEntry {
    fn from(e: &SandboxEvent) -> LogEntry {
        let mut fields = e.fields.clone();
        fields.insert("event".into(), e.kind.clone());
        fields.insert("sandboxID".into(), e.sandbox_id.clone());
        LogEntry { timestamp: stasis_proto::rfc3339_millis(e.at), level: e.level, message: e.message.clone(), fields }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsV1 {
    logs: Vec<LogLine>,
    log_entries: Vec<LogEntry>,
}

#[derive(Serialize)]
pub struct LogsV2 {
    logs: Vec<LogEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    seq: i64,
    timestamp: String,
    level: Level,
    kind: String,
    message: String,
    fields: BTreeMap<String, String>,
}

pub async fn logs_v1(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    q: Result<Query<V1Query>, QueryRejection>,
) -> ApiResult<Json<LogsV1>> {
    let q = query(q)?;
    let events = state
        .lifecycle
        .events(&EventQuery { sandbox_id: id.to_string(), since: q.start, limit: q.limit, ..Default::default() })
        .await?;
    let logs = events
        .iter()
        .map(|e| LogLine { timestamp: stasis_proto::rfc3339_millis(e.at), line: e.message.clone() })
        .collect();
    Ok(Json(LogsV1 { logs, log_entries: events.iter().map(LogEntry::from).collect() }))
}

pub async fn logs_v2(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    q: Result<Query<V2Query>, QueryRejection>,
) -> ApiResult<Json<LogsV2>> {
    let q = query(q)?;
    let backward = match q.direction.as_deref() {
        None | Some("forward") => false,
        Some("backward") => true,
        Some(d) => return Err(ApiError::bad_request(format!("direction {d:?}: forward or backward"))),
    };
    let min_level = match q.level.as_deref() {
        None => None,
        Some(l) => Some(Level::parse(l).ok_or_else(|| ApiError::bad_request(format!("level {l:?}")))?),
    };
    let mut eq = EventQuery {
        sandbox_id: id.to_string(),
        min_level,
        search: q.search,
        newest_first: backward,
        limit: q.limit,
        ..Default::default()
    };
    // The cursor is a time: forward reads from it, backward up to it.
    match backward {
        true => eq.until = q.cursor,
        false => eq.since = q.cursor,
    }
    let events = state.lifecycle.events(&eq).await?;
    Ok(Json(LogsV2 { logs: events.iter().map(LogEntry::from).collect() }))
}

pub async fn events(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<Event>>> {
    let q = query(q)?;
    let eq = EventQuery { sandbox_id: id.to_string(), after_seq: q.after, limit: q.limit, ..Default::default() };
    let events = state.lifecycle.events(&eq).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| Event {
                seq: e.seq,
                timestamp: stasis_proto::rfc3339_millis(e.at),
                level: e.level,
                kind: e.kind,
                message: e.message,
                fields: e.fields,
            })
            .collect(),
    ))
}
