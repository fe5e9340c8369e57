//! Built templates: the sandboxes a build runs its steps in, the layers it commits, and
//! publishing the result as a template, atomically.
//!
//! A build step's result is a *layer*: a files-only snapshot (`DATA/snapshots/lyrKEY`)
//! of the build sandbox's writable layer, the key chosen by the builder (it hashes what
//! made the layer, so a layer is its own cache entry and is shared by every template built
//! the same way). A published template is a version dir `DATA/templates/.NAME-BUILD`
//! whose `template.json` lists its layers (`lowers`, top first, down to the rootfs of the
//! template it was built from: nothing is copied) and the links of the tags the build
//! names (`template_tags.rs`: `NAME` is the `default` tag), each replaced by a rename: a
//! create sees the old version or the new one, never a half-made one. A template with a
//! start command and a ready check is warmed before a link moves, so a start command
//! that never gets ready fails the build, not the creates after it.
//!
//! Must not: decide what a step does (the builder's) or touch anything of a template made
//! by setup (a real directory, not a link) other than reading it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stasis_proto::agent::StartCommand;

use super::template::{ReadyCheck, Template, TemplateFile};
use super::template_tags::{normalize_tags, TemplateTag, DEFAULT_TAG};
use super::{fs::disk_usage, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::SandboxSpec;

/// What a build sandbox starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuildBase {
    /// A template's files (its start command does not run).
    Template(String),
    /// A layer a build committed (with the layers under it).
    Layer(String),
}

/// A built template to publish as `name`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplatePublish {
    pub name: String,
    pub build_id: String,
    /// Its files; `None` never (kept an Option for `Default`).
    pub base: Option<BuildBase>,
    pub env: BTreeMap<String, String>,
    pub start: Option<StartCommand>,
    pub ready: Option<ReadyCheck>,
    /// The tags the build moves to its version; none: `default` (E2B's build API).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A template, as `stasis template ls` and the API list it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    pub name: String,
    /// The build that made the version described here: the `default` tag's, else the
    /// newest tagged one (none: made by setup).
    pub build_id: Option<String>,
    /// Layers (built templates) or 1 (a rootfs).
    pub layers: usize,
    /// Bytes of its own layers (those no other template has in common are not told apart).
    pub size_bytes: u64,
    pub start_cmd: Option<String>,
    /// It has a start command and a ready check: its sandboxes start from a warm snapshot
    /// with the service running.
    pub service: bool,
    pub created_at: Option<String>,
    /// Its tags, each with the build it names (none: made by setup).
    #[serde(default)]
    pub tags: Vec<TemplateTag>,
}

/// `template.json` of a built version: the runtime's fields and the build's.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BuiltFile {
    pub name: String,
    pub build_id: String,
    pub created_at: String,
    #[serde(flatten)]
    pub file: TemplateFile,
}

/// Template names: what a DNS label and a file name both take.
pub fn valid_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with(['-', '_'])
}

impl Inner {
    /// The layers of `base`, top first, without the agent layer.
    pub(super) fn lowers_of(&self, base: &BuildBase) -> Result<Vec<String>> {
        match base {
            BuildBase::Template(name) => Ok(self.template(name)?.lowers),
            BuildBase::Layer(layer) => {
                let meta = self.snapshot_meta(layer)?;
                let mut lowers = vec![self.layout.snapshot(layer).join("layer").display().to_string()];
                lowers.extend(meta.lower_dirs.into_iter().skip(1));
                Ok(lowers)
            }
        }
    }

    /// Boots build sandbox `id` on `base`'s files: no start command, no warm snapshot.
    pub(super) fn create_build_sandbox(&self, id: &str, base: &BuildBase, spec: &SandboxSpec) -> Result<()> {
        let template = Template {
            name: spec.template.clone(),
            lowers: self.lowers_of(base)?,
            start: None,
            ready: None,
            env: BTreeMap::new(),
            manifest: Vec::new(),
            version: None,
        };
        self.create_cold(id, spec, &template, super::create::Ids::Layers)
    }

    /// Copies host file `src` to `dest` (absolute) in running sandbox `id`, owned by the
    /// sandbox's root. Resolved inside the sandbox's root: a symlink in its files cannot
    /// send the write anywhere on the host.
    pub(super) fn copy_in(&self, id: &str, src: &Path, dest: &str) -> Result<()> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let rec = self.load(id)?;
        if rec.state != crate::SandboxState::Running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let root = std::fs::File::open(self.dir(id).rootfs()).ctx(|| format!("open the root of {id}"))?;
        let rel = std::ffi::CString::new(dest.trim_start_matches('/'))
            .map_err(|_| RuntimeError::Boot(format!("bad path {dest:?}")))?;
        // SAFETY: open_how is plain data; all-zero is its empty value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u64;
        how.mode = 0o600;
        how.resolve = libc::RESOLVE_IN_ROOT;
        // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an open_how of the
        // size we pass; the fd it returns is ours.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                rel.as_ptr(),
                &how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| format!("create {dest} in sandbox {id}"));
        }
        // SAFETY: a fresh fd from openat2, owned by nothing else.
        let mut out = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        let mut input = std::fs::File::open(src).ctx(|| format!("open {}", src.display()))?;
        std::io::copy(&mut input, &mut out).ctx(|| format!("copy into {dest} in sandbox {id}"))?;
        let base = Some(rec.ids());
        std::os::unix::fs::fchown(&out, base, base).ctx(|| format!("chown {dest} in sandbox {id}"))
    }

    /// Whether layer (snapshot) `layer` exists.
    pub(super) fn has_layer(&self, layer: &str) -> bool {
        // Made by another node's build: fetched (a cluster with an object store).
        self.snapshot_meta(layer).is_ok() || (self.ensure_snapshot(layer).is_ok() && self.snapshot_meta(layer).is_ok())
    }

    /// Publishes a built template: its version dir, its warm snapshot when it starts a
    /// service, then the links of its tags moved to it. A build that makes what a version
    /// of the template already is (a rebuild from the cache) moves the tags to that
    /// version: its warm snapshot stays.
    pub(super) fn publish_template(&self, p: &TemplatePublish) -> Result<()> {
        if !valid_template_name(&p.name)
            || p.build_id.is_empty()
            || !p.build_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(RuntimeError::Boot(format!("invalid template name {:?} or build id", p.name)));
        }
        let mut tags = normalize_tags(&p.tags).map_err(RuntimeError::InvalidTemplate)?;
        if tags.is_empty() {
            tags.push(DEFAULT_TAG.to_string());
        }
        if self.is_setup_template(&p.name) {
            return Err(RuntimeError::AlreadyExists(format!(
                "template {} (made by setup: not replaced by a build)",
                p.name
            )));
        }
        let base = p.base.as_ref().ok_or_else(|| RuntimeError::Boot("a template needs files".into()))?;
        // Another node's builds of this name first (their tags stay unless this one moves them).
        self.sync_template(&p.name)?;
        let tf = TemplateFile {
            start: p.start.clone(),
            ready: p.ready.clone(),
            lowers: self.lowers_of(base)?,
            env: p.env.clone(),
        };
        let templates = self.layout.templates();
        // Held to the end: tag changes must not retire the version being made.
        let _g = self.template_links.lock().unwrap_or_else(|e| e.into_inner());
        let same =
            self.versions_of(&p.name).into_iter().find(|v| built(&templates.join(v)).is_some_and(|b| b.file == tf));
        let version = match same {
            Some(v) => v,
            None => self.write_version(p, tf)?,
        };
        self.point_tags(&p.name, &version, &tags)?;
        // Sandboxes made from a version name its layers, not the version dir.
        self.retire_versions(&p.name);
        self.publish_registry(&p.name)
    }

    /// Writes version `.NAME-BUILD` of a build (warmed when it starts a service).
    fn write_version(&self, p: &TemplatePublish, tf: TemplateFile) -> Result<String> {
        let version = format!(".{}-{}", p.name, p.build_id);
        let file =
            BuiltFile { name: p.name.clone(), build_id: p.build_id.clone(), created_at: now_rfc3339(), file: tf };
        self.write_version_dir(&p.name, &version, &file)?;
        Ok(version)
    }

    /// Writes version dir `version` of template `name` holding `file` (warmed when it
    /// starts a service); nothing of it is left on failure.
    pub(super) fn write_version_dir(&self, name: &str, version: &str, file: &BuiltFile) -> Result<()> {
        let dir = self.layout.templates().join(version);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        let written = std::fs::write(dir.join("template.json"), serde_json::to_vec_pretty(file).expect("json"))
            .ctx(|| format!("write {}/template.json", dir.display()))
            .and_then(|()| {
                let mut t = Template::load(name, &dir)?;
                t.version = Some(version.to_string());
                if t.warms() {
                    self.ready_snapshot(&t)?;
                }
                Ok(())
            });
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
            self.drop_ready_snapshot(version);
        }
        written
    }

    /// The version dirs (`.NAME-BUILD`) builds made of template `name`.
    pub(super) fn versions_of(&self, name: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.') && !e.path().is_symlink())
            .filter(|e| built(&e.path()).is_some_and(|b| b.name == name))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    pub(super) fn templates(&self) -> Result<Vec<TemplateInfo>> {
        self.sync_all_templates();
        let dir = self.layout.templates();
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
        let names: std::collections::BTreeSet<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .chain(self.names_with_tags_only())
            .collect();
        for name in names {
            let tags = self.template_tags(&name).unwrap_or_default();
            // The default tag's version, else the one tagged last.
            let shown = if dir.join(&name).exists() {
                DEFAULT_TAG.to_string()
            } else {
                match tags.iter().max_by(|a, b| a.created_at.cmp(&b.created_at)) {
                    Some(t) => t.tag.clone(),
                    None => continue,
                }
            };
            let path = self.tag_dir(&name, &shown);
            let Ok(t) = Template::load(&name, &path) else { continue };
            let built = built(&path);
            let own = if built.is_some() {
                t.lowers
                    .iter()
                    .take_while(|l| l.starts_with(&self.layout.snapshots().display().to_string()))
                    .collect::<Vec<_>>()
            } else {
                t.lowers.iter().collect()
            };
            out.push(TemplateInfo {
                name,
                build_id: built.as_ref().map(|b| b.build_id.clone()),
                layers: t.lowers.len(),
                size_bytes: own.iter().map(|l| disk_usage(Path::new(l))).sum(),
                start_cmd: t.start.as_ref().map(|s| s.cmd.clone()),
                service: t.warms(),
                created_at: built.map(|b| b.created_at),
                tags,
            });
        }
        Ok(out)
    }

    /// Removes built template `name`: its tags and versions, their warm snapshots, and the
    /// layers no other template uses (collected once no sandbox uses them either).
    pub(super) fn remove_template(&self, name: &str) -> Result<()> {
        // The name is checked before it touches a path: `../x` must not even be looked at.
        if !valid_template_name(name) {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        if self.is_setup_template(name) {
            return Err(RuntimeError::AlreadyExists(format!("template {name} (made by setup: not removed)")));
        }
        // Built on another node: here first, so that its removal goes everywhere.
        self.sync_template(name)?;
        let _g = self.template_links.lock().unwrap_or_else(|e| e.into_inner());
        let tags = self.tags_of(name);
        if tags.is_empty() {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        for tag in tags.keys() {
            let link = self.tag_dir(name, tag);
            std::fs::remove_file(&link).ctx(|| format!("remove {}", link.display()))?;
        }
        self.retire_versions(name);
        // A warm snapshot recorded under the name (before versions had their own).
        self.drop_ready_snapshot(name);
        self.collect_unused_layers()?;
        self.publish_registry(name)
    }

    /// Marks deleted every layer no template version names; each goes once no sandbox or
    /// snapshot stands on it either (the snapshot collector).
    pub(super) fn collect_unused_layers(&self) -> Result<()> {
        let used = self.template_lowers_in_use();
        let snaps = std::fs::read_dir(self.layout.snapshots()).ctx(|| "read snapshots".into())?;
        for e in snaps.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            let layer = e.path().join("layer").display().to_string();
            if id.starts_with("lyr") && !used.contains(&layer) && self.has_layer(&id) {
                let _ = self.delete_snapshot(&id);
            }
        }
        Ok(())
    }

    /// Layer dirs the templates (every version) stand on: never collected.
    pub(super) fn template_lowers_in_use(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| !e.path().is_symlink())
            .filter_map(|e| std::fs::read(e.path().join("template.json")).ok())
            .filter_map(|bytes| serde_json::from_slice::<TemplateFile>(&bytes).ok())
            .flat_map(|f| f.lowers)
            .collect()
    }
}

/// The build record of the template (version) at `dir`, if a build made it.
pub(super) fn built(dir: &Path) -> Option<BuiltFile> {
    let bytes = std::fs::read(dir.join("template.json")).ok()?;
    serde_json::from_slice::<BuiltFile>(&bytes).ok().filter(|b| !b.build_id.is_empty())
}

/// `NAME` → `version`, by a rename over it (atomic for the readers of `NAME`).
pub(super) fn swap_link(templates: &Path, name: &str, version: &str) -> Result<()> {
    let tmp = templates.join(format!(".{name}.link"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).ctx(|| format!("link {}", tmp.display()))?;
    std::fs::rename(&tmp, templates.join(name)).ctx(|| format!("publish template {name}"))?;
    std::fs::File::open(templates).and_then(|d| d.sync_all()).ctx(|| "sync templates dir".into())
}

fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    stasis_proto::timestamp::rfc3339_millis(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_are_dns_labels_and_file_names() {
        for ok in ["app", "my-app_2", "a1"] {
            assert!(valid_template_name(ok), "{ok}");
        }
        for bad in ["", "-x", "App", "a/b", ".x", "a.b", "a:b", &"x".repeat(65)] {
            assert!(!valid_template_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_link_moves_in_one_rename() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(".app-b1")).unwrap();
        std::fs::create_dir(d.path().join(".app-b2")).unwrap();
        swap_link(d.path(), "app", ".app-b1").unwrap();
        assert_eq!(std::fs::read_link(d.path().join("app")).unwrap(), Path::new(".app-b1"));
        swap_link(d.path(), "app", ".app-b2").unwrap();
        assert_eq!(std::fs::read_link(d.path().join("app")).unwrap(), Path::new(".app-b2"));
        assert!(!d.path().join(".app.link").exists());
    }
}
