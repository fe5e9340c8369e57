//! The upload journal: `upload.json` beside the files of a directory being uploaded, saying
//! which of them are already in the object store (and where). An upload cut short (daemon
//! killed, store unreachable) starts again from it and sends only the rest; a file is
//! recorded only once its upload completed, so a recorded file is always in the store.
//!
//! The journal is about one target (bucket, key prefix): a directory uploaded elsewhere
//! starts over. Versioned like the runtime's other on-disk files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const JOURNAL: &str = "upload.json";
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    #[serde(default)]
    format_version: u32,
    /// `bucket/key-prefix` the files went to.
    pub target: String,
    /// Uploaded files and their sizes.
    pub done: BTreeMap<String, u64>,
    /// Every file, the manifest last, is in the store.
    pub complete: bool,
    #[serde(skip)]
    path: PathBuf,
}

impl Journal {
    /// The journal of `dir` for `target`; a fresh one if there is none, it is unreadable,
    /// of another target, or from a newer Stasis.
    pub fn open(dir: &Path, target: &str) -> Self {
        let path = dir.join(JOURNAL);
        let read = std::fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice::<Journal>(&d).ok())
            .filter(|j| j.target == target && j.format_version <= VERSION);
        let mut j = read.unwrap_or_else(|| Journal { target: target.to_string(), ..Default::default() });
        j.path = path;
        j
    }

    /// Whether `name` of `size` bytes is already uploaded.
    pub fn has(&self, name: &str, size: u64) -> bool {
        self.done.get(name) == Some(&size)
    }

    pub fn record(&mut self, name: &str, size: u64) -> std::io::Result<()> {
        self.done.insert(name.to_string(), size);
        self.store()
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        self.complete = true;
        self.store()
    }

    /// Written to a temporary file, fsynced, renamed over the journal.
    fn store(&mut self) -> std::io::Result<()> {
        self.format_version = VERSION;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&*self).expect("a journal always serialises"))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Whether the upload of `dir` to `target` completed.
pub fn complete(dir: &Path, target: &str) -> bool {
    Journal::open(dir, target).complete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_was_uploaded_for_one_target() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), "b/sandboxes/x/1");
        assert!(!j.has("pages-1.img", 10) && !j.complete);
        j.record("pages-1.img", 10).unwrap();
        let j = Journal::open(d.path(), "b/sandboxes/x/1");
        assert!(j.has("pages-1.img", 10) && !j.has("pages-1.img", 11) && !j.complete);
        // Another target, or a newer format: starts over.
        assert!(!Journal::open(d.path(), "b/sandboxes/x/2").has("pages-1.img", 10));
        let mut j = Journal::open(d.path(), "b/sandboxes/x/1");
        j.finish().unwrap();
        assert!(complete(d.path(), "b/sandboxes/x/1"));
        std::fs::write(
            d.path().join(JOURNAL),
            br#"{"formatVersion":9,"target":"b/sandboxes/x/1","done":{},"complete":true}"#,
        )
        .unwrap();
        assert!(!complete(d.path(), "b/sandboxes/x/1"));
    }
}
