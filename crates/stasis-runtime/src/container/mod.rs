//! The container runtime: a sandbox is a set of Linux namespaces owned by its own user
//! namespace, an overlay root, and cgroups; pausing it is a CRIU dump, resuming a restore.
//!
//! Each operation on one sandbox holds that sandbox's lock, so concurrent calls are
//! serialised and each ends in a defined state.

mod agent_layer;
mod boot;
mod checksum;
mod disk;
mod flush;
mod cgroups;
pub(crate) mod criu;
pub mod idmap;
mod layout;
pub mod network;
pub mod overlay;
mod record;
mod snapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use stasis_agent::boot::config::BootConfig;

pub use cgroups::Cgroups;
pub use layout::{Layout, SandboxDir};
pub use snapshot::SnapshotMeta;
use record::Record;

use crate::error::{IoContext, Result, RuntimeError};
use crate::{CheckpointStats, PauseMode, Recovered, Runtime, SandboxSpec, SandboxState, SandboxUsage, SnapshotStats};

/// Template names that mean `base` (E2B's default names).
const BASE_ALIASES: [&str; 2] = ["base", "code-interpreter-v1"];

#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub data_dir: PathBuf,
    /// Host path of the static `stasis-agent` binary.
    pub agent_binary: PathBuf,
}

impl ContainerConfig {
    /// `$STASIS_AGENT`, else /usr/local/lib/stasis/stasis-agent (where setup installs it).
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
    /// Pauses and resumes under way: (kind, bytes done, bytes total).
    progress: Mutex<HashMap<String, (&'static str, Arc<std::sync::atomic::AtomicU64>, u64)>>,
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
        ensure_traversable(layout.root())?;
        let criu = criu::Criu::locate()?;
        let cgroups = Cgroups::detect()?;
        Ok(Self {
            inner: Arc::new(Inner {
                layout,
                cgroups,
                criu,
                agent_binary: config.agent_binary,
                agent_layer: OnceLock::new(),
                locks: Mutex::default(),
                snapshot_lock: tokio::sync::RwLock::new(()),
                net_init: OnceLock::new(),
                net_alloc: Mutex::new(()),
                lazy: criu::Criu::lazy_supported(),
                progress: Mutex::default(),
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

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.locks.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    /// Runs blocking work for one sandbox under its lock.
    async fn locked<T: Send + 'static>(&self, id: &str, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        validate_id(id)?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.expect("runtime task panicked")
    }
}

impl Inner {
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

    fn template_dir(&self, name: &str) -> Result<PathBuf> {
        let name = if BASE_ALIASES.contains(&name) { "base" } else { name };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(RuntimeError::TemplateNotFound(name.to_string()));
        }
        let p = self.layout.template_rootfs(name);
        if p.is_dir() {
            Ok(p)
        } else {
            Err(RuntimeError::TemplateNotFound(name.to_string()))
        }
    }

    fn create(&self, id: &str, spec: &SandboxSpec) -> Result<()> {
        let dir = self.dir(id);
        if dir.path().exists() {
            return Err(RuntimeError::AlreadyExists(id.to_string()));
        }
        let template = self.template_dir(&spec.template)?;
        let result = self.create_inner(id, spec, &dir, &template);
        if result.is_err() {
            self.destroy(id);
        }
        result
    }

    fn agent_layer(&self) -> Result<PathBuf> {
        if let Some(l) = self.agent_layer.get() {
            return Ok(l.clone());
        }
        if !self.agent_binary.is_file() {
            return Err(RuntimeError::Boot(format!(
                "agent binary {} not found: run scripts/setup.sh (or set STASIS_AGENT)",
                self.agent_binary.display()
            )));
        }
        let layer = agent_layer::ensure(&self.layout.agents(), &self.agent_binary)?;
        Ok(self.agent_layer.get_or_init(|| layer).clone())
    }

    fn create_inner(&self, id: &str, spec: &SandboxSpec, dir: &SandboxDir, template: &Path) -> Result<()> {
        let agent_layer = self.agent_layer()?;
        std::fs::create_dir_all(dir.path()).ctx(|| format!("create {}", dir.path().display()))?;
        let mut rec = Record {
            id: id.to_string(),
            spec: spec.clone(),
            state: SandboxState::Running,
            init_pid: None,
            lower_dirs: vec![agent_layer.display().to_string(), template.display().to_string()],
            agent_path: agent_layer::AGENT_IN_SANDBOX.to_string(),
            checkpoint: None,
            boot_id: random_hex(16),
            init_start: None,
            net_index: None,
        };
        self.boot(&mut rec, dir)
    }

    /// Boots the sandbox of `rec` on its writable layer (a new boot: new boot id, no
    /// processes) and records it as running.
    fn boot(&self, rec: &mut Record, dir: &SandboxDir) -> Result<()> {
        let id = rec.id.clone();
        let id = id.as_str();
        self.cgroups.create(id, &rec.spec)?;
        mount_fs(rec, dir)?;
        rec.boot_id = random_hex(16);
        let net = self.network_up(rec)?;
        let cfg = BootConfig {
            sandbox_id: id.to_string(),
            rootfs: dir.rootfs().display().to_string(),
            cgroup_procs: self.cgroups.procs_files(id).iter().map(|p| p.display().to_string()).collect(),
            hostname: "sandbox".into(),
            boot_id: rec.boot_id.clone(),
            agent_path: rec.agent_path.clone(),
            env: rec.spec.env.clone(),
            access_token: rec.spec.access_token.clone(),
            net_device: net.as_ref().map(|n| n.sandbox_if.clone()),
            sandbox_ip: network::SANDBOX_IP.to_string(),
            gateway_ip: network::GATEWAY_IP.to_string(),
        };
        let booted = boot::boot(&self.agent_binary, &cfg, &dir.log("boot"), |pid| match &net {
            Some(n) => network::move_into(n, pid),
            None => Ok(()),
        });
        let pid = match booted {
            Ok(pid) => pid,
            Err(e) => {
                self.network_down(rec);
                return Err(e);
            }
        };
        // The agent is the sandbox's lifeline: the OOM killer takes the user's processes first.
        let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000");
        rec.state = SandboxState::Running;
        rec.init_pid = Some(pid);
        rec.init_start = record::start_time(pid);
        rec.checkpoint = None;
        rec.store(&dir.record())
    }

    fn pause(&self, id: &str, mode: PauseMode) -> Result<CheckpointStats> {
        let mut rec = self.load(id)?;
        let pid = match (rec.state, rec.init_pid) {
            (SandboxState::Paused, _) => return Err(RuntimeError::AlreadyPaused(id.to_string())),
            (SandboxState::Running, Some(pid)) => pid,
            (SandboxState::Running, None) => return Err(RuntimeError::NotRunning(id.to_string())),
        };
        let dir = self.dir(id);
        wait_for_lazy_pages(&dir);
        if mode == PauseMode::Filesystem {
            return self.pause_filesystem(&mut rec, &dir);
        }
        let generation = next_generation(&dir);
        let images = dir.checkpoint(generation);
        std::fs::create_dir_all(&images).ctx(|| format!("create {}", images.display()))?;
        let t0 = Instant::now();
        let written = self.track(id, "pausing", self.cgroups.usage(id).memory_bytes);
        let flusher = flush::Flusher::start(&images, written);
        let dumped = self.criu.dump(pid, &images, &self.cgroups.freezer(id), false);
        flusher.stop();
        self.untrack(id);
        if let Err(e) = dumped {
            // CRIU leaves the tree running when a dump fails; make sure it is thawed and
            // keep nothing of the attempt.
            let _ = self.cgroups.set_frozen(id, false);
            let _ = std::fs::remove_dir_all(&images);
            return Err(e);
        }
        let dump_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        // The images file by file (their writeback is mostly done), then the filesystem
        // for the writable layer, whose dirty files we cannot name.
        checksum::write(&images)?;
        flush::fsync_dir(&images).ctx(|| format!("fsync {}", images.display()))?;
        syncfs(&dir.upper())?;
        let sync_ms = t1.elapsed().as_millis() as u64;
        rec.state = SandboxState::Paused;
        rec.init_pid = None;
        rec.checkpoint = Some(generation);
        // The commit point: from here the sandbox is paused, durably.
        rec.store(&dir.record())?;
        let _ = std::fs::remove_file(dir.path().join("restore/init.pid"));
        self.network_down(&rec);
        unmount_fs(&dir)?;
        self.cgroups.remove(id)?;
        remove_other_generations(&dir, Some(generation));
        Ok(CheckpointStats { image_bytes: dir_size(&images), dump_ms, sync_ms })
    }

    /// Stops every process, keeps the files: the next resume is a fresh boot.
    fn pause_filesystem(&self, rec: &mut Record, dir: &SandboxDir) -> Result<CheckpointStats> {
        let id = rec.id.clone();
        let t0 = Instant::now();
        self.cgroups.kill_all(&id)?;
        self.network_down(rec);
        unmount_fs(&dir)?;
        let dump_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        syncfs(dir.path())?;
        rec.state = SandboxState::Paused;
        rec.init_pid = None;
        rec.checkpoint = None;
        rec.store(&dir.record())?;
        self.cgroups.remove(&id)?;
        remove_other_generations(dir, None);
        Ok(CheckpointStats { image_bytes: 0, dump_ms, sync_ms: t1.elapsed().as_millis() as u64 })
    }

    fn resume(&self, id: &str, mode: PauseMode) -> Result<()> {
        let mut rec = self.load(id)?;
        if rec.state != SandboxState::Paused {
            return Err(RuntimeError::NotPaused(id.to_string()));
        }
        let dir = self.dir(id);
        let generation = match (rec.checkpoint, mode) {
            (Some(g), PauseMode::Memory) => g,
            // No memory image (or the caller wants a reboot): a fresh boot on the files.
            // The images are dropped only once the new boot is recorded.
            _ => {
                let result = self.boot(&mut rec, &dir);
                if result.is_err() {
                    let _ = self.cgroups.kill_all(id);
                    let _ = unmount_fs(&dir);
                    let _ = self.cgroups.remove(id);
                } else {
                    remove_other_generations(&dir, None);
                }
                return result;
            }
        };
        let daemon = self.restore_from(&mut rec, &dir, &dir.checkpoint(generation))?;
        // Deleting a GiB of images takes longer than the restore itself: moved aside now,
        // deleted in the background once no lazy-pages daemon reads them (a leftover is
        // removed at kill).
        discard_generations_later(&dir, daemon);
        Ok(())
    }

    /// Restores the memory images in `images` into the sandbox of `rec` (its overlay
    /// mounted, its cgroups made) and records it as running. On failure nothing of the
    /// attempt is left running and `rec` is unchanged on disk.
    /// Registers an operation's progress; the counter is updated by whoever does the work.
    fn track(&self, id: &str, kind: &'static str, total: u64) -> Arc<std::sync::atomic::AtomicU64> {
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.progress.lock().unwrap().insert(id.to_string(), (kind, done.clone(), total));
        done
    }

    fn untrack(&self, id: &str) {
        self.progress.lock().unwrap().remove(id);
    }

    /// Returns the lazy-pages daemon still filling memory in, if restore was lazy.
    fn restore_from(&self, rec: &mut Record, dir: &SandboxDir, images: &Path) -> Result<Option<std::process::Child>> {
        let id = rec.id.clone();
        let total = dir_size(images);
        let read = self.track(&id, "resuming", total);
        let result = self.restore_tracked(rec, dir, images, read);
        self.untrack(&id);
        result
    }

    fn restore_tracked(
        &self,
        rec: &mut Record,
        dir: &SandboxDir,
        images: &Path,
        read: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Option<std::process::Child>> {
        let id = rec.id.clone();
        checksum::verify_sizes(images)?;
        // The checksums are verified while CRIU restores (reading every image is as long
        // as a lazy restore); the restored tree stays stopped until both are done, so it
        // never runs on damaged memory.
        let (verified, restored) = std::thread::scope(|s| {
            let verifier = s.spawn(|| checksum::verify(images));
            let restored = self.cgroups.create(&id, &rec.spec).and_then(|_| mount_fs(rec, dir)).and_then(|_| {
                let net = self.network_up(rec)?;
                let dev = net.as_ref().map(|n| n.sandbox_if.as_str());
                self.criu.restore(images, &dir.rootfs(), &dir.path().join("restore"), &self.cgroups.procs_files(&id), dev, self.lazy, true)
            });
            (verifier.join().expect("checksum thread panicked"), restored)
        });
        read.store(dir_size(images), std::sync::atomic::Ordering::Relaxed);
        let restored = match (verified, restored) {
            (Ok(()), r) => r,
            (Err(e), Ok((_, daemon))) => {
                if let Some(mut d) = daemon {
                    let _ = d.kill();
                    let _ = d.wait();
                }
                Err(e)
            }
            (Err(e), Err(_)) => Err(e),
        };
        let (pid, daemon) = match restored {
            Ok(r) => r,
            Err(e) => {
                self.network_down(rec);
                let _ = self.cgroups.kill_all(&id);
                let _ = unmount_fs(&dir);
                let _ = self.cgroups.remove(&id);
                return Err(e);
            }
        };
        self.let_run(&id);
        rec.state = SandboxState::Running;
        rec.init_pid = Some(pid);
        rec.init_start = record::start_time(pid);
        rec.checkpoint = None;
        rec.store(&dir.record())?;
        Ok(daemon)
    }

    /// Sets up the sandbox's network (gateway namespace, veths, policy) if it has one,
    /// choosing a free transit index; the index is kept in `rec`.
    fn network_up(&self, rec: &mut Record) -> Result<Option<network::Names>> {
        let Some(policy) = rec.spec.network.clone() else { return Ok(None) };
        policy.validate()?;
        if let Err(e) = self.net_init.get_or_init(|| network::init_host().map_err(|e| e.to_string())) {
            return Err(RuntimeError::Network(e.clone()));
        }
        let _g = self.net_alloc.lock().unwrap();
        // Transit subnets and device names are host-wide: every Stasis runtime on the host
        // (other data dirs too) allocates under the same lock, from the devices that exist.
        let _host_lock = network::HostLock::acquire()?;
        let used = network::used_indexes()?;
        let index = rec
            .net_index
            .filter(|i| !used.contains(i))
            .or_else(|| (0..=network::MAX_INDEX).find(|i| !used.contains(i)))
            .ok_or_else(|| RuntimeError::Network("no free transit subnet (16384 sandboxes with a network)".into()))?;
        rec.net_index = Some(index);
        rec.store(&self.dir(&rec.id).record())?;
        network::setup(&rec.id, index, &policy).map(Some)
    }

    fn network_down(&self, rec: &Record) {
        if let Some(i) = rec.net_index {
            network::teardown(&rec.id, i);
        }
    }

    /// Starts a restored tree: restores leave it stopped (and, on v1, possibly frozen)
    /// until its images are verified.
    fn let_run(&self, id: &str) {
        let _ = self.cgroups.set_frozen(id, false);
        for p in self.cgroups.pids(id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGCONT);
        }
    }

    fn init_alive(rec: &Record) -> bool {
        rec.init_pid.is_some_and(|p| rec.init_start.is_some() && record::start_time(p) == rec.init_start)
    }

    /// Brings a sandbox whose last operation may have been cut short (the daemon died)
    /// to a consistent state, and says which.
    fn recover(&self, id: &str) -> Result<Recovered> {
        let mut rec = self.load(id)?;
        let dir = self.dir(id);
        // A CRIU dump or restore left running by a dead daemon finishes on its own: wait
        // for it. (Lazy-pages daemons serve a restored tree for as long as it needs them.)
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        while !criu::operations_for(dir.path()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        match rec.state {
            SandboxState::Running if Self::init_alive(&rec) => {
                // A dump that was cut short may have left it frozen.
                let _ = self.cgroups.set_frozen(id, false);
                Ok(Recovered::Running)
            }
            SandboxState::Running => {
                // The init is gone. If a dump completed, the pause did happen: commit it.
                let done = generations(&dir).into_iter().filter(|g| criu::dump_completed(&dir.checkpoint(*g))).max();
                let _ = self.cgroups.kill_all(id);
                self.network_down(&rec);
                unmount_fs(&dir)?;
                let _ = self.cgroups.remove(id);
                if let Some(g) = done {
                    // Its checksums were never written: the dump completed, so sum it now.
                    checksum::write(&dir.checkpoint(g))?;
                    syncfs(&dir.checkpoint(g))?;
                    rec.state = SandboxState::Paused;
                    rec.init_pid = None;
                    rec.checkpoint = Some(g);
                    rec.store(&dir.record())?;
                    remove_other_generations(&dir, Some(g));
                    return Ok(Recovered::Paused);
                }
                // Its memory is lost (host reboot, or killed from outside); its files are
                // not: keep them as a filesystem-only paused sandbox.
                syncfs(dir.path())?;
                rec.state = SandboxState::Paused;
                rec.init_pid = None;
                rec.checkpoint = None;
                rec.store(&dir.record())?;
                remove_other_generations(&dir, None);
                Ok(Recovered::MemoryLost)
            }
            SandboxState::Paused => {
                // A restore that completed after the daemon died: adopt it.
                let pidfile = dir.path().join("restore/init.pid");
                let restored = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok());
                let images = rec.checkpoint.map(|g| dir.checkpoint(g));
                let intact = images.as_ref().is_some_and(|i| checksum::verify(i).is_ok());
                if let Some(pid) = restored.filter(|p| intact && self.cgroups.pids(id).contains(p)) {
                    // Its images are verified (above): let it run.
                    self.let_run(id);
                    rec.state = SandboxState::Running;
                    rec.init_pid = Some(pid);
                    rec.init_start = record::start_time(pid);
                    rec.checkpoint = None;
                    rec.store(&dir.record())?;
                    // Its lazy-pages daemon (if any) still reads the images.
                    let d = dir.clone();
                    std::thread::spawn(move || {
                        while !criu::lazy_daemons_for(d.path()).is_empty() {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        remove_other_generations(&d, None);
                    });
                    return Ok(Recovered::Running);
                }
                // Anything half-restored goes, with a lazy-pages daemon started for a
                // restore that never happened; the images stay.
                for p in criu::lazy_daemons_for(dir.path()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
                }
                let _ = self.cgroups.kill_all(id);
                self.network_down(&rec);
                unmount_fs(&dir)?;
                let _ = self.cgroups.remove(id);
                remove_other_generations(&dir, rec.checkpoint);
                Ok(Recovered::Paused)
            }
        }
    }

    /// Removes everything a sandbox owns (processes, network, mounts, cgroups, files),
    /// also when it was only partly created (no record yet). Every step is tried; the
    /// first failure is returned.
    fn teardown(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let killed = self.cgroups.kill_all(id);
        if let Ok(rec) = self.load(id) {
            self.network_down(&rec);
        }
        let unmounted = unmount_fs(&dir);
        let removed = self.cgroups.remove(id);
        killed.and(unmounted).and(removed)?;
        if overlay::has_mounts_under(dir.path()) {
            return Err(RuntimeError::Io {
                context: format!("remove {}", dir.path().display()),
                source: std::io::Error::other("something is still mounted inside"),
            });
        }
        std::fs::remove_dir_all(dir.path()).ctx(|| format!("remove {}", dir.path().display()))
    }

    /// Best effort, for a create that failed: its error is what the caller reports.
    fn destroy(&self, id: &str) {
        let _ = self.teardown(id);
    }

    fn kill(&self, id: &str) -> Result<()> {
        if !self.dir(id).path().exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        self.teardown(id)
    }
}

/// Sandbox roots live under the data dir and are entered by the sandbox's own root, an
/// unprivileged host uid: every directory on the way must be searchable by others (0711
/// is enough; nothing becomes listable or readable). Our own directories are fixed; a
/// parent we do not own is reported.
fn ensure_traversable(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = data_dir.canonicalize().ctx(|| format!("resolve {}", data_dir.display()))?;
    for d in [data_dir.join("sandboxes"), data_dir.join("snapshots"), data_dir.clone()] {
        let mode = std::fs::metadata(&d).ctx(|| format!("stat {}", d.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode((mode & 0o7777) | 0o011)).ctx(|| format!("chmod {}", d.display()))?;
        }
    }
    for a in data_dir.ancestors().skip(1) {
        let mode = std::fs::metadata(a).ctx(|| format!("stat {}", a.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(RuntimeError::Boot(format!(
                "{} (mode {:o}) is not searchable by others: sandboxes (unprivileged host uids) could not reach their root under {}; chmod o+x it or choose another --data-dir",
                a.display(),
                mode & 0o7777,
                data_dir.display()
            )));
        }
    }
    Ok(())
}

/// Mounts the sandbox's disk (when it has a size) and its root overlay on it.
fn mount_fs(rec: &Record, dir: &SandboxDir) -> Result<()> {
    if rec.spec.disk_mb > 0 {
        disk::mount(&dir.disk_image(), &dir.disk(), rec.spec.disk_mb)?;
    }
    if !dir.upper().exists() {
        std::fs::create_dir_all(dir.upper()).ctx(|| format!("create {}", dir.upper().display()))?;
        idmap::chown_to_sandbox_root(&dir.upper()).ctx(|| "chown upper".into())?;
    }
    overlay::mount_root(&rec.lower_dirs, &dir.upper(), &dir.work(), &dir.rootfs())
}

/// Unmounts the root overlay, then the disk under it (idempotent).
fn unmount_fs(dir: &SandboxDir) -> Result<()> {
    overlay::unmount(&dir.rootfs())?;
    disk::unmount(&dir.disk_image(), &dir.disk())
}

fn next_generation(dir: &SandboxDir) -> u64 {
    generations(dir).into_iter().max().unwrap_or(0) + 1
}

fn generations(dir: &SandboxDir) -> Vec<u64> {
    std::fs::read_dir(dir.checkpoints())
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn remove_other_generations(dir: &SandboxDir, keep: Option<u64>) {
    for g in generations(dir) {
        if Some(g) != keep {
            let _ = std::fs::remove_dir_all(dir.checkpoint(g));
        }
    }
}

/// Allocated bytes under `p` (not following symlinks or crossing into mounts).
pub(crate) fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// A lazy restore is still filling memory in: its pages must all be in before the tree
/// is dumped again (a fresh dump reads every page anyway; this bounds the wait).
fn wait_for_lazy_pages(dir: &SandboxDir) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while !criu::lazy_daemons_for(dir.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Moves every checkpoint generation to the sandbox's trash and deletes it on a
/// background thread.
fn discard_generations_later(dir: &SandboxDir, lazy_daemon: Option<std::process::Child>) {
    let trash = dir.path().join("trash");
    let _ = std::fs::create_dir_all(&trash);
    for g in generations(dir) {
        let _ = std::fs::rename(dir.checkpoint(g), trash.join(format!("{g}-{}", random_hex(4))));
    }
    std::thread::spawn(move || {
        // The daemon reads the (renamed: same files) images until every page is in.
        if let Some(mut d) = lazy_daemon {
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&trash);
    });
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Flushes the filesystem holding `path`: memory images and the writable layer share it.
fn syncfs(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    // SAFETY: syncfs on an fd we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("syncfs {}", path.display()));
    }
    Ok(())
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

    async fn kill(&self, id: &str) -> Result<()> {
        let id2 = id.to_string();
        self.locked(id, move |rt| rt.kill(&id2)).await?;
        // Its snapshot layers may now be free.
        let inner = self.inner.clone();
        let _g = self.inner.snapshot_lock.write().await;
        tokio::task::spawn_blocking(move || inner.collect_snapshots()).await.expect("gc task");
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
        let upper = self.inner.dir(id).upper();
        usage.disk_bytes = tokio::task::spawn_blocking(move || disk_usage(&upper)).await.unwrap_or(0);
        Ok(usage)
    }

    fn progress(&self, id: &str) -> Option<crate::OpProgress> {
        let p = self.inner.progress.lock().unwrap();
        let (kind, done, total) = p.get(id)?;
        let done = done.load(std::sync::atomic::Ordering::Relaxed);
        Some(crate::OpProgress { kind: kind.to_string(), bytes_done: done, bytes_total: (*total).max(done) })
    }

    async fn connect(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        validate_id(id)?;
        let pid = self.init_pid(id)?;
        crate::netns::connect(pid, port).await.ctx(|| format!("connect to port {port} in sandbox {id}"))
    }
}
