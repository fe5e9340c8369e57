//! Two nodes on one store (two lifecycles, each with its own fake runtime, one SQLite
//! file): each acts only on its own sandboxes; a node whose lease expires has its running
//! sandboxes reported lost (paused ones stay), and takes them up again if it comes back.

use std::sync::Arc;

use stasis_store::{EventQuery, Heartbeat, NodeState, Resources, SandboxState, SqliteStore, Store};

use super::super::affinity::Affinity;
use super::super::fake_runtime::{FakeRuntime, Op};
use super::super::{Clock, CreateParams, Lifecycle, LifecycleConfig, LifecycleError};
use super::{after, params};
use crate::ids::SandboxId;

struct Node {
    lc: Lifecycle,
    rt: Arc<FakeRuntime>,
}

/// Nodes `a` and `b` on one database in `dir`.
async fn two_nodes(dir: &tempfile::TempDir) -> (Node, Node, SqliteStore) {
    nodes_sharing(dir, false).await
}

/// [`two_nodes`], with paused sandboxes' layers shared (a cluster with an object store)
/// when `share_layers`.
async fn nodes_sharing(dir: &tempfile::TempDir, share_layers: bool) -> (Node, Node, SqliteStore) {
    let store = SqliteStore::open(dir.path().join("stasis.db")).await.unwrap();
    let node = |id: &str| {
        let rt = FakeRuntime::new();
        let config = LifecycleConfig { node_id: id.into(), share_layers, ..Default::default() };
        let lc = Lifecycle::with_clock(Arc::new(store.clone()), rt.clone(), config, Clock::tokio());
        Node { lc, rt }
    };
    (node("a"), node("b"), store)
}

/// `node` renews its lease for 15 s from now.
async fn beat(node: &Node, first: bool) {
    let at = node.lc.now();
    let r = Resources { memory_mb: 4096, cpu_count: 4, disk_mb: 10_000 };
    let hb = Heartbeat {
        id: node.lc.node_id().into(),
        url: format!("http://{}:3000", node.lc.node_id()),
        capacity: r,
        free: r,
        at,
        lease_until: at + 15_000,
    };
    node.lc.heartbeat(hb, first).await.unwrap();
}

async fn create(node: &Node) -> SandboxId {
    SandboxId::parse(&node.lc.create(params()).await.unwrap().id).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_node_acts_only_on_its_own_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, store) = two_nodes(&dir).await;
    let id = create(&a).await;
    assert_eq!(store.get_sandbox(&id).await.unwrap().unwrap().node_id, "a");
    // b's recovery does not find it in b's runtime, and must not call it vanished.
    b.lc.reconcile().await.unwrap();
    assert_eq!(store.get_sandbox(&id).await.unwrap().unwrap().state, SandboxState::Running);
    assert!(b.lc.pause_all("test").await.is_empty(), "b pauses only what b runs");
    assert!(b.lc.running_ids().await.unwrap().is_empty());
    assert_eq!(a.lc.running_ids().await.unwrap(), [id.to_string()]);
    assert_eq!(a.lc.committed().await.unwrap().memory_mb, 512);
    assert_eq!(b.lc.committed().await.unwrap().memory_mb, 0);
}

#[tokio::test(start_paused = true)]
async fn requests_for_a_live_nodes_sandbox_go_there() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _store) = two_nodes(&dir).await;
    beat(&a, true).await;
    beat(&b, true).await;
    let id = create(&a).await;
    assert_eq!(b.lc.remote_owner(&id).await.unwrap().map(|n| n.id), Some("a".into()));
    assert_eq!(a.lc.remote_owner(&id).await.unwrap(), None, "its own");
    assert_eq!(b.lc.remote_owner("nosuchsandbox").await.unwrap(), None);
    after(16.0).await;
    assert_eq!(b.lc.remote_owner(&id).await.unwrap(), None, "a's lease ran out: b answers (lost, or why not)");
}

#[tokio::test(start_paused = true)]
async fn a_dead_nodes_running_sandboxes_are_lost_its_paused_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, store) = two_nodes(&dir).await;
    beat(&a, true).await;
    let running = create(&a).await;
    let paused = create(&a).await;
    a.lc.pause(&paused, true).await.unwrap();

    after(10.0).await;
    beat(&b, true).await;
    assert!(b.lc.sweep_nodes().await.unwrap().is_empty(), "a's lease still holds");
    after(6.0).await;
    let dead = b.lc.sweep_nodes().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].node.id.as_str(), dead[0].lost.clone()), ("a", vec![running.to_string()]));
    assert!(b.lc.sweep_nodes().await.unwrap().is_empty(), "declared once");
    assert_eq!(b.lc.node("a").await.unwrap().state, NodeState::Dead);

    // The API sees it lost, with the node and why; its events say so.
    let err = b.lc.get(&running).await.unwrap_err();
    let LifecycleError::NotRunning(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("lost") && message.contains("node a"), "{message}");
    let err = b.lc.connect(&running, None, true).await.unwrap_err();
    assert!(matches!(err, LifecycleError::NotRunning(_)), "{err:?}");
    let events = b.lc.events(&EventQuery { sandbox_id: running.to_string(), ..Default::default() }).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "lost" && e.message.contains("node a")), "{events:?}");
    // Not listed; the paused one is, and cannot be resumed here (its files are on a).
    let (listed, _) = b.lc.list(&Default::default()).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [paused.as_str()]);
    let err = b.lc.connect(&paused, None, true).await.unwrap_err();
    assert!(err.to_string().contains("paused on node a"), "{err}");
    assert_eq!(store.get_sandbox(&paused).await.unwrap().unwrap().state, SandboxState::Paused);
    // A kill of a lost sandbox removes its record.
    b.lc.kill(&running).await.unwrap();
    assert!(store.get_sandbox(&running).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_node_that_comes_back_takes_up_what_it_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, store) = two_nodes(&dir).await;
    beat(&a, true).await;
    let kept = create(&a).await;
    let gone = create(&a).await;
    after(16.0).await;
    beat(&b, true).await;
    b.lc.sweep_nodes().await.unwrap(); // a is dead, both lost
    assert_eq!(store.get_sandbox(&kept).await.unwrap().unwrap().state, SandboxState::Lost);
    // `gone`'s processes did not survive whatever stalled a; `kept` did.
    a.rt.remove(&gone);
    beat(&a, false).await; // a's lease renewed: it rejoins and looks at what it holds
    assert_eq!(a.lc.node("a").await.unwrap().state, NodeState::Active);
    assert_eq!(store.get_sandbox(&kept).await.unwrap().unwrap().state, SandboxState::Running);
    assert_eq!(store.get_sandbox(&gone).await.unwrap().unwrap().state, SandboxState::Lost, "not here: stays lost");
    let events = a.lc.events(&EventQuery { sandbox_id: kept.to_string(), ..Default::default() }).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "found"), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn a_draining_node_resumes_nothing_until_activated() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _store) = two_nodes(&dir).await;
    beat(&a, true).await;
    let id = create(&a).await;
    a.lc.pause(&id, true).await.unwrap();
    b.lc.drain_node("a").await.unwrap();
    let err = a.lc.connect(&id, None, true).await.unwrap_err();
    assert!(err.to_string().contains("draining"), "{err}");
    beat(&a, false).await;
    assert_eq!(a.lc.node("a").await.unwrap().state, NodeState::Draining, "a beat keeps a drain");
    assert!(b.lc.drain_node("zz").await.is_err());
    b.lc.activate_node("a").await.unwrap();
    assert!(a.lc.connect(&id, None, true).await.unwrap().1, "resumed");
}

#[tokio::test(start_paused = true)]
async fn a_paused_sandbox_of_a_draining_node_is_taken_over_once_and_handed_back_on_failure() {
    use super::super::fake_runtime::Op;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, store) = nodes_sharing(&dir, true).await;
    beat(&a, true).await;
    beat(&b, true).await;
    let id = create(&a).await;
    a.lc.pause(&id, true).await.unwrap();
    let own = create(&a).await;
    a.lc.pause(&own, true).await.unwrap();
    // Its node active: b does not take it (requests go to a).
    match b.lc.connect(&id, Some(60), true).await {
        Err(LifecycleError::Conflict(m)) => assert!(m.contains("paused on node a"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A proxied request on a caches a's route of it (paused, refused: no auto-resume); that
    // cache must not make a answer for it once it is draining.
    let sid = SandboxId::parse(&id).unwrap();
    assert!(a.lc.connect_port(&sid, 8080, Default::default()).await.is_err());
    a.lc.drain_node("a").await.unwrap();
    assert_eq!(b.lc.remote_owner(&id).await.unwrap(), None, "b answers: it is where a create would go");
    assert_eq!(a.lc.remote_owner(&id).await.unwrap().map(|n| n.id), Some("b".into()), "a sends it to b");
    // A failed import hands the row back to a, still paused.
    b.rt.fail(Op::Import, 1);
    assert!(b.lc.connect(&id, Some(60), true).await.is_err());
    let row = store.get_sandbox(&id).await.unwrap().unwrap();
    assert_eq!((row.node_id.as_str(), row.state), ("a", SandboxState::Paused));
    // Then it is taken over: b imports and resumes it, the row is b's.
    let (row, resumed) = b.lc.connect(&id, Some(60), true).await.unwrap();
    assert!(resumed);
    assert_eq!((row.node_id.as_str(), row.state), ("b", SandboxState::Running));
    assert_eq!(b.rt.state_of(&id), Some(stasis_runtime::SandboxState::Running));
    assert_eq!(b.rt.count(Op::Import), 2);
    // a never resumes its copy: it removes it, and only it, at its next heartbeat while
    // draining (its own paused sandbox stays).
    assert_eq!(a.rt.state_of(&id), Some(stasis_runtime::SandboxState::Paused));
    assert_eq!(a.rt.count(Op::Resume), 0);
    beat(&a, false).await;
    assert_eq!(a.rt.state_of(&id), None, "the stale copy is removed");
    assert_eq!(a.rt.count(Op::DropLocal), 1);
    assert_eq!(a.rt.count(Op::Kill), 0, "a kill would delete the objects, now b's");
    assert_eq!(a.rt.state_of(&own), Some(stasis_runtime::SandboxState::Paused));
    assert_eq!(a.lc.drop_moved().await.unwrap(), Vec::<String>::new());
    let events = store.events(&EventQuery { sandbox_id: id.to_string(), ..Default::default() }).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "taken_over"), "{events:?}");
}

/// A snapshot's files are on the node that took it: the row says which, the other node
/// sends requests there (`affinity`) and refuses to act on it itself (a create from it,
/// its delete, a capture that would take its name), so no files are left behind.
/// With shared layers (a cluster with an object store) a snapshot is in the bucket: any
/// node makes sandboxes from it (its runtime fetches it; one that cannot says so), any
/// node deletes it, and the node that held it drops its copy once the row is gone.
#[tokio::test(start_paused = true)]
async fn a_shared_snapshot_is_used_and_deleted_anywhere_and_stale_copies_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, store) = nodes_sharing(&dir, true).await;
    beat(&a, true).await;
    beat(&b, true).await;
    let src = create(&a).await;
    let snap = a.lc.snapshot(&src, Some("shared".into()), true).await.unwrap();
    let from = CreateParams { template: "shared".into(), ..params() };
    // b's runtime cannot fetch it (not in the bucket): a clear refusal, nothing made.
    match b.lc.create(from.clone()).await {
        Err(LifecycleError::Conflict(m)) => assert!(m.contains("not in the object store"), "{m}"),
        other => panic!("{other:?}"),
    }
    b.rt.add_snapshot(&snap.id);
    let copy = b.lc.create(from).await.unwrap();
    assert_eq!(copy.node_id, "b", "made on b from a's snapshot");
    // A name of a's snapshot moves to a capture on b.
    let other = create(&b).await;
    let moved = b.lc.snapshot(&other, Some("shared".into()), true).await.unwrap();
    assert_eq!(store.find_snapshot_by_name("shared").await.unwrap().unwrap().id, moved.id);
    assert_eq!(store.get_snapshot(&snap.id).await.unwrap(), None, "the old capture's row is gone");
    assert!(a.rt.has_snapshot(&snap.id), "b could not delete a's files");
    assert!(!b.rt.has_snapshot(&snap.id), "b's fetched copy went with the row");
    assert_eq!(a.lc.drop_deleted_snapshots().await.unwrap(), vec![snap.id.clone()], "a's own copy");
    assert!(!a.rt.has_snapshot(&snap.id));
    assert_eq!(b.lc.drop_deleted_snapshots().await.unwrap(), Vec::<String>::new(), "live rows are kept");
    assert!(b.rt.has_snapshot(&moved.id));
    // Deleted through a, which does not hold it.
    a.lc.delete_snapshot("shared").await.unwrap();
    assert_eq!(store.get_snapshot(&moved.id).await.unwrap(), None);
    assert!(b.rt.has_snapshot(&moved.id), "a could not delete b's files");
    assert_eq!(b.lc.drop_deleted_snapshots().await.unwrap(), vec![moved.id.clone()]);
    assert!(!b.rt.has_snapshot(&moved.id), "b's own copy, deleted through a");
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_is_used_and_deleted_only_on_the_node_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, store) = two_nodes(&dir).await;
    beat(&a, true).await;
    beat(&b, true).await;
    let src = create(&a).await;
    let snap = a.lc.snapshot(&src, Some("warm".into()), true).await.unwrap();
    assert_eq!(snap.node_id, "a");
    assert_eq!(store.get_snapshot(&snap.id).await.unwrap().unwrap().node_id, "a");
    assert_eq!(a.lc.affinity("stasis/warm:default").await.unwrap(), Affinity::Here);
    let Affinity::Node { node, snapshot } = b.lc.affinity("stasis/warm:default").await.unwrap() else {
        panic!("b sends it to a")
    };
    assert_eq!((node.id.as_str(), snapshot.as_str()), ("a", snap.id.as_str()));
    assert_eq!(b.lc.affinity(&snap.id).await.unwrap(), Affinity::Node { node, snapshot }, "by id too");
    assert_eq!(b.lc.affinity("base").await.unwrap(), Affinity::Free, "a template: placed freely");

    let from_warm = CreateParams { template: "warm".into(), ..params() };
    let held = |r: Result<_, LifecycleError>| match r {
        Err(LifecycleError::Conflict(m)) => assert!(m.contains("held by node a"), "{m}"),
        other => panic!("{other:?}"),
    };
    held(b.lc.create(from_warm.clone()).await.map(|_| ()));
    held(b.lc.delete_snapshot("warm").await);
    let other = create(&b).await;
    held(b.lc.snapshot(&other, Some("warm".into()), true).await.map(|_| ()));
    assert_eq!(store.find_snapshot_by_name("warm").await.unwrap().unwrap().id, snap.id, "the name stays on a's");
    assert!(a.rt.has_snapshot(&snap.id), "a's files are untouched");
    assert_eq!(b.rt.count(Op::Snapshot), b.rt.count(Op::DeleteSnapshot), "b's refused capture is dropped");

    // On a: made and deleted.
    let copy = a.lc.create(from_warm).await.unwrap();
    assert_eq!(copy.node_id, "a");
    a.lc.delete_snapshot("warm").await.unwrap();
    assert!(!a.rt.has_snapshot(&snap.id));
    assert_eq!(store.get_snapshot(&snap.id).await.unwrap(), None);
}
