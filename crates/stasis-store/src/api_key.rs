//! API key hashing and generation, and the one comparison of secrets (API key hashes here,
//! sandbox access tokens in the server): constant-time, so response timing says nothing
//! about how close a guess was.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `key`.
pub fn hash_api_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new key in E2B's shape, `e2b_` + 40 hex digits (some SDK versions check the format).
pub fn generate_api_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 20];
    getrandom::getrandom(&mut bytes)?;
    let mut out = String::from("e2b_");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    Ok(out)
}

/// Whether two secrets are equal, in time that depends only on their lengths (`subtle`,
/// written to resist the optimiser turning it back into an early-exit compare).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(hash_api_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn generated_keys_have_e2b_shape() {
        let k = generate_api_key().unwrap();
        assert_eq!(k.len(), 44);
        assert!(k.starts_with("e2b_"));
        assert!(k[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(k, generate_api_key().unwrap());
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
