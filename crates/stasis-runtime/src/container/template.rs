//! Templates: the read-only root filesystems sandboxes are made from
//! (`DATA/templates/NAME/rootfs`), and what `template.json` says about them.
//!
//! A template may name a start command (a service its sandboxes run from boot) and a
//! ready check. Such a template is *warmed* once (`warm.rs`): a sandbox boots it, the
//! check passes, the sandbox is captured as a snapshot; every create then starts from
//! that snapshot, with the service already running.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stasis_proto::agent::StartCommand;

use super::Inner;
use crate::error::{Result, RuntimeError};

/// Template names that mean `base` (E2B's default name).
const BASE_ALIASES: [&str; 1] = ["base"];

/// When the template's service is ready: `GET path` on `port` inside the sandbox
/// answers 200.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyCheck {
    pub port: u16,
    #[serde(default = "ReadyCheck::default_path")]
    pub path: String,
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateFile {
    #[serde(default)]
    start: Option<StartCommand>,
    #[serde(default)]
    ready: Option<ReadyCheck>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub rootfs: PathBuf,
    pub start: Option<StartCommand>,
    pub ready: Option<ReadyCheck>,
    /// The bytes of `template.json`: a rebuilt template is another template.
    pub manifest: Vec<u8>,
}

impl Template {
    fn load(name: &str, dir: &Path) -> Result<Self> {
        // Resolved: a template name may be a symlink to its current version, and a
        // sandbox must keep the version it was made from (its record holds this path).
        let rootfs = match std::fs::canonicalize(dir.join("rootfs")) {
            Ok(p) if p.is_dir() => p,
            _ => return Err(RuntimeError::TemplateNotFound(name.to_string())),
        };
        let manifest_path = dir.join("template.json");
        let manifest = std::fs::read(&manifest_path).unwrap_or_default();
        let file: TemplateFile = if manifest.is_empty() {
            TemplateFile::default()
        } else {
            serde_json::from_slice(&manifest)
                .map_err(|e| RuntimeError::Boot(format!("{}: {e}", manifest_path.display())))?
        };
        Ok(Self { name: name.to_string(), rootfs, start: file.start, ready: file.ready, manifest })
    }

    /// Whether sandboxes of this template start from a warmed snapshot.
    pub fn warms(&self) -> bool {
        self.start.is_some() && self.ready.is_some()
    }
}

impl Inner {
    pub(super) fn template(&self, name: &str) -> Result<Template> {
        let name = if BASE_ALIASES.contains(&name) { "base" } else { name };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        let rootfs = self.layout.template_rootfs(name);
        Template::load(name, rootfs.parent().expect("a template rootfs has a parent"))
    }

    /// Names of the templates that warm (built, with a start command and a ready check).
    pub(super) fn warming_templates(&self) -> Vec<String> {
        self.templates().into_iter().filter(|t| t.service).map(|t| t.name).collect()
    }

    /// Every template that loads, by name.
    pub(super) fn templates(&self) -> Vec<crate::TemplateInfo> {
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return Vec::new() };
        let mut out: Vec<crate::TemplateInfo> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| self.template(&n).ok().map(|t| crate::TemplateInfo { service: t.warms(), name: n }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(t.ready, Some(ReadyCheck { port: 1, path: "/health".into(), timeout_secs: 180 }));
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
