//! Identifiers and secrets: sandbox ids (`[a-z0-9]`, unguessable), access tokens.
//!
//! A [`SandboxId`] is checked once, where it enters (an API path, a proxied request's
//! headers or host); past that, the type says it was. API keys are the store's
//! (`stasis_store::generate_api_key`), as is the comparison of secrets
//! (`stasis_store::constant_time_eq`).

use std::fmt;

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The id of a sandbox: 1 to 64 characters `[a-z0-9]`. No `-`, since hosts split
/// `{port}-{id}` on it; no `/` or `.`, since the runtime names directories after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxId(String);

/// A string that is not a sandbox id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSandboxId(pub String);

impl fmt::Display for InvalidSandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid sandbox id {:?}: ids are lowercase letters and digits", self.0)
    }
}

impl std::error::Error for InvalidSandboxId {}

impl SandboxId {
    pub fn parse(s: &str) -> Result<Self, InvalidSandboxId> {
        let valid = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(InvalidSandboxId(s.to_string()))
        }
    }

    /// A new id: 20 characters of `[a-z0-9]`, ~103 bits from the OS-seeded CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        Self((0..20).map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SandboxId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A snapshot's id (the runtime names it like a sandbox's).
pub fn snapshot_id() -> String {
    SandboxId::generate().0
}

/// A per-sandbox token (envd access token, traffic token): 32 random alphanumerics.
pub fn token() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

#[cfg(test)]
mod tests {
    use super::SandboxId;

    #[test]
    fn ids_have_the_wire_shape() {
        let id = SandboxId::generate();
        assert_eq!(id.len(), 20);
        assert!(SandboxId::parse(&id).is_ok(), "a generated id parses");
        assert_ne!(id, SandboxId::generate());
    }

    #[test]
    fn only_lowercase_letters_and_digits_parse() {
        for good in ["a", "abc123", &"z".repeat(64)] {
            assert_eq!(SandboxId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "Abc", "a-b", "a.b", "../x", "a b", "é", &"z".repeat(65)] {
            assert!(SandboxId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
