//! Issue 13, item 11: a checkpoint is restored only if its images are exactly what the
//! runtime sealed, checked with a key only root can read, and before CRIU (host root)
//! reads any of them. See docs/security.md.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{unique_id, wait_for, Host};

/// What an attacker who can write a checkpoint but not read the key does after changing
/// an image: recompute the checksums, in the format the previous release trusted (CRC-32
/// per 64 MiB chunk, unkeyed).
const REWRITE_CRC_MANIFEST: &str = r#"
import json, os, sys, zlib
d = sys.argv[1]
files = {}
for n in sorted(os.listdir(d)):
    if n.endswith(".img") or n == "stats-dump":
        data = open(os.path.join(d, n), "rb").read()
        files[n] = {"size": len(data), "crc32": [zlib.crc32(data[i:i + (64 << 20)]) for i in range(0, len(data), 64 << 20)]}
json.dump({"formatVersion": 1, "chunk": 64 << 20, "files": files}, open(os.path.join(d, "checksums.json"), "w"))
"#;

fn checkpoint_of(h: &Host, id: &str) -> std::path::PathBuf {
    let dir = h.sandbox_dir(id).join("checkpoints");
    std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).max().expect("a checkpoint generation")
}

fn flip_a_page_byte(images: &Path) {
    let pages = std::fs::read_dir(images)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pages-"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a pages image");
    let mut data = std::fs::read(&pages).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x5a;
    std::fs::write(&pages, data).unwrap();
}

#[test]
fn a_tampered_checkpoint_with_recomputed_sums_is_refused_and_nothing_runs() {
    let h = Host::new("ck");
    let id = unique_id("ck");
    h.rt(&["create", &id]);
    // Counts in memory; after a restore it would go on appending.
    h.sh(&id, r#"nohup bash -c 'i=0; while true; do i=$((i+1)); echo $i > /home/user/count; sleep 0.1; done' >/dev/null 2>&1 &"#);
    wait_for("counter", || {
        h.sh(&id, "cat /home/user/count 2>/dev/null || echo 0").trim().parse::<u64>().unwrap_or(0) > 2
    });

    h.rt(&["pause", &id]);
    let images = checkpoint_of(&h, &id);
    flip_a_page_byte(&images);
    let py = Command::new("python3").args(["-c", REWRITE_CRC_MANIFEST]).arg(&images).status().unwrap();
    assert!(py.success());
    let _ = std::fs::remove_dir_all(h.sandbox_dir(&id).join("restore"));

    let t0 = std::time::Instant::now();
    let out = h.rt_fails(&["resume", &id]);
    eprintln!("refused in {:?}: {}", t0.elapsed(), out.stderr.trim());
    assert!(out.stderr.contains("not keyed"), "{}", out.stderr);
    // Nothing ran: CRIU never started (it writes restore.log first), no process is in the
    // sandbox's cgroups, and the sandbox stays paused with its data.
    assert!(!h.sandbox_dir(&id).join("restore/restore.log").exists(), "CRIU read the tampered images");
    assert_eq!(h.info(&id)["state"], "paused");
    for d in common::cgroup_dirs(&id) {
        assert!(!d.exists(), "cgroup {} made for a refused restore", d.display());
    }

    // The key: root's, 0600, never in a manifest.
    let key = h.data_dir.join("checkpoint.key");
    let meta = std::fs::metadata(&key).expect("the runtime made a checkpoint key");
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid(), meta.len()), (0o600, 0, 32), "key must be root's, 0600");

    // The same with a manifest in the current format signed with another key.
    let other = Host::new("ck");
    let other_id = unique_id("ck");
    other.rt(&["create", &other_id]);
    other.rt(&["pause", &other_id]);
    let other_images = checkpoint_of(&other, &other_id);
    let manifest = std::fs::read_to_string(other_images.join("checksums.json")).unwrap();
    assert!(manifest.contains("\"mac\"") && !manifest.contains(&hex(&std::fs::read(&key).unwrap())));
    std::fs::copy(other_images.join("checksums.json"), images.join("checksums.json")).unwrap();
    let out = h.rt_fails(&["resume", &id]);
    assert!(out.stderr.contains("not signed with this data dir's key"), "{}", out.stderr);
    assert!(!h.sandbox_dir(&id).join("restore/restore.log").exists());

    // Its files are kept: a boot without the memory image works.
    h.rt(&["resume", "--no-memory", &id]);
    assert!(h.sh(&id, "cat /home/user/count").trim().parse::<u64>().unwrap() > 2);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
