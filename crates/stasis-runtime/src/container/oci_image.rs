//! OCI images as template bases: an image pulled from a registry (or read from an OCI
//! archive or layout on disk) becomes a layer, `DATA/snapshots/lyrKEY`, KEY derived from
//! the image's manifest digest, so every template built from the same image stands on the
//! same layer (and a second build does not pull it again).
//!
//! The work is done by Debian's `skopeo` (talks to registries: auth, TLS, manifest lists;
//! copies the image to an OCI layout in a private directory) and `umoci` (unpacks the
//! layout's layers into a root filesystem, applying whiteouts, with the sandboxes' id
//! mapping so in-image root is the sandboxes' root). The rootfs is then made bootable
//! (`prepare`: the mount points the agent needs, the `user` account the SDKs run commands
//! as) and committed by one rename; a failed pull leaves nothing but its private
//! directory, which is removed.
//!
//! Must not: decide what an image reference means (the builder turns `fromImage` into an
//! [`ImageSource`]), or run anything of the image on the host.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{agent_layer, idmap, random_hex, Inner};
use crate::error::{IoContext, Result, RuntimeError};
use crate::SandboxSpec;

/// Where an image comes from, in skopeo's transport syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSource {
    /// `docker://HOST/NAME:TAG` (or `@sha256:...`), `oci-archive:/PATH`, `oci:/DIR:TAG`.
    pub reference: String,
    /// Registry credentials (docker transport only).
    pub auth: Option<RegistryAuth>,
    /// Verify the registry's TLS certificate (and refuse plain HTTP).
    pub tls_verify: bool,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// The registry's host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}@{})", self.username, self.registry)
    }
}

/// An image made into a layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedImage {
    /// The layer (a files-only snapshot id) a build starts from.
    pub layer: String,
    /// Digest of the manifest the reference named.
    pub digest: String,
    pub config: ImageConfig,
    /// It was imported by an earlier build (nothing was pulled).
    pub cached: bool,
}

/// What a build takes from the image's config (CMD and ENTRYPOINT are not taken: a
/// template's start command is its own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    /// `KEY=VALUE`, in the image's order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// The image's USER as a user name of its /etc/passwd (a numeric uid is looked up).
    pub user: Option<String>,
    /// What `prepare` did to make it a sandbox root (for the build log).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Next to the layer: the image's config as the builder takes it.
pub(super) const IMAGE_JSON: &str = "image.json";
/// The sandboxes' default user (E2B's): created when the image has none.
const SANDBOX_USER: &str = "user";

impl Inner {
    /// The layer of `src`'s image, imported now unless an earlier build did.
    pub(super) fn import_image(&self, src: &ImageSource, log: &dyn Fn(String)) -> Result<ImportedImage> {
        let work = self.layout.root().join("images").join(format!(".pull-{}", random_hex(8)));
        std::fs::create_dir_all(&work).ctx(|| format!("create {}", work.display()))?;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700)).ctx(|| "chmod pull dir".into())?;
        let result = self.import_in(&work, src, log);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn import_in(&self, work: &Path, src: &ImageSource, log: &dyn Fn(String)) -> Result<ImportedImage> {
        let docker = src.reference.starts_with("docker://");
        let mut opts: Vec<String> = Vec::new();
        if let Some(a) = src.auth.as_ref().filter(|_| docker) {
            let file = work.join("auth.json");
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", a.username, a.password));
            let body = serde_json::json!({ "auths": { a.registry.clone(): { "auth": auth } } });
            super::perms::write_private(&file, body.to_string().as_bytes()).ctx(|| "write auth file".into())?;
            opts.push(format!("--authfile={}", file.display()));
        }
        let insecure = docker && !src.tls_verify;
        let mut args: Vec<String> = vec!["inspect".into(), "--raw".into()];
        args.extend(opts.iter().cloned());
        args.extend(insecure.then(|| "--tls-verify=false".to_string()));
        args.push(src.reference.clone());
        let raw = skopeo(&args).map_err(|e| explain(&src.reference, src.auth.is_some(), &e))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
        let layer = layer_of(&digest);
        if let Some(config) = self.existing_image_layer(&layer) {
            return Ok(ImportedImage { layer, digest, config, cached: true });
        }
        log(format!("pulling {} ({digest})", src.reference));
        let layout = work.join("layout");
        let mut args: Vec<String> = vec!["copy".into(), "--quiet".into()];
        args.extend(opts.iter().cloned());
        args.extend(insecure.then(|| "--src-tls-verify=false".to_string()));
        args.push(if docker { pin(&src.reference, &digest) } else { src.reference.clone() });
        args.push(format!("oci:{}:image", layout.display()));
        skopeo(&args).map_err(|e| explain(&src.reference, src.auth.is_some(), &e))?;
        let (arch, os, mut config) = read_layout_config(&layout)?;
        let host = host_arch();
        if os != "linux" || arch != host {
            return Err(RuntimeError::Image(format!(
                "{} is an image for {os}/{arch}; this server runs linux/{host} images",
                src.reference
            )));
        }
        let bundle = work.join("bundle");
        let map = format!("0:{}:{}", idmap::HOST_ID_BASE, idmap::ID_COUNT);
        run_tool(
            "umoci",
            &["unpack", "--uid-map", &map, "--gid-map", &map, "--image", &format!("{}:image", layout.display())],
            Some(&bundle),
        )
        .map_err(|e| RuntimeError::Image(format!("unpacking {}: {e}", src.reference)))?;
        let rootfs = bundle.join("rootfs");
        config.notes = prepare(&rootfs)?;
        config.user = config.user.as_deref().and_then(|u| user_name(&rootfs, u));
        self.commit_image_layer(&layer, &rootfs, &config, &src.reference)?;
        Ok(ImportedImage { layer, digest, config, cached: false })
    }

    /// The config of image layer `layer` if it is here. One marked deleted (the last
    /// template on it was removed) but not collected yet (a sandbox still stands on it)
    /// is the same image: it is taken back. The caller holds off collection.
    fn existing_image_layer(&self, layer: &str) -> Option<ImageConfig> {
        let dir = self.layout.snapshot(layer);
        // Imported by another node of a cluster: fetched.
        if !dir.exists() {
            self.ensure_snapshot(layer).ok()?;
        }
        let config = read_json::<ImageConfig>(&dir.join(IMAGE_JSON)).ok()?;
        if self.snapshot_meta(layer).is_err() {
            std::fs::remove_file(dir.join(super::snapshot::DELETED)).ok()?;
            self.snapshot_meta(layer).ok()?;
        }
        Some(config)
    }

    /// Moves `rootfs` in as layer `layer`, by one rename.
    fn commit_image_layer(&self, layer: &str, rootfs: &Path, config: &ImageConfig, source: &str) -> Result<()> {
        let snapshots = self.layout.snapshots();
        std::fs::create_dir_all(&snapshots).ctx(|| format!("create {}", snapshots.display()))?;
        let final_dir = self.layout.snapshot(layer);
        if final_dir.exists() {
            return Err(RuntimeError::AlreadyExists(format!("layer {layer} (of a damaged import: remove it)")));
        }
        let tmp = snapshots.join(format!(".{layer}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        let made = (|| -> Result<()> {
            std::fs::rename(rootfs, tmp.join("layer")).ctx(|| "move the image's rootfs".into())?;
            std::fs::write(tmp.join(IMAGE_JSON), serde_json::to_vec_pretty(config).expect("json"))
                .ctx(|| "write image.json".into())?;
            let meta = super::SnapshotMeta {
                id: layer.to_string(),
                source: format!("image {source}"),
                memory: false,
                // Like a layer a build committed: the first entry stands for the agent
                // layer (never read from a layer's metadata), nothing under the image.
                lower_dirs: vec![self.layout.agents().display().to_string()],
                spec: SandboxSpec::default(),
                agent_path: agent_layer::AGENT_IN_SANDBOX.to_string(),
                start: None,
                // Owned by the layers' range, like every template layer.
                id_base: None,
            };
            super::perms::write_private(&tmp.join("snapshot.json"), &meta.to_json())
                .ctx(|| "write snapshot.json".into())?;
            // In a cluster: other nodes make the templates on it from the object store.
            self.share_snapshot(layer, &tmp, &meta)?;
            super::fs::syncfs(&tmp)?;
            std::fs::rename(&tmp, &final_dir).ctx(|| format!("commit {}", final_dir.display()))?;
            std::fs::File::open(&snapshots).and_then(|d| d.sync_all()).ctx(|| "sync snapshots dir".into())
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        made
    }
}

/// The layer of the image whose manifest has `digest`.
pub fn layer_of(digest: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"oci-image\0");
    h.update(digest.as_bytes());
    format!("lyr{}", &hex::encode(h.finalize())[..40])
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `docker://host/name:tag` → `docker://host/name@DIGEST`: the copy gets exactly what
/// was inspected, even if the tag moves meanwhile.
fn pin(reference: &str, digest: &str) -> String {
    let body = reference.trim_start_matches("docker://");
    let name = match body.split_once('@') {
        Some((name, _)) => name,
        None => match body.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => body,
        },
    };
    format!("docker://{name}@{digest}")
}

fn skopeo(args: &[String]) -> std::result::Result<Vec<u8>, String> {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run skopeo ({e}); install Debian's skopeo (scripts/setup.sh does)"))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(tool_message(&out.stderr))
}

fn run_tool(tool: &str, args: &[&str], last: Option<&Path>) -> std::result::Result<(), String> {
    let mut cmd = Command::new(tool);
    cmd.args(args).stdin(Stdio::null());
    if let Some(p) = last {
        cmd.arg(p);
    }
    let out = cmd.output().map_err(|e| format!("cannot run {tool} ({e}); install Debian's {tool}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(tool_message(&out.stderr))
}

/// The `msg="..."` of a Go tool's fatal log line, else its stderr's last line.
fn tool_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim();
    match line.split_once("msg=\"") {
        Some((_, rest)) => rest.rsplit_once('"').map_or(rest, |(m, _)| m).replace("\\\"", "\""),
        None => line.to_string(),
    }
}

/// A registry's answer, said plainly: which of reference, registry, credentials failed.
fn explain(reference: &str, with_credentials: bool, message: &str) -> RuntimeError {
    let m = message.to_ascii_lowercase();
    let what = if m.contains("invalid reference") || m.contains("repository name must") {
        format!("bad image reference {reference:?}")
    } else if m.contains("unauthorized") || m.contains("authentication required") || m.contains("denied") {
        if with_credentials {
            format!("the registry refused the credentials for {reference}")
        } else {
            format!("the registry needs credentials for {reference} (fromImage(image, {{ username, password }}))")
        }
    } else if m.contains("manifest unknown") || m.contains("name unknown") || m.contains("not found") {
        format!("image {reference} not found in its registry")
    } else if m.contains("connection refused")
        || m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("pinging container registry")
        || m.contains("network is unreachable")
    {
        format!("registry unreachable for {reference}")
    } else if m.contains("no image found in manifest list") || m.contains("architecture") {
        format!("{reference} has no linux/{} image", host_arch())
    } else {
        format!("cannot read image {reference}")
    };
    RuntimeError::Image(format!("{what}: {message}"))
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RuntimeConfig>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).ctx(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Image(format!("{}: {e}", path.display())))
}

fn blob(layout: &Path, digest: &str) -> Result<PathBuf> {
    let (algo, hex) = digest.split_once(':').ok_or_else(|| RuntimeError::Image(format!("bad digest {digest:?}")))?;
    if !algo.bytes().all(|b| b.is_ascii_alphanumeric()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RuntimeError::Image(format!("bad digest {digest:?}")));
    }
    Ok(layout.join("blobs").join(algo).join(hex))
}

/// Architecture, OS and the runtime config of the one image in OCI layout `layout`.
fn read_layout_config(layout: &Path) -> Result<(String, String, ImageConfig)> {
    let index: Index = read_json(&layout.join("index.json"))?;
    let first = index.manifests.first().ok_or_else(|| RuntimeError::Image("the image has no manifest".into()))?;
    let manifest: Manifest = read_json(&blob(layout, &first.digest)?)?;
    let file: ConfigFile = read_json(&blob(layout, &manifest.config.digest)?)?;
    let rc = file.config.unwrap_or_default();
    let config = ImageConfig {
        env: rc.env.unwrap_or_default(),
        working_dir: rc.working_dir.filter(|w| !w.is_empty()),
        user: rc.user.filter(|u| !u.is_empty()),
        notes: Vec::new(),
    };
    Ok((file.architecture, file.os, config))
}

/// `rel` under `root`, refusing a path any of whose parts is a symlink: the rootfs is the
/// image's, and the host must never write through a link it made.
fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = root.to_path_buf();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p.push(part);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(RuntimeError::Image(format!("the image's /{rel} goes through a symlink; not supported")));
        }
    }
    Ok(p)
}

/// `rel` resolved as the image would see it (its symlinks followed inside `root`, an
/// absolute target taken from `root`), or `None` when a part is missing or the links
/// loop. For reading and for finding a real directory to create a file in.
fn resolve_in(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = rel.split('/').filter(|s| !s.is_empty()).rev().map(str::to_string).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let path = cur.iter().fold(root.to_path_buf(), |p, c| p.join(c)).join(&part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(&path).ok()?;
                let t = target.to_string_lossy().to_string();
                if t.starts_with('/') {
                    cur.clear();
                }
                todo.extend(t.split('/').filter(|s| !s.is_empty()).rev().map(str::to_string));
            }
            Ok(_) => cur.push(part),
            Err(_) if todo.is_empty() => {
                cur.push(part);
                return Some(cur.iter().fold(root.to_path_buf(), |p, c| p.join(c)));
            }
            Err(_) => return None,
        }
    }
    Some(cur.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn exists_in(root: &Path, rel: &str) -> bool {
    resolve_in(root, rel).is_some_and(|p| std::fs::symlink_metadata(p).is_ok())
}

/// E2B's SDKs run every command as `/bin/bash -l -c CMD`: an image without bash (alpine,
/// busybox) gets `/bin/bash`, a script handing its arguments to `/bin/sh`.
fn bash_shim(root: &Path) -> Result<Option<String>> {
    if exists_in(root, "bin/bash") || !exists_in(root, "bin/sh") {
        return Ok(None);
    }
    let Some(dir) = resolve_in(root, "bin").filter(|d| d.is_dir()) else { return Ok(None) };
    let path = dir.join("bash");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&path)
        .ctx(|| format!("create {}", path.display()))?;
    std::io::Write::write_all(&mut f, b"#!/bin/sh\n# Made by Stasis: the image has no bash; the SDKs run commands with /bin/bash.\nexec /bin/sh \"$@\"\n")
        .ctx(|| format!("write {}", path.display()))?;
    // Explicitly: the daemon's umask is 077.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).ctx(|| "chmod /bin/bash".into())?;
    chown_in(&path, 0, 0)?;
    Ok(Some("the image has no bash: /bin/bash runs /bin/sh (the SDKs run commands with /bin/bash -l -c)".into()))
}

fn chown_in(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(idmap::HOST_ID_BASE + uid), Some(idmap::HOST_ID_BASE + gid))
        .ctx(|| format!("chown {}", path.display()))
}

/// Makes an unpacked image a sandbox root: the mount points the agent mounts on, `/tmp`,
/// and accounts for `root` and `user` (E2B's default user, uid 1000 unless taken, with
/// `/home/user`). Returns what it changed.
fn prepare(root: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for (dir, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("root", 0o700),
    ] {
        let p = inside(root, dir)?;
        if !p.exists() {
            std::fs::create_dir(&p).ctx(|| format!("create {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).ctx(|| "chmod".into())?;
            chown_in(&p, 0, 0)?;
        }
    }
    let passwd_path = inside(root, "etc/passwd")?;
    let group_path = inside(root, "etc/group")?;
    let mut passwd = std::fs::read_to_string(&passwd_path).unwrap_or_default();
    let mut group = std::fs::read_to_string(&group_path).unwrap_or_default();
    let shell = if exists_in(root, "bin/bash") { "/bin/bash" } else { "/bin/sh" };
    let has = |table: &str, name: &str| table.lines().any(|l| l.split(':').next() == Some(name));
    let ids = |table: &str, field: usize| -> Vec<u32> {
        table.lines().filter_map(|l| l.split(':').nth(field)?.parse().ok()).collect()
    };
    let mut changed = false;
    if !has(&passwd, "root") {
        append_line(&mut passwd, &format!("root:x:0:0:root:/root:{shell}"));
        notes.push("added root to /etc/passwd".into());
        changed = true;
    }
    if !has(&group, "root") {
        append_line(&mut group, "root:x:0:");
        changed = true;
    }
    let (uid, gid) = if has(&passwd, SANDBOX_USER) {
        let line = passwd.lines().find(|l| l.split(':').next() == Some(SANDBOX_USER)).unwrap_or_default();
        let f: Vec<&str> = line.split(':').collect();
        (f.get(2).and_then(|v| v.parse().ok()).unwrap_or(1000), f.get(3).and_then(|v| v.parse().ok()).unwrap_or(1000))
    } else {
        let taken_u = ids(&passwd, 2);
        let uid = (1000..60000).find(|u| !taken_u.contains(u)).unwrap_or(1000);
        let gid = if has(&group, SANDBOX_USER) {
            group
                .lines()
                .find(|l| l.split(':').next() == Some(SANDBOX_USER))
                .and_then(|l| l.split(':').nth(2)?.parse().ok())
                .unwrap_or(uid)
        } else {
            let taken_g = ids(&group, 2);
            let gid =
                if taken_g.contains(&uid) { (1000..60000).find(|g| !taken_g.contains(g)).unwrap_or(uid) } else { uid };
            append_line(&mut group, &format!("{SANDBOX_USER}:x:{gid}:"));
            gid
        };
        append_line(&mut passwd, &format!("{SANDBOX_USER}:x:{uid}:{gid}::/home/{SANDBOX_USER}:{shell}"));
        notes.push(format!("created user {SANDBOX_USER} ({uid}:{gid}, home /home/{SANDBOX_USER})"));
        changed = true;
        (uid, gid)
    };
    if changed {
        for (p, text) in [(&passwd_path, &passwd), (&group_path, &group)] {
            let existed = p.exists();
            std::fs::write(p, text).ctx(|| format!("write {}", p.display()))?;
            if !existed {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).ctx(|| "chmod".into())?;
                chown_in(p, 0, 0)?;
            }
        }
    }
    notes.extend(bash_shim(root)?);
    let home = inside(root, &format!("home/{SANDBOX_USER}"))?;
    if !home.exists() {
        std::fs::create_dir(&home).ctx(|| format!("create {}", home.display()))?;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).ctx(|| "chmod".into())?;
        chown_in(&home, uid, gid)?;
    }
    Ok(notes)
}

fn append_line(table: &mut String, line: &str) {
    if !table.is_empty() && !table.ends_with('\n') {
        table.push('\n');
    }
    table.push_str(line);
    table.push('\n');
}

/// The image's USER (`name`, `uid`, `name:group`, `uid:gid`) as a name of its passwd.
fn user_name(root: &Path, user: &str) -> Option<String> {
    let who = user.split(':').next().unwrap_or_default();
    let mut passwd = String::new();
    std::fs::File::open(inside(root, "etc/passwd").ok()?).ok()?.read_to_string(&mut passwd).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&who) || f.get(2) == Some(&who)).then(|| f[0].to_string())
    })
}

/// The owner of `path` as seen inside a sandbox (tests).
#[cfg(test)]
fn sandbox_uid(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().uid().saturating_sub(idmap::HOST_ID_BASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_the_inspected_digest() {
        let d = "sha256:ab";
        assert_eq!(pin("docker://127.0.0.1:5000/app:1", d), "docker://127.0.0.1:5000/app@sha256:ab");
        assert_eq!(pin("docker://127.0.0.1:5000/app", d), "docker://127.0.0.1:5000/app@sha256:ab");
        assert_eq!(pin("docker://python:3.12", d), "docker://python@sha256:ab");
        assert_eq!(pin("docker://h/app@sha256:00", d), "docker://h/app@sha256:ab");
    }

    #[test]
    fn tells_which_part_failed() {
        let msg = |m: &str, creds: bool| explain("docker://h/a:1", creds, m).to_string();
        assert!(msg("reading manifest 1 in h/a: unauthorized: authentication required", true)
            .contains("refused the credentials"));
        assert!(msg("reading manifest 1 in h/a: unauthorized: authentication required", false)
            .contains("needs credentials"));
        assert!(
            msg("pinging container registry h: dial tcp: connect: connection refused", false).contains("unreachable")
        );
        assert!(
            msg("invalid reference format: repository name must be lowercase", false).contains("bad image reference")
        );
        assert!(msg("reading manifest 1 in h/a: manifest unknown: manifest unknown", false).contains("not found"));
        assert_eq!(tool_message(b"time=\"x\" level=fatal msg=\"Error \\\"a\\\": boom\"\n"), "Error \"a\": boom");
    }

    /// Needs root (chown to the sandboxes' ids).
    #[test]
    fn prepare_adds_mount_points_and_the_sandbox_user() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nnode:x:1000:\n").unwrap();
        std::fs::create_dir(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), "").unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let notes = prepare(root).unwrap();
        assert!(std::fs::read_to_string(root.join("bin/bash")).unwrap().contains("exec /bin/sh \"$@\""));
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("user:x:1001:1001::/home/user:/bin/sh"), "{passwd}");
        assert!(std::fs::read_to_string(root.join("etc/group")).unwrap().contains("user:x:1001:"));
        assert_eq!(sandbox_uid(&root.join("home/user")), 1001);
        assert!(root.join("proc").is_dir() && root.join("tmp").is_dir());
        assert!(notes.iter().any(|n| n.contains("created user")));
        assert_eq!(user_name(root, "1000"), Some("node".into()));
        assert_eq!(user_name(root, "node:node"), Some("node".into()));
        assert_eq!(user_name(root, "ghost"), None);
        // Run again: nothing more to do.
        assert!(prepare(root).unwrap().is_empty());
    }

    #[test]
    fn resolves_the_images_links_inside_it() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        std::fs::write(r.join("usr/bin/bash"), "").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", r.join("usr/bin/evil")).unwrap();
        std::fs::create_dir(r.join("etc")).unwrap();
        assert!(exists_in(r, "bin/bash"), "merged /usr");
        assert_eq!(resolve_in(r, "bin/evil").unwrap(), r.join("etc/shadow"), "an absolute link stays inside");
        assert!(!exists_in(r, "bin/evil"));
        assert!(!exists_in(r, "nope/x"));
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in(r, "loop").is_none());
    }

    #[test]
    fn refuses_to_write_through_an_image_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        assert!(inside(d.path(), "etc/passwd").is_err());
        assert!(inside(d.path(), "tmp").is_ok());
    }
}
