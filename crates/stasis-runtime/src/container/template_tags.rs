//! Template tags: a tag names one build (version) of a built template, E2B's
//! `name:tag`. Each tag is a symlink to a version dir, moved by one rename:
//!
//! ```text
//! DATA/templates/NAME          -> .NAME-BUILD   tag `default`: what `NAME` alone means
//! DATA/templates/.NAME:TAG     -> .NAME-BUILD   any other tag
//! DATA/templates/.NAME-BUILD/  a version (template.json: its layers, env, start)
//! ```
//!
//! A build moves the tags it names (none named: `default`, as E2B's build API does); the
//! tags it does not name stay on their versions. A version no tag names any more is
//! retired (its dir and its warm snapshot go); sandboxes made from it name its layers,
//! not the version, so they keep working, and the layers stay while a template, sandbox
//! or snapshot stands on them (the snapshot collector). A template built only with
//! other tags has no `NAME` link: `NAME` alone is then not found, as on E2B.
//!
//! Must not: change what a version holds (`template_store.rs` writes versions), or tag
//! a template made by setup (a real directory, or a link to one no build made: it has no
//! builds to name).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Inner;
use crate::error::{IoContext, Result, RuntimeError};

/// The tag `NAME` alone means (E2B's `id.DefaultTag`).
pub const DEFAULT_TAG: &str = "default";

/// One tag of a template, as `GET /templates/{id}/tags` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateTag {
    pub tag: String,
    /// The build whose version the tag names.
    pub build_id: String,
    /// When the tag was last moved (its link's time).
    pub created_at: String,
}

/// A tag as E2B takes it: trimmed, lower-cased, `[a-z0-9._-]{1,64}`, and not a UUID
/// (a UUID names a build, never a tag).
pub fn normalize_tag(tag: &str) -> std::result::Result<String, String> {
    let t = tag.trim().to_ascii_lowercase();
    let ok_chars = t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if t.is_empty() || t.len() > 64 || !ok_chars {
        return Err(format!("invalid tag {tag:?}: use 1-64 of a-z, 0-9, '.', '-' and '_'"));
    }
    if t == "." || t == ".." {
        return Err(format!("invalid tag {tag:?}"));
    }
    if is_uuid(&t) {
        return Err(format!("invalid tag {tag:?}: a tag cannot be a UUID"));
    }
    Ok(t)
}

/// Tags normalized, without duplicates, in the order first given.
pub fn normalize_tags(tags: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = normalize_tag(t)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// `NAME[:TAG]` → (name, tag); no tag is `default`. The name is checked by the caller
/// (a setup template's name is whatever its dir is called).
pub fn split_template_ref(reference: &str) -> std::result::Result<(String, String), String> {
    match reference.trim().split_once(':') {
        None => Ok((reference.trim().to_string(), DEFAULT_TAG.to_string())),
        Some((name, tag)) => Ok((name.to_string(), normalize_tag(tag)?)),
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The link of `tag` of template `name`, relative to the templates dir.
pub(super) fn tag_link_name(name: &str, tag: &str) -> String {
    if tag == DEFAULT_TAG {
        name.to_string()
    } else {
        format!(".{name}:{tag}")
    }
}

/// `(name, tag)` of a templates-dir entry that is a tag link's name.
fn parse_link_name(file: &str) -> Option<(String, String)> {
    let (name, tag) = match file.strip_prefix('.') {
        Some(rest) => rest.split_once(':')?,
        None => (file, DEFAULT_TAG),
    };
    let ok = super::template_store::valid_template_name(name) && normalize_tag(tag).is_ok_and(|t| t == tag);
    ok.then(|| (name.to_string(), tag.to_string()))
}

impl Inner {
    /// The dir `name:tag` stands for (a link, or a setup template's own dir).
    pub(super) fn tag_dir(&self, name: &str, tag: &str) -> PathBuf {
        self.layout.templates().join(tag_link_name(name, tag))
    }

    /// The version dir (`.NAME-BUILD`) tag link `link` points to, if it is a built one.
    fn version_of_link(&self, link: &Path) -> Option<String> {
        let target = std::fs::read_link(link).ok()?;
        let v = target.file_name()?.to_str()?.to_string();
        (target.parent().is_none_or(|p| p.as_os_str().is_empty()) && v.starts_with('.')).then_some(v)
    }

    /// Every tag of built template `name`: tag → version dir.
    pub(super) fn tags_of(&self, name: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return out };
        for e in entries.flatten() {
            let Some(file) = e.file_name().to_str().map(str::to_string) else { continue };
            let Some((n, tag)) = parse_link_name(&file) else { continue };
            if n != name || !e.path().is_symlink() {
                continue;
            }
            if let Some(v) = self.version_of_link(&e.path()) {
                out.insert(tag, v);
            }
        }
        out
    }

    /// Names of every built template that has a tag here.
    pub(super) fn tag_names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return Vec::new() };
        let names: BTreeSet<String> = entries
            .flatten()
            .filter(|e| e.path().is_symlink())
            .filter_map(|e| e.file_name().to_str().and_then(parse_link_name).map(|(n, _)| n))
            .collect();
        names.into_iter().collect()
    }

    /// Names of built templates that have a tag without `default` (listed beside the
    /// names in the templates dir).
    pub(super) fn names_with_tags_only(&self) -> BTreeSet<String> {
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else { return BTreeSet::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|f| f.starts_with('.'))
            .filter_map(|f| parse_link_name(&f).map(|(n, _)| n))
            .filter(|n| !self.layout.templates().join(n).exists())
            .collect()
    }

    /// Whether `name` is a template made by setup (never tagged, never built by the API):
    /// its dir, or the version its link points to (setup versions `base` and the code
    /// interpreter by their recipes), has no build record.
    pub(super) fn is_setup_template(&self, name: &str) -> bool {
        let dir = self.layout.templates().join(name);
        dir.exists() && super::template_store::built(&dir).is_none()
    }

    /// Points each of `tags` of `name` at `version` (one rename each).
    pub(super) fn point_tags(&self, name: &str, version: &str, tags: &[String]) -> Result<()> {
        for tag in tags {
            super::template_store::swap_link(&self.layout.templates(), &tag_link_name(name, tag), version)?;
        }
        Ok(())
    }

    /// Removes the versions of `name` no tag names any more, with their warm snapshots.
    /// Returns how many went.
    pub(super) fn retire_versions(&self, name: &str) -> usize {
        let named: BTreeSet<String> = self.tags_of(name).into_values().collect();
        let mut gone = 0;
        for v in self.versions_of(name).into_iter().filter(|v| !named.contains(v)) {
            if std::fs::remove_dir_all(self.layout.templates().join(&v)).is_ok() {
                gone += 1;
            }
            self.drop_ready_snapshot(&v);
        }
        gone
    }

    /// `POST /templates/tags`: `tags` also name the version `target` (`NAME[:TAG]`) names.
    /// Returns that version's build id and the tags, normalized.
    pub(super) fn assign_template_tags(&self, target: &str, tags: &[String]) -> Result<(String, Vec<String>)> {
        let (name, tag) = split_template_ref(target).map_err(RuntimeError::InvalidTemplate)?;
        let tags = normalize_tags(tags).map_err(RuntimeError::InvalidTemplate)?;
        if tags.is_empty() {
            return Err(RuntimeError::InvalidTemplate("at least one tag is required".into()));
        }
        if !super::template_store::valid_template_name(&name) {
            return Err(RuntimeError::TemplateNotFound(target.to_string()));
        }
        if self.is_setup_template(&name) {
            return Err(RuntimeError::InvalidTemplate(format!(
                "template {name} is made by setup, not built: it has no builds to tag"
            )));
        }
        self.sync_template(&name)?;
        let _g = self.template_links.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.tags_of(&name).remove(&tag).ok_or_else(|| RuntimeError::TemplateNotFound(target.into()))?;
        let build = super::template_store::built(&self.layout.templates().join(&version))
            .ok_or_else(|| RuntimeError::TemplateNotFound(target.into()))?;
        self.point_tags(&name, &version, &tags)?;
        self.retire_versions(&name);
        self.publish_registry(&name)?;
        Ok((build.build_id, tags))
    }

    /// `DELETE /templates/tags`: removes `tags` of `name` (the `default` one is refused:
    /// it is what `NAME` means; a tag it does not have is no error, as on E2B). A version
    /// no tag names goes; its layers once no sandbox stands on them.
    pub(super) fn remove_template_tags(&self, name: &str, tags: &[String]) -> Result<()> {
        if name.contains(':') {
            return Err(RuntimeError::InvalidTemplate(
                "the template name must not contain a tag: name the tags in `tags`".into(),
            ));
        }
        let tags = normalize_tags(tags).map_err(RuntimeError::InvalidTemplate)?;
        if tags.is_empty() {
            return Err(RuntimeError::InvalidTemplate("at least one tag is required".into()));
        }
        if tags.iter().any(|t| t == DEFAULT_TAG) {
            return Err(RuntimeError::InvalidTemplate(format!(
                "the '{DEFAULT_TAG}' tag cannot be removed (remove the template instead)"
            )));
        }
        if !super::template_store::valid_template_name(name) || self.is_setup_template(name) {
            return Err(if self.is_setup_template(name) {
                RuntimeError::InvalidTemplate(format!("template {name} is made by setup: it has no tags"))
            } else {
                RuntimeError::TemplateNotFound(name.to_string())
            });
        }
        self.sync_template(name)?;
        let _g = self.template_links.lock().unwrap_or_else(|e| e.into_inner());
        let have = self.tags_of(name);
        if have.is_empty() {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        for tag in tags.iter().filter(|t| have.contains_key(*t)) {
            let link = self.tag_dir(name, tag);
            std::fs::remove_file(&link).ctx(|| format!("remove {}", link.display()))?;
        }
        if self.retire_versions(name) > 0 {
            self.collect_unused_layers()?;
        }
        self.publish_registry(name)
    }

    /// `GET /templates/{id}/tags`: the tags of `name`, by name (none for a template made
    /// by setup).
    pub(super) fn template_tags(&self, name: &str) -> Result<Vec<TemplateTag>> {
        let (name, _) = split_template_ref(name).map_err(RuntimeError::InvalidTemplate)?;
        let name = name.as_str();
        self.sync_template_ref(name);
        if self.is_setup_template(name) {
            return Ok(Vec::new());
        }
        if !super::template_store::valid_template_name(name) {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        let tags = self.tags_of(name);
        if tags.is_empty() {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        Ok(tags
            .into_iter()
            .filter_map(|(tag, version)| {
                let build = super::template_store::built(&self.layout.templates().join(&version))?;
                let moved = std::fs::symlink_metadata(self.tag_dir(name, &tag)).and_then(|m| m.modified()).ok();
                let created_at = moved.map(rfc3339).unwrap_or(build.created_at);
                Some(TemplateTag { tag, build_id: build.build_id, created_at })
            })
            .collect())
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    stasis_proto::timestamp::rfc3339_millis(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalized_as_e2b_does() {
        assert_eq!(normalize_tag(" V1.2_rc-1 ").unwrap(), "v1.2_rc-1");
        for bad in ["", "a:b", "a/b", "a b", "..", &"x".repeat(65), "123e4567-e89b-12d3-a456-426614174000"] {
            assert!(normalize_tag(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_tags(&["b".into(), "A".into(), "a".into()]).unwrap(), vec!["b", "a"]);
    }

    #[test]
    fn a_reference_without_a_tag_means_default() {
        assert_eq!(split_template_ref("app").unwrap(), ("app".into(), "default".into()));
        assert_eq!(split_template_ref("app:V2").unwrap(), ("app".into(), "v2".into()));
        assert_eq!(split_template_ref("app:default").unwrap(), ("app".into(), "default".into()));
        assert!(split_template_ref("app:a/b").is_err());
    }

    #[test]
    fn link_names_round_trip_and_others_are_not_tags() {
        for (name, tag) in [("app", "default"), ("app", "v1.0"), ("my_app-2", "latest")] {
            assert_eq!(parse_link_name(&tag_link_name(name, tag)), Some((name.into(), tag.into())));
        }
        assert_eq!(tag_link_name("app", "default"), "app");
        assert_eq!(tag_link_name("app", "v1"), ".app:v1");
        // Version dirs, the rename's temporary links, and a setup template's entries.
        for other in [".app-0b2f", "..app:v1.link", ".app.link", ".ready-app", ".App:v1", ".app:V1"] {
            assert_eq!(parse_link_name(other), None, "{other}");
        }
    }
}

/// The store on a real runtime (a data dir of its own, a setup-made `base` of an empty
/// rootfs): builds publish without a start command, so nothing boots.
#[cfg(test)]
mod store_tests {
    use std::collections::BTreeMap;

    use super::super::{ContainerConfig, ContainerRuntime, Inner};
    use super::*;
    use crate::{BuildBase, TemplatePublish};

    fn runtime(dir: &Path) -> Option<ContainerRuntime> {
        std::fs::create_dir_all(dir.join("templates/base/rootfs")).unwrap();
        let config = ContainerConfig {
            data_dir: dir.to_path_buf(),
            agent_binary: dir.join("no-agent"),
            disk_reserve: 0,
            object_store: None,
            share_layers: false,
            egress: None,
            disk_pool: false,
            gateway_pool: false,
        };
        match ContainerRuntime::new(config) {
            Ok(rt) => Some(rt),
            Err(e) => {
                eprintln!("skipped: no container runtime on this host ({e})");
                None
            }
        }
    }

    fn publish(inner: &Inner, name: &str, build: &str, mark: &str, tags: &[&str]) -> Result<()> {
        inner.publish_template(&TemplatePublish {
            name: name.into(),
            build_id: build.into(),
            base: Some(BuildBase::Template("base".into())),
            env: BTreeMap::from([("MARK".to_string(), mark.to_string())]),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
    }

    fn mark(inner: &Inner, reference: &str) -> Option<String> {
        inner.template(reference).ok().and_then(|t| t.env.get("MARK").cloned())
    }

    fn tag_builds(inner: &Inner, name: &str) -> Vec<(String, String)> {
        inner.template_tags(name).unwrap().into_iter().map(|t| (t.tag, t.build_id)).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn a_setup_template_versioned_by_its_recipe_is_still_a_setup_template() {
        let dir = tempfile::tempdir().unwrap();
        let Some(rt) = runtime(dir.path()) else { return };
        let inner = &rt.inner;
        // What scripts/build-template.sh makes: `base` links to `.base-RECIPE`, whose
        // template.json has no build record.
        let t = dir.path().join("templates");
        std::fs::rename(t.join("base"), t.join(".base-legacy")).unwrap();
        std::fs::create_dir_all(t.join(".base-0123456789abcdef/rootfs")).unwrap();
        std::fs::write(
            t.join(".base-0123456789abcdef/template.json"),
            r#"{"name":"base","recipe":"0123456789abcdef","uidShift":100000}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink(".base-0123456789abcdef", t.join("base")).unwrap();
        assert!(inner.is_setup_template("base"));
        assert!(matches!(inner.assign_template_tags("base", &["v1".into()]), Err(RuntimeError::InvalidTemplate(_))));
        assert!(inner.remove_template("base").is_err(), "setup's base is not the API's to delete");
        let canonical = std::fs::canonicalize(t.join(".base-0123456789abcdef/rootfs")).unwrap();
        assert_eq!(inner.template("base").unwrap().lowers, vec![canonical.display().to_string()]);
        let names: Vec<String> = inner.templates().unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, vec!["base".to_string()], "versions are not templates of their own");
    }

    #[test]
    fn tags_name_builds_move_with_builds_and_retire_what_nothing_names() {
        let dir = tempfile::tempdir().unwrap();
        let Some(rt) = runtime(dir.path()) else { return };
        let inner = &rt.inner;
        let versions = |name: &str| {
            let mut v = inner.versions_of(name);
            v.sort();
            v
        };

        // No tag named: the build is `default`, what the name alone means.
        publish(inner, "app", "b1", "one", &[]).unwrap();
        assert_eq!(mark(inner, "app").as_deref(), Some("one"));
        assert_eq!(mark(inner, "app:default").as_deref(), Some("one"));
        // A build with a tag moves that tag only.
        publish(inner, "app", "b2", "two", &["V2"]).unwrap();
        assert_eq!(mark(inner, "app").as_deref(), Some("one"));
        assert_eq!(mark(inner, "app:v2").as_deref(), Some("two"));
        assert_eq!(mark(inner, "app:nope"), None);
        assert_eq!(tag_builds(inner, "app"), pairs(&[("default", "b1"), ("v2", "b2")]));
        assert_eq!(versions("app"), vec![".app-b1", ".app-b2"]);

        // Assigning from a tag: `default` and `stable` now name b2; b1 is named by
        // nothing and goes.
        let (build, tags) = inner.assign_template_tags("app:v2", &["default".into(), "Stable".into()]).unwrap();
        assert_eq!((build.as_str(), tags), ("b2", vec!["default".to_string(), "stable".to_string()]));
        assert_eq!(mark(inner, "app").as_deref(), Some("two"));
        assert_eq!(versions("app"), vec![".app-b2"]);
        assert!(matches!(
            inner.assign_template_tags("app:gone", &["x".into()]),
            Err(RuntimeError::TemplateNotFound(_))
        ));
        assert!(matches!(inner.assign_template_tags("app", &[]), Err(RuntimeError::InvalidTemplate(_))));

        // Removing: never `default`; a tag it lacks is no error; the others stay.
        assert!(matches!(
            inner.remove_template_tags("app", &["default".into()]),
            Err(RuntimeError::InvalidTemplate(_))
        ));
        assert!(matches!(inner.remove_template_tags("app:v2", &["v2".into()]), Err(RuntimeError::InvalidTemplate(_))));
        inner.remove_template_tags("app", &["v2".into(), "never".into()]).unwrap();
        assert_eq!(tag_builds(inner, "app"), pairs(&[("default", "b2"), ("stable", "b2")]));
        assert_eq!(mark(inner, "app:v2"), None);

        // A rebuild that makes what a version already is moves the tag to that version.
        publish(inner, "app", "b3", "two", &["again"]).unwrap();
        assert_eq!(tag_builds(inner, "app"), pairs(&[("again", "b2"), ("default", "b2"), ("stable", "b2")]));
        assert_eq!(versions("app"), vec![".app-b2"]);

        // A template built only with other tags: the name alone is not found, its tag is.
        publish(inner, "only", "c1", "only", &["v1"]).unwrap();
        assert!(matches!(inner.template("only"), Err(RuntimeError::TemplateNotFound(_))));
        assert_eq!(mark(inner, "only:v1").as_deref(), Some("only"));
        let listed = inner.templates().unwrap();
        let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["app", "base", "only"]);
        let only = listed.iter().find(|t| t.name == "only").unwrap();
        assert_eq!((only.build_id.as_deref(), only.tags.len()), (Some("c1"), 1));
        assert!(listed.iter().find(|t| t.name == "base").unwrap().tags.is_empty());
        inner.remove_template("only").unwrap();
        assert!(inner.template("only:v1").is_err());
        assert!(versions("only").is_empty());
        assert!(matches!(inner.template_tags("only"), Err(RuntimeError::TemplateNotFound(_))));

        // A template made by setup has no builds to tag, and no build replaces it.
        assert!(inner.template_tags("base").unwrap().is_empty());
        assert!(matches!(inner.assign_template_tags("base", &["x".into()]), Err(RuntimeError::InvalidTemplate(_))));
        assert!(matches!(publish(inner, "base", "d1", "x", &["v1"]), Err(RuntimeError::AlreadyExists(_))));
        assert!(mark(inner, "base:default").is_none() && inner.template("base:default").is_ok());
    }
}
