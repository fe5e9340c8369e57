//! The agent layer: the topmost overlay lower of every sandbox, holding the agent binary,
//! the code interpreter (when installed: templates start it as `/.stasis/interpreter`)
//! and the device nodes PID 1 bind-mounts into /dev.
//!
//! Owned by the legacy id range on disk and shown to each sandbox in its own range by an
//! idmapped mount (`idmap.rs`, `fs.rs`).
//!
//! Content-addressed by the binaries' hash and never modified once made, so a sandbox
//! paused under one version resumes with exactly the binaries it ran.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use sha2::{Digest, Sha256};

use crate::container::idmap;
use crate::error::{IoContext, Result};

/// Character devices: name, major, minor.
const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

pub const AGENT_IN_SANDBOX: &str = "/.stasis/agent";

/// The code interpreter's host binary: `$STASIS_INTERPRETER`, else `stasis-interpreter`
/// next to the agent binary (where setup installs both), if it exists.
pub fn interpreter_binary(agent_binary: &Path) -> Option<PathBuf> {
    let p = std::env::var_os("STASIS_INTERPRETER")
        .map(PathBuf::from)
        .unwrap_or_else(|| agent_binary.with_file_name("stasis-interpreter"));
    p.is_file().then_some(p)
}

/// Returns the layer for `agent_binary` (and `interpreter`), building it on first use.
pub fn ensure(agents_dir: &Path, agent_binary: &Path, interpreter: Option<&Path>) -> Result<PathBuf> {
    let bytes = std::fs::read(agent_binary).ctx(|| format!("read agent binary {}", agent_binary.display()))?;
    let interp = match interpreter {
        Some(p) => Some(std::fs::read(p).ctx(|| format!("read interpreter binary {}", p.display()))?),
        None => None,
    };
    // Without an interpreter the hash is the agent's alone, as before it existed.
    let mut h = Sha256::new();
    h.update(&bytes);
    if let Some(i) = &interp {
        h.update(b"\0interpreter\0");
        h.update(i);
    }
    let hash = hex::encode(&h.finalize()[..8]);
    let layer = agents_dir.join(&hash);
    if layer.join(".stasis/complete").exists() {
        return Ok(layer);
    }
    // One tmp dir per call: concurrent first creates each build their own, one wins.
    let tmp = agents_dir.join(format!(".{hash}.tmp-{}-{}", std::process::id(), super::random_hex(6)));
    let build = || -> std::io::Result<()> {
        let _ = std::fs::remove_dir_all(&tmp);
        let dir = tmp.join(".stasis");
        std::fs::create_dir_all(dir.join("dev"))?;
        let agent = dir.join("agent");
        let mut f = std::fs::File::create(&agent)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755))?;
        let mut owned = vec![tmp.clone(), dir.clone(), dir.join("dev"), agent];
        if let Some(i) = &interp {
            let path = dir.join("interpreter");
            let mut f = std::fs::File::create(&path)?;
            f.write_all(i)?;
            f.sync_all()?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            owned.push(path);
        }
        for (name, major, minor) in DEVICES {
            let p = dir.join("dev").join(name);
            mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor))
                .map_err(std::io::Error::from)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))?;
        }
        for p in owned {
            idmap::chown_to_sandbox_root(&p, idmap::LAYER_BASE)?;
        }
        // Readable in the sandbox as before, whatever the daemon's umask.
        for d in [&tmp, &dir, &dir.join("dev")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::File::create(dir.join("complete"))?.sync_all()?;
        match std::fs::rename(&tmp, &layer) {
            // Another process built the same layer first: theirs is identical.
            Err(_) if layer.join(".stasis/complete").exists() => std::fs::remove_dir_all(&tmp),
            other => other,
        }
    };
    std::fs::create_dir_all(agents_dir).ctx(|| format!("create {}", agents_dir.display()))?;
    build().ctx(|| format!("build agent layer {}", layer.display()))?;
    Ok(layer)
}
