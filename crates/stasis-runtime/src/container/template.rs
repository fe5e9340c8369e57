//! Templates: the read-only root filesystems sandboxes are made from, and what
//! `template.json` says about them. A template is either a root filesystem of its own
//! (`DATA/templates/NAME/rootfs`, made by setup) or a stack of layers (`lowers` in its
//! `template.json`, top first: layer snapshots a build committed, over the rootfs of the
//! template it was built from; `template_store.rs` publishes them).
//!
//! A template may name a start command (a service its sandboxes run from boot) and a
//! ready check. Such a template is *warmed* once (`warm.rs`): a sandbox boots it, the
//! check passes, the sandbox is captured as a snapshot; every create then starts from
//! that snapshot, with the service already running.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stasis_proto::agent::StartCommand;

use super::Inner;
use crate::error::{Result, RuntimeError};

/// Template names that mean `base` (E2B's default name).
const BASE_ALIASES: [&str; 1] = ["base"];

/// When the template's service is ready: `GET path` on `port` inside the sandbox
/// answers 200, or (`cmd`, the SDKs' `readyCmd`) a shell command run in the sandbox
/// through its agent exits 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "ReadyCheck::default_path")]
    pub path: String,
    /// Run as root by `sh -c` (bash when there is one) until it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// How long a warm may wait for it.
    #[serde(default = "ReadyCheck::default_timeout")]
    pub timeout_secs: u64,
}

impl ReadyCheck {
    fn default_path() -> String {
        "/".into()
    }
    fn default_timeout() -> u64 {
        180
    }
}

/// `template.json`, as far as the runtime reads it (the build scripts write more).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyCheck>,
    /// A built template's files: layer dirs, top first (absolute, like a record's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lowers: Vec<String>,
    /// Environment of every process of its sandboxes (a create's own envs win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// Its files, top first: `[rootfs]` or a built template's layers.
    pub lowers: Vec<String>,
    pub start: Option<StartCommand>,
    pub ready: Option<ReadyCheck>,
    pub env: BTreeMap<String, String>,
    /// The bytes of `template.json`: a rebuilt template is another template.
    pub manifest: Vec<u8>,
    /// The version dir (`.NAME-BUILD`) of a built template; none for one made by setup.
    pub version: Option<String>,
}

impl Template {
    pub(super) fn load(name: &str, dir: &Path) -> Result<Self> {
        let manifest_path = dir.join("template.json");
        let manifest = std::fs::read(&manifest_path).unwrap_or_default();
        let file: TemplateFile = if manifest.is_empty() {
            TemplateFile::default()
        } else {
            serde_json::from_slice(&manifest)
                .map_err(|e| RuntimeError::Boot(format!("{}: {e}", manifest_path.display())))?
        };
        let lowers = if file.lowers.is_empty() {
            // Resolved: a template name may be a symlink to its current version, and a
            // sandbox must keep the version it was made from (its record holds this path).
            match std::fs::canonicalize(dir.join("rootfs")) {
                Ok(p) if p.is_dir() => vec![p.display().to_string()],
                _ => return Err(RuntimeError::TemplateNotFound(name.to_string())),
            }
        } else if file.lowers.iter().all(|l| Path::new(l).is_dir()) {
            file.lowers.clone()
        } else {
            return Err(RuntimeError::TemplateNotFound(format!("{name} (a layer of it is missing)")));
        };
        Ok(Self {
            name: name.to_string(),
            lowers,
            start: file.start,
            ready: file.ready,
            env: file.env,
            manifest,
            version: None,
        })
    }

    /// `spec` with the template's environment under its own.
    pub fn spec_for(&self, spec: &crate::SandboxSpec) -> crate::SandboxSpec {
        let mut env = self.env.clone();
        env.extend(spec.env.clone());
        crate::SandboxSpec { env, ..spec.clone() }
    }

    /// What its warm snapshot is recorded under: its version (the tags of one version
    /// share it), or its name for a template made by setup.
    pub fn warm_key(&self) -> &str {
        self.version.as_deref().unwrap_or(&self.name)
    }

    /// Whether sandboxes of this template start from a warmed snapshot.
    pub fn warms(&self) -> bool {
        self.start.is_some() && self.ready.is_some()
    }
}

impl Inner {
    /// Template `reference`: `NAME` (its `default` tag) or `NAME:TAG` (`template_tags.rs`).
    pub(super) fn template(&self, reference: &str) -> Result<Template> {
        let not_found = || RuntimeError::TemplateNotFound(reference.to_string());
        let (name, tag) = super::template_tags::split_template_ref(reference).map_err(|_| not_found())?;
        let name = if BASE_ALIASES.contains(&name.as_str()) { "base" } else { name.as_str() };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(not_found());
        }
        // In a cluster: as the object store has it (built, retagged or deleted elsewhere).
        if let Err(e) = self.sync_template(name) {
            tracing::warn!(template = %name, "cannot bring the template in line with the object store: {e}");
        }
        let dir = self.tag_dir(name, &tag);
        if !dir.exists() {
            return Err(not_found());
        }
        let mut t = Template::load(name, &dir)?;
        t.version = std::fs::read_link(&dir)
            .ok()
            .and_then(|v| v.to_str().map(str::to_string))
            .filter(|v| v.starts_with('.') && !v.contains('/'));
        Ok(t)
    }

    /// Names of the templates that warm (with a start command and a ready check).
    pub(super) fn warming_templates(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter(|n| self.template(n).is_ok_and(|t| t.warms()))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_built_template_is_its_layers_with_its_env_and_ready_command() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2) = (dir.path().join("l1"), dir.path().join("l2"));
        std::fs::create_dir_all(&l1).unwrap();
        std::fs::create_dir_all(&l2).unwrap();
        let file = serde_json::json!({
            "lowers": [l2, l1], "env": {"A": "1"},
            "start": {"cmd": "serve"}, "ready": {"cmd": "test -f /ok", "timeoutSecs": 5}
        });
        std::fs::write(dir.path().join("template.json"), file.to_string()).unwrap();
        let t = Template::load("app", dir.path()).unwrap();
        assert_eq!(t.lowers, vec![l2.display().to_string(), l1.display().to_string()]);
        assert_eq!(t.env.get("A").map(String::as_str), Some("1"));
        let ready = t.ready.clone().unwrap();
        assert_eq!((ready.port, ready.cmd.as_deref(), ready.timeout_secs), (None, Some("test -f /ok"), 5));
        assert!(t.warms());
        // A layer gone (collected, or a broken copy): not a template any more.
        std::fs::remove_dir(&l1).unwrap();
        assert!(matches!(Template::load("app", dir.path()), Err(RuntimeError::TemplateNotFound(_))));
    }

    use super::*;

    #[test]
    fn reads_start_and_ready_from_template_json() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(
            dir.path().join("template.json"),
            r#"{"name":"ci","uidShift":100000,"start":{"cmd":"serve --port 1"},"ready":{"port":1,"path":"/health"}}"#,
        )
        .unwrap();
        let t = Template::load("ci", dir.path()).unwrap();
        let start = t.start.clone().unwrap();
        assert_eq!((start.cmd.as_str(), start.user.as_str()), ("serve --port 1", "user"));
        assert_eq!(t.ready, Some(ReadyCheck { port: Some(1), path: "/health".into(), cmd: None, timeout_secs: 180 }));
        assert!(t.warms());
    }

    #[test]
    fn a_plain_template_does_not_warm() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("template.json"), r#"{"name":"base","uidShift":100000}"#).unwrap();
        let t = Template::load("base", dir.path()).unwrap();
        assert!(!t.warms() && t.start.is_none());
        assert!(matches!(Template::load("x", &dir.path().join("nope")), Err(RuntimeError::TemplateNotFound(_))));
    }
}
