//! Issue 19 item 2: a create takes a sandbox disk formatted ahead of time from the pool
//! (`DATA/disk-pool`) instead of running mkfs.ext4 while the user waits. Real server,
//! real sandboxes: an entry serves only creates of its size, the sandbox cannot tell a
//! pooled disk from a fresh one, and a restarted daemon (a crash) keeps the whole
//! entries and deletes the rest.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::api::{id, Api};
use common::{wait_within, Server};
use serde_json::{json, Value};

/// Inodes of the pool's whole entries of `size_mb` MiB.
fn pooled(data: &Path, size_mb: u64) -> HashSet<u64> {
    let prefix = format!("v1-{size_mb}m-");
    std::fs::read_dir(data.join("disk-pool"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&prefix) && n.ends_with(".img")
                })
                .map(|e| e.metadata().unwrap().ino())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_pooled(data: &Path, size_mb: u64) -> HashSet<u64> {
    assert!(
        wait_within(Duration::from_secs(60), || !pooled(data, size_mb).is_empty()),
        "no {size_mb} MiB disk in the pool within 60 s"
    );
    pooled(data, size_mb)
}

fn disk_inode(data: &Path, sbx: &Value) -> u64 {
    std::fs::metadata(data.join("sandboxes").join(id(sbx)).join("disk.img")).unwrap().ino()
}

async fn create(api: &Api, disk_mb: u64) -> Value {
    api.create(json!({"templateID": "base", "timeout": 600, "diskSizeMB": disk_mb})).await
}

/// The sandbox's root: its size as `df` sees it (MiB), and a file written and read back.
async fn check_disk(api: &Api, sbx: &Value, disk_mb: u64) {
    let out = api.sh(sbx, "df -m --output=size / | tail -1; echo pooled > /home/user/f && cat /home/user/f").await;
    let mut lines = out.lines();
    let size: u64 = lines.next().unwrap().trim().parse().unwrap();
    // ext4's own metadata takes a little of the image.
    assert!(size <= disk_mb && size + disk_mb / 8 >= disk_mb, "root of {size} MiB on a {disk_mb} MiB disk: {out}");
    assert_eq!(lines.next(), Some("pooled"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_take_pooled_disks_of_their_size_and_a_restart_keeps_only_whole_entries() {
    let s = Server::start("dpool");
    let data = s.host.data_dir.clone();
    let api = Api::new(&s);

    // The first create of a size finds the pool empty; it is refilled behind it.
    let a = create(&api, 256).await;
    let ready = wait_pooled(&data, 256);
    let b = create(&api, 256).await;
    assert!(ready.contains(&disk_inode(&data, &b)), "the second create did not take the pooled disk");
    check_disk(&api, &b, 256).await;

    // Another size makes its own disk and leaves the 256 MiB ones alone.
    let ready = wait_pooled(&data, 256);
    let c = create(&api, 320).await;
    assert!(!ready.contains(&disk_inode(&data, &c)), "a 320 MiB create took a 256 MiB disk");
    assert!(ready.is_subset(&pooled(&data, 256)), "a 320 MiB create used up 256 MiB entries");
    let c_len = std::fs::metadata(data.join("sandboxes").join(id(&c)).join("disk.img")).unwrap().len();
    assert_eq!(c_len, 320 << 20);
    check_disk(&api, &c, 320).await;
    let ready320 = wait_pooled(&data, 320);

    // A crash; what a dead daemon can leave besides whole entries: a half-formatted one,
    // one of an older format, one cut short.
    let host = s.crash();
    let pool = data.join("disk-pool");
    std::fs::write(pool.join("v1-256m-0000.img.tmp"), b"half").unwrap();
    std::fs::write(pool.join("v0-256m-0000.img"), b"old").unwrap();
    std::fs::File::create(pool.join("v1-256m-0001.img")).unwrap().set_len(256 << 20).unwrap();
    let kept = pooled(&data, 256);
    let s = Server::start_on(host, &[]);
    let api = Api::new(&s);
    let after: HashSet<String> =
        std::fs::read_dir(&pool).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for gone in ["v1-256m-0000.img.tmp", "v0-256m-0000.img", "v1-256m-0001.img"] {
        assert!(!after.contains(gone), "{gone} kept after the restart: {after:?}");
    }
    let whole: HashSet<u64> = kept.iter().copied().filter(|i| pooled(&data, 256).contains(i)).collect();
    assert!(!whole.is_empty(), "the restart dropped the whole 256 MiB entries");
    assert_eq!(pooled(&data, 320), ready320, "the restart dropped the whole 320 MiB entry");

    // A kept entry serves the next create of its size, and works as a fresh disk would.
    let d = create(&api, 256).await;
    assert!(whole.contains(&disk_inode(&data, &d)), "the create after the restart did not take a kept disk");
    check_disk(&api, &d, 256).await;

    for sbx in [&a, &b, &c, &d] {
        api.kill(&id(sbx)).await;
    }
}
