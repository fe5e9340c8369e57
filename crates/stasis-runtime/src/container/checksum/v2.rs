//! Manifests of format version 2 (Stasis before issue 19): SHA-256 of every 64 MiB chunk,
//! the manifest signed with HMAC-SHA256 under the data dir's key. No longer written; read
//! and verified with their own algorithm, so a sandbox paused (or a snapshot made) by an
//! older Stasis still resumes after an upgrade, as safely as before it.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Algorithm, FileSum, Key, Listing};

pub const VERSION: u32 = 2;
const CHUNK: usize = 64 << 20;
const ALGORITHM: &str = "sha256-chunks+hmac-sha256";
const CONTEXT: &[u8] = b"stasis checkpoint manifest v2\0";

/// The manifest exactly as version 2 wrote it: its MAC is over this struct serialised
/// again, so field names and order are part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum2 {
    size: u64,
    sha256: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Body {
    algorithm: String,
    chunk: usize,
    files: BTreeMap<String, FileSum2>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    body: Body,
    mac: String,
}

fn signed(body: &Body) -> Vec<u8> {
    let mut v = CONTEXT.to_vec();
    v.extend(serde_json::to_vec(body).expect("a manifest always serialises"));
    v
}

fn hmac(key: &Key) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes any key length")
}

/// SHA-256 of one chunk, hex.
pub fn chunk_hash(chunk: &[u8]) -> String {
    hex::encode(Sha256::digest(chunk))
}

/// The version 2 manifest `data`, its MAC checked. `Err` says what is wrong.
pub fn parse(data: &[u8], key: &Key) -> Result<Listing, String> {
    let m: Manifest = serde_json::from_slice(data).map_err(|e| format!("unreadable checksum manifest ({e})"))?;
    let tag = hex::decode(&m.mac).map_err(|_| "manifest MAC is not hex".to_string())?;
    let mut mac = hmac(key);
    mac.update(&signed(&m.body));
    if mac.verify_slice(&tag).is_err() {
        return Err(super::NOT_SIGNED.into());
    }
    if m.body.algorithm != ALGORITHM || m.body.chunk != CHUNK {
        return Err(format!("manifest uses {} in {} byte chunks", m.body.algorithm, m.body.chunk));
    }
    let files = m.body.files.into_iter().map(|(n, f)| (n, FileSum { size: f.size, hashes: f.sha256 })).collect();
    Ok(Listing { algorithm: Algorithm::Sha256, chunk: CHUNK, files })
}

/// A version 2 manifest of `files` (hashed by the caller with [`chunk_hash`]): what a
/// Stasis before issue 19 wrote, for the tests that old checkpoints still verify.
#[cfg(test)]
pub fn manifest(files: BTreeMap<String, FileSum>, key: &Key) -> Vec<u8> {
    let files = files.into_iter().map(|(n, f)| (n, FileSum2 { size: f.size, sha256: f.hashes })).collect();
    let body = Body { algorithm: ALGORITHM.into(), chunk: CHUNK, files };
    let mut mac = hmac(key);
    mac.update(&signed(&body));
    let m = Manifest { mac: hex::encode(mac.finalize().into_bytes()), body };
    super::format::to_json(VERSION, &m, false)
}

#[cfg(test)]
pub const TEST_CHUNK: usize = CHUNK;
