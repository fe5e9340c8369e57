//! Versions of the runtime's on-disk formats: `record.json`, a snapshot's `snapshot.json`
//! and a checkpoint's `checksums.json` each carry a `formatVersion`. A paused sandbox (and
//! a snapshot) outlives upgrades, so every binary must read what older ones wrote and must
//! not misread what newer ones wrote.
//!
//! - Files written before versions existed have no `formatVersion` and read as version 1:
//!   their shape *is* version 1 (the field was added without changing anything else).
//! - A file whose version is newer than this binary knows is refused with
//!   [`RuntimeError::UnsupportedFormat`] before anything else in it is parsed (its shape
//!   may have changed), and it is left untouched, for the newer binary to use again.
//! - Adding a field with a default keeps the version (older binaries ignore unknown
//!   fields); renaming, removing or changing the meaning of one bumps it, and the loader
//!   then converts the older versions it still reads.
//!
//! The version is a property of the file, not of the value: it is added when a value is
//! written and checked when one is read, so the types themselves do not carry it. This is
//! the runtime's counterpart of the store's schema migrations.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, RuntimeError};

/// `record.json`, a sandbox's record (2: `idBase`, its own id range; a version 1 record
/// reads as the legacy range, and a binary that knows no ranges must not boot a version 2
/// sandbox in the legacy range over files owned by another).
pub const RECORD_VERSION: u32 = 2;
/// `snapshot.json`, what a snapshot was made from (2: `idBase`, the range its layer and
/// memory images belong to).
pub const SNAPSHOT_VERSION: u32 = 2;
/// `checksums.json`, the checksums of a checkpoint's images (2: keyed, SHA-256 + HMAC;
/// 3: keyed BLAKE3 chunks and MAC, 16 MiB chunks; version 2 is still read and verified).
pub const CHECKSUMS_VERSION: u32 = 3;

/// The version of files written before versions existed.
pub const UNVERSIONED: u32 = 1;

fn unversioned() -> u32 {
    UNVERSIONED
}

#[derive(Deserialize)]
struct Header {
    #[serde(rename = "formatVersion", default = "unversioned")]
    format_version: u32,
}

#[derive(Serialize)]
struct Versioned<'a, T> {
    #[serde(rename = "formatVersion")]
    format_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// The version of `data` (the content of `path`); an error if it is newer than
/// `supported`. Data that is not a JSON object with a numeric version passes as
/// unversioned: the full parse reports what is wrong with it.
pub(crate) fn check(path: &Path, data: &[u8], supported: u32) -> Result<u32> {
    match serde_json::from_slice::<Header>(data) {
        Ok(h) if h.format_version > supported => Err(RuntimeError::UnsupportedFormat {
            path: path.display().to_string(),
            version: h.format_version,
            supported,
        }),
        Ok(h) => Ok(h.format_version),
        Err(_) => Ok(UNVERSIONED),
    }
}

/// `body` as JSON, with `formatVersion: version` first.
pub(crate) fn to_json<T: Serialize>(version: u32, body: &T, pretty: bool) -> Vec<u8> {
    let v = Versioned { format_version: version, body };
    let json = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) };
    json.expect("on-disk values always serialise")
}

/// Reads `path`: refused if newer than `supported`, else parsed.
pub(crate) fn load<T: DeserializeOwned>(path: &Path, supported: u32) -> Result<T> {
    let data = std::fs::read(path).ctx(|| format!("read {}", path.display()))?;
    check(path, &data, supported)?;
    serde_json::from_slice(&data).map_err(std::io::Error::from).ctx(|| format!("parse {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        name: String,
    }

    #[test]
    fn versions_are_written_first_and_read_back() {
        let json = to_json(3, &Thing { name: "a".into() }, false);
        assert_eq!(String::from_utf8(json.clone()).unwrap(), r#"{"formatVersion":3,"name":"a"}"#);
        let p = Path::new("x.json");
        assert_eq!(check(p, &json, 3).unwrap(), 3);
        assert_eq!(check(p, br#"{"name":"a"}"#, 1).unwrap(), UNVERSIONED);
        // Not JSON, or an odd version field: left to the full parse to report.
        assert_eq!(check(p, b"garbage", 1).unwrap(), UNVERSIONED);
        assert_eq!(check(p, br#"{"formatVersion":"2"}"#, 1).unwrap(), UNVERSIONED);
    }

    #[test]
    fn newer_versions_are_refused_before_their_body_is_parsed() {
        // Version 2 may have reshaped anything: the error is about the version.
        let data = br#"{"formatVersion":2,"name":{"first":"a"}}"#;
        match check(Path::new("/d/record.json"), data, 1) {
            Err(RuntimeError::UnsupportedFormat { path, version: 2, supported: 1 }) => {
                assert_eq!(path, "/d/record.json")
            }
            other => panic!("{other:?}"),
        }
        let e = check(Path::new("/d/record.json"), data, 1).unwrap_err().to_string();
        assert!(e.contains("/d/record.json") && e.contains("newer Stasis") && e.contains("version 2"), "{e}");
    }

    #[test]
    fn load_checks_then_parses() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.json");
        std::fs::write(&p, to_json(1, &Thing { name: "b".into() }, true)).unwrap();
        assert_eq!(load::<Thing>(&p, 1).unwrap(), Thing { name: "b".into() });
        std::fs::write(&p, br#"{"formatVersion":9,"name":"b"}"#).unwrap();
        assert!(matches!(load::<Thing>(&p, 1), Err(RuntimeError::UnsupportedFormat { version: 9, .. })));
        std::fs::write(&p, b"{").unwrap();
        assert!(load::<Thing>(&p, 1).unwrap_err().to_string().contains("parse"));
    }
}
