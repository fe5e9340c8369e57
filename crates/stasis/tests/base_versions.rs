//! The base template's versions (docs/architecture.md, "The base template's versions"):
//! a sandbox paused and a snapshot taken on the base from before versions (a directory at
//! `templates/base`) come back on that same base after the first versioned build moved it
//! to `templates/.base-legacy` and pointed `templates/base` at a new version, while new
//! sandboxes stand on the new version.
//!
//! The two bases are hard-linked copies of the system's (`cp -al`: same files, new
//! directories, so a file added to one is not in the other); the moves are the ones
//! `scripts/build-template.sh` makes when it publishes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{wait_for, Host, PYVAR};

fn copy_linked(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-al").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "cp -al {} {}", from.display(), to.display());
}

#[test]
fn what_was_made_on_the_base_from_before_versions_keeps_it_after_a_new_base_is_published() {
    let h = Host::new("bv");
    let t = h.data_dir.join("templates");
    let system = std::fs::canonicalize(t.join("base")).unwrap();
    std::fs::remove_file(t.join("base")).unwrap();
    copy_linked(&system, &t.join("base"));

    // On the base from before versions: a process with a value in memory, a file, a snapshot.
    let id = common::unique_id("bv");
    let snap = common::unique_id("bvsnap");
    h.rt(&["create", &id]);
    h.rt(&["exec", &id, PYVAR]);
    wait_for("python value", || h.rt(&["exec", &id, "cat /home/user/py-initial 2>/dev/null || true"]).trim().len() > 3);
    let value = h.rt(&["exec", &id, "cat /home/user/py-initial"]);
    h.rt(&["snapshot", &id, &snap]);
    h.rt(&["pause", &id]);
    let record = std::fs::read_to_string(h.sandbox_dir(&id).join("record.json")).unwrap();
    let legacy_path = t.join("base/rootfs").display().to_string();
    assert!(record.contains(&legacy_path), "the record names the base's old path: {record}");

    // The first versioned build publishes: the old base aside, the link to the new version.
    std::fs::rename(t.join("base"), t.join(".base-legacy")).unwrap();
    copy_linked(&system, &t.join(".base-00000000000000aa"));
    std::fs::write(t.join(".base-00000000000000aa/rootfs/etc/stasis-base-version"), "new\n").unwrap();
    std::os::unix::fs::symlink(".base-00000000000000aa", t.join("base")).unwrap();

    // The paused sandbox resumes on the base it was made on: same process, same memory.
    h.rt(&["resume", &id]);
    assert_eq!(h.python_value_now(&id), value, "the python process lost its memory");
    assert_eq!(h.sh(&id, "cat /etc/stasis-base-version 2>/dev/null || echo old").trim(), "old");
    // So does a copy of the snapshot taken before.
    let copy = common::unique_id("bvcopy");
    h.rt(&["create", &copy, "--from", &snap]);
    assert_eq!(h.python_value_now(&copy), value, "the snapshot's process did not come back");
    assert_eq!(h.sh(&copy, "cat /etc/stasis-base-version 2>/dev/null || echo old").trim(), "old");

    // A new sandbox stands on the new version, and its record names the version itself,
    // so the next base changes nothing under it either.
    let new = common::unique_id("bvnew");
    h.rt(&["create", &new]);
    assert_eq!(h.sh(&new, "cat /etc/stasis-base-version").trim(), "new");
    let record = std::fs::read_to_string(h.sandbox_dir(&new).join("record.json")).unwrap();
    assert!(record.contains(".base-00000000000000aa/rootfs"), "{record}");
    h.rt(&["pause", &new]);
    h.rt(&["resume", &new]);
    assert_eq!(h.sh(&new, "cat /etc/stasis-base-version").trim(), "new");

    for s in [&id, &copy, &new] {
        h.rt(&["kill", s]);
    }
    h.rt(&["snapshot-rm", &snap]);
}
