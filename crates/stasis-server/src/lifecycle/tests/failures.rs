//! A runtime operation that fails half-way leaves the sandbox in a defined, usable state;
//! a restart reconciles rows with what the runtime holds.

use stasis_runtime::{Recovered, Runtime, SandboxState as RtState};
use stasis_store::{SandboxState, Store};

use super::super::fake_runtime::Op;
use super::super::LifecycleError;
use super::harness;

#[tokio::test(start_paused = true)]
async fn a_failed_pause_leaves_the_sandbox_running() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.rt.fail(Op::Pause, 1);
    let err = h.lc.pause(&id, true).await.unwrap_err();
    assert!(matches!(err, LifecycleError::Runtime(_)), "{err:?}");
    assert_eq!(h.state(&id).await, Some(SandboxState::Running), "back to running, not stuck in pausing");
    assert_eq!(h.rt.state_of(&id), Some(RtState::Running));
    h.lc.connect(&id, Some(60), true).await.expect("still usable");
    assert_eq!(h.lc.pause(&id, true).await.unwrap().state, SandboxState::Paused, "a later pause works");
}

#[tokio::test(start_paused = true)]
async fn a_failed_resume_leaves_it_paused_with_its_checkpoint() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.lc.pause(&id, true).await.unwrap();
    h.rt.fail(Op::Resume, 1);
    assert!(h.lc.connect(&id, None, true).await.is_err());
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused));
    assert!(h.lc.connect(&id, None, true).await.unwrap().1, "the next resume works");
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_leaves_no_row() {
    let h = harness().await;
    h.rt.fail(Op::Create, 1);
    assert!(h.lc.create(super::params()).await.is_err());
    let rows = h.store.sandboxes_in_states(&SandboxState::ALL).await.unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test(start_paused = true)]
async fn a_restart_reconciles_every_interrupted_operation() {
    let h = harness().await;
    let pausing = h.create(|_| {}).await;
    let resuming = h.create(|_| {}).await;
    let creating = h.create(|_| {}).await;
    let lost = h.create(|_| {}).await;
    let gone = h.create(|_| {}).await;
    let paused = h.create(|_| {}).await;
    h.lc.pause(&paused, true).await.unwrap();
    let s = &h.store;
    // What a crash mid-operation leaves: the row says which operation was under way.
    s.transition(&pausing, &[SandboxState::Running], SandboxState::Pausing).await.unwrap();
    h.rt.insert(&pausing, RtState::Paused); // the dump completed before the crash
    s.transition(&resuming, &[SandboxState::Running], SandboxState::Resuming).await.unwrap();
    s.transition(&creating, &[SandboxState::Running], SandboxState::Creating).await.unwrap();
    h.rt.set_recovered(&lost, Ok(Recovered::MemoryLost));
    h.rt.kill(&gone).await.unwrap();

    let h = h.restart().await;
    assert_eq!(h.state(&pausing).await, Some(SandboxState::Paused), "a completed dump is committed");
    assert_eq!(h.state(&resuming).await, Some(SandboxState::Running), "a completed restore is adopted");
    assert_eq!(h.state(&creating).await, None, "a half-made sandbox is cleaned");
    assert_eq!(h.rt.state_of(&creating), None);
    let lost_row = h.row(&lost).await.unwrap();
    assert_eq!(lost_row.state, SandboxState::Paused, "processes gone: kept as a paused sandbox");
    assert!(!lost_row.pause_memory, "filesystem only");
    assert_eq!(h.state(&gone).await, None, "no trace in the runtime: row removed");
    assert_eq!(h.state(&paused).await, Some(SandboxState::Paused), "nothing paused is dropped");
}

#[tokio::test(start_paused = true)]
async fn a_failed_snapshot_leaves_the_source_running_and_says_why_in_its_events() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.rt.fail(Op::Snapshot, 1);
    let err = h.lc.snapshot(&id, None, true).await.unwrap_err();
    assert!(matches!(err, LifecycleError::Runtime(_)), "{err:?}");
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
    let q = stasis_store::EventQuery { sandbox_id: id.to_string(), ..Default::default() };
    let events = h.lc.events(&q).await.unwrap();
    let failed = events.iter().find(|e| e.kind == "snapshot-failed").expect("a snapshot-failed event");
    assert_eq!(failed.level, stasis_store::Level::Error);
    assert!(failed.message.contains("injected Snapshot failure"), "{}", failed.message);
    h.lc.snapshot(&id, None, true).await.expect("a later snapshot works");
}
