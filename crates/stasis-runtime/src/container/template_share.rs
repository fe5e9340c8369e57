//! Templates built through the API, shared by the nodes of a cluster through the object
//! store (docs/architecture.md, "Templates on any node"). Only with `share_layers`.
//!
//! ```text
//! PREFIX/templates/NAME/registry.img   keyed JSON: its tags (tag -> version), each version's template.json, the data dir
//! PREFIX/snapshots/lyrKEY/layer/...    a build step's layer: a shared snapshot (`snapshot_share.rs`)
//! ```
//!
//! The registry is the template's truth: a node that changes the template (a build
//! published, tags assigned or removed) first brings its own copy in line with it, then
//! writes it whole from that copy; a node that uses the template (a create, a list, its
//! tags) brings its copy in line first: versions it lacks are written from the registry
//! (their layers fetched), tags moved, versions no tag names retired. A template whose
//! registry is gone was deleted through another node: its shared versions go here too.
//! Two nodes changing one template at the same instant: the last registry written wins
//! (as two builds of one tag on one node). Must not: trust a registry whose MAC does not
//! check, or touch a template made by setup or one built before templates were shared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::template_store::{built, valid_template_name, BuiltFile};
use super::Inner;
use crate::error::{IoContext, Result, RuntimeError};

/// The MAC's context: a registry is never taken for anything else the key signs.
const CONTEXT: &str = "stasis template registry v1";
/// The marker of a version that is in the bucket's registry.
const SHARED: &str = "shared";

fn registry_rel(name: &str) -> String {
    format!("templates/{name}/registry.img")
}

/// What the bucket says of a template.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registry {
    /// The data dir the versions' layer paths are under.
    data_dir: String,
    /// Tag -> version dir (`.NAME-BUILD`).
    tags: BTreeMap<String, String>,
    /// Version dir -> its `template.json`.
    versions: BTreeMap<String, BuiltFile>,
}

#[derive(Serialize, Deserialize)]
struct Signed {
    body: String,
    mac: String,
}

impl Inner {
    /// Whether template `name` is one the bucket may hold (built through the API, on a
    /// node that shares layers).
    fn shares_template(&self, name: &str) -> bool {
        self.shares_layers() && valid_template_name(name) && !self.is_setup_template(name)
    }

    fn read_registry(&self, name: &str) -> Result<Option<Registry>> {
        let Some(remote) = &self.remote else { return Ok(None) };
        let Some(data) = remote.get_bytes(&registry_rel(name))? else { return Ok(None) };
        let bad = |m: String| RuntimeError::CorruptCheckpoint(format!("template {name}'s registry: {m}"));
        let signed: Signed = serde_json::from_slice(&data).map_err(|e| bad(format!("unreadable ({e})")))?;
        let mac = hex::decode(&signed.mac).map_err(|_| bad("bad MAC encoding".into()))?;
        if !self.key.check(CONTEXT, signed.body.as_bytes(), &mac) {
            return Err(bad("its MAC does not check (another key, or changed)".into()));
        }
        serde_json::from_str(&signed.body).map(Some).map_err(|e| bad(format!("unreadable ({e})")))
    }

    /// Writes template `name`'s registry from this node's copy (none left: deleted).
    pub(super) fn publish_registry(&self, name: &str) -> Result<()> {
        if !self.shares_template(name) {
            return Ok(());
        }
        let Some(remote) = &self.remote else { return Ok(()) };
        let tags = self.tags_of(name);
        if tags.is_empty() {
            remote.delete_all(&format!("templates/{name}"))?;
            return Ok(());
        }
        let mut versions = BTreeMap::new();
        for v in tags.values() {
            let dir = self.layout.templates().join(v);
            let b = built(&dir).ok_or_else(|| RuntimeError::TemplateNotFound(format!("{name} ({v})")))?;
            super::perms::write_private(&dir.join(SHARED), b"").ctx(|| "mark the version shared".into())?;
            versions.insert(v.clone(), b);
        }
        let reg = Registry { data_dir: self.layout.root().display().to_string(), tags, versions };
        let body = serde_json::to_string(&reg).expect("json");
        let mac = hex::encode(self.key.mac(CONTEXT, body.as_bytes()));
        remote.put_bytes(&registry_rel(name), serde_json::to_vec(&Signed { body, mac }).expect("json"))
    }

    /// Brings this node's copy of template `name` in line with the bucket's registry.
    pub(super) fn sync_template(&self, name: &str) -> Result<()> {
        if !self.shares_template(name) {
            return Ok(());
        }
        let reg = self.read_registry(name)?;
        let _g = self.template_links.lock().unwrap_or_else(|e| e.into_inner());
        let templates = self.layout.templates();
        let local = self.tags_of(name);
        let Some(reg) = reg else {
            // Deleted through another node: the shared versions go (one built before
            // templates were shared stays: the bucket never had it).
            let mut gone = false;
            for (tag, v) in &local {
                if templates.join(v).join(SHARED).exists() {
                    let link = self.tag_dir(name, tag);
                    std::fs::remove_file(&link).ctx(|| format!("remove {}", link.display()))?;
                    gone = true;
                }
            }
            if gone && self.retire_versions(name) > 0 {
                self.collect_unused_layers()?;
            }
            return Ok(());
        };
        for (v, file) in &reg.versions {
            if !templates.join(v).join("template.json").exists() {
                self.write_shared_version(name, v, file, &reg.data_dir)?;
            }
        }
        for (tag, v) in &reg.tags {
            if local.get(tag) != Some(v) {
                self.point_tags(name, v, std::slice::from_ref(tag))?;
            }
        }
        for tag in local.keys().filter(|t| !reg.tags.contains_key(*t)) {
            let link = self.tag_dir(name, tag);
            std::fs::remove_file(&link).ctx(|| format!("remove {}", link.display()))?;
        }
        self.retire_versions(name);
        Ok(())
    }

    /// Writes version `version` of `name` from the registry: its layers fetched, their
    /// paths on this node's data dir, warmed here when it starts a service.
    fn write_shared_version(&self, name: &str, version: &str, file: &BuiltFile, data_dir: &str) -> Result<()> {
        let bad = || RuntimeError::CorruptCheckpoint(format!("template {name}'s registry names version {version:?}"));
        if !version.starts_with(&format!(".{name}-")) || version.contains('/') {
            return Err(bad());
        }
        let lowers =
            self.lowers_here(&file.file.lowers, data_dir, &format!("template {name}")).map_err(|e| match e {
                RuntimeError::Immovable(_) => RuntimeError::TemplateNotFound(format!(
                    "{name} (a layer of it is not in the object store: a template built before templates were shared \
                 is used on the node that built it)"
                )),
                RuntimeError::Boot(m) => RuntimeError::TemplateNotFound(format!("{name} ({m})")),
                other => other,
            })?;
        let copy = BuiltFile {
            name: file.name.clone(),
            build_id: file.build_id.clone(),
            created_at: file.created_at.clone(),
            file: super::template::TemplateFile { lowers, ..file.file.clone() },
        };
        self.write_version_dir(name, version, &copy)?;
        let dir = self.layout.templates().join(version);
        if let Err(e) = std::fs::write(dir.join(SHARED), b"") {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).ctx(|| "mark the version shared".into());
        }
        tracing::info!(template = %name, version, "template version fetched from the object store");
        Ok(())
    }

    /// [`Inner::sync_template`] of the name in `reference` (`NAME[:TAG]`); a failure is
    /// logged and this node's copy used as it is.
    pub(super) fn sync_template_ref(&self, reference: &str) {
        let Ok((name, _)) = super::template_tags::split_template_ref(reference) else { return };
        if let Err(e) = self.sync_template(&name) {
            tracing::warn!(template = %name, "cannot bring the template in line with the object store: {e}");
        }
    }

    /// Every template the bucket holds, brought in line here (a list on any node shows them).
    pub(super) fn sync_all_templates(&self) {
        let Some(remote) = self.remote.as_ref().filter(|_| self.shares_layers()) else { return };
        let mut names: std::collections::BTreeSet<String> = match remote.list("templates") {
            Ok(objs) => objs.into_iter().filter_map(|(n, _)| n.split('/').next().map(str::to_string)).collect(),
            Err(e) => {
                tracing::warn!("cannot list the templates in the object store: {e}");
                return;
            }
        };
        // And the ones here: deleted through another node, they go.
        names.extend(self.tag_names());
        for name in &names {
            self.sync_template_ref(name);
        }
    }
}
