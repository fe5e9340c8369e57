//! The E2B / Novita REST schemas, as the SDKs send and expect them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stasis_proto::rfc3339_millis;
use stasis_store::SandboxRow;

/// envd version reported to the SDKs: new enough that they use stdin, closeStdin, file
/// metadata, octet-stream uploads and watch entries (all of which the agent serves).
pub const ENVD_VERSION: &str = "0.6.13";

#[derive(Debug, Deserialize, Default)]
pub struct AutoResume {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// "kill" or "pause".
    pub on_timeout: Option<String>,
    pub auto_resume: Option<bool>,
}

/// `POST /sandboxes` and `POST /v2/sandboxes`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    pub template_id: Option<String>,
    pub timeout: Option<u64>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub env_vars: Option<BTreeMap<String, String>>,
    pub auto_pause: Option<bool>,
    pub auto_pause_memory: Option<bool>,
    pub auto_resume: Option<AutoResume>,
    pub lifecycle: Option<LifecycleSpec>,
    pub secure: Option<bool>,
    #[serde(rename = "allow_internet_access", alias = "allowInternetAccess")]
    pub allow_internet_access: Option<bool>,
    pub network: Option<serde_json::Value>,
    /// Stasis extension: the sandbox's memory limit (E2B takes it from the template).
    #[serde(rename = "memoryMB")]
    pub memory_mb: Option<u64>,
    /// Stasis extension: CPU quota in cores.
    pub cpu_count: Option<u32>,
    /// Stasis extension: disk size (the most the sandbox can write).
    #[serde(rename = "diskSizeMB")]
    pub disk_size_mb: Option<u64>,
    /// Volumes to mount, by name.
    pub volume_mounts: Option<Vec<SandboxVolumeMount>>,
    /// Workload identity (`iam: {tokens: {name: {audience, tokenType}}}`): not served
    /// (`sandboxes::refuse_iam`), never ignored.
    pub iam: Option<serde_json::Value>,
}

/// A volume mounted in a sandbox (`SandboxVolumeMount`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxVolumeMount {
    pub name: String,
    pub path: String,
}

/// `POST /volumes`.
#[derive(Debug, Deserialize, Default)]
pub struct NewVolume {
    pub name: Option<String>,
}

/// A secret's metadata (`Secret`); never its value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(rename = "secretID")]
    pub secret_id: String,
    pub name: String,
    pub current_version: i64,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Secret {
    pub fn from_row(r: &stasis_store::SecretRow) -> Self {
        Self {
            secret_id: r.id.clone(),
            name: r.name.clone(),
            current_version: r.version,
            metadata: r.metadata.clone(),
            created_at: rfc3339_millis(r.created_at),
            updated_at: rfc3339_millis(r.updated_at),
        }
    }
}

/// `POST /secrets` (`NewSecret`) and `POST /secrets/{id}` (`SecretUpdate`, no name).
#[derive(Debug, Deserialize, Default)]
pub struct SecretBody {
    pub name: Option<String>,
    pub value: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A volume in a listing (`Volume`).
#[derive(Debug, Serialize)]
pub struct Volume {
    #[serde(rename = "volumeID")]
    pub volume_id: String,
    pub name: String,
}

/// A volume with the token of its content API (`VolumeAndToken`).
#[derive(Debug, Serialize)]
pub struct VolumeAndToken {
    #[serde(rename = "volumeID")]
    pub volume_id: String,
    pub name: String,
    pub token: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectBody {
    pub timeout: Option<u64>,
    pub memory: Option<bool>,
    pub auto_pause: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
pub struct PauseBody {
    pub memory: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct TimeoutBody {
    pub timeout: u64,
}

/// Answer of create / connect / resume.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub alias: Option<String>,
    pub envd_version: &'static str,
    pub envd_access_token: Option<String>,
    pub traffic_access_token: Option<String>,
    pub domain: Option<String>,
}

impl Sandbox {
    pub fn from_row(r: &SandboxRow, domain: &str) -> Self {
        Self {
            template_id: r.template_id.clone(),
            sandbox_id: r.id.clone(),
            client_id: r.client_id.clone(),
            alias: r.alias.clone(),
            envd_version: ENVD_VERSION,
            envd_access_token: r.envd_access_token.clone(),
            traffic_access_token: r.traffic_access_token.clone(),
            domain: Some(domain.to_string()),
        }
    }
}

/// One entry of the list APIs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSandbox {
    #[serde(rename = "templateID")]
    pub template_id: String,
    pub alias: Option<String>,
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub started_at: String,
    pub end_at: String,
    pub cpu_count: u32,
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "diskSizeMB")]
    pub disk_size_mb: u64,
    pub metadata: BTreeMap<String, String>,
    pub state: &'static str,
    pub envd_version: &'static str,
    /// Stasis extension: when a paused sandbox was paused (its `endAt` no longer applies
    /// until it runs again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// Stasis extension: the node that runs it, or holds it paused (`local` on one
    /// machine; E2B's `nodeID` in its listings names its own nodes the same way).
    #[serde(rename = "nodeID")]
    pub node_id: String,
}

impl ListedSandbox {
    pub fn from_row(r: &SandboxRow) -> Self {
        Self {
            template_id: r.template_id.clone(),
            alias: r.alias.clone(),
            sandbox_id: r.id.clone(),
            client_id: r.client_id.clone(),
            started_at: rfc3339_millis(r.started_at),
            end_at: rfc3339_millis(r.end_at),
            cpu_count: r.cpu_count,
            memory_mb: r.memory_mb,
            disk_size_mb: r.disk_size_mb,
            metadata: r.metadata.clone(),
            state: r.state.listed_as().unwrap_or("running"),
            envd_version: ENVD_VERSION,
            paused_at: r.paused_at.filter(|_| r.state.listed_as() == Some("paused")).map(rfc3339_millis),
            node_id: r.node_id.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleInfo {
    pub on_timeout: &'static str,
    pub auto_resume: bool,
}

/// `GET /sandboxes/{id}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDetail {
    #[serde(flatten)]
    pub listed: ListedSandbox,
    pub envd_access_token: Option<String>,
    pub domain: Option<String>,
    pub lifecycle: LifecycleInfo,
    /// "full" (memory and files) or "filesystem": what a pause keeps (the SDKs' enum).
    pub pause_mode: &'static str,
    /// Stasis extension: a pause or resume under way, with bytes written or read so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<stasis_runtime::OpProgress>,
    /// Stasis extension: the last lifecycle action on the sandbox that failed, until one
    /// succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    pub volume_mounts: Vec<SandboxVolumeMount>,
    /// The egress rules the sandbox has now (E2B's `SandboxNetworkConfig`: `allowOut`,
    /// `denyOut`; the SDKs' `getInfo().network`), as created or last updated.
    pub network: NetworkInfo,
    pub allow_internet_access: bool,
}

/// `SandboxDetail.network`: the two lists Stasis enforces (empty when not set).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    pub allow_out: Vec<String>,
    pub deny_out: Vec<String>,
    /// The per-domain header rules as stored (placeholders, never values); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<serde_json::Value>,
    /// False: the user ports take the traffic access token.
    pub allow_public_traffic: bool,
}

impl NetworkInfo {
    fn from_value(v: &serde_json::Value) -> Self {
        let list = |key: &str| -> Vec<String> {
            v.get(key)
                .and_then(|l| l.as_array())
                .map(|l| l.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let rules = v.get("rules").filter(|r| r.as_object().is_some_and(|m| !m.is_empty())).cloned();
        Self {
            allow_out: list("allowOut"),
            deny_out: list("denyOut"),
            rules,
            allow_public_traffic: crate::lifecycle::allows_public_traffic(v),
        }
    }
}

/// A failed lifecycle action as the API shows it (`lastError`).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// "pause", "resume" or "kill".
    pub operation: &'static str,
    pub message: String,
    /// When it last failed.
    pub at: String,
    /// Consecutive failures since the last success or the last API call on the sandbox.
    pub attempts: u32,
    /// When the lifecycle tries again by itself; absent once it stopped trying (the next
    /// API call on the sandbox, such as connect or setTimeout, starts over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

impl LastError {
    pub fn from_failed(f: &stasis_store::FailedAction) -> Self {
        Self {
            operation: f.operation.as_str(),
            message: f.message.clone(),
            at: rfc3339_millis(f.at),
            attempts: f.attempts,
            next_attempt_at: f.next_attempt_at.map(rfc3339_millis),
        }
    }
}

impl SandboxDetail {
    pub fn from_row(r: &SandboxRow, domain: &str) -> Self {
        Self {
            listed: ListedSandbox::from_row(r),
            envd_access_token: r.envd_access_token.clone(),
            domain: Some(domain.to_string()),
            lifecycle: LifecycleInfo {
                on_timeout: if r.auto_pause { "pause" } else { "kill" },
                auto_resume: r.auto_resume,
            },
            pause_mode: if r.pause_memory { "full" } else { "filesystem" },
            operation: None,
            last_error: r.last_error.as_ref().map(LastError::from_failed),
            volume_mounts: Vec::new(),
            network: NetworkInfo::from_value(&r.network),
            allow_internet_access: r.allow_internet_access,
        }
    }
}

/// `GET /sandboxes/{id}/metrics?start=&end=`: Unix seconds, both ends included (the SDKs'
/// `getMetrics({ start, end })` / `get_metrics(start=, end=)`).
#[derive(Debug, Deserialize, Default)]
pub struct MetricsRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl MetricsRange {
    pub fn contains(&self, unix_secs: i64) -> bool {
        self.start.is_none_or(|s| s <= unix_secs) && self.end.is_none_or(|e| unix_secs <= e)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub timestamp: String,
    pub timestamp_unix: i64,
    pub cpu_count: u32,
    pub cpu_used_pct: f64,
    pub mem_used: u64,
    pub mem_total: u64,
    pub mem_cache: u64,
    pub disk_used: u64,
    pub disk_total: u64,
}

impl From<&crate::lifecycle::Sample> for Metric {
    fn from(s: &crate::lifecycle::Sample) -> Metric {
        Metric {
            timestamp: stasis_proto::rfc3339_millis(s.at),
            timestamp_unix: s.at / 1000,
            cpu_count: s.cpu_count,
            cpu_used_pct: s.cpu_pct,
            mem_used: s.mem_used,
            mem_total: s.mem_total,
            mem_cache: 0,
            disk_used: s.disk_used,
            disk_total: s.disk_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    proptest! {
        /// The wire's times are written as they were with humantime, to the byte.
        #[test]
        fn times_are_written_as_before(ms in 0i64..253_402_300_800_000) {
            let before = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string();
            prop_assert_eq!(super::rfc3339_millis(ms), before);
        }
    }
}
