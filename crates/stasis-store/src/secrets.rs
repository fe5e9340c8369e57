//! Secrets: named values a sandbox's outbound requests may carry (E2B's `Secret`), kept
//! sealed.
//!
//! The store keeps a secret's identity (id, unique name), its current version number,
//! its metadata and its value **sealed**: the bytes the server's vault encrypted. It never
//! sees a value in the clear and must not: encryption, and the key, are the server's
//! (`stasis-server/src/secrets/vault.rs`). An update replaces the sealed value and adds one
//! to the version in one statement, so two concurrent updates get two versions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// One secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRow {
    /// `sec_` + random characters.
    pub id: String,
    /// Unique, lower-case (the API's rule, checked there).
    pub name: String,
    /// 1 at create, one more at each update.
    pub version: i64,
    pub metadata: BTreeMap<String, String>,
    /// The value as the vault sealed it (nonce, ciphertext and tag); opaque here.
    pub sealed: Vec<u8>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A new value (sealed) for an existing secret; `metadata: None` keeps the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUpdate {
    pub sealed: Vec<u8>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub updated_at: UnixMillis,
}

/// The token of the page after `last` (names are the order; hex, so any name fits in a
/// header).
pub fn page_token(last: &SecretRow) -> String {
    hex_encode(last.name.as_bytes())
}

/// The name a token continues after; `None` for a token this store did not make.
pub fn parse_page_token(token: &str) -> Option<String> {
    if token.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
