//! The [`Store`] semantics every implementation must have, as one test suite run against
//! each of them (`store_suite!` in `sqlite/tests.rs` and `postgres/tests.rs`): round
//! trips, compare-and-set transitions, keyset pagination, the list query encodings,
//! snapshots and their names, API keys, volumes and their mounts, secrets.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;

use crate::api_key::hash_api_key;
use crate::model::{FailedAction, Operation, SandboxRow, SandboxState, SnapshotRow};
use crate::query::{metadata_filter_param, ListQuery, SnapshotQuery};
use crate::{EventQuery, Heartbeat, Level, NodeState, Resources, SandboxEvent, Store, StoreError};

/// One fresh database of one implementation.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type S: Store + Clone + 'static;
    /// A new handle on this backend's database: a second connection, as a second process
    /// (or node) would have.
    async fn open(&self) -> Self::S;
}

/// Generates one `#[tokio::test]` per suite test, each on a fresh `$backend` (an async
/// expression giving a [`Backend`]).
#[macro_export]
macro_rules! store_suite {
    ($backend:expr) => {
        $crate::store_suite!(@each $backend; sandbox_round_trip_and_duplicate_insert, a_failed_action_round_trips_and_survives_reopening, update_never_overwrites_a_concurrent_transition, transition_is_compare_and_set, concurrent_transitions_have_exactly_one_winner, a_paused_sandbox_is_taken_over_by_one_node, default_listing_is_running_and_paused_newest_first, limit_one_pages_through_each_row_exactly_once, pagination_is_stable_under_concurrent_inserts_and_deletes, bad_token_and_limit_are_query_errors, metadata_filters_round_trip_through_both_sdk_encodings, template_and_started_after_filters, snapshots_by_id_and_unique_name, a_snapshot_records_the_node_that_holds_it, snapshot_listing_pages_newest_first, api_keys_are_hashed_and_verified, events_are_kept_in_order_filtered_and_pruned, volumes_have_unique_names_and_are_kept_while_mounted, secrets_have_unique_names_versions_and_pages, nodes_register_renew_and_change_state, an_expired_node_loses_its_running_sandboxes_once);
    };
    (@each $backend:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::suite::$name($backend.await).await
            }
        )*
    };
}

pub fn sandbox(id: &str, state: SandboxState, started_at: i64) -> SandboxRow {
    SandboxRow {
        id: id.into(),
        template_id: "base".into(),
        alias: None,
        client_id: "client".into(),
        state,
        metadata: BTreeMap::new(),
        env_vars: BTreeMap::from([("FOO".into(), "bar".into())]),
        cpu_count: 2,
        memory_mb: 512,
        disk_size_mb: 1024,
        envd_access_token: Some("envd-token".into()),
        traffic_access_token: None,
        started_at,
        end_at: started_at + 300_000,
        timeout_secs: 300,
        auto_pause: true,
        auto_resume: false,
        pause_memory: true,
        secure: true,
        allow_internet_access: true,
        network: serde_json::json!({"allowOut": ["1.1.1.1"], "denyOut": []}),
        paused_at: None,
        idle_timeout_secs: Some(60),
        created_at: started_at,
        updated_at: started_at,
        last_error: None,
        node_id: crate::LOCAL_NODE.into(),
    }
}

fn ids(rows: &[SandboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

pub async fn sandbox_round_trip_and_duplicate_insert<B: Backend>(b: B) {
    let store = b.open().await;
    let mut row = sandbox("abc123", SandboxState::Creating, 1_700_000_000_000);
    row.metadata = BTreeMap::from([("k&=".into(), "v/?".into()), ("ü".into(), "✓".into())]);
    row.alias = Some("my-template".into());
    row.node_id = "node-a".into();
    store.insert_sandbox(&row).await.unwrap();
    let got = store.get_sandbox("abc123").await.unwrap().unwrap();
    assert_eq!(got, SandboxRow { updated_at: got.updated_at, ..row.clone() });
    assert!(matches!(store.insert_sandbox(&row).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.get_sandbox("nope").await.unwrap(), None);

    // Survives reopening.
    drop(store);
    let store = b.open().await;
    assert_eq!(store.get_sandbox("abc123").await.unwrap().unwrap().metadata, row.metadata);
    assert!(store.delete_sandbox("abc123").await.unwrap());
    assert!(!store.delete_sandbox("abc123").await.unwrap());
}

pub async fn a_failed_action_round_trips_and_survives_reopening<B: Backend>(b: B) {
    let store = b.open().await;
    store.insert_sandbox(&sandbox("f1", SandboxState::Running, 1)).await.unwrap();
    let mut row = store.get_sandbox("f1").await.unwrap().unwrap();
    let failed = FailedAction {
        operation: Operation::Pause,
        message: "checkpoint (dump) failed: \"quoted\" ✗".into(),
        at: 1_700_000_000_123,
        attempts: 3,
        next_attempt_at: Some(1_700_000_004_123),
    };
    row.last_error = Some(failed.clone());
    store.update_sandbox(&row).await.unwrap();
    drop(store);
    let store = b.open().await;
    let got = store.get_sandbox("f1").await.unwrap().unwrap();
    assert_eq!(got.last_error, Some(failed));
    // A transition that clears it (a later success) writes NULL.
    store
        .transition_with("f1", &[SandboxState::Running], SandboxState::Paused, Box::new(|r| r.last_error = None))
        .await
        .unwrap();
    assert_eq!(store.get_sandbox("f1").await.unwrap().unwrap().last_error, None);
}

pub async fn update_never_overwrites_a_concurrent_transition<B: Backend>(b: B) {
    let store = b.open().await;
    store.insert_sandbox(&sandbox("s1", SandboxState::Running, 1)).await.unwrap();
    let mut stale = store.get_sandbox("s1").await.unwrap().unwrap();
    stale.end_at = 99;
    let updated = store.update_sandbox(&stale).await.unwrap();
    assert_eq!(updated.end_at, 99);
    store.transition("s1", &[SandboxState::Running], SandboxState::Pausing).await.unwrap();
    stale.end_at = 100;
    match store.update_sandbox(&stale).await {
        Err(StoreError::Conflict { current }) => assert_eq!(current, SandboxState::Pausing),
        other => panic!("unexpected {other:?}"),
    }
    let now = store.get_sandbox("s1").await.unwrap().unwrap();
    assert_eq!((now.state, now.end_at), (SandboxState::Pausing, 99));
    let missing = sandbox("ghost", SandboxState::Running, 1);
    assert!(matches!(store.update_sandbox(&missing).await, Err(StoreError::NotFound)));
}

pub async fn transition_is_compare_and_set<B: Backend>(b: B) {
    let store = b.open().await;
    store.insert_sandbox(&sandbox("s1", SandboxState::Running, 1)).await.unwrap();
    let row = store.transition("s1", &[SandboxState::Running], SandboxState::Pausing).await.unwrap();
    assert_eq!(row.state, SandboxState::Pausing);
    match store.transition("s1", &[SandboxState::Running], SandboxState::Killing).await {
        Err(StoreError::Conflict { current }) => assert_eq!(current, SandboxState::Pausing),
        other => panic!("unexpected {other:?}"),
    }
    let row = store
        .transition_with(
            "s1",
            &[SandboxState::Pausing],
            SandboxState::Paused,
            Box::new(|r| {
                r.paused_at = Some(42);
                r.pause_memory = false;
            }),
        )
        .await
        .unwrap();
    assert_eq!((row.state, row.paused_at, row.pause_memory), (SandboxState::Paused, Some(42), false));
    assert_eq!(store.get_sandbox("s1").await.unwrap().unwrap(), row);
    assert!(matches!(
        store.transition("ghost", &[SandboxState::Running], SandboxState::Killing).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn a_paused_sandbox_is_taken_over_by_one_node<B: Backend>(b: B) {
    let (a, b) = (b.open().await, b.open().await);
    let mut row = sandbox("moved", SandboxState::Paused, 1);
    row.node_id = "old".into();
    a.insert_sandbox(&row).await.unwrap();
    // Two nodes claim it at once (and the old node resumes it itself): one wins.
    let mut tasks = Vec::new();
    for (store, node) in [(a.clone(), "n1"), (b.clone(), "n2"), (a.clone(), "n3"), (b.clone(), "n4")] {
        tasks.push(tokio::spawn(async move {
            store.move_sandbox("moved", (SandboxState::Paused, "old"), (SandboxState::Resuming, node)).await
        }));
    }
    let own = b.transition("moved", &[SandboxState::Paused], SandboxState::Resuming);
    let own = own.await;
    let mut winners: Vec<String> = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => winners.push(r.node_id),
            Err(StoreError::Conflict { current }) => assert_eq!(current, SandboxState::Resuming),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len() + own.is_ok() as usize, 1, "{winners:?} {own:?}");
    let stored = a.get_sandbox("moved").await.unwrap().unwrap();
    assert_eq!(stored.state, SandboxState::Resuming);
    if let Some(w) = winners.first() {
        assert_eq!(&stored.node_id, w);
        // Its undo: back to the old node, paused; only from the winner's row.
        assert!(matches!(
            a.move_sandbox("moved", (SandboxState::Resuming, "elsewhere"), (SandboxState::Paused, "old")).await,
            Err(StoreError::Conflict { .. })
        ));
        let back = a.move_sandbox("moved", (SandboxState::Resuming, w), (SandboxState::Paused, "old")).await.unwrap();
        assert_eq!((back.state, back.node_id.as_str()), (SandboxState::Paused, "old"));
    }
    assert!(matches!(
        a.move_sandbox("ghost", (SandboxState::Paused, "old"), (SandboxState::Resuming, "x")).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn concurrent_transitions_have_exactly_one_winner<B: Backend>(b: B) {
    // Two stores = two connections on one database, as with two processes.
    let (a, b) = (b.open().await, b.open().await);
    for i in 0..20 {
        let id = format!("race{i}");
        a.insert_sandbox(&sandbox(&id, SandboxState::Running, i)).await.unwrap();
        let mut tasks = Vec::new();
        for (store, to) in [
            (a.clone(), SandboxState::Pausing),
            (b.clone(), SandboxState::Killing),
            (a.clone(), SandboxState::Killing),
            (b.clone(), SandboxState::Pausing),
        ] {
            let id = id.clone();
            tasks.push(tokio::spawn(async move { store.transition(&id, &[SandboxState::Running], to).await }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(row) => winners.push(row.state),
                Err(StoreError::Conflict { current }) => {
                    assert!(matches!(current, SandboxState::Pausing | SandboxState::Killing))
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {i}: {winners:?}");
        let stored = b.get_sandbox(&id).await.unwrap().unwrap();
        assert_eq!(stored.state, winners[0]);
    }
}

async fn seed_listing(store: &impl Store) {
    // (id, state, started_at): two share a start time to exercise the id tie-break.
    for (id, state, at) in [
        ("a1", SandboxState::Running, 100),
        ("b2", SandboxState::Paused, 200),
        ("c3", SandboxState::Running, 300),
        ("d4", SandboxState::Paused, 300),
        ("e5", SandboxState::Pausing, 400),
        ("f6", SandboxState::Resuming, 500),
        ("g7", SandboxState::Creating, 600),
        ("h8", SandboxState::Killed, 700),
        ("i9", SandboxState::Killing, 800),
    ] {
        store.insert_sandbox(&sandbox(id, state, at)).await.unwrap();
    }
}

pub async fn default_listing_is_running_and_paused_newest_first<B: Backend>(b: B) {
    let store = b.open().await;
    seed_listing(&store).await;
    let (rows, next) = store.list_sandboxes(&ListQuery::default()).await.unwrap();
    assert_eq!(ids(&rows), ["f6", "e5", "d4", "c3", "b2", "a1"]);
    assert_eq!(next, None);

    let q = ListQuery::from_query_string("state=paused").unwrap();
    let (rows, _) = store.list_sandboxes(&q).await.unwrap();
    assert_eq!(ids(&rows), ["f6", "d4", "b2"]);

    let q = ListQuery::from_query_string("state=running&order=asc").unwrap();
    let (rows, _) = store.list_sandboxes(&q).await.unwrap();
    assert_eq!(ids(&rows), ["a1", "c3", "e5"]);

    let q = ListQuery { states: vec![SandboxState::Creating, SandboxState::Killing], ..ListQuery::default() };
    let (rows, _) = store.list_sandboxes(&q).await.unwrap();
    assert_eq!(ids(&rows), ["i9", "g7"]);

    let recovery = store.sandboxes_in_states(&[SandboxState::Pausing, SandboxState::Killing]).await.unwrap();
    assert_eq!(ids(&recovery), ["e5", "i9"]);
}

pub async fn limit_one_pages_through_each_row_exactly_once<B: Backend>(b: B) {
    let store = b.open().await;
    seed_listing(&store).await;
    let mut q = ListQuery::from_query_string("state=running,paused&limit=1").unwrap();
    let mut seen = Vec::new();
    loop {
        let (rows, next) = store.list_sandboxes(&q).await.unwrap();
        assert!(rows.len() <= 1);
        seen.extend(rows.into_iter().map(|r| r.id));
        match next {
            Some(t) => q.next_token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, ["f6", "e5", "d4", "c3", "b2", "a1"]);
}

pub async fn pagination_is_stable_under_concurrent_inserts_and_deletes<B: Backend>(b: B) {
    let store = b.open().await;
    for i in 0..10 {
        store.insert_sandbox(&sandbox(&format!("s{i:02}"), SandboxState::Running, 1000 + i)).await.unwrap();
    }
    let mut q = ListQuery { limit: 3, ..ListQuery::default() };
    let mut seen = Vec::new();
    let mut page = 0;
    loop {
        let (rows, next) = store.list_sandboxes(&q).await.unwrap();
        seen.extend(rows.iter().map(|r| r.id.clone()));
        // Between pages: newer sandboxes arrive, one with the same start time as the page
        // boundary but a smaller id (already passed), and an unseen row goes away.
        page += 1;
        store.insert_sandbox(&sandbox(&format!("new{page}"), SandboxState::Running, 5000 + page)).await.unwrap();
        if let Some(last) = rows.last() {
            let twin = format!("{}a", &last.id[..1]);
            let _ = store.insert_sandbox(&sandbox(&twin, SandboxState::Running, last.started_at)).await;
        }
        if page == 2 {
            store.delete_sandbox("s01").await.unwrap();
        }
        match next {
            Some(t) => q.next_token = Some(t),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in {seen:?}");
    let expected: Vec<String> = (0..10).rev().filter(|i| *i != 1).map(|i| format!("s{i:02}")).collect();
    let originals: Vec<String> = seen.iter().filter(|id| id.starts_with('s') && id.len() == 3).cloned().collect();
    assert_eq!(originals, expected);
}

pub async fn bad_token_and_limit_are_query_errors<B: Backend>(b: B) {
    let store = b.open().await;
    let q = ListQuery { next_token: Some("garbage!".into()), ..ListQuery::default() };
    assert!(matches!(store.list_sandboxes(&q).await, Err(StoreError::InvalidQuery(_))));
    let q = ListQuery { limit: 0, ..ListQuery::default() };
    assert!(matches!(store.list_sandboxes(&q).await, Err(StoreError::InvalidQuery(_))));
    let q = ListQuery { limit: 1000, ..ListQuery::default() };
    assert!(store.list_sandboxes(&q).await.is_ok());
}

pub async fn metadata_filters_round_trip_through_both_sdk_encodings<B: Backend>(b: B) {
    let store = b.open().await;
    let mut hit = sandbox("hit", SandboxState::Running, 3);
    hit.metadata = BTreeMap::from([
        ("user".into(), "a b".into()),
        ("k&=".into(), "v/?".into()),
        ("ключ".into(), "значение ✓".into()),
        ("other".into(), "x".into()),
    ]);
    let mut near = sandbox("near", SandboxState::Paused, 2);
    near.metadata = BTreeMap::from([("user".into(), "a b".into()), ("k&=".into(), "v/".into())]);
    let plain = sandbox("plain", SandboxState::Running, 1);
    for r in [&hit, &near, &plain] {
        store.insert_sandbox(r).await.unwrap();
    }

    // Exactly as captured from the SDKs (JS, then Python).
    for raw in [
        "metadata=user%3Da%252520b%26k%252526%25253D%3Dv%25252F%25253F&state=running,paused&limit=2",
        "metadata=user%3Da%252520b%26k%252526%25253D%3Dv%252F%25253F&state=running%2Cpaused&limit=2",
    ] {
        let q = ListQuery::from_query_string(raw).unwrap();
        let (rows, next) = store.list_sandboxes(&q).await.unwrap();
        assert_eq!(ids(&rows), ["hit"], "{raw}");
        assert_eq!(next, None);
    }

    // Unicode, built the way the JS SDK builds it.
    let param = metadata_filter_param([("ключ", "значение ✓"), ("user", "a b")]);
    let raw = format!("metadata={}", crate::query::encode_uri_component(&param));
    let (rows, _) = store.list_sandboxes(&ListQuery::from_query_string(&raw).unwrap()).await.unwrap();
    assert_eq!(ids(&rows), ["hit"]);

    // Single-key filter matches both; a filter that matches nothing returns nothing.
    let q = ListQuery { metadata: vec![("user".into(), "a b".into())], ..ListQuery::default() };
    assert_eq!(ids(&store.list_sandboxes(&q).await.unwrap().0), ["hit", "near"]);
    let q = ListQuery { metadata: vec![("user".into(), "nobody".into())], ..ListQuery::default() };
    assert!(store.list_sandboxes(&q).await.unwrap().0.is_empty());
    let q = ListQuery {
        metadata: vec![("user".into(), "a b".into()), ("user".into(), "x".into())],
        ..ListQuery::default()
    };
    assert!(store.list_sandboxes(&q).await.unwrap().0.is_empty());
}

pub async fn template_and_started_after_filters<B: Backend>(b: B) {
    let store = b.open().await;
    let mut a = sandbox("a", SandboxState::Running, 1000);
    a.template_id = "tpl123".into();
    a.alias = Some("python".into());
    store.insert_sandbox(&a).await.unwrap();
    store.insert_sandbox(&sandbox("b", SandboxState::Running, 2000)).await.unwrap();
    for (t, want) in [("tpl123", vec!["a"]), ("python", vec!["a"]), ("base", vec!["b"])] {
        let q = ListQuery { template: Some(t.into()), ..ListQuery::default() };
        assert_eq!(ids(&store.list_sandboxes(&q).await.unwrap().0), want);
    }
    let q = ListQuery { started_after: Some(1001), ..ListQuery::default() };
    assert_eq!(ids(&store.list_sandboxes(&q).await.unwrap().0), ["b"]);
    let q = ListQuery { started_after: Some(1000), ..ListQuery::default() };
    assert_eq!(ids(&store.list_sandboxes(&q).await.unwrap().0), ["b", "a"], "inclusive: a started at 1000");
    let q = ListQuery { started_after: Some(2001), ..ListQuery::default() };
    assert!(store.list_sandboxes(&q).await.unwrap().0.is_empty());
    // All filters at once, ascending, as the JS SDK sends them.
    let q = ListQuery::from_query_string(
        "state=running&startedAfter=1970-01-01T00%3A00%3A01.000Z&template=base&order=asc&limit=10",
    )
    .unwrap();
    assert_eq!(ids(&store.list_sandboxes(&q).await.unwrap().0), ["b"]);
    let q = ListQuery::from_query_string("startedAfter=1970-01-01T00%3A00%3A00.999%2B00%3A00&order=asc").unwrap();
    assert_eq!(ids(&store.list_sandboxes(&q).await.unwrap().0), ["a", "b"], "Python's isoformat with an offset");
}

pub fn snapshot(id: &str, names: &[&str], created_at: i64) -> SnapshotRow {
    SnapshotRow {
        id: id.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        source_sandbox_id: "src".into(),
        template_id: "base".into(),
        memory: true,
        size_bytes: 1 << 33,
        created_at,
        node_id: crate::LOCAL_NODE.into(),
    }
}

pub async fn snapshots_by_id_and_unique_name<B: Backend>(b: B) {
    let store = b.open().await;
    let s1 = snapshot("team/snap1:default", &["snap1", "latest"], 10);
    store.insert_snapshot(&s1).await.unwrap();
    assert_eq!(store.get_snapshot("team/snap1:default").await.unwrap(), Some(s1.clone()));
    assert_eq!(store.find_snapshot_by_name("latest").await.unwrap(), Some(s1.clone()));
    assert_eq!(store.resolve_snapshot("snap1").await.unwrap(), Some(s1.clone()));
    assert_eq!(store.resolve_snapshot("team/snap1:default").await.unwrap(), Some(s1.clone()));
    assert_eq!(store.resolve_snapshot("other").await.unwrap(), None);

    // A taken name fails the whole insert: the snapshot row is not left behind.
    let s2 = snapshot("s2", &["fresh", "latest"], 20);
    assert!(matches!(store.insert_snapshot(&s2).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.get_snapshot("s2").await.unwrap(), None);
    assert_eq!(store.find_snapshot_by_name("fresh").await.unwrap(), None);
    // Same id again.
    assert!(matches!(
        store.insert_snapshot(&snapshot("team/snap1:default", &[], 30)).await,
        Err(StoreError::AlreadyExists(_))
    ));

    // Deleting frees the names.
    assert!(store.delete_snapshot("team/snap1:default").await.unwrap());
    assert!(!store.delete_snapshot("team/snap1:default").await.unwrap());
    assert_eq!(store.find_snapshot_by_name("latest").await.unwrap(), None);
    store.insert_snapshot(&s2).await.unwrap();
    assert_eq!(store.find_snapshot_by_name("latest").await.unwrap().unwrap().id, "s2");
}

/// Creates from a snapshot and its delete go to the node that holds its files: every read
/// says which one.
pub async fn a_snapshot_records_the_node_that_holds_it<B: Backend>(b: B) {
    let store = b.open().await;
    let mut s = snapshot("on-b", &["held-by-b"], 10);
    s.node_id = "node-b".into();
    store.insert_snapshot(&s).await.unwrap();
    store.insert_snapshot(&snapshot("here", &[], 20)).await.unwrap();
    assert_eq!(store.get_snapshot("on-b").await.unwrap().unwrap().node_id, "node-b");
    assert_eq!(store.find_snapshot_by_name("held-by-b").await.unwrap().unwrap().node_id, "node-b");
    assert_eq!(store.resolve_snapshot("held-by-b").await.unwrap().unwrap().node_id, "node-b");
    let (rows, _) = store.list_snapshots(&SnapshotQuery::default()).await.unwrap();
    let nodes: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.node_id.as_str())).collect();
    assert_eq!(nodes, [("here", crate::LOCAL_NODE), ("on-b", "node-b")]);
}

pub async fn snapshot_listing_pages_newest_first<B: Backend>(b: B) {
    let store = b.open().await;
    for i in 0..5 {
        let mut s = snapshot(&format!("snap{i}"), &[&format!("name{i}")], 100 + i);
        if i % 2 == 0 {
            s.source_sandbox_id = "even".into();
        }
        store.insert_snapshot(&s).await.unwrap();
    }
    let mut q = SnapshotQuery { limit: 2, ..SnapshotQuery::default() };
    let mut seen = Vec::new();
    loop {
        let (rows, next) = store.list_snapshots(&q).await.unwrap();
        seen.extend(rows.into_iter().map(|r| r.id));
        match next {
            Some(t) => q.next_token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, ["snap4", "snap3", "snap2", "snap1", "snap0"]);
    let q = SnapshotQuery::from_query_string("sandboxID=even").unwrap();
    let got: Vec<_> = store.list_snapshots(&q).await.unwrap().0.into_iter().map(|r| r.id).collect();
    assert_eq!(got, ["snap4", "snap2", "snap0"]);
    let q = SnapshotQuery::from_query_string("name=name3").unwrap();
    let (rows, _) = store.list_snapshots(&q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].names, ["name3"]);
}

pub async fn api_keys_are_hashed_and_verified<B: Backend>(b: B) {
    let store = b.open().await;
    assert_eq!(store.count_api_keys().await.unwrap(), 0);
    let key = crate::generate_api_key().unwrap();
    let row = store.add_api_key("default", &key).await.unwrap();
    assert_eq!(row.key_hash, hash_api_key(&key));
    assert_ne!(row.key_hash, key);
    store.add_api_key("second", "e2b_other").await.unwrap();
    assert_eq!(store.count_api_keys().await.unwrap(), 2);
    assert!(store.verify_api_key(&key).await.unwrap());
    assert!(store.verify_api_key("e2b_other").await.unwrap());
    assert!(!store.verify_api_key("e2b_wrong").await.unwrap());
    assert!(!store.verify_api_key("").await.unwrap());
    assert!(matches!(store.add_api_key("again", &key).await, Err(StoreError::AlreadyExists(_))));
}

fn event(id: &str, at: i64, level: Level, kind: &str) -> SandboxEvent {
    let fields = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let message = format!("{kind} message");
    SandboxEvent { seq: 0, sandbox_id: id.into(), at, level, kind: kind.into(), message, fields }
}

pub async fn events_are_kept_in_order_filtered_and_pruned<B: Backend>(b: B) {
    let store = b.open().await;
    let a1 = store.add_event(&event("a", 1000, Level::Info, "created")).await.unwrap();
    store.add_event(&event("b", 1500, Level::Info, "created")).await.unwrap();
    store.add_event(&event("a", 2000, Level::Error, "pause-failed")).await.unwrap();
    store.add_event(&event("a", 3000, Level::Info, "paused")).await.unwrap();
    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery { sandbox_id: "a".into(), ..Default::default() };
        f(&mut q);
        q
    };
    let kinds = |v: Vec<SandboxEvent>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(kinds(store.events(&q(|_| {})).await.unwrap()), ["created", "pause-failed", "paused"]);
    let all = store.events(&q(|_| {})).await.unwrap();
    assert_eq!(all[0].fields["k"], "v");
    assert_eq!(all[0].seq, a1);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    let after = EventQuery { after_seq: Some(a1), ..q(|_| {}) };
    assert_eq!(kinds(store.events(&after).await.unwrap()), ["pause-failed", "paused"]);
    assert_eq!(kinds(store.events(&q(|q| q.min_level = Some(Level::Warn))).await.unwrap()), ["pause-failed"]);
    assert_eq!(kinds(store.events(&q(|q| q.search = Some("paused".into()))).await.unwrap()), ["paused"]);
    let newest = q(|q| {
        q.newest_first = true;
        q.limit = Some(1);
    });
    assert_eq!(kinds(store.events(&newest).await.unwrap()), ["paused"]);
    assert_eq!(kinds(store.events(&q(|q| q.until = Some(2000))).await.unwrap()), ["created", "pause-failed"]);
    assert_eq!(kinds(store.events(&q(|q| q.since = Some(2000))).await.unwrap()), ["pause-failed", "paused"]);
    // Survives reopening, as another node would read them.
    drop(store);
    let store = b.open().await;
    assert_eq!(store.prune_events(2000).await.unwrap(), 2);
    assert_eq!(kinds(store.events(&q(|_| {})).await.unwrap()), ["pause-failed", "paused"]);
}

pub async fn volumes_have_unique_names_and_are_kept_while_mounted<B: Backend>(b: B) {
    use crate::{VolumeMount, VolumeRow};
    let store = b.open().await;
    let vol = |id: &str, name: &str, at| VolumeRow {
        id: id.into(),
        name: name.into(),
        token: format!("t-{id}"),
        created_at: at,
    };
    store.insert_volume(&vol("v1", "data", 1)).await.unwrap();
    store.insert_volume(&vol("v2", "cache", 2)).await.unwrap();
    assert!(matches!(store.insert_volume(&vol("v3", "data", 3)).await, Err(StoreError::AlreadyExists(_))));
    assert!(matches!(store.insert_volume(&vol("v1", "other", 3)).await, Err(StoreError::AlreadyExists(_))));
    // Seen from another connection (another process or node).
    let other = b.open().await;
    assert_eq!(other.get_volume("v1").await.unwrap(), Some(vol("v1", "data", 1)));
    assert_eq!(other.find_volume_by_name("cache").await.unwrap().map(|v| v.id), Some("v2".into()));
    assert_eq!(other.find_volume_by_name("nope").await.unwrap(), None);
    let ids: Vec<String> = other.list_volumes().await.unwrap().into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["v1", "v2"]);

    // A sandbox mounts both; a snapshot of it mounts v1.
    store.insert_sandbox(&sandbox("sbx1", SandboxState::Paused, 10)).await.unwrap();
    let m = |v: &str, p: &str| VolumeMount { volume_id: v.into(), path: p.into() };
    store.set_volume_mounts("sbx1", &[m("v1", "/data"), m("v2", "/cache")]).await.unwrap();
    store.set_volume_mounts("snap1", &[m("v1", "/data")]).await.unwrap();
    assert_eq!(other.volume_mounts("sbx1").await.unwrap(), [m("v2", "/cache"), m("v1", "/data")]);
    // A mount of a volume that does not exist is refused, and changes nothing.
    assert!(matches!(store.set_volume_mounts("sbx1", &[m("v9", "/x")]).await, Err(StoreError::NotFound)));
    assert_eq!(store.volume_mounts("sbx1").await.unwrap().len(), 2);

    // Mounted by a sandbox row: kept, naming it.
    match store.delete_volume("v1").await {
        Err(StoreError::InUse { by, .. }) => assert_eq!(by, ["sbx1"]),
        other => panic!("deleting a mounted volume: {other:?}"),
    }
    assert!(store.get_volume("v1").await.unwrap().is_some());
    // Once the sandbox no longer mounts it (or its row is gone), it goes, with the
    // snapshot's mount of it.
    store.set_volume_mounts("sbx1", &[m("v2", "/cache")]).await.unwrap();
    assert!(store.delete_volume("v1").await.unwrap());
    assert_eq!(store.volume_mounts("snap1").await.unwrap(), []);
    assert!(!store.delete_volume("v1").await.unwrap(), "already gone");
    store.delete_sandbox("sbx1").await.unwrap();
    assert!(store.delete_volume("v2").await.unwrap(), "the mount of a deleted sandbox row holds nothing");
    assert_eq!(store.list_volumes().await.unwrap(), []);
    // The name is free again.
    store.insert_volume(&vol("v4", "data", 4)).await.unwrap();
}

pub async fn secrets_have_unique_names_versions_and_pages<B: Backend>(b: B) {
    use crate::{SecretRow, SecretUpdate};
    let store = b.open().await;
    let secret = |id: &str, name: &str, at| SecretRow {
        id: id.into(),
        name: name.into(),
        version: 1,
        metadata: BTreeMap::from([("env".into(), "test".into())]),
        sealed: vec![0, 1, 2, 255],
        created_at: at,
        updated_at: at,
    };
    store.insert_secret(&secret("sec_1", "openai", 1)).await.unwrap();
    store.insert_secret(&secret("sec_2", "github", 2)).await.unwrap();
    store.insert_secret(&secret("sec_3", "zeta ü", 3)).await.unwrap();
    assert!(matches!(store.insert_secret(&secret("sec_9", "openai", 4)).await, Err(StoreError::AlreadyExists(_))));
    assert!(matches!(store.insert_secret(&secret("sec_1", "other", 4)).await, Err(StoreError::AlreadyExists(_))));

    // Seen from another connection (another process or node), by id and by name.
    let other = b.open().await;
    assert_eq!(other.get_secret("sec_1").await.unwrap(), Some(secret("sec_1", "openai", 1)));
    assert_eq!(other.find_secret_by_name("github").await.unwrap().map(|s| s.id), Some("sec_2".into()));
    assert_eq!(other.find_secret_by_name("nope").await.unwrap(), None);

    // An update replaces the sealed value, adds one to the version, keeps the metadata
    // unless given; concurrent updates each get their own version.
    let u = |sealed: &[u8], metadata: Option<BTreeMap<String, String>>| SecretUpdate {
        sealed: sealed.to_vec(),
        metadata,
        updated_at: 10,
    };
    let row = store.update_secret("sec_1", &u(b"v2", None)).await.unwrap();
    assert_eq!((row.version, row.sealed.as_slice(), row.updated_at, row.created_at), (2, &b"v2"[..], 10, 1));
    assert_eq!(row.metadata, BTreeMap::from([("env".into(), "test".into())]));
    let row = store.update_secret("sec_1", &u(b"v3", Some(BTreeMap::new()))).await.unwrap();
    assert_eq!((row.version, row.metadata.len()), (3, 0));
    let updates: Vec<_> = (0..8)
        .map(|_| {
            let s = other.clone();
            tokio::spawn(async move { s.update_secret("sec_2", &u(b"x", None)).await.unwrap().version })
        })
        .collect();
    let mut versions = Vec::new();
    for t in updates {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (2..10).collect::<Vec<i64>>());
    assert!(matches!(store.update_secret("sec_9", &u(b"x", None)).await, Err(StoreError::NotFound)));

    // Pages by name, each secret exactly once; a token this store did not make is refused.
    let (page, next) = other.list_secrets(None, 2).await.unwrap();
    assert_eq!(page.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["github", "openai"]);
    let (page, last) = other.list_secrets(next.as_deref(), 2).await.unwrap();
    assert_eq!(page.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["zeta ü"]);
    assert_eq!(last, None);
    assert_eq!(other.list_secrets(None, 3).await.unwrap().1, None, "no page after an exact fit");
    assert!(matches!(other.list_secrets(Some("zz"), 2).await, Err(StoreError::InvalidQuery(_))));

    assert!(store.delete_secret("sec_1").await.unwrap());
    assert!(!store.delete_secret("sec_1").await.unwrap(), "already gone");
    assert_eq!(other.get_secret("sec_1").await.unwrap(), None);
    // The name is free again.
    store.insert_secret(&secret("sec_4", "openai", 5)).await.unwrap();
}

fn beat(id: &str, at: i64, free_mb: u64) -> Heartbeat {
    Heartbeat {
        id: id.into(),
        url: format!("http://{id}.internal:3000"),
        capacity: Resources { memory_mb: 8192, cpu_count: 4, disk_mb: 100_000 },
        free: Resources { memory_mb: free_mb, cpu_count: 3, disk_mb: 90_000 },
        at,
        lease_until: at + 15_000,
    }
}

pub async fn nodes_register_renew_and_change_state<B: Backend>(b: B) {
    let store = b.open().await;
    assert_eq!(store.get_node("b").await.unwrap(), None);
    let first = store.heartbeat(&beat("b", 1_000, 4096)).await.unwrap();
    assert_eq!((first.state, first.joined_at, first.lease_until), (NodeState::Active, 1_000, 16_000));
    store.heartbeat(&beat("a", 1_000, 100)).await.unwrap();
    let renewed = store.heartbeat(&beat("b", 6_000, 2048)).await.unwrap();
    assert_eq!(renewed.free.memory_mb, 2048);
    assert_eq!((renewed.heartbeat_at, renewed.lease_until, renewed.joined_at), (6_000, 21_000, 1_000));
    assert_eq!(renewed.capacity, Resources { memory_mb: 8192, cpu_count: 4, disk_mb: 100_000 });
    assert_eq!(renewed.url, "http://b.internal:3000");

    // Draining is a compare-and-set, and a heartbeat keeps it.
    let drained = store.set_node_state("b", &[NodeState::Active], NodeState::Draining).await.unwrap();
    assert_eq!(drained.state, NodeState::Draining);
    match store.set_node_state("b", &[NodeState::Active], NodeState::Draining).await {
        Err(StoreError::NodeConflict { current: NodeState::Draining }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        store.set_node_state("zz", &[NodeState::Active], NodeState::Dead).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.heartbeat(&beat("b", 7_000, 2048)).await.unwrap().state, NodeState::Draining);

    let other = b.open().await;
    let ids: Vec<String> = other.list_nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(other.get_node("b").await.unwrap().unwrap().state, NodeState::Draining);
}

pub async fn an_expired_node_loses_its_running_sandboxes_once<B: Backend>(b: B) {
    let (one, two) = (b.open().await, b.open().await);
    one.heartbeat(&beat("dies", 1_000, 1)).await.unwrap(); // lease until 16 000
    one.heartbeat(&beat("lives", 10_000, 1)).await.unwrap(); // lease until 25 000
    let on = |id: &str, state, node: &str| {
        let mut r = sandbox(id, state, 1);
        r.node_id = node.into();
        r
    };
    for row in [
        on("run1", SandboxState::Running, "dies"),
        on("res1", SandboxState::Resuming, "dies"),
        on("pau1", SandboxState::Paused, "dies"),
        on("run2", SandboxState::Running, "lives"),
    ] {
        one.insert_sandbox(&row).await.unwrap();
    }
    assert!(one.expire_nodes(16_000).await.unwrap().is_empty(), "a lease holds until its end");

    // Two nodes sweep at once: the dead node is declared dead once.
    let (x, y) = tokio::join!(one.expire_nodes(20_000), two.expire_nodes(20_000));
    let mut dead: Vec<_> = x.unwrap().into_iter().chain(y.unwrap()).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = dead.pop().unwrap();
    assert_eq!((d.node.id.as_str(), d.node.state), ("dies", NodeState::Dead));
    assert_eq!(d.lost, ["res1", "run1"]);

    let lost = two.get_sandbox("run1").await.unwrap().unwrap();
    assert_eq!(lost.state, SandboxState::Lost);
    let err = lost.last_error.expect("a lost sandbox says why");
    assert_eq!(err.operation, Operation::Run);
    assert!(err.message.contains("node dies"), "{}", err.message);
    assert_eq!(two.get_sandbox("pau1").await.unwrap().unwrap().state, SandboxState::Paused, "paused stays");
    assert_eq!(two.get_sandbox("run2").await.unwrap().unwrap().state, SandboxState::Running, "other node's");
    assert_eq!(two.get_node("lives").await.unwrap().unwrap().state, NodeState::Active);

    // It comes back: active again, joined anew; its lost sandboxes stay lost for it to settle.
    let back = two.heartbeat(&beat("dies", 30_000, 1)).await.unwrap();
    assert_eq!((back.state, back.joined_at), (NodeState::Active, 30_000));
    assert_eq!(one.get_sandbox("res1").await.unwrap().unwrap().state, SandboxState::Lost);
}
