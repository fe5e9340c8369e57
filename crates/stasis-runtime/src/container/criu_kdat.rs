//! CRIU's cache of what the kernel can do (`/run/criu.kdat`), kept where CRIU will not.
//!
//! Every CRIU run first learns the kernel's features (`kerndat`): it runs `iptables -L`,
//! `ip6tables -L` and `sh -c "iptables -n -w -L"`, makes test namespaces, veths and
//! sockets; 30-35 ms of each dump and each restore on this 2-core host. It keeps the
//! result in `/run/criu.kdat`, but only if `/run` is a tmpfs (so a reboot, a new kernel,
//! clears it); elsewhere it says "Can't keep kdat cache on non-tempfs" and, through a
//! bug, leaves an empty `criu.kdat.tmp` that makes every later run skip the save too.
//! Hosts whose `/run` is on disk (this one) pay the 30-35 ms at every pause and resume.
//!
//! At start the runtime makes the cache itself when it is missing or older than this
//! boot: `criu check` runs in a mount namespace of its own whose `/run` is a tmpfs (so
//! CRIU keeps it there), and the file it wrote is copied to the real `/run`. CRIU reads a
//! cache wherever `/run` is; a reboot makes it stale, and the next start after the
//! reboot makes it again. On a host whose `/run` is a tmpfs CRIU's own cache is kept:
//! nothing is done.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const CACHE: &str = "/run/criu.kdat";

/// Makes `/run/criu.kdat` for `criu` if CRIU cannot keep it and it is missing or from
/// an earlier boot. Failures are logged: CRIU then works as before, only slower.
pub fn ensure(criu: &Path) {
    if run_is_tmpfs() || fresh(Path::new(CACHE), criu) {
        return;
    }
    match make(criu).and_then(|cache| install(&cache)) {
        Ok(bytes) => tracing::info!(bytes, "CRIU's kernel feature cache made in {CACHE} (/run is not a tmpfs)"),
        Err(e) => tracing::warn!("CRIU's kernel feature cache not made (each CRIU run learns the kernel again): {e}"),
    }
}

fn run_is_tmpfs() -> bool {
    nix::sys::statfs::statfs("/run").is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Written since this boot and since `criu` was installed (another CRIU may lay the
/// cache out differently; CRIU refuses one of another size, and learns again each run).
fn fresh(path: &Path, criu: &Path) -> bool {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok())));
    let mtime = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.len() > 0)
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    let since = boot.zip(mtime(criu)).map(|(b, c)| b.max(c));
    matches!((since, mtime(path)), (Some(s), Some(w)) if w >= s)
}

/// The cache `criu check` writes when `/run` is a tmpfs (its own, in a mount namespace
/// of its own).
fn make(criu: &Path) -> std::io::Result<Vec<u8>> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#""$0" check >/dev/null 2>&1; exec cat /run/criu.kdat"#)
        .arg(criu)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: unshare and mount only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
            mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::empty(), Some("size=4m,mode=0755"))?;
            Ok(())
        });
    }
    let out = cmd.output()?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(std::io::Error::other(format!("criu check wrote no cache ({})", out.status)));
    }
    Ok(out.stdout)
}

fn install(cache: &[u8]) -> std::io::Result<usize> {
    // Written whole under another name, then renamed: CRIU never reads half a cache. The
    // `.tmp` CRIU itself left would only stop its own saves, which cannot work here.
    let tmp = format!("{CACHE}.stasis");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(cache)?;
    f.sync_all()?;
    std::fs::rename(&tmp, CACHE)?;
    Ok(cache.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_older_than_the_boot_or_the_criu_binary_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, criu) = (dir.path().join("criu.kdat"), dir.path().join("criu"));
        let at = |p: &Path, secs: u64| {
            let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(p).unwrap();
            f.set_len(8).unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap();
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        at(&criu, now - 60);
        at(&cache, now - 30);
        assert!(fresh(&cache, &criu), "made after this boot and after criu");
        at(&criu, now - 10);
        assert!(!fresh(&cache, &criu), "criu installed after the cache was made");
        at(&criu, 1);
        at(&cache, 2);
        assert!(!fresh(&cache, &criu), "made before this boot");
        std::fs::File::create(&cache).unwrap();
        assert!(!fresh(&cache, &criu), "an empty cache is no cache");
    }

    #[test]
    fn criu_uses_the_cache_made_for_it() {
        let Ok(criu) = super::super::criu::Criu::locate() else {
            eprintln!("skipped: no criu");
            return;
        };
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let cache = make(&criu.binary).expect("criu check writes its cache on a tmpfs /run");
        assert!(cache.len() > 64, "a kerndat cache, not an empty file: {} bytes", cache.len());
        if run_is_tmpfs() {
            return;
        }
        install(&cache).unwrap();
        assert!(fresh(Path::new(CACHE), &criu.binary));
        let log = tempfile::NamedTempFile::new().unwrap();
        Command::new(&criu.binary).args(["check", "-v4", "-o"]).arg(log.path()).output().unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.contains("Loaded kdat cache from /run/criu.kdat"), "criu did not use the cache:\n{text}");
    }
}
