//! The egress CA in a sandbox's trust store: its PEM appended to the system bundle
//! (`/etc/ssl/certs/ca-certificates.crt`, what curl, OpenSSL, Go and, through the
//! `SSL_CERT_FILE`/`REQUESTS_CA_BUNDLE`/`NODE_EXTRA_CA_CERTS` the server sets, Python and
//! Node read) in the sandbox's writable layer. A file: it survives pause/resume and is in
//! every fork and snapshot. Done once (a bundle that holds it is left alone).
//!
//! The path is walked without following a symlink and the bundle must be a regular file:
//! this runs as host root on a filesystem the sandbox (or its template) wrote.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::volumes::open_dir_nofollow;
use crate::error::{Result, RuntimeError};

pub const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Larger bundles are not read back to look for the CA (a real one is ~200 KiB).
const MAX_BUNDLE: u64 = 16 << 20;

/// Appends `pem` to the bundle under `rootfs` unless it is there; a template without
/// `/etc/ssl/certs` is left as it is (nothing in it verifies TLS with a system bundle).
pub(super) fn install(rootfs: &Path, pem: &str) -> Result<()> {
    let err = |what: String| RuntimeError::Network(format!("egress CA into {BUNDLE}: {what}"));
    let mut dir = OwnedFd::from(std::fs::File::open(rootfs).map_err(|e| err(format!("open rootfs: {e}")))?);
    for comp in ["etc", "ssl", "certs"] {
        dir = match open_dir_nofollow(dir.as_raw_fd(), &CString::new(comp).unwrap()) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                tracing::info!("{} has no /etc/ssl/certs: the egress CA is not installed", rootfs.display());
                return Ok(());
            }
            Err(e) => return Err(err(format!("/{comp}: {e}"))),
        };
    }
    let name = CString::new("ca-certificates.crt").unwrap();
    // SAFETY: openat on a valid dirfd with a NUL-terminated name; the fd is ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDWR | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: a fresh fd owned by nothing else.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = f.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() <= MAX_BUNDLE {
        let mut text = String::new();
        let _ = (&mut f).take(MAX_BUNDLE).read_to_string(&mut text);
        if text.contains(pem.trim()) {
            return Ok(());
        }
        if !text.is_empty() && !text.ends_with('\n') {
            f.write_all(b"\n").map_err(|e| err(e.to_string()))?;
        }
    }
    f.write_all(format!("# Stasis sandbox egress CA (network.rules)\n{}\n", pem.trim()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn appends_once_and_never_through_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        // No /etc/ssl/certs: nothing to do.
        install(root.path(), PEM).unwrap();
        assert!(!root.path().join("etc").exists());

        let certs = root.path().join("etc/ssl/certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("ca-certificates.crt"), "existing").unwrap();
        install(root.path(), PEM).unwrap();
        install(root.path(), PEM).unwrap();
        let text = std::fs::read_to_string(certs.join("ca-certificates.crt")).unwrap();
        assert!(text.starts_with("existing\n# Stasis"), "{text}");
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 1, "{text}");

        // A bundle that is a symlink (to a host file, say) is refused, the target untouched.
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::remove_file(certs.join("ca-certificates.crt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), certs.join("ca-certificates.crt")).unwrap();
        assert!(install(root.path(), PEM).is_err());
        assert_eq!(std::fs::read_to_string(outside.path()).unwrap(), "");
        // And so is a symlinked directory on the way.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("ssl/certs")).unwrap();
        std::fs::remove_dir_all(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(other.path(), root.path().join("etc")).unwrap();
        assert!(install(root.path(), PEM).is_err());
        assert!(!other.path().join("ssl/certs/ca-certificates.crt").exists());
    }
}
