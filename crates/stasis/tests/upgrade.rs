//! Issue 20: paused sandboxes and snapshots outlive an upgrade. A sandbox paused by the
//! previous release resumes on this one with its memory and files, and a snapshot the
//! previous release took seeds a new sandbox here (its restored agent, the old binary,
//! takes its new identity over `/init` from this runtime).
//!
//! The previous release is the `stasis` that `scripts/setup.sh` installed
//! (`$STASIS_OLD_BINARY`, default /usr/local/bin/stasis) with the agent installed beside
//! it (`$STASIS_OLD_AGENT`, default /usr/local/lib/stasis/stasis-agent). The test is
//! skipped, saying so, only when that binary is absent.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{agent_binary, wait_for, Host};

struct Old {
    binary: PathBuf,
    agent: PathBuf,
}

impl Old {
    fn find() -> Option<Old> {
        let binary =
            PathBuf::from(std::env::var_os("STASIS_OLD_BINARY").unwrap_or_else(|| "/usr/local/bin/stasis".into()));
        if !binary.is_file() {
            return None;
        }
        let agent = std::env::var_os("STASIS_OLD_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/local/lib/stasis/stasis-agent".into());
        // Without the agent it was installed with, it still writes the old formats.
        let agent = if agent.is_file() { agent } else { agent_binary() };
        Some(Old { binary, agent })
    }

    fn rt(&self, h: &Host, args: &[&str]) -> String {
        let out = Command::new(&self.binary)
            .arg("runtime")
            .args(args)
            .env("STASIS_DATA_DIR", &h.data_dir)
            .env("STASIS_AGENT", &self.agent)
            .output()
            .expect("run the previous stasis");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{} runtime {args:?} failed: {stdout}{stderr}", self.binary.display());
        stdout.into_owned()
    }
}

#[test]
fn a_sandbox_paused_and_a_snapshot_taken_by_the_previous_release_work_on_this_one() {
    let Some(old) = Old::find() else {
        eprintln!(
            "SKIPPED: no previous release to upgrade from ({} is absent; set STASIS_OLD_BINARY to a stasis built from the previous main)",
            std::env::var("STASIS_OLD_BINARY").unwrap_or_else(|_| "/usr/local/bin/stasis".into())
        );
        return;
    };
    let h = Host::new("up");
    let id = common::unique_id("up");
    let snap = common::unique_id("upsnap");

    // The previous release: create, start a process with state in memory, snapshot, pause.
    old.rt(&h, &["create", &id, "--env", "ORIGIN=old"]);
    old.rt(&h, &["exec", &id, common::PYVAR]);
    old.rt(&h, &["exec", &id, "echo written-by-old > /home/user/old.txt"]);
    wait_for("python value", || {
        old.rt(&h, &["exec", &id, "cat /home/user/py-initial 2>/dev/null || true"]).trim().len() > 3
    });
    let value = old.rt(&h, &["exec", &id, "cat /home/user/py-initial"]);
    old.rt(&h, &["snapshot", &id, &snap]);
    old.rt(&h, &["pause", &id]);

    let record = h.sandbox_dir(&id).join("record.json");
    let old_record = std::fs::read_to_string(&record).unwrap();
    if old_record.contains("formatVersion") {
        eprintln!(
            "note: {} already writes versioned files: this run checks a resume across binaries, not from the unversioned format",
            old.binary.display()
        );
    }

    // The format of its checkpoint's checksums (2: SHA-256 + HMAC, before issue 19).
    let checksums_versions = || -> Vec<u64> {
        let dirs = std::fs::read_dir(h.sandbox_dir(&id).join("checkpoints")).unwrap();
        dirs.flatten()
            .filter_map(|d| std::fs::read_to_string(d.path().join("checksums.json")).ok())
            .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap()["formatVersion"].as_u64().unwrap_or(1))
            .collect()
    };
    let old_checksums = checksums_versions();
    if old_checksums != [2] {
        eprintln!("note: the previous release sealed its checkpoint in checksum format {old_checksums:?}, not 2");
    }

    // This release resumes it: same process, same memory, same files.
    h.rt(&["resume", &id]);
    assert_eq!(h.info(&id)["state"], "running");
    assert_eq!(h.python_value_now(&id), value, "the python process lost its memory across the upgrade");
    assert_eq!(h.sh(&id, "cat /home/user/old.txt").trim(), "written-by-old");
    let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(rec["formatVersion"], 2, "the record is written back in the current format: {rec}");
    // It stays in the id range its files and images are in: the legacy one when the
    // previous release made it before per-sandbox ranges (no idBase), else its own.
    let old_rec: serde_json::Value = serde_json::from_str(&old_record).unwrap();
    assert_eq!(rec.get("idBase"), old_rec.get("idBase"), "an old sandbox was moved to another id range: {rec}");

    // And pauses and resumes it in its own format.
    h.rt(&["pause", &id]);
    assert_eq!(checksums_versions(), [3], "this release seals in checksum format 3 (keyed BLAKE3)");
    h.rt(&["resume", &id]);
    assert_eq!(h.python_value_now(&id), value);

    // The old snapshot seeds a sandbox here: its files and its process, in a copy of
    // their own, with the environment this create gives it.
    let fork = common::unique_id("upfork");
    h.rt(&["create", &fork, "--from", &snap, "--env", "ORIGIN=new"]);
    assert_eq!(h.sh(&fork, "cat /home/user/old.txt").trim(), "written-by-old");
    assert_eq!(h.python_value_now(&fork), value, "the snapshot's process did not come back");
    assert_eq!(
        h.sh(&fork, "echo $ORIGIN").trim(),
        "new",
        "the restored agent did not take the new environment over /init"
    );

    h.rt(&["kill", &fork]);
    h.rt(&["kill", &id]);
    h.rt(&["snapshot-rm", &snap]);
}
