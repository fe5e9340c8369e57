//! Custom templates: the build service behind the SDKs' `Template.build` and
//! `stasis template`. A build is requested (a template name and a build id), its files
//! uploaded by content hash, then started with the template's steps; it runs in the
//! background, one at a time (`run.rs`: steps in real sandboxes, each committed as a
//! layer), with its status and log kept (`log.rs`), and its result published by the
//! runtime, atomically, only when every step passed (and the start command got ready).
//!
//! This is the one part of the server besides the lifecycle that calls the runtime: build
//! sandboxes are not users' sandboxes (no rows, no timeouts, never listed); they live only
//! while a step runs. Must not: touch sandbox rows, or parse the wire (`api/templates.rs`).

pub mod image;
pub mod log;
mod run;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use stasis_runtime::{
    normalize_tags, split_template_ref, valid_template_name, Runtime, RuntimeError, TemplateInfo, TemplateTag,
    DEFAULT_TAG,
};
use tokio::io::AsyncWriteExt;

use log::{Build, Failure, Record, Status};
use spec::BuildSpec;

/// Largest upload of a COPY step's files.
pub const MAX_UPLOAD_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, TemplateError>;

impl From<RuntimeError> for TemplateError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::TemplateNotFound(t) => TemplateError::NotFound(format!("template {t:?} not found")),
            RuntimeError::AlreadyExists(m) => TemplateError::Conflict(format!("{m} already exists")),
            RuntimeError::InvalidTemplate(m) => TemplateError::BadRequest(m),
            other => TemplateError::Internal(other.to_string()),
        }
    }
}

/// Resources a build's sandboxes get.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub name: String,
    pub tags: Vec<String>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u64>,
}

#[derive(Clone)]
pub struct Templates {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<dyn Runtime>,
    /// `DATA/builds`: records and logs.
    builds_dir: PathBuf,
    /// `DATA/build-files`: uploads, by the SDK's hash.
    files_dir: PathBuf,
    /// Signs upload URLs (they carry no API key: the SDKs send none with the upload).
    secret: [u8; 32],
    builds: Mutex<HashMap<String, Arc<Build>>>,
    /// Requested builds and their resources, until started.
    requested: Mutex<HashMap<String, BuildRequest>>,
    /// One build at a time: the machine is small and a build is a sandbox.
    one_at_a_time: tokio::sync::Semaphore,
    /// `DATA/images/import`: the only place on-disk images are read from (`image.rs`).
    import_dir: PathBuf,
    /// Registries reached without verified TLS besides loopback ones.
    insecure_registries: Vec<String>,
}

impl Templates {
    pub fn new(runtime: Arc<dyn Runtime>, data_dir: &Path) -> std::io::Result<Self> {
        let (builds_dir, files_dir) = (data_dir.join("builds"), data_dir.join("build-files"));
        std::fs::create_dir_all(&builds_dir)?;
        std::fs::create_dir_all(&files_dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                builds_dir,
                files_dir,
                secret: rand::random(),
                builds: Mutex::default(),
                requested: Mutex::default(),
                one_at_a_time: tokio::sync::Semaphore::new(1),
                import_dir: data_dir.join("images").join("import"),
                insecure_registries: Vec::new(),
            }),
        })
    }

    /// Registries (`HOST[:PORT]`) builds may reach over plain HTTP or unverified TLS.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.insecure_registries = registries;
        }
        self
    }

    /// Where on-disk OCI images (`oci-archive:`, `oci:`) must be to be built from.
    pub fn import_dir(&self) -> &Path {
        &self.inner.import_dir
    }

    /// After a restart: build sandboxes a stopped daemon left go (their builds read as
    /// interrupted, `log.rs`).
    pub async fn recover(&self) {
        for id in self.inner.runtime.list().await.unwrap_or_default().into_iter().filter(|id| id.starts_with("bld")) {
            tracing::warn!(sandbox = %id, "removing the sandbox of an interrupted template build");
            let _ = self.inner.runtime.kill(&id).await;
        }
    }

    /// `POST /v3/templates`: a build id for template `name`. The tags it moves when it
    /// succeeds: `name:tag`'s and `tags`; none named: `default` (E2B's build API).
    pub fn request(&self, mut req: BuildRequest) -> Result<(String, String, Vec<String>)> {
        let (name, tag) = split_template_ref(&req.name).map_err(TemplateError::BadRequest)?;
        let mut tags = Vec::new();
        if req.name.contains(':') {
            tags.push(tag);
        }
        tags.extend(req.tags.iter().cloned());
        req.name = name;
        req.tags = normalize_tags(&tags).map_err(TemplateError::BadRequest)?;
        if req.tags.is_empty() {
            req.tags.push(DEFAULT_TAG.to_string());
        }
        if !valid_template_name(&req.name) {
            return Err(TemplateError::BadRequest(format!(
                "invalid template name {:?}: use 1-64 of a-z, 0-9, '-' and '_'",
                req.name
            )));
        }
        let build_id = uuid_v4();
        let out = (req.name.clone(), build_id.clone(), req.tags.clone());
        self.inner.requested.lock().unwrap().insert(build_id, req);
        Ok(out)
    }

    /// Whether the files of `hash` are here; if not, where to upload them.
    pub fn upload_link(&self, hash: &str) -> Result<Option<String>> {
        if !spec::valid_hash(hash) {
            return Err(TemplateError::BadRequest(format!("invalid files hash {hash:?}")));
        }
        Ok((!self.inner.files_dir.join(hash).is_file()).then(|| self.upload_token(hash)))
    }

    pub fn upload_token(&self, hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.inner.secret);
        h.update(hash.as_bytes());
        hex::encode(h.finalize())
    }

    /// Stores an upload (streamed to a temporary file, renamed when complete).
    pub async fn store_upload(
        &self,
        hash: &str,
        token: &str,
        mut body: impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, axum::Error>> + Unpin,
    ) -> Result<()> {
        use futures_util::StreamExt;
        if !spec::valid_hash(hash) || !subtle_eq(token, &self.upload_token(hash)) {
            return Err(TemplateError::NotFound("no such upload".into()));
        }
        let tmp = self.inner.files_dir.join(format!(".{hash}.{}", hex::encode(rand::random::<[u8; 4]>())));
        let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| TemplateError::Internal(e.to_string()))?;
        let mut n = 0u64;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| TemplateError::BadRequest(format!("upload: {e}")))?;
                n += chunk.len() as u64;
                if n > MAX_UPLOAD_BYTES {
                    return Err(TemplateError::BadRequest(format!("upload larger than {MAX_UPLOAD_BYTES} bytes")));
                }
                f.write_all(&chunk).await.map_err(|e| TemplateError::Internal(e.to_string()))?;
            }
            f.sync_all().await.map_err(|e| TemplateError::Internal(e.to_string()))?;
            tokio::fs::rename(&tmp, self.inner.files_dir.join(hash))
                .await
                .map_err(|e| TemplateError::Internal(e.to_string()))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// `POST /v2/templates/{id}/builds/{build}`: starts the build in the background.
    pub fn start(&self, template: &str, build_id: &str, spec: spec::TemplateWire) -> Result<()> {
        let req = self.inner.requested.lock().unwrap().remove(build_id);
        let Some(req) = req.filter(|r| r.name == template) else {
            return Err(TemplateError::NotFound(format!(
                "build {build_id} of template {template} not found (request it first)"
            )));
        };
        let spec = BuildSpec::parse(spec).map_err(TemplateError::BadRequest)?;
        let record = Record {
            template_id: template.to_string(),
            build_id: build_id.to_string(),
            status: Status::Waiting,
            reason: None,
            created_at: log::now(),
            tags: req.tags.clone(),
        };
        let build = Arc::new(Build::new(&self.inner.builds_dir, record));
        self.inner.builds.lock().unwrap().insert(build_id.to_string(), build.clone());
        let ctx = run::Context {
            runtime: self.inner.runtime.clone(),
            files: self.inner.files_dir.clone(),
            template: template.to_string(),
            build_id: build_id.to_string(),
            import_dir: self.inner.import_dir.clone(),
            insecure_registries: self.inner.insecure_registries.clone(),
            cpu_count: req.cpu_count.unwrap_or(2).clamp(1, 16),
            memory_mb: req.memory_mb.unwrap_or(2048).clamp(128, 65536),
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _turn = inner.one_at_a_time.acquire().await.expect("never closed");
            build.set_status(Status::Building, None);
            let t0 = std::time::Instant::now();
            let outcome = match run::run(&ctx, &spec, &build).await {
                Ok(mut publish) => {
                    publish.tags = req.tags.clone();
                    if publish.start.is_some() {
                        build.log(
                            "info",
                            Some("finalize"),
                            "[finalize] starting the start command until it is ready, then capturing it",
                        );
                    }
                    inner.runtime.publish_template(&publish).await.map_err(|e| Failure {
                        message: format!("publish: {e}"),
                        step: Some("finalize".into()),
                        log_entries: Vec::new(),
                    })
                }
                Err(f) => Err(f),
            };
            match outcome {
                Ok(()) => {
                    build.log(
                        "info",
                        None,
                        format!("template {} built in {:.1}s", ctx.template, t0.elapsed().as_secs_f64()),
                    );
                    build.set_status(Status::Ready, None);
                }
                Err(f) => {
                    build.log("error", f.step.as_deref(), f.message.clone());
                    build.set_status(Status::Error, Some(f));
                }
            }
        });
        Ok(())
    }

    /// A build's record and its log from `offset`.
    pub fn status(&self, template: &str, build_id: &str, offset: usize) -> Result<(Record, Vec<log::LogEntry>)> {
        let build = self.inner.builds.lock().unwrap().get(build_id).cloned();
        let build = match build {
            Some(b) => b,
            None => {
                let ok_id = build_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') && !build_id.is_empty();
                let loaded = ok_id.then(|| Build::load(&self.inner.builds_dir, build_id)).flatten();
                Arc::new(loaded.ok_or_else(|| TemplateError::NotFound(format!("build {build_id} not found")))?)
            }
        };
        let rec = build.record();
        if rec.template_id != template {
            return Err(TemplateError::NotFound(format!("build {build_id} of template {template} not found")));
        }
        Ok((rec, build.entries_from(offset)))
    }

    pub async fn list(&self) -> Result<Vec<TemplateInfo>> {
        Ok(self.inner.runtime.templates().await?)
    }

    /// Whether template `name` exists (any of its tags), or with `name:tag`, that tag.
    pub async fn exists(&self, reference: &str) -> Result<bool> {
        let (name, tag) = split_template_ref(reference).map_err(TemplateError::BadRequest)?;
        let Some(t) = self.list().await?.into_iter().find(|t| t.name == name) else { return Ok(false) };
        Ok(!reference.contains(':') || t.tags.iter().any(|x| x.tag == tag) || (t.tags.is_empty() && tag == DEFAULT_TAG))
    }

    /// `POST /templates/tags`: `tags` also name the build `target` (`name[:tag]`) names.
    pub async fn assign_tags(&self, target: &str, tags: &[String]) -> Result<(String, Vec<String>)> {
        Ok(self.inner.runtime.assign_template_tags(target, tags).await?)
    }

    /// `DELETE /templates/tags`.
    pub async fn remove_tags(&self, name: &str, tags: &[String]) -> Result<()> {
        Ok(self.inner.runtime.remove_template_tags(name, tags).await?)
    }

    /// `GET /templates/{id}/tags`.
    pub async fn tags(&self, name: &str) -> Result<Vec<TemplateTag>> {
        Ok(self.inner.runtime.template_tags(name).await?)
    }

    pub async fn remove(&self, name: &str) -> Result<()> {
        Ok(self.inner.runtime.remove_template(name).await?)
    }
}

fn subtle_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
