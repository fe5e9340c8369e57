//! The boot contract between the host runtime and the agent: one JSON document passed
//! on the command line of `stasis-agent boot`.

use serde::{Deserialize, Serialize};

/// Port the agent serves the envd protocol on, inside the sandbox's network namespace.
pub const ENVD_PORT: u16 = 49983;

/// File descriptor on which the agent's boot stages talk to the host runtime.
pub const SYNC_FD: i32 = 3;

/// Environment variable carrying the boot config from PID 1 to `stasis-agent serve`.
pub const CONFIG_ENV: &str = "STASIS_BOOT_CONFIG";

/// Where, inside the sandbox, the agent keeps its own files (binary, device nodes, log).
pub const AGENT_DIR: &str = "/.stasis";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootConfig {
    pub sandbox_id: String,
    /// Host path of the sandbox's root filesystem (the mounted overlay).
    pub rootfs: String,
    /// Host `cgroup.procs` files the boot stage joins before entering the namespaces.
    pub cgroup_procs: Vec<String>,
    pub hostname: String,
    /// Random 128-bit id shown as the sandbox's boot id (hex, 32 chars).
    pub boot_id: String,
    /// Path, inside the sandbox, of the agent binary PID 1 re-executes from, so that a
    /// checkpoint never references a host file.
    pub agent_path: String,
    /// `envVars` of the create request: set for every process of the sandbox.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// When set, every envd call must carry it in `X-Access-Token`.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Network device the host moved into the sandbox: it becomes eth0.
    #[serde(default)]
    pub net_device: Option<String>,
    #[serde(default)]
    pub sandbox_ip: String,
    #[serde(default)]
    pub gateway_ip: String,
}

/// Messages the boot stages write on [`SYNC_FD`]; one line each.
pub mod sync {
    /// Stage 1 has entered its new user namespace and waits for its id maps.
    pub const UNSHARED: &str = "unshared";
    /// Host → stage 1: id maps written.
    pub const MAPPED: &str = "mapped";
    /// Stage 1 → host: `pid <host pid of the sandbox init>`.
    pub const PID: &str = "pid";
    /// PID 1 → host: the agent listens; the sandbox is ready.
    pub const READY: &str = "ready";
    /// Any stage → host: `error <message>`; boot failed.
    pub const ERROR: &str = "error";
}
