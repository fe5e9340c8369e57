//! Identifiers and secrets: sandbox ids (`[a-z0-9]`, unguessable), access tokens, API keys.

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// 20 characters of `[a-z0-9]`: ~103 bits, from the OS-seeded CSPRNG.
pub fn sandbox_id() -> String {
    let mut rng = rand::thread_rng();
    (0..20).map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char).collect()
}

/// A per-sandbox token (envd access token, traffic token): 32 random alphanumerics.
pub fn token() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// Whether a presented secret (token, key) equals the expected one, in time that does not
/// depend on where they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An API key in E2B's shape: `e2b_` + 40 hex digits (some SDK versions check it).
pub fn api_key() -> String {
    let bytes: [u8; 20] = rand::thread_rng().gen();
    format!("e2b_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_the_wire_shape() {
        let id = super::sandbox_id();
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(id, super::sandbox_id());
        let key = super::api_key();
        assert!(key.starts_with("e2b_") && key.len() == 44 && key[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
