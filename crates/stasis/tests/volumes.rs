//! Volumes on real sandboxes (real namespaces, real CRIU), through the API: the mount and
//! its flags, the host's side of it, a process holding a file open on a volume across a
//! pause, a filesystem-only pause (a fresh boot mounts it again), and sharing.

mod common;

use common::api::{id, Api};
use common::{mounts_under, Server};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn volumes_are_mounted_kept_across_pauses_and_shared() {
    let s = Server::start("volumes");
    let api = Api::new(&s);
    let (st, vol) = api.call(Method::POST, "/volumes", Some(json!({"name": "shared"}))).await;
    assert_eq!(st, 201, "{vol}");
    let vid = vol["volumeID"].as_str().unwrap().to_string();
    let host_dir = s.host.data_dir.join("volumes").join(&vid);

    let a = api.create(json!({"templateID": "base", "volumeMounts": [{"name": "shared", "path": "/srv/vol"}]})).await;
    let aid = id(&a);
    // The host keeps no copy of the mount once the agent runs.
    assert!(mounts_under(&s.host.sandbox_dir(&aid)).iter().all(|m| !m.contains("/srv/vol")));
    let opts = api.sh(&a, "awk '$2 == \"/srv/vol\" {print $4}' /proc/mounts").await;
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{opts}");
    // Its flags are locked: the sandbox's root cannot lift them.
    let lift = api
        .sh(&a, "sudo mount -o remount,bind,suid /srv/vol 2>&1; awk '$2 == \"/srv/vol\" {print $4}' /proc/mounts")
        .await;
    assert!(lift.contains("nosuid"), "{lift}");
    // Written as `user` inside: the host sees the sandbox's uid 1000 (host 101000).
    api.sh(&a, "echo one > /srv/vol/f && mkdir /srv/vol/d").await;
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(host_dir.join("f")).unwrap().uid(), 101_000);

    // A process with its cwd and an open file on the volume, across a memory pause.
    api.sh(&a, "(cd /srv/vol/d && exec nohup bash -c 'exec 3>>log; while true; do echo x >&3; sleep 0.2; done') >/dev/null 2>&1 &").await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(api.pause(&aid).await, 204);
    let before = std::fs::read_to_string(host_dir.join("d/log")).unwrap().lines().count();
    let (st, body) = api.connect(&aid, json!({"timeout": 120})).await;
    assert!(st < 300, "resume: {st} {body}; the server log:\n{}", s.log());
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let after = std::fs::read_to_string(host_dir.join("d/log")).unwrap().lines().count();
    assert!(after > before, "the restored process writes to its volume file again ({before} -> {after})");
    assert_eq!(api.sh(&a, "cat /srv/vol/f").await, "one\n");

    // A filesystem-only pause: the next connect boots afresh and mounts it again.
    let (st, _) = api.call(Method::POST, &format!("/sandboxes/{aid}/pause"), Some(json!({"memory": false}))).await;
    assert_eq!(st, 204);
    assert!(api.connect(&aid, json!({"timeout": 120})).await.0 < 300);
    assert_eq!(api.sh(&a, "cat /srv/vol/f; test -d /srv/vol/d && echo dir").await, "one\ndir\n");

    // A second sandbox shares it, live.
    let b = api.create(json!({"volumeMounts": [{"name": "shared", "path": "/mnt/v"}]})).await;
    api.sh(&b, "echo two > /mnt/v/g").await;
    assert_eq!(api.sh(&a, "cat /srv/vol/g").await, "two\n");

    let (st, e) = api.call(Method::DELETE, &format!("/volumes/{vid}"), None).await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(api.kill(&aid).await, 204);
    assert_eq!(api.kill(&id(&b)).await, 204);
    assert_eq!(std::fs::read_to_string(host_dir.join("g")).unwrap(), "two\n", "outlives its sandboxes");
    assert_eq!(api.call(Method::DELETE, &format!("/volumes/{vid}"), None).await.0, 204);
    assert!(!host_dir.exists());
}
