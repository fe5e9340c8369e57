//! Issue 2: sandboxes pause to disk and resume with files, memory and processes intact.
//! Real namespaces, real CRIU; every `stasis runtime` call is its own process, so the
//! runtime "restarts" between every step.

mod common;

use common::{cgroup_dirs, mounts_under, process_alive, wait_for, Host};

/// A bash loop whose counter lives only in the shell's memory, appended to a file every 100 ms.
const COUNTER: &str = r#"nohup bash -c 'i=0; while true; do i=$((i+1)); echo $i >> /home/user/counter; sleep 0.1; done' >/dev/null 2>&1 &"#;

fn start_workload(h: &Host, id: &str) -> String {
    h.sh(id, COUNTER);
    h.sh(id, common::PYVAR);
    h.sh(id, "head -c 1048576 /dev/urandom > /home/user/blob && sha256sum /home/user/blob > /home/user/blob.sha");
    wait_for("python value", || h.sh(id, "cat /home/user/py-initial 2>/dev/null || true").trim().len() > 3);
    wait_for("counter", || last_count(h, id) >= 3);
    h.sh(id, "cat /home/user/py-initial")
}

fn last_count(h: &Host, id: &str) -> u64 {
    h.sh(id, "tail -n1 /home/user/counter 2>/dev/null || echo 0").trim().parse().unwrap_or(0)
}

/// Every line of the counter file is the previous plus one: the count never restarted.
fn assert_counter_continuous(h: &Host, id: &str) -> u64 {
    let text = h.sh(id, "cat /home/user/counter");
    let nums: Vec<u64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    for (i, n) in nums.iter().enumerate() {
        assert_eq!(
            *n,
            i as u64 + 1,
            "counter restarted or skipped at line {i}: {:?}",
            &nums[i.saturating_sub(3)..(i + 2).min(nums.len())]
        );
    }
    *nums.last().unwrap()
}

fn assert_paused_on_disk(h: &Host, id: &str, pid_before: u64) {
    let info = h.info(id);
    assert_eq!(info["state"], "paused");
    assert!(!process_alive(pid_before), "init {pid_before} still runs on the host");
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "cgroup {} left while paused (would hold CPU/memory accounting)", d.display());
    }
    let ckpt = h.sandbox_dir(id).join("checkpoints");
    let images: Vec<_> = std::fs::read_dir(&ckpt)
        .unwrap()
        .flatten()
        .flat_map(|g| std::fs::read_dir(g.path()).unwrap().flatten())
        .collect();
    assert!(
        images.iter().any(|e| e.file_name().to_string_lossy().starts_with("pages-")),
        "no memory images in {}",
        ckpt.display()
    );
    assert!(mounts_under(&h.sandbox_dir(id)).is_empty(), "root filesystem still mounted while paused");
}

#[test]
fn pause_and_resume_keep_memory_processes_and_files() {
    let h = Host::new("pr");
    let id = common::unique_id("pr");
    h.rt(&["create", &id]);
    let value = start_workload(&h, &id);
    let pid = h.info(&id)["initPid"].as_u64().unwrap();
    let blob_sha = h.sh(&id, "cat /home/user/blob.sha");

    let before = last_count(&h, &id);
    h.rt(&["pause", &id]);
    assert_paused_on_disk(&h, &id, pid);

    // A new process resumes it: the state was found on disk.
    h.rt(&["resume", &id]);
    assert_eq!(h.info(&id)["state"], "running");
    let after_resume = last_count(&h, &id);
    assert!(after_resume >= before, "counter went back: {before} -> {after_resume}");
    wait_for("counter moving after resume", || last_count(&h, &id) > after_resume);
    assert_counter_continuous(&h, &id);
    assert_eq!(h.python_value_now(&id), value, "python variable changed across pause/resume");
    assert_eq!(h.sh(&id, "sha256sum /home/user/blob"), blob_sha, "file written before pause changed");
    h.rt(&["kill", &id]);
}

#[test]
fn ten_pause_resume_cycles_keep_state() {
    let h = Host::new("cy");
    let id = common::unique_id("cy");
    h.rt(&["create", &id]);
    let value = start_workload(&h, &id);
    let mut last = 0;
    for cycle in 0..10 {
        let pid = h.info(&id)["initPid"].as_u64().unwrap();
        h.rt(&["pause", &id]);
        assert_paused_on_disk(&h, &id, pid);
        h.rt(&["resume", &id]);
        let now = assert_counter_continuous(&h, &id);
        assert!(now >= last, "cycle {cycle}: counter went back {last} -> {now}");
        last = now;
        assert_eq!(h.python_value_now(&id), value, "cycle {cycle}: python variable changed");
    }
    wait_for("counter moving after the last resume", || last_count(&h, &id) > last);
    h.rt(&["kill", &id]);
}

#[test]
fn errors_are_typed_and_kill_removes_everything() {
    let h = Host::new("er");
    let id = common::unique_id("er");

    let out = h.rt_fails(&["resume", "nosuchsandbox"]);
    assert_eq!(out.code, 3, "unknown id must exit 3 (not found): {}", out.stderr);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);

    let out = h.rt_fails(&["pause", "Bad-Id"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("invalid sandbox id"), "{}", out.stderr);

    let out = h.rt_fails(&["create", &id, "--template", "nosuchtemplate"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("template"), "{}", out.stderr);
    assert!(!h.sandbox_dir(&id).exists(), "a failed create left files behind");

    h.rt(&["create", &id]);
    let out = h.rt_fails(&["resume", &id]);
    assert_eq!(out.code, 4, "resume of a running sandbox is a conflict: {}", out.stderr);
    assert!(out.stderr.contains("not paused"), "{}", out.stderr);

    h.rt(&["pause", &id]);
    let out = h.rt_fails(&["pause", &id]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("already paused"), "{}", out.stderr);

    // Kill of a paused sandbox removes every file, cgroup and mount it had.
    h.rt(&["kill", &id]);
    assert!(!h.sandbox_dir(&id).exists(), "kill left {}", h.sandbox_dir(&id).display());
    assert!(mounts_under(&h.sandbox_dir(&id)).is_empty());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "kill left cgroup {}", d.display());
    }
    let out = h.rt_fails(&["kill", &id]);
    assert_eq!(out.code, 3, "{}", out.stderr);
}

#[test]
fn kill_of_a_running_sandbox_leaves_no_process() {
    let h = Host::new("kr");
    let id = common::unique_id("kr");
    h.rt(&["create", &id]);
    h.sh(&id, COUNTER);
    let pid = h.info(&id)["initPid"].as_u64().unwrap();
    h.rt(&["kill", &id]);
    assert!(!process_alive(pid), "init {pid} survived kill");
    assert!(!h.sandbox_dir(&id).exists());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "kill left cgroup {}", d.display());
    }
}

#[test]
fn filesystem_only_pause_keeps_files_and_boots_fresh() {
    let h = Host::new("fs");
    let id = common::unique_id("fs");
    h.rt(&["create", &id]);
    h.sh(&id, "echo kept > /home/user/note; (nohup sleep 600 >/dev/null 2>&1 &)");
    let boot_before = h.sh(&id, "cat /proc/sys/kernel/random/boot_id");
    assert_ne!(
        boot_before.trim(),
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim(),
        "a sandbox must not show the host's boot id"
    );
    h.rt(&["pause", "--filesystem-only", &id]);
    assert_eq!(h.info(&id)["state"], "paused");
    h.rt(&["resume", &id]);
    assert_eq!(h.sh(&id, "cat /home/user/note").trim(), "kept");
    assert!(!h.sh(&id, "ps -eo args").contains("sleep 600"), "processes must not survive a filesystem-only pause");
    assert_ne!(h.sh(&id, "cat /proc/sys/kernel/random/boot_id"), boot_before, "a fresh boot has a new boot id");

    // A memory pause resumed with --no-memory is a reboot on the saved files too.
    h.sh(&id, "echo again > /home/user/note2");
    h.rt(&["pause", &id]);
    h.rt(&["resume", "--no-memory", &id]);
    assert_eq!(h.sh(&id, "cat /home/user/note2").trim(), "again");
    h.rt(&["kill", &id]);
}

/// inotify watches (editors, dev servers, envd's own WatchDir) survive a pause: the overlay
/// is mounted with `index=on,nfs_export=on`, so CRIU can encode the watched inodes' handles.
#[test]
fn inotify_watches_survive_pause_and_resume() {
    let h = Host::new("ino");
    let id = common::unique_id("ino");
    h.rt(&["create", &id]);
    h.sh(
        &id,
        r#"nohup python3 -c '
import ctypes, os
libc = ctypes.CDLL("libc.so.6")
fd = libc.inotify_init()
libc.inotify_add_watch(fd, b"/home/user", 0x100)
open("/tmp/watching", "w").write("1")
while True:
    os.read(fd, 4096)
    open("/tmp/events", "a").write("event\n")
' >/dev/null 2>&1 &"#,
    );
    wait_for("watcher", || h.sh(&id, "cat /tmp/watching 2>/dev/null || true").trim() == "1");
    h.sh(&id, "touch /home/user/before");
    wait_for("first event", || h.sh(&id, "cat /tmp/events 2>/dev/null || true").lines().count() == 1);
    h.rt(&["pause", &id]);
    h.rt(&["resume", &id]);
    h.sh(&id, "touch /home/user/after");
    wait_for("an event after the resume", || h.sh(&id, "cat /tmp/events 2>/dev/null || true").lines().count() == 2);
    h.rt(&["kill", &id]);
}

/// A directory of a lower layer (the template, then a snapshot's layer) renames like on
/// any disk (the model test found EXDEV), and the renamed directory keeps its contents
/// through a pause and into a sandbox made from a snapshot.
#[test]
fn lower_layer_directories_rename_and_survive_pause_and_snapshots() {
    let h = Host::new("rn");
    let id = common::unique_id("rn");
    h.rt(&["create", &id]);
    let listing = h.sh_as(&id, "root", "ls /usr/share/doc/bash");
    assert!(!listing.trim().is_empty(), "the template has /usr/share/doc/bash");
    let renamed = "python3 -c \"import os; os.rename('/usr/share/doc/bash', '/usr/share/doc/bash-renamed')\" && ls /usr/share/doc/bash-renamed";
    assert_eq!(h.sh_as(&id, "root", renamed), listing, "rename(2) of a template directory");
    h.rt(&["pause", &id]);
    h.rt(&["resume", &id]);
    assert_eq!(h.sh_as(&id, "root", "ls /usr/share/doc/bash-renamed"), listing, "after a pause");
    assert!(h.sh_as(&id, "root", "ls -d /usr/share/doc/bash 2>/dev/null || echo gone").contains("gone"));

    h.rt(&["snapshot", &id, "rnsnap"]);
    let copy = common::unique_id("rnc");
    h.rt(&["create", "--from", "rnsnap", &copy]);
    assert_eq!(h.sh_as(&copy, "root", "ls /usr/share/doc/bash-renamed"), listing, "in a sandbox from the snapshot");
    // And renamed again there: now a directory of the snapshot's layer.
    assert_eq!(h.sh_as(&copy, "root", "mv /usr/share/doc/bash-renamed /opt/again && ls /opt/again"), listing);
    h.rt(&["kill", &copy]);
    h.rt(&["kill", &id]);
}

/// A pause is done once its record is committed: a sandbox disk the kernel cannot release
/// yet (here: a host process holds a file of it open, as a slow teardown would) is said
/// in the log, not turned into a failed pause of a sandbox whose processes are gone (the
/// soak found that). The resume waits for the release and says so if it does not come.
#[test]
fn a_disk_released_late_does_not_fail_a_committed_pause() {
    let h = Host::new("late");
    let id = common::unique_id("late");
    h.rt(&["create", &id]);
    h.sh(&id, "echo kept > /home/user/kept.txt");
    let upper = h.sandbox_dir(&id).join("disk/upper");
    let held = std::fs::File::open(upper.join("home/user/kept.txt")).expect("the file is in the writable layer");

    h.rt(&["pause", &id]);
    assert_eq!(h.info(&id)["state"], "paused");
    // A resume while the old filesystem lingers waits for its release (then goes on).
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(held);
    });
    let t0 = std::time::Instant::now();
    h.rt(&["resume", &id]);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(2500), "the resume waited for the release");
    release.join().unwrap();
    assert_eq!(h.sh(&id, "cat /home/user/kept.txt").trim(), "kept");
    h.rt(&["kill", &id]);
}

/// Inodes of the unix sockets of this process's network namespace (the host's).
fn host_unix_sockets() -> std::collections::HashSet<String> {
    let table = std::fs::read_to_string("/proc/self/net/unix").unwrap();
    table.lines().skip(1).filter_map(|l| l.split_whitespace().nth(6).map(str::to_string)).collect()
}

/// Sockets held by the processes of sandbox `id`, as `socket:[INODE]` inodes.
fn sandbox_sockets(id: &str) -> Vec<(u32, String)> {
    let procs = cgroup_dirs(id)
        .into_iter()
        .find_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .expect("the sandbox's cgroup");
    let mut out = Vec::new();
    for pid in procs.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).map(|t| t.display().to_string()).unwrap_or_default();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                out.push((pid, inode.to_string()));
            }
        }
    }
    out
}

/// Right after a create returns, no process of the sandbox holds a socket of the host's
/// network namespace. PID 1 once closed its boot socket only after "ready", and the
/// create returned on "ready": a snapshot or fork at once could catch it open, and CRIU
/// failed ("Unix socket N not found"; seen under a load of 100). The check is of the
/// invariant; the race itself needs a loaded host to show.
#[test]
fn a_created_sandbox_holds_no_host_socket_and_snapshots_at_once() {
    let h = Host::new("rtsock");
    for round in 0..5 {
        let id = common::unique_id("sock");
        h.rt(&["create", &id]);
        let host = host_unix_sockets();
        let held: Vec<_> = sandbox_sockets(&id).into_iter().filter(|(_, inode)| host.contains(inode)).collect();
        assert!(held.is_empty(), "round {round}: sandbox processes hold host sockets: {held:?}");
        if round == 0 {
            h.rt(&["snapshot", &id, &common::unique_id("socksnap")]);
        }
        h.rt(&["kill", &id]);
    }
}

/// Issue 19: a pause and a snapshot hash the memory images while CRIU writes them
/// (`checksum/early.rs`). Their manifest must hold for the bytes on disk: a resume or a
/// create from the snapshot by another process (this CLI: no memory of the seal)
/// hashes every image in full and refuses images whose hashes do not match, so this
/// fails if a chunk hashed during the dump is not what the dump left.
#[test]
fn a_pause_sealed_while_dumping_verifies_in_a_new_process() {
    let h = Host::new("eh");
    let id = common::unique_id("eh");
    h.rt(&["create", &id]);
    // 96 MiB of random bytes held by a process; their hash on demand.
    h.sh(
        &id,
        r#"nohup python3 -c '
import hashlib, os, signal, time
blob = os.urandom(96 << 20)
def dump(*_):
    open("/home/user/blob-now.tmp", "w").write(hashlib.sha256(blob).hexdigest())
    os.rename("/home/user/blob-now.tmp", "/home/user/blob-now")
signal.signal(signal.SIGUSR1, dump)
dump()
while True:
    time.sleep(1)
' >/dev/null 2>&1 &"#,
    );
    wait_for("the blob's hash", || h.sh(&id, "cat /home/user/blob-now 2>/dev/null || true").trim().len() == 64);
    let before = h.sh(&id, "cat /home/user/blob-now");
    // The hash of the blob in memory now (the process writes it on SIGUSR1).
    let blob_now = |sb: &str| {
        h.sh(sb, "rm -f /home/user/blob-now; pkill -USR1 -f 'os.urandom'");
        wait_for("the blob's hash", || h.sh(sb, "cat /home/user/blob-now 2>/dev/null || true").trim().len() == 64);
        h.sh(sb, "cat /home/user/blob-now")
    };
    for cycle in 0..2 {
        let stats: serde_json::Value = serde_json::from_str(h.rt(&["pause", &id]).trim()).unwrap();
        let early = stats["hashedEarlyBytes"].as_u64().unwrap();
        assert!(early >= 32 << 20, "cycle {cycle}: only {early} bytes hashed during the dump: {stats}");
        h.rt(&["resume", &id]);
        assert_eq!(blob_now(&id), before, "cycle {cycle}: memory changed");
    }
    let snap = common::unique_id("ehs");
    let copy = common::unique_id("ehc");
    h.rt(&["snapshot", &id, &snap]);
    h.rt(&["create", &copy, "--from", &snap]);
    assert_eq!(blob_now(&copy), before, "the copy's memory differs");
    h.rt(&["kill", &copy]);
    h.rt(&["kill", &id]);
    h.rt(&["snapshot-rm", &snap]);
}

/// A shell runs its commands by vfork (dash does): between the vfork and the child's
/// exec the parent waits, and a freeze that lands there leaves CRIU a parent it cannot
/// seize while the child is stopped (the dump times out after 10 s, "Unseizable
/// non-zombie ... state D"). A tight loop of commands makes that window most of the
/// shell's time: every snapshot and pause of it must still work.
#[test]
fn a_shell_running_commands_back_to_back_snapshots_and_pauses() {
    let h = Host::new("vf");
    let id = common::unique_id("vf");
    h.rt(&["create", &id]);
    h.sh(&id, "nohup sh -c 'while true; do /bin/true; done' >/dev/null 2>&1 &");
    for i in 0..12 {
        let snap = common::unique_id("vfs");
        h.rt(&["snapshot", &id, &snap]);
        h.rt(&["snapshot-rm", &snap]);
        if i % 2 == 1 {
            h.rt(&["pause", &id]);
            h.rt(&["resume", &id]);
        }
    }
    assert!(h.sh(&id, "pgrep -c -f 'while true; do /bin/true'").trim().parse::<u32>().unwrap() >= 1);
    h.rt(&["kill", &id]);
}
