//! The container runtime: a sandbox is a set of Linux namespaces owned by its own user
//! namespace, an overlay root, and cgroups; pausing it is a CRIU dump, resuming a restore.
//!
//! This file is the facade: the [`Runtime`] impl, the shared state (`Inner`) and the
//! per-sandbox locking. Each operation on one sandbox holds that sandbox's lock, so
//! concurrent calls are serialised and each ends in a defined state. The operations live
//! one per file:
//!
//! | file | owns |
//! |---|---|
//! | `create.rs` | create, and the boot of a sandbox's agent (also a fresh boot at resume) |
//! | `pause.rs` | pause: CRIU dump, checksums, sync, the commit point, release |
//! | `resume.rs` | resume: restore (keyed checksums verified first), or a fresh boot |
//! | `recover.rs` | finishing or undoing an operation a dead daemon left |
//! | `remote.rs` | images in the object store: upload at pause, fetch at resume, delete |
//! | `layer.rs` | a paused sandbox's writable layer and record in the object store (a cluster): export at pause, import on another node |
//! | `teardown.rs` | kill, and cleaning up a failed create |
//! | `snapshot.rs` | snapshots: capture, create from, delete, collect |
//! | `template.rs`, `warm.rs` | what a template is made of; warming one that starts a service |
//! | `template_store.rs` | build sandboxes, layers, publishing, listing and removing built templates |
//! | `template_tags.rs` | tags: which build (version) each `NAME:TAG` names; retiring untagged versions |
//! | `handover.rs` | a restored agent's new token and environment (`/init`) |
//! | `generations.rs` | numbering, listing and discarding checkpoint generations |
//! | `fs.rs`, `sandbox_net.rs`, `progress.rs`, `phases.rs` | the glue those share: mounts, network, progress, a create's timings |
//! | `disk_pool.rs` | ready sandbox disks, formatted ahead of creates |
//! | `gateway_pool.rs` | ready gateway namespaces, built ahead of creates |
//! | `egress.rs`, `trust.rs` | the egress proxy's listener in each gateway namespace; its CA in the sandbox's trust store |
//! | `volumes.rs` | volumes: their directories, mounts at boot, CRIU's external mounts |
//! | `hot_mounts.rs` | volumes mounted into and unmounted from a running sandbox |
//! | `format.rs` | versions of the on-disk files (`record.json`, `snapshot.json`, `checksums.json`) |
//!
//! The host mechanisms they drive sit beside them: `cgroups`, `criu`, `checksum`,
//! `criu_kdat`, `flush`, `disk`, `overlay`, `network`, `idmap`, `id_ranges`, `agent_layer`, `boot`, `layout`,
//! `record`.

mod agent_layer;
mod boot;
mod cgroups;
mod checksum;
mod create;
pub(crate) mod criu;
mod criu_kdat;
mod disk;
mod disk_pool;
pub mod egress;
mod flush;
mod format;
mod fs;
mod gateway_pool;
mod generations;
mod handover;
mod hot_mounts;
mod id_ranges;
pub mod idmap;
mod init;
mod init_watch;
mod layer;
mod layout;
pub mod network;
mod oci_image;
pub mod overlay;
mod pause;
mod perms;
mod phases;
mod progress;
mod record;
mod recover;
mod remote;
mod resume;
mod sandbox_net;
mod snapshot;
mod snapshot_share;
pub mod space;
mod teardown;
mod template;
mod template_share;
mod template_store;
mod template_tags;
mod trust;
mod update;
pub mod volumes;
mod warm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use cgroups::Cgroups;
pub use init::InitHandle;
pub use layout::{Layout, SandboxDir};
pub use oci_image::{ImageConfig, ImageSource, ImportedImage, RegistryAuth};
use record::Record;
pub use snapshot::SnapshotMeta;
pub use template::ReadyCheck;
pub use template_store::{valid_template_name, BuildBase, TemplateInfo, TemplatePublish};
pub use template_tags::{normalize_tags, split_template_ref, TemplateTag, DEFAULT_TAG};
pub use trust::BUNDLE as TRUST_BUNDLE;

use crate::error::{IoContext, Result, RuntimeError};
use crate::{CheckpointStats, PauseMode, Recovered, Runtime, SandboxSpec, SandboxState, SandboxUsage, SnapshotStats};

#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub data_dir: PathBuf,
    /// Host path of the static `stasis-agent` binary.
    pub agent_binary: PathBuf,
    /// Bytes of the data dir's filesystem that creates, pauses and snapshots leave free
    /// (`space.rs`).
    pub disk_reserve: u64,
    /// Where checkpoint and snapshot images are kept beyond this host (`remote.rs`);
    /// `None`: on this host only.
    pub object_store: Option<crate::objstore::ObjectStoreConfig>,
    /// A paused sandbox's writable layer and record go to the object store too, so any
    /// node can resume it (`layer.rs`; a cluster: `stasis serve --node-id`).
    pub share_layers: bool,
    /// The egress proxy sandboxes with `network.rules` send their HTTPS through
    /// (`egress.rs`); `None`: such sandboxes are refused.
    pub egress: Option<egress::EgressConfig>,
    /// Keep a pool of ready sandbox disks, formatted in the background (`disk_pool.rs`):
    /// for a daemon; a one-shot `stasis runtime` process would only leave half-made ones.
    pub disk_pool: bool,
    /// Keep a pool of ready gateway namespaces, built in the background
    /// (`gateway_pool.rs`): for a daemon, like the disk pool.
    pub gateway_pool: bool,
}

impl ContainerConfig {
    /// `$STASIS_AGENT`, else /usr/local/lib/stasis/stasis-agent (where setup installs it).
    /// `$STASIS_DISK_RESERVE` (a size: 10GiB, 512M...), else 1 GiB.
    pub fn default_disk_reserve() -> u64 {
        std::env::var("STASIS_DISK_RESERVE").ok().and_then(|v| space::parse_size(&v).ok()).unwrap_or(1 << 30)
    }

    /// The disk pool unless `$STASIS_DISK_POOL` is `0` (to measure or rule it out).
    pub fn default_disk_pool() -> bool {
        std::env::var("STASIS_DISK_POOL").map_or(true, |v| v.trim() != "0")
    }

    /// The gateway pool unless `$STASIS_GATEWAY_POOL` is `0`.
    pub fn default_gateway_pool() -> bool {
        std::env::var("STASIS_GATEWAY_POOL").map_or(true, |v| v.trim() != "0")
    }

    pub fn default_agent_binary() -> PathBuf {
        std::env::var_os("STASIS_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/local/lib/stasis/stasis-agent"))
    }
}

#[derive(Clone)]
pub struct ContainerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    cgroups: Cgroups,
    criu: criu::Criu,
    agent_binary: PathBuf,
    /// Made on first create: only creating a sandbox needs the agent binary.
    agent_layer: OnceLock<PathBuf>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Creating from a snapshot reads it (shared); deleting one writes (exclusive).
    snapshot_lock: tokio::sync::RwLock<()>,
    /// Host network rules, installed on first use.
    net_init: OnceLock<std::result::Result<(), String>>,
    /// Held while a transit index is chosen and recorded.
    net_alloc: Mutex<()>,
    /// Restore memory lazily (userfaultfd) when the host allows it.
    lazy: bool,
    /// Signs and checks checkpoint checksums (`checksum/key.rs`).
    key: checksum::Key,
    /// Host disk space new work may not use (`space.rs`).
    disk_reserve: u64,
    /// Pauses and resumes under way: (kind, bytes done, bytes total).
    progress: Mutex<HashMap<String, progress::Entry>>,
    /// A pidfd on the init of every running sandbox this process has seen (`init_watch.rs`).
    inits: Mutex<HashMap<String, Arc<InitHandle>>>,
    /// Told when an init exits while its sandbox is meant to be running.
    exits: tokio::sync::broadcast::Sender<crate::InitExit>,
    /// Itself, for the tasks that watch inits.
    me: std::sync::Weak<Inner>,
    /// One warm per template at a time (`warm.rs`).
    warm_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Held while template links (tags) move and versions are written or retired
    /// (`template_tags.rs`).
    template_links: Mutex<()>,
    /// Warm sandboxes of this process, under way.
    warming: Mutex<std::collections::HashSet<String>>,
    /// Snapshot images this process has verified in full (`checksum/verified.rs`).
    verified: checksum::Verified,
    /// The object store images are kept in, if any (`remote.rs`).
    remote: Option<Arc<crate::objstore::Remote>>,
    /// Paused sandboxes' layers go to the object store too (`layer.rs`).
    share_layers: bool,
    /// Who holds which id range on this host (`id_ranges.rs`).
    id_ranges: id_ranges::IdRanges,
    /// Where intercepted HTTPS goes, and the CA sandboxes trust for it (`egress.rs`).
    egress: Option<egress::EgressConfig>,
    /// The open egress listeners, by sandbox.
    egress_listeners: Mutex<HashMap<String, egress::Listener>>,
    /// Ready sandbox disks (`disk_pool.rs`).
    disk_pool: disk_pool::DiskPool,
    /// Ready gateway namespaces (`gateway_pool.rs`).
    gateway_pool: gateway_pool::GatewayPool,
}

pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(RuntimeError::InvalidId(id.to_string()));
    }
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

impl ContainerRuntime {
    pub fn new(config: ContainerConfig) -> Result<Self> {
        let layout = Layout::new(&config.data_dir);
        for d in [layout.root().to_path_buf(), layout.sandboxes(), layout.snapshots()] {
            std::fs::create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        }
        perms::ensure_traversable(layout.root())?;
        perms::close_existing(&layout);
        let (key, made) = checksum::Key::load_or_create(layout.root())?;
        if made {
            let (adopted, refused) = checksum::legacy::adopt_all(layout.root(), &key);
            if adopted + refused > 0 {
                tracing::info!("checkpoint key made: {adopted} existing checkpoints re-sealed with it, {refused} damaged left unkeyed");
            }
        }
        let criu = criu::Criu::locate()?;
        criu_kdat::ensure(&criu.binary);
        let cgroups = Cgroups::detect()?;
        let remote = config.object_store.as_ref().map(crate::objstore::Remote::connect).transpose()?.map(Arc::new);
        let id_ranges = id_ranges::IdRanges::host();
        reclaim_id_ranges(&layout, &id_ranges);
        let disk_pool = if config.disk_pool {
            disk_pool::DiskPool::open(layout.disk_pool(), config.disk_reserve)
        } else {
            disk_pool::DiskPool::disabled()
        };
        let gateway_pool =
            if config.gateway_pool { gateway_pool::GatewayPool::open() } else { gateway_pool::GatewayPool::disabled() };
        Ok(Self {
            inner: Arc::new_cyclic(|me| Inner {
                layout,
                cgroups,
                criu,
                agent_binary: config.agent_binary,
                agent_layer: OnceLock::new(),
                locks: Mutex::default(),
                snapshot_lock: tokio::sync::RwLock::new(()),
                net_init: OnceLock::new(),
                net_alloc: Mutex::new(()),
                egress: config.egress,
                egress_listeners: Mutex::default(),
                lazy: criu::Criu::lazy_supported(),
                key,
                disk_reserve: config.disk_reserve,
                progress: Mutex::default(),
                inits: Mutex::default(),
                exits: tokio::sync::broadcast::channel(64).0,
                me: me.clone(),
                warm_locks: Mutex::default(),
                template_links: Mutex::default(),
                warming: Mutex::default(),
                verified: checksum::Verified::default(),
                remote,
                share_layers: config.share_layers,
                id_ranges,
                disk_pool,
                gateway_pool,
            }),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.inner.cgroups
    }

    /// Host pid of a running sandbox's init.
    pub fn init_pid(&self, id: &str) -> Result<u32> {
        let rec = self.inner.load(id)?;
        match (rec.state, rec.init_pid) {
            (SandboxState::Running, Some(pid)) => Ok(pid),
            _ => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }

    /// Runs blocking work for one sandbox under its lock.
    /// After a sandbox's files went: its snapshot layers may now be free.
    async fn collect_snapshots(&self) {
        let inner = self.inner.clone();
        let _g = self.inner.snapshot_lock.write().await;
        tokio::task::spawn_blocking(move || inner.collect_snapshots()).await.expect("gc task");
    }

    async fn locked<T: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        validate_id(id)?;
        let lock = self.inner.lock_of(id);
        let _guard = lock.lock().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.expect("runtime task panicked")
    }
}

/// Claims again the id ranges this data dir's records and memory snapshots name: the
/// host-wide claims live in `/run`, gone after a reboot, and another data dir's daemon
/// must not hand them out.
fn reclaim_id_ranges(layout: &Layout, ranges: &id_ranges::IdRanges) {
    let owners = |dir: PathBuf, file: &str| -> Vec<PathBuf> {
        std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.path().join(file)).collect()).unwrap_or_default()
    };
    let records = owners(layout.sandboxes(), "record.json")
        .into_iter()
        .filter_map(|p| Some((Record::load(&p).ok()?.id_base?, p)));
    let snaps = owners(layout.snapshots(), "snapshot.json")
        .into_iter()
        .filter_map(|p| Some((SnapshotMeta::load_from(&p).ok().filter(|m| m.memory)?.id_base?, p)));
    for (base, owner) in records.chain(snaps) {
        if let Err(e) = ranges.register(base, &owner) {
            tracing::warn!("id range {base} of {}: {e}", owner.display());
        }
    }
}

impl Inner {
    fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    fn dir(&self, id: &str) -> SandboxDir {
        self.layout.sandbox(id)
    }

    fn load(&self, id: &str) -> Result<Record> {
        let dir = self.dir(id);
        if !dir.record().exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        Record::load(&dir.record())
    }
}

#[async_trait::async_trait]
impl Runtime for ContainerRuntime {
    async fn create(&self, id: &str, spec: &SandboxSpec) -> Result<()> {
        let (id2, spec) = (id.to_string(), spec.clone());
        self.locked(id, move |rt| rt.create(&id2, &spec)).await
    }

    async fn pause(&self, id: &str, mode: PauseMode) -> Result<CheckpointStats> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.pause(&id2, mode)).await
    }

    async fn resume(&self, id: &str, mode: PauseMode) -> Result<()> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.resume(&id2, mode)).await
    }

    async fn update(&self, id: &str, update: &crate::SandboxUpdate) -> Result<()> {
        let (id2, update) = (id.to_string(), update.clone());
        self.locked(id, move |rt| rt.update(&id2, &update)).await
    }

    async fn mount_volume(&self, id: &str, mount: &crate::VolumeMount) -> Result<()> {
        let (id2, mount) = (id.to_string(), mount.clone());
        self.locked(id, move |rt| rt.mount_volume(&id2, &mount)).await
    }

    async fn unmount_volume(&self, id: &str, path: &str, force: bool) -> Result<()> {
        let (id2, path) = (id.to_string(), path.to_string());
        let outcome = self.locked(id, move |rt| rt.unmount_volume(&id2, &path, force)).await?;
        outcome.map_err(|refused| {
            RuntimeError::VolumeInUse(match refused {
                hot_mounts::UnmountRefused::Busy => {
                    "processes in the sandbox use files under it: close them, or unmount with force (detached lazily)"
                        .into()
                }
                hot_mounts::UnmountRefused::Locked => "it was mounted at create and came with the sandbox's mount \
                     namespace, which locks it in place (after a pause and resume it can be unmounted), or nothing is \
                     mounted there any more"
                    .into(),
            })
        })
    }

    async fn import_paused(&self, id: &str) -> Result<()> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.import_paused(&id2)).await
    }

    async fn drop_local(&self, id: &str) -> Result<()> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.drop_local(&id2)).await?;
        self.collect_snapshots().await;
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<()> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.kill(&id2)).await?;
        self.collect_snapshots().await;
        Ok(())
    }

    async fn snapshot(&self, id: &str, snapshot_id: &str, mode: PauseMode) -> Result<SnapshotStats> {
        let (id2, snap) = (id.to_string(), snapshot_id.to_string());
        self.locked(id, move |rt| rt.snapshot(&id2, &snap, mode)).await
    }

    async fn create_from_snapshot(&self, id: &str, snapshot_id: &str, spec: &SandboxSpec) -> Result<()> {
        let _g = self.inner.snapshot_lock.read().await;
        let (id2, snap, spec) = (id.to_string(), snapshot_id.to_string(), spec.clone());
        self.locked(id, move |rt| rt.create_from_snapshot(&id2, &snap, &spec)).await
    }

    async fn snapshot_limits(&self, snapshot_id: &str) -> Result<Option<crate::Limits>> {
        let (inner, snap) = (self.inner.clone(), snapshot_id.to_string());
        let meta =
            tokio::task::spawn_blocking(move || inner.ensure_snapshot(&snap).and_then(|()| inner.snapshot_meta(&snap)))
                .await
                .expect("snapshot task")?;
        let s = &meta.spec;
        Ok(Some(crate::Limits { cpu_count: s.cpu_count, memory_mb: s.memory_mb, disk_mb: s.disk_mb }))
    }

    async fn has_template(&self, name: &str) -> bool {
        let (inner, name) = (self.inner.clone(), name.to_string());
        tokio::task::spawn_blocking(move || inner.template(&name).is_ok()).await.unwrap_or(false)
    }

    async fn create_volume(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let layout = self.inner.layout.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || volumes::create(&layout, &id).map(|_| ())).await.expect("volume task")
    }

    async fn delete_volume(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let layout = self.inner.layout.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || volumes::remove(&layout, &id)).await.expect("volume task")
    }

    fn volume_dir(&self, id: &str) -> Option<PathBuf> {
        validate_id(id).ok()?;
        Some(self.inner.layout.volume(id)).filter(|d| d.is_dir())
    }

    async fn shared_snapshots(&self) -> Vec<String> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.shared_snapshots()).await.unwrap_or_default()
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let _g = self.inner.snapshot_lock.write().await;
        let (inner, snap) = (self.inner.clone(), snapshot_id.to_string());
        tokio::task::spawn_blocking(move || inner.delete_snapshot(&snap)).await.expect("snapshot task")
    }

    async fn recover(&self, id: &str) -> Result<Recovered> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.recover(&id2)).await
    }

    async fn state(&self, id: &str) -> Result<SandboxState> {
        validate_id(id)?;
        Ok(self.inner.load(id)?.state)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let dir = self.inner.layout.sandboxes();
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .ctx(|| format!("read {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok() && self.inner.dir(id).record().exists())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn usage(&self, id: &str) -> Result<SandboxUsage> {
        validate_id(id)?;
        let rec = self.inner.load(id)?;
        if rec.state != SandboxState::Running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let mut usage = self.inner.cgroups.usage(id);
        let dir = self.inner.dir(id);
        // Its own disk: the filesystem's count, at no cost (the lifecycle samples every
        // running sandbox every few seconds). Without one: a walk of its writable layer.
        let own_disk = rec.spec.disk_mb > 0;
        usage.disk_bytes = tokio::task::spawn_blocking(move || match own_disk {
            true => fs::used_bytes(&dir.disk()).unwrap_or_else(|| fs::disk_usage(&dir.upper())),
            false => fs::disk_usage(&dir.upper()),
        })
        .await
        .unwrap_or(0);
        Ok(usage)
    }

    fn progress(&self, id: &str) -> Option<crate::OpProgress> {
        self.inner.progress_of(id)
    }

    async fn connect(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        validate_id(id)?;
        let rec = self.inner.load(id)?;
        if rec.state != SandboxState::Running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let init = self.inner.init_of(&rec)?;
        crate::netns::connect(init, port).await.ctx(|| format!("connect to port {port} in sandbox {id}"))
    }

    fn init_exits(&self) -> tokio::sync::broadcast::Receiver<crate::InitExit> {
        self.inner.exits.subscribe()
    }

    async fn abandon_warms(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.abandon_warms()).await;
    }

    async fn release_pools(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.gateway_pool.release()).await;
    }

    async fn create_build_sandbox(&self, id: &str, base: &BuildBase, spec: &SandboxSpec) -> Result<()> {
        let (id2, base, spec) = (id.to_string(), base.clone(), spec.clone());
        let _g = self.inner.snapshot_lock.read().await;
        self.locked(id, move |rt| rt.create_build_sandbox(&id2, &base, &spec)).await
    }

    async fn copy_in(&self, id: &str, src: &Path, dest: &str) -> Result<()> {
        let (id2, src, dest) = (id.to_string(), src.to_path_buf(), dest.to_string());
        self.locked(id, move |rt| rt.copy_in(&id2, &src, &dest)).await
    }

    async fn import_image(&self, src: &ImageSource, log: Arc<dyn Fn(String) + Send + Sync>) -> Result<ImportedImage> {
        // Read: no collection (which could take a layer being taken back) while it runs.
        let _g = self.inner.snapshot_lock.read().await;
        let (inner, src) = (self.inner.clone(), src.clone());
        tokio::task::spawn_blocking(move || inner.import_image(&src, &*log)).await.expect("image task")
    }

    async fn has_layer(&self, layer: &str) -> bool {
        let (inner, layer) = (self.inner.clone(), layer.to_string());
        tokio::task::spawn_blocking(move || inner.has_layer(&layer)).await.unwrap_or(false)
    }

    async fn template_lowers(&self, base: &BuildBase) -> Result<Vec<String>> {
        let (inner, base) = (self.inner.clone(), base.clone());
        tokio::task::spawn_blocking(move || inner.lowers_of(&base)).await.expect("template task")
    }

    async fn publish_template(&self, p: &TemplatePublish) -> Result<()> {
        let _g = self.inner.snapshot_lock.read().await;
        let (inner, p) = (self.inner.clone(), p.clone());
        tokio::task::spawn_blocking(move || inner.publish_template(&p)).await.expect("template task")
    }

    async fn templates(&self) -> Result<Vec<TemplateInfo>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.templates()).await.expect("template task")
    }

    async fn remove_template(&self, name: &str) -> Result<()> {
        let _g = self.inner.snapshot_lock.write().await;
        let (inner, name) = (self.inner.clone(), name.to_string());
        tokio::task::spawn_blocking(move || inner.remove_template(&name)).await.expect("template task")
    }

    async fn assign_template_tags(&self, target: &str, tags: &[String]) -> Result<(String, Vec<String>)> {
        let _g = self.inner.snapshot_lock.read().await;
        let (inner, target, tags) = (self.inner.clone(), target.to_string(), tags.to_vec());
        tokio::task::spawn_blocking(move || inner.assign_template_tags(&target, &tags)).await.expect("template task")
    }

    async fn remove_template_tags(&self, name: &str, tags: &[String]) -> Result<()> {
        let _g = self.inner.snapshot_lock.write().await;
        let (inner, name, tags) = (self.inner.clone(), name.to_string(), tags.to_vec());
        tokio::task::spawn_blocking(move || inner.remove_template_tags(&name, &tags)).await.expect("template task")
    }

    async fn template_tags(&self, name: &str) -> Result<Vec<TemplateTag>> {
        let (inner, name) = (self.inner.clone(), name.to_string());
        tokio::task::spawn_blocking(move || inner.template_tags(&name)).await.expect("template task")
    }

    async fn warm_templates(&self) -> Vec<(String, Result<()>)> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.remove_stale_warms();
            inner
                .warming_templates()
                .into_iter()
                .map(|name| {
                    let outcome = inner.template(&name).and_then(|t| inner.ready_snapshot(&t)).map(|_| ());
                    (name, outcome)
                })
                .collect()
        })
        .await
        .expect("warm task panicked")
    }
}
