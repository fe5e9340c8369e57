//! The checkpoint key: 32 random bytes in `DATA/checkpoint.key`, mode 0600, made on the
//! first start of a runtime on a data dir and read by every later one. Only root (the
//! daemon, `stasis runtime`) reads it; a sandbox's uid and other host users cannot, so
//! they cannot forge the checksums of a checkpoint they managed to rewrite.
//!
//! It must never be copied into a checkpoint, a snapshot or a log.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{IoContext, Result, RuntimeError};

pub const FILE: &str = "checkpoint.key";
const LEN: usize = 32;

#[derive(Clone)]
pub struct Key([u8; LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Reads the data dir's key, or makes it. `true` when it was made now (the data dir
    /// has never had one: its existing checkpoints are adopted, `legacy.rs`).
    pub fn load_or_create(data_dir: &Path) -> Result<(Key, bool)> {
        let path = data_dir.join(FILE);
        let mut bytes = [0u8; LEN];
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(mut f) => {
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
                f.write_all(&bytes).and_then(|()| f.sync_all()).ctx(|| format!("write {}", path.display()))?;
                super::super::flush::fsync_dir(data_dir).ctx(|| format!("fsync {}", data_dir.display()))?;
                return Ok((Key(bytes), true));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("create {}", path.display())),
        }
        let mut f = std::fs::File::open(&path).ctx(|| format!("open {}", path.display()))?;
        let mode = f.metadata().ctx(|| format!("stat {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            // Someone loosened it: close it again (whoever read it meanwhile could forge).
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).ctx(|| format!("chmod {}", path.display()))?;
        }
        let mut all = Vec::new();
        f.read_to_end(&mut all).ctx(|| format!("read {}", path.display()))?;
        if all.len() != LEN {
            return Err(RuntimeError::Boot(format!(
                "{} is {} bytes, not {LEN}: damaged; checkpoints sealed with it can no longer be verified (remove it only if there are none)",
                path.display(),
                all.len()
            )));
        }
        bytes.copy_from_slice(&all);
        Ok((Key(bytes), false))
    }

    #[cfg(test)]
    pub fn for_tests(b: u8) -> Key {
        Key([b; LEN])
    }

    /// The raw key (version 2 manifests' HMAC, `v2.rs`).
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key for one purpose, derived from this one (BLAKE3's KDF mode): the chunk
    /// hashes and the manifest MAC never share a key.
    pub(super) fn derive(&self, context: &str) -> [u8; LEN] {
        blake3::derive_key(context, &self.0)
    }

    /// Keyed BLAKE3 of `data` under the key derived for `context`.
    pub fn mac(&self, context: &str, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.derive(context), data).as_bytes()
    }

    /// Constant-time check of `tag` against [`Key::mac`] (`blake3::Hash` compares in
    /// constant time).
    pub fn check(&self, context: &str, data: &[u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; 32]>::try_from(tag) else { return false };
        blake3::keyed_hash(&self.derive(context), data) == blake3::Hash::from_bytes(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_0600_then_read_back() {
        let d = tempfile::tempdir().unwrap();
        let (a, made) = Key::load_or_create(d.path()).unwrap();
        assert!(made);
        let mode = std::fs::metadata(d.path().join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(d.path().join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let (b, made) = Key::load_or_create(d.path()).unwrap();
        assert!(!made);
        assert_eq!(a.0, b.0);
        let mode = std::fs::metadata(d.path().join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a loosened key file is closed again");
        let c = "stasis test";
        assert!(a.check(c, b"x", &a.mac(c, b"x")) && !a.check(c, b"y", &a.mac(c, b"x")));
        assert!(!a.check("stasis other", b"x", &a.mac(c, b"x")), "a tag holds for its own context only");
        std::fs::write(d.path().join(FILE), b"short").unwrap();
        assert!(Key::load_or_create(d.path()).is_err());
    }
}
