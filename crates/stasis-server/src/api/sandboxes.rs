//! Sandbox endpoints: create, list, info, connect/resume, pause, kill, timeout, metrics.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use stasis_store::{ListQuery, SandboxState};

use super::wire::{self, NewSandbox};
use super::{json_body, ApiError, AppState};
use crate::ids::SandboxId;
use crate::lifecycle::{CreateParams, SandboxDefaults, FOREVER_SECS};
use crate::secrets::NetworkRules;

type ApiResult<T> = Result<T, ApiError>;

/// A sandbox id from the request path, parsed once here: an invalid one is a 404, as an
/// unknown one is.
pub struct SandboxPath(pub SandboxId);

impl<S: Send + Sync> FromRequestParts<S> for SandboxPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        SandboxId::parse(&id).map(SandboxPath).map_err(|_| {
            ApiError::not_found(format!("sandbox {id:?} not found (ids are lowercase letters and digits)"))
        })
    }
}

/// A timeout of at least one second within the server's limit (`--max-timeout`; `None`: no
/// limit, a longer one is taken as [`FOREVER_SECS`]).
pub(super) fn check_timeout(t: u64, max: Option<u64>) -> ApiResult<u64> {
    match max {
        _ if t == 0 => Err(ApiError::bad_request("timeout must be at least 1 second, got 0")),
        Some(max) if t > max => Err(ApiError::bad_request(format!(
            "timeout {t} s is longer than this server's limit of {max} s{} (stasis serve --max-timeout)",
            if max % 86_400 == 0 { format!(" ({} days)", max / 86_400) } else { String::new() }
        ))),
        _ => Ok(t.min(FOREVER_SECS)),
    }
}

/// Validates a create request into lifecycle parameters.
fn create_params(req: NewSandbox, default_timeout: u64, d: &SandboxDefaults) -> ApiResult<CreateParams> {
    let template = req.template_id.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| d.template.clone());
    if template.len() > 256 || template.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request("templateID is not a valid template name"));
    }
    let metadata = req.metadata.unwrap_or_default();
    let auto_pause = match req.lifecycle.as_ref().and_then(|l| l.on_timeout.as_deref()) {
        Some("pause") => true,
        Some("kill") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "lifecycle.onTimeout must be \"kill\" or \"pause\", got {other:?}"
            )))
        }
        None => req.auto_pause.unwrap_or(false),
    };
    // Novita's legacy form: metadata auto_resume = "true".
    let auto_resume = req.auto_resume.map(|a| a.enabled).unwrap_or(false)
        || req.lifecycle.as_ref().and_then(|l| l.auto_resume).unwrap_or(false)
        || metadata.get("auto_resume").is_some_and(|v| v == "true");
    let idle_timeout_secs = match metadata.get("idle_timeout") {
        None => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 60 => Some(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "metadata idle_timeout must be a number of seconds >= 60, got {v:?}"
                )))
            }
        },
    };
    if let Err(e) = crate::lifecycle::park_limit(&metadata, None) {
        return Err(ApiError::bad_request(e));
    }
    let memory_mb = req.memory_mb.unwrap_or(d.memory_mb);
    if !(64..=262_144).contains(&memory_mb) {
        return Err(ApiError::bad_request(format!("memoryMB must be between 64 and 262144, got {memory_mb}")));
    }
    let cpu_count = req.cpu_count.unwrap_or(d.cpu_count);
    if !(1..=256).contains(&cpu_count) {
        return Err(ApiError::bad_request(format!("cpuCount must be between 1 and 256, got {cpu_count}")));
    }
    let disk_mb = req.disk_size_mb.unwrap_or(d.disk_mb);
    if !(64..=1_048_576).contains(&disk_mb) {
        return Err(ApiError::bad_request(format!("diskSizeMB must be between 64 and 1048576, got {disk_mb}")));
    }
    refuse_iam(req.iam.as_ref())?;
    let network = req.network.unwrap_or(serde_json::Value::Null);
    if !(network.is_null() || network.is_object()) {
        return Err(ApiError::bad_request("network must be an object"));
    }
    if network.get("allowPublicTraffic").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::bad_request("network.allowPublicTraffic must be true or false"));
    }
    for key in ["allowOut", "denyOut"] {
        if let Some(v) = network.get(key) {
            if !v.as_array().is_some_and(|a| a.iter().all(|x| x.is_string())) {
                return Err(ApiError::bad_request(format!("network.{key} must be a list of CIDR strings")));
            }
        }
    }
    crate::lifecycle::network_policy(true, &network).validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(CreateParams {
        template,
        timeout_secs: check_timeout(req.timeout.unwrap_or(default_timeout), d.max_timeout_secs)?,
        metadata,
        env_vars: req.env_vars.unwrap_or_default(),
        auto_pause,
        pause_memory: req.auto_pause_memory.unwrap_or(true),
        auto_resume,
        secure: req.secure.unwrap_or(false),
        allow_internet_access: req.allow_internet_access.unwrap_or(true),
        network,
        idle_timeout_secs,
        memory_mb,
        cpu_count,
        disk_mb,
        volumes: Vec::new(),
    })
}

async fn create(state: AppState, body: Body, default_timeout: fn(&SandboxDefaults) -> u64) -> ApiResult<Response> {
    let mut req: NewSandbox = json_body(body).await?;
    let mounts: Vec<(String, String)> =
        req.volume_mounts.take().unwrap_or_default().into_iter().map(|m| (m.name, m.path)).collect();
    let d = state.defaults();
    let mut params = create_params(req, default_timeout(d), d)?;
    params.volumes = state.lifecycle.resolve_volume_mounts(&mounts).await?;
    let rules = NetworkRules::parse(params.network.get("rules")).map_err(ApiError::bad_request)?;
    state.lifecycle.check_rule_secrets(&rules).await?;
    if let Some(network) = params.network.as_object_mut() {
        if rules.is_empty() {
            network.remove("rules");
        } else {
            network.insert("rules".into(), rules.to_value());
        }
    }
    let row = state.lifecycle.create(params).await?;
    Ok((StatusCode::CREATED, Json(wire::Sandbox::from_row(&row, &state.domain))).into_response())
}

pub async fn create_v1(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    create(state, body, |d| d.timeout_secs_v1).await
}

pub async fn create_v2(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    create(state, body, |d| d.timeout_secs_v2).await
}

async fn list(state: &AppState, mut q: ListQuery) -> ApiResult<Response> {
    q.states.retain(|s| *s != SandboxState::Killed);
    let (rows, next) = state.lifecycle.list(&q).await.map_err(|e| match e {
        crate::lifecycle::LifecycleError::Store(stasis_store::StoreError::InvalidQuery(q)) => {
            ApiError::bad_request(q.to_string())
        }
        other => other.into(),
    })?;
    let body: Vec<wire::ListedSandbox> = rows.iter().map(wire::ListedSandbox::from_row).collect();
    let mut r = Json(body).into_response();
    if let Some(token) = next {
        if let Ok(v) = HeaderValue::from_str(&token) {
            r.headers_mut().insert("x-next-token", v);
        }
    }
    Ok(r)
}

pub async fn list_v2(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let q =
        ListQuery::from_query_string(raw.as_deref().unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    list(&state, q).await
}

/// v1 lists running sandboxes only.
pub async fn list_v1(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let mut q =
        ListQuery::from_query_string(raw.as_deref().unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    q.states = vec![SandboxState::Running];
    list(&state, q).await
}

pub async fn info(State(state): State<AppState>, SandboxPath(id): SandboxPath) -> ApiResult<Response> {
    let row = state.lifecycle.get(&id).await?;
    let mut detail = wire::SandboxDetail::from_row(&row, &state.domain);
    detail.operation = state.lifecycle.progress(&id);
    detail.volume_mounts = state
        .lifecycle
        .volume_mounts(&id)
        .await?
        .into_iter()
        .map(|(name, path)| wire::SandboxVolumeMount { name, path })
        .collect();
    Ok(Json(detail).into_response())
}

pub async fn kill(State(state): State<AppState>, SandboxPath(id): SandboxPath) -> ApiResult<StatusCode> {
    state.lifecycle.kill(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<StatusCode> {
    let req: wire::PauseBody = json_body(body).await?;
    state.lifecycle.pause(&id, req.memory.unwrap_or(true)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connect_or_resume(state: AppState, id: SandboxId, body: Body, resume_only: bool) -> ApiResult<Response> {
    let req: wire::ConnectBody = json_body(body).await?;
    let max = state.defaults().max_timeout_secs;
    let timeout = req.timeout.map(|t| check_timeout(t, max)).transpose()?;
    let (row, resumed) = state.lifecycle.connect(&id, timeout, req.memory.unwrap_or(true)).await?;
    if resume_only && !resumed {
        return Err(ApiError::conflict(format!("sandbox {id} is already running")));
    }
    let status = if resumed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(wire::Sandbox::from_row(&row, &state.domain))).into_response())
}

pub async fn connect(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<Response> {
    connect_or_resume(state, id, body, false).await
}

/// The old resume endpoint: 201 when resumed, 409 when it was running.
pub async fn resume(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<Response> {
    connect_or_resume(state, id, body, true).await
}

pub async fn set_timeout(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    body: Body,
) -> ApiResult<StatusCode> {
    let bytes =
        axum::body::to_bytes(body, super::MAX_BODY_BYTES).await.map_err(|_| ApiError::bad_request("body too large"))?;
    let req: wire::TimeoutBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e} (expected {{\"timeout\": seconds}})")))?;
    // 0 is E2B's "end it now" (pause or kill, by the sandbox's policy).
    let secs = match req.timeout {
        0 => 0,
        t => check_timeout(t, state.defaults().max_timeout_secs)?,
    };
    state.lifecycle.set_timeout(&id, secs).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /sandboxes/{id}/network` (E2B's `updateNetwork`, Novita's `setNetwork`).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkUpdateBody {
    #[serde(default)]
    allow_out: Vec<String>,
    #[serde(default)]
    deny_out: Vec<String>,
    /// Left out: as created (a sandbox made without internet access does not get it back
    /// because an update named only `allowOut`).
    allow_internet_access: Option<bool>,
    #[serde(default)]
    dns_servers: Vec<String>,
    egress_proxy: Option<serde_json::Value>,
    rules: Option<serde_json::Value>,
}

/// Replaces the sandbox's outbound rules: `allowOut` / `denyOut` as at create (IPv4
/// addresses and CIDRs) and the per-domain header `rules` (their secrets must exist), one
/// left out is cleared; 204. What Stasis does not do at egress (DNS servers, a SOCKS
/// proxy) is a 400 naming it, never silently dropped.
pub async fn update_network(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    body: Body,
) -> ApiResult<StatusCode> {
    let req: NetworkUpdateBody = json_body(body).await?;
    let unsupported = [
        ("dnsServers", !req.dns_servers.is_empty()),
        ("egressProxy", req.egress_proxy.as_ref().is_some_and(|v| !v.is_null())),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(ApiError::bad_request(format!(
            "network.{name} is not supported by Stasis (allowOut and denyOut with IPv4 addresses and CIDRs, and rules, are; see docs/sdk-parity.md)"
        )));
    }
    let rules = NetworkRules::parse(req.rules.as_ref()).map_err(ApiError::bad_request)?;
    state.lifecycle.check_rule_secrets(&rules).await?;
    state.lifecycle.update_network(&id, req.allow_out, req.deny_out, req.allow_internet_access, rules).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Workload identity tokens (`iam.tokens`, E2B's `Secret.iamToken`): E2B mints them as an
/// OIDC issuer the cloud providers trust and its egress proxy puts them in requests. A
/// self-hosted Stasis is no issuer any cloud trusts, so a sandbox asking for tokens is
/// refused with a 501 that says so, never started without them. No tokens asked
/// (absent, null, or an empty map, which the SDKs treat as off) is fine.
fn refuse_iam(iam: Option<&serde_json::Value>) -> ApiResult<()> {
    let asks = match iam {
        None | Some(serde_json::Value::Null) => false,
        Some(v) => match v.get("tokens") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Object(m)) => !m.is_empty(),
            Some(_) => return Err(ApiError::bad_request("iam.tokens must be an object")),
        },
    };
    if !asks {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "iam.tokens (workload identity) is not served by Stasis: tokens are minted by an OIDC issuer your \
         cloud trusts, which a self-hosted Stasis is not; use a Secret and network.rules instead \
         (docs/sdk-parity.md, iamToken)",
    ))
}

/// Legacy keep-alive: `{"duration": seconds}` extends like connect.
pub async fn refresh(State(state): State<AppState>, SandboxPath(id): SandboxPath, body: Body) -> ApiResult<StatusCode> {
    let req: BTreeMap<String, serde_json::Value> = json_body(body).await?;
    let d = state.defaults();
    let secs = req.get("duration").and_then(|v| v.as_u64()).unwrap_or(d.refresh_secs);
    let row = state.lifecycle.get(&id).await?;
    if row.state != SandboxState::Running {
        return Err(ApiError::conflict(format!("sandbox {id} is not running")));
    }
    state.lifecycle.connect(&id, Some(check_timeout(secs, d.max_timeout_secs)?), true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The sandbox's usage now, as one point, if it lies in the requested range (there is no
/// history yet: a range that ends before now, or starts after it, has no points).
pub async fn metrics(
    State(state): State<AppState>,
    SandboxPath(id): SandboxPath,
    range: Result<Query<wire::MetricsRange>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(range) = range.map_err(|e| {
        ApiError::bad_request(format!("invalid metrics range: {} (start and end are Unix seconds)", e.body_text()))
    })?;
    if let (Some(start), Some(end)) = (range.start, range.end) {
        if start > end {
            return Err(ApiError::bad_request(format!("metrics range starts ({start}) after it ends ({end})")));
        }
    }
    let row = state.lifecycle.get(&id).await?;
    // The sampled history (every few seconds while it ran), then the usage now.
    let (start, end) = (range.start.map(|s| s.saturating_mul(1000)), range.end.map(|e| e.saturating_mul(1000) + 999));
    let mut points: Vec<wire::Metric> =
        state.lifecycle.samples(&id, start, end).iter().map(wire::Metric::from).collect();
    let now = state.lifecycle.now();
    if range.contains(now / 1000) {
        if let Some(usage) = state.lifecycle.usage(&id).await? {
            let cpu_pct = state.lifecycle.cpu_percent(&id, usage.cpu_usage_ns, row.cpu_count).await;
            points.push(wire::Metric::from(&crate::lifecycle::Sample {
                at: now,
                cpu_count: row.cpu_count,
                cpu_pct,
                mem_used: usage.memory_bytes,
                mem_total: usage.memory_limit_bytes,
                disk_used: usage.disk_bytes,
                disk_total: row.disk_size_mb << 20,
            }));
        }
    }
    Ok(Json(points).into_response())
}
