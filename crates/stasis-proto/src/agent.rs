//! The contract between the host runtime and the in-sandbox agent, outside envd itself.
//!
//! - **Boot**: the runtime starts `stasis-agent boot CONFIG`, CONFIG being a
//!   [`BootConfig`] as JSON ([`BootConfig::to_json`], [`BootConfig::from_json`]).
//! - **Sync protocol**: the boot stages and the runtime then talk on fd [`SYNC_FD`], one
//!   [`SyncMessage`] per line, in this order: stage 1 `unshared` → host `mapped` (id maps
//!   written, network device plugged in) → stage 1 `pid N` → PID 1 `ready`; any stage may
//!   send `error MESSAGE` instead, which ends the boot.
//! - **Handover**: a sandbox restored from a snapshot runs the source's agent, which still
//!   holds the source's token and environment; the runtime POSTs an [`InitRequest`] as JSON
//!   to [`INIT_PATH`] on [`ENVD_PORT`], authenticated with the old token in
//!   [`ACCESS_TOKEN_HEADER`]. The agent answers 204.
//!
//! Types and pure functions only: both sides do their own I/O. The JSON field names and
//! the line formats are a wire format: a paused sandbox resumes with the agent binary it
//! ran, so a newer runtime must keep talking to older agents.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Port the agent serves the envd protocol on (and `/init`), inside the sandbox's network
/// namespace. E2B's envd port: the SDKs address it by number.
pub const ENVD_PORT: u16 = 49983;

/// Port of the code interpreter in `code-interpreter-v1` sandboxes (E2B's, the SDKs'
/// `JUPYTER_PORT`). It checks the sandbox's access token itself, so the proxy passes
/// `X-Access-Token` to it as to the agent.
pub const INTERPRETER_PORT: u16 = 49999;

/// File descriptor on which the agent's boot stages talk to the host runtime.
pub const SYNC_FD: i32 = 3;

/// Path of the handover endpoint (as envd's).
pub const INIT_PATH: &str = "/init";

/// Header carrying the sandbox's access token on every envd call (and on `/init`).
pub const ACCESS_TOKEN_HEADER: &str = "x-access-token";

/// `stasis-agent boot` with this as its argument reads its [`BootConfig`] (JSON, one
/// line) from [`SYNC_FD`] before anything else, instead of from its command line, where
/// every host user could read it (`ps`, `/proc/PID/cmdline`) with the sandbox's token and
/// environment. The runtime finds this string in an agent binary to know the agent
/// takes its config this way; an older agent gets it as its argument, as before.
pub const BOOT_CONFIG_ON_SYNC_FD: &str = "--stasis-boot-config-on-sync-fd-v1";

/// What the agent needs to make a sandbox: sent on the sync fd (or, to agents older than
/// [`BOOT_CONFIG_ON_SYNC_FD`], passed on the command line of `stasis-agent boot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub env: BTreeMap<String, String>,
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
    /// The template's start command: PID 1 launches it once it serves envd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartCommand>,
}

/// A template's start command (a service the template's sandboxes run from boot, such
/// as the code interpreter): run by `/bin/sh -c` as `user` in `cwd` (default: the
/// user's home), with the sandbox environment plus `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartCommand {
    pub cmd: String,
    #[serde(default = "StartCommand::default_user")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl StartCommand {
    fn default_user() -> String {
        "user".into()
    }
}

/// Where, inside the sandbox, the agent keeps the SHA-512 (hex) of the current access
/// token, for in-sandbox services that authenticate the SDKs' `X-Access-Token` (the code
/// interpreter). The digest, not the token: reading it gains nothing to an attacker.
pub const ACCESS_TOKEN_DIGEST_PATH: &str = "/run/stasis/access-token.sha512";

impl BootConfig {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a boot config always serialises")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// One line on the boot socket (without its `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMessage {
    /// Stage 1 → host: it has entered its new user namespace and waits for its id maps.
    Unshared,
    /// Host → stage 1: id maps written, network device plugged in.
    Mapped,
    /// Stage 1 → host: the host pid of the sandbox's init.
    Pid(u32),
    /// PID 1 → host: the agent listens; the sandbox is ready.
    Ready,
    /// Any stage → host: boot failed, with why.
    Error(String),
}

const UNSHARED: &str = "unshared";
const MAPPED: &str = "mapped";
const PID: &str = "pid";
const READY: &str = "ready";
const ERROR: &str = "error";

/// A line that is no [`SyncMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncParseError(pub String);

impl fmt::Display for SyncParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected boot message {:?}", self.0)
    }
}

impl std::error::Error for SyncParseError {}

impl SyncMessage {
    /// The line to send, without its `\n`. A newline inside an error message would end
    /// the line early, so it becomes a space.
    pub fn to_line(&self) -> String {
        match self {
            SyncMessage::Unshared => UNSHARED.into(),
            SyncMessage::Mapped => MAPPED.into(),
            SyncMessage::Pid(pid) => format!("{PID} {pid}"),
            SyncMessage::Ready => READY.into(),
            SyncMessage::Error(msg) => format!("{ERROR} {}", msg.replace(['\n', '\r'], " ")),
        }
    }

    /// Parses a received line (trailing whitespace, `\n` included, is ignored).
    pub fn parse(line: &str) -> Result<Self, SyncParseError> {
        let line = line.trim_end();
        let bad = || SyncParseError(line.to_string());
        let (word, rest) = match line.split_once(' ') {
            Some((w, r)) => (w, Some(r)),
            None => (line, None),
        };
        match (word, rest) {
            (UNSHARED, None) => Ok(SyncMessage::Unshared),
            (MAPPED, None) => Ok(SyncMessage::Mapped),
            (READY, None) => Ok(SyncMessage::Ready),
            (PID, Some(p)) => p.trim().parse().map(SyncMessage::Pid).map_err(|_| bad()),
            (ERROR, rest) => Ok(SyncMessage::Error(rest.unwrap_or("").trim().to_string())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for SyncMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

/// Body of `POST /init`: the restored agent takes the new sandbox's token and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitRequest {
    /// The new access token; absent or empty keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Variables added to (or replacing those of) the sandbox-wide environment, for
    /// processes started from now on.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// The copy's own boot id (32 hex digits) for `/proc/sys/kernel/random/boot_id`: every
    /// copy of one snapshot would otherwise report its source's. Older agents ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl InitRequest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an init request always serialises")
    }

    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The token to switch to, if any: an empty one means none, as in envd.
    pub fn new_token(&self) -> Option<&str> {
        self.access_token.as_deref().filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_lines_are_the_wire_format() {
        // Agents already running in paused sandboxes send and expect exactly these.
        let cases = [
            (SyncMessage::Unshared, "unshared"),
            (SyncMessage::Mapped, "mapped"),
            (SyncMessage::Pid(4242), "pid 4242"),
            (SyncMessage::Ready, "ready"),
            (SyncMessage::Error("stage1: join cgroup: EACCES".into()), "error stage1: join cgroup: EACCES"),
        ];
        for (msg, line) in cases {
            assert_eq!(msg.to_line(), line);
            assert_eq!(SyncMessage::parse(line), Ok(msg.clone()));
            assert_eq!(SyncMessage::parse(&format!("{line}\n")), Ok(msg));
        }
    }

    #[test]
    fn bad_sync_lines_are_refused() {
        for line in ["", "pid", "pid x", "pid -1", "ready now", "unsharedx", "hello"] {
            let e = SyncMessage::parse(line).unwrap_err();
            assert!(e.to_string().contains("unexpected boot message"), "{line:?}: {e}");
        }
        assert_eq!(SyncMessage::parse("error"), Ok(SyncMessage::Error(String::new())));
    }

    #[test]
    fn error_messages_stay_on_one_line() {
        let line = SyncMessage::Error("a\nb\r\nc".into()).to_line();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        assert_eq!(SyncMessage::parse(&line), Ok(SyncMessage::Error("a b  c".into())));
    }

    #[test]
    fn boot_config_round_trips_and_reads_older_configs() {
        let cfg = BootConfig {
            sandbox_id: "s1".into(),
            rootfs: "/data/sandboxes/s1/rootfs".into(),
            cgroup_procs: vec!["/sys/fs/cgroup/stasis/s1/cgroup.procs".into()],
            hostname: "sandbox".into(),
            boot_id: "00".repeat(16),
            agent_path: "/.stasis/agent".into(),
            env: BTreeMap::from([("A".into(), "1".into())]),
            access_token: Some("t".into()),
            net_device: Some("sts3".into()),
            sandbox_ip: "169.254.0.21".into(),
            gateway_ip: "169.254.0.22".into(),
            start: Some(StartCommand {
                cmd: "exec svc".into(),
                user: "user".into(),
                cwd: None,
                env: BTreeMap::from([("K".into(), "v".into())]),
            }),
        };
        let json = cfg.to_json();
        assert!(json.contains(r#""start":{"cmd":"exec svc","user":"user","env":{"K":"v"}}"#), "{json}");
        assert!(json.contains("\"sandboxId\":\"s1\"") && json.contains("\"cgroupProcs\""), "{json}");
        assert_eq!(BootConfig::from_json(&json).unwrap(), cfg);
        // Fields added later default when absent.
        let old = r#"{"sandboxId":"s","rootfs":"/r","cgroupProcs":[],"hostname":"h","bootId":"b","agentPath":"/a"}"#;
        let c = BootConfig::from_json(old).unwrap();
        assert_eq!((c.access_token, c.net_device, c.env.len(), c.start), (None, None, 0, None));
        // A start command without a user runs as `user` (the SDKs' default user).
        let s: StartCommand = serde_json::from_str(r#"{"cmd":"x"}"#).unwrap();
        assert_eq!(s.user, "user");
    }

    #[test]
    fn init_request_matches_what_agents_accept() {
        let req = InitRequest {
            access_token: Some("new".into()),
            env_vars: BTreeMap::from([("K".into(), "v".into())]),
            boot_id: None,
        };
        let json = String::from_utf8(req.to_json()).unwrap();
        assert_eq!(json, r#"{"accessToken":"new","envVars":{"K":"v"}}"#);
        assert_eq!(InitRequest::from_json(json.as_bytes()).unwrap(), req);
        // No token: the field is left out, and an agent keeps its current one.
        let none = InitRequest::default();
        assert_eq!(String::from_utf8(none.to_json()).unwrap(), r#"{"envVars":{}}"#);
        assert_eq!(none.new_token(), None);
        // What older runtimes sent: an empty token for none.
        let old = InitRequest::from_json(br#"{"accessToken":"","envVars":{"K":"v"}}"#).unwrap();
        assert_eq!(old.new_token(), None);
        assert!(InitRequest::from_json(b"{}").unwrap().env_vars.is_empty());
        assert!(InitRequest::from_json(b"not json").is_err());
    }
}
