//! The access token's SHA-512, published inside the sandbox for services that check the
//! SDKs' `X-Access-Token` themselves (the code interpreter on port 49999).
//!
//! Rewritten whenever the token changes (a sandbox created from a snapshot gets its own
//! token at handover), atomically, so a reader never sees half a digest.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha512};

/// Hex SHA-512 of `token`.
pub fn digest_hex(token: &str) -> String {
    Sha512::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the digest of `token` to `path` (0644, directory 0755); an empty file when the
/// sandbox has no token (services then check nothing, as envd does).
pub fn publish(path: &Path, token: Option<&str>) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().ok_or_else(|| io::Error::other("digest path has no directory"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    let tmp = dir.join(".access-token.sha512.tmp");
    std::fs::write(&tmp, token.map(|t| format!("{}\n", digest_hex(t))).unwrap_or_default())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha512_hex() {
        // printf abc | sha512sum
        assert_eq!(
            digest_hex("abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn publish_replaces_and_empties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/stasis/access-token.sha512");
        publish(&path, Some("one")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), digest_hex("one"));
        publish(&path, Some("two")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), digest_hex("two"));
        publish(&path, None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "no token: an empty file");
        publish(&path, Some("three")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), digest_hex("three"));
    }
}
