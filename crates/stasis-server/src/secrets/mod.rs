//! Secrets (E2B's `Secret`): the rules a secret's name, value and metadata follow, and
//! the vault that seals values at rest. Values are write-only: nothing here, nor anything
//! built on it, returns one to an API caller, logs it or writes it where a sandbox reads.
//!
//! The lifecycle keeps the rows (`lifecycle/secrets.rs`); the egress proxy is the one
//! reader of a value in the clear, when it sets a header a network rule names.

pub mod names;
pub mod rules;
pub mod vault;

pub use names::{check_metadata, check_value, normalize_name, PLACEHOLDER_PREFIX};
pub use rules::NetworkRules;
pub use vault::{Vault, VaultError};
