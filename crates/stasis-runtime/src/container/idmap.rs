//! The id mapping of every sandbox: in-sandbox ids 0..65535 are host ids 100000..165535,
//! so root inside a sandbox is an unprivileged user on the host.

use std::path::Path;

pub const HOST_ID_BASE: u32 = 100_000;
pub const ID_COUNT: u32 = 65_536;

/// The `uid_map` / `gid_map` line.
pub fn map_line() -> String {
    format!("0 {HOST_ID_BASE} {ID_COUNT}\n")
}

/// Makes a host-created file belong to the sandbox's root.
pub fn chown_to_sandbox_root(path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(HOST_ID_BASE), Some(HOST_ID_BASE))
}

/// Writes the id maps of process `pid` (which must have just unshared its user namespace).
pub fn write_maps(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/gid_map"), map_line())?;
    std::fs::write(format!("/proc/{pid}/uid_map"), map_line())
}
