//! The vault: seals secret values for the store and opens them for the egress proxy.
//!
//! AES-256-GCM (ring) with a 256-bit key in `DATA/secrets.key` (mode 0600, root's, made
//! on first use from the OS CSPRNG; never logged, never in the database, so a copy of the
//! database alone, or a PostgreSQL server's backups, reveal no value). Each value gets a
//! fresh random 96-bit nonce; the secret's id is the associated data, so a sealed value
//! copied onto another secret's row does not open. Sealed form: `1 || nonce || ciphertext
//! || tag` (the leading byte is the format's version).
//!
//! Several nodes sharing one database must share the key file (as they share
//! `checkpoint.key`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const KEY_LEN: usize = 32;
const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("secrets key {path}: {message}")]
    Key { path: String, message: String },
    #[error("a sealed secret value does not open (damaged, or sealed with another key)")]
    Open,
    #[error("the system random generator failed")]
    Random,
}

/// Seals and opens secret values with the server's key (loaded, or made, on first use).
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    key: OnceLock<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault whose key is (or will be, at the first seal or open) the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { inner: Arc::new(Inner { path: path.into(), key: OnceLock::new(), rng: SystemRandom::new() }) }
    }

    pub fn key_path(&self) -> &Path {
        &self.inner.path
    }

    fn key(&self) -> Result<&LessSafeKey, VaultError> {
        if let Some(k) = self.inner.key.get() {
            return Ok(k);
        }
        let bytes = load_or_make(&self.inner.path, &self.inner.rng)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| self.key_error("not a 256-bit key"))?;
        Ok(self.inner.key.get_or_init(|| LessSafeKey::new(key)))
    }

    fn key_error(&self, message: &str) -> VaultError {
        VaultError::Key { path: self.inner.path.display().to_string(), message: message.into() }
    }

    /// `value` sealed for the secret `id`.
    pub fn seal(&self, id: &str, value: &str) -> Result<Vec<u8>, VaultError> {
        let key = self.key()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.inner.rng.fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut data = value.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(id.as_bytes()), &mut data)
            .map_err(|_| VaultError::Open)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// The value `sealed` holds, if it was sealed for `id` with this vault's key.
    pub fn open(&self, id: &str, sealed: &[u8]) -> Result<String, VaultError> {
        let key = self.key()?;
        let (Some(&FORMAT), Some(rest)) = (sealed.first(), sealed.get(1..)) else { return Err(VaultError::Open) };
        if rest.len() < NONCE_LEN {
            return Err(VaultError::Open);
        }
        let (nonce, data) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Open)?;
        let mut data = data.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(id.as_bytes()), &mut data).map_err(|_| VaultError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Open)
    }
}

/// The key in `path`, made (0600, written durably, exclusively: two processes never
/// make two keys) when there is none. A key file another user could read is refused.
fn load_or_make(path: &Path, rng: &SystemRandom) -> Result<[u8; KEY_LEN], VaultError> {
    let err = |m: String| VaultError::Key { path: path.display().to_string(), message: m };
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            let mut key = [0u8; KEY_LEN];
            rng.fill(&mut key).map_err(|_| VaultError::Random)?;
            f.write_all(&key).and_then(|_| f.sync_all()).map_err(|e| err(format!("write: {e}")))?;
            if let Some(dir) = path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            tracing::info!("made the secrets key {}", path.display());
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(err(format!(
                    "mode {:o} lets others read it; it must be 0600",
                    meta.permissions().mode() & 0o777
                )));
            }
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            bytes.try_into().map_err(|b: Vec<u8>| err(format!("{} bytes, expected {KEY_LEN}", b.len())))
        }
        Err(e) => Err(err(format!("create: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_a_key_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let v = Vault::new(&path);
        assert!(!path.exists(), "made on first use, not before");
        let sealed = v.seal("sec_a", "sk-very-secret").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "the value is not in the clear");
        assert_eq!(v.open("sec_a", &sealed).unwrap(), "sk-very-secret");
        // Two seals of one value differ (fresh nonces); another vault on the same file opens both.
        assert_ne!(v.seal("sec_a", "sk-very-secret").unwrap(), sealed);
        assert_eq!(Vault::new(&path).open("sec_a", &sealed).unwrap(), "sk-very-secret");
        // Bound to the secret's id; tampering and another key are refused.
        assert!(v.open("sec_b", &sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(v.open("sec_a", &bad).is_err());
        assert!(Vault::new(dir.path().join("other.key")).open("sec_a", &sealed).is_err());
        // A key file others may read is refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Vault::new(&path).seal("sec_a", "x"), Err(VaultError::Key { .. })));
    }
}
