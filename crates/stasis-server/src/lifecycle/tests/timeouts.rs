//! Timeouts (kill or auto-pause at the end), paused time, connect and setTimeout, the idle
//! timeout and the retention of paused sandboxes.

use std::time::Duration;

use stasis_runtime::SandboxState as RtState;
use stasis_store::SandboxState;

use super::super::fake_runtime::Op;
use super::super::{LifecycleConfig, LifecycleError};
use super::{after, harness, harness_with};

#[tokio::test(start_paused = true)]
async fn the_timeout_kills_a_sandbox_without_auto_pause() {
    let h = harness().await;
    h.lc.start();
    let id = h.create(|p| p.timeout_secs = 2).await;
    after(1.5).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Running), "not before its end");
    after(1.0).await;
    assert_eq!(h.state(&id).await, None, "killed at its end: no row");
    assert_eq!(h.rt.state_of(&id), None, "and nothing left in the runtime");
    assert_eq!(h.rt.count(Op::Kill), 1);
    assert_eq!(h.rt.count(Op::Pause), 0);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_pauses_with_auto_pause_and_the_policy_survives_resume() {
    let h = harness().await;
    h.lc.start();
    let id = h.create_auto_pause(2).await;
    after(2.5).await;
    let row = h.row(&id).await.unwrap();
    assert_eq!(row.state, SandboxState::Paused);
    assert!(row.paused_at.is_some());
    assert_eq!(h.rt.state_of(&id), Some(RtState::Paused));

    // Resumed with a new 2 s timeout, it pauses again at its next end.
    let (row, resumed) = h.lc.connect(&id, Some(2), true).await.unwrap();
    assert!(resumed);
    assert_eq!(row.state, SandboxState::Running);
    assert_eq!(row.paused_at, None);
    after(1.5).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
    after(1.0).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused));
    assert_eq!(h.rt.count(Op::Pause), 2);
    assert_eq!(h.rt.count(Op::Kill), 0, "auto-pause never kills");
}

#[tokio::test(start_paused = true)]
async fn paused_time_does_not_count_and_connect_never_shortens() {
    let h = harness().await;
    h.lc.start();
    let id = h.create_auto_pause(4).await;
    h.lc.pause(&id, true).await.unwrap();
    after(5.0).await;
    // The 4 s timeout applies from the resume: 5 s paused did not use it up.
    let (_, resumed) = h.lc.connect(&id, None, true).await.unwrap();
    assert!(resumed);
    assert_eq!(h.secs_left(&id).await, 4.0);

    // Connect extends a running sandbox but never shortens it.
    let (_, resumed) = h.lc.connect(&id, Some(100), true).await.unwrap();
    assert!(!resumed);
    assert_eq!(h.secs_left(&id).await, 100.0);
    h.lc.connect(&id, Some(5), true).await.unwrap();
    assert_eq!(h.secs_left(&id).await, 100.0, "connect must not shorten");
    // setTimeout may shorten.
    h.lc.set_timeout(&id, 30).await.unwrap();
    assert_eq!(h.secs_left(&id).await, 30.0);
    after(29.0).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
    after(1.5).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused));
}

#[tokio::test(start_paused = true)]
async fn set_timeout_on_a_paused_sandbox_is_not_found_as_e2b_answers() {
    let h = harness().await;
    let id = h
        .create(|p| {
            p.auto_pause = true;
            p.timeout_secs = 40;
        })
        .await;
    h.lc.pause(&id, true).await.unwrap();
    match h.lc.set_timeout(&id, 10).await {
        Err(LifecycleError::NotRunning(m)) => assert!(m.contains("is paused"), "{m}"),
        other => panic!("setTimeout of a paused sandbox: {other:?}"),
    }
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused), "and it stays paused");
    after(60.0).await;
    h.lc.connect(&id, None, true).await.unwrap();
    assert_eq!(h.secs_left(&id).await, 40.0, "unchanged: it resumes with its own timeout");
}

#[tokio::test(start_paused = true)]
async fn set_timeout_zero_acts_at_once_by_the_policy() {
    let h = harness().await;
    let paused = h
        .create(|p| {
            p.auto_pause = true;
            p.timeout_secs = 40;
        })
        .await;
    let row = h.lc.set_timeout(&paused, 0).await.unwrap();
    assert_eq!(row.state, SandboxState::Paused, "paused before setTimeout returns");
    assert_eq!(h.rt.state_of(&paused), Some(RtState::Paused));
    assert!(h.lc.set_timeout(&paused, 0).await.is_err(), "a paused sandbox is not among the running");
    assert_eq!(h.rt.count(Op::Pause), 1, "a paused sandbox stays as it is");
    h.lc.connect(&paused, None, true).await.unwrap();
    assert_eq!(h.secs_left(&paused).await, 40.0, "it resumes with the timeout it had");

    let killed = h.create(|_| {}).await;
    h.lc.set_timeout(&killed, 0).await.unwrap();
    assert_eq!(h.state(&killed).await, None, "killed before setTimeout returns");
    assert_eq!(h.rt.count(Op::Kill), 1);
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_counts_only_while_no_client_is_connected() {
    let h = harness().await;
    h.lc.start();
    let id = h
        .create(|p| {
            p.timeout_secs = 3000;
            p.idle_timeout_secs = Some(60);
        })
        .await;
    assert_eq!(h.secs_left(&id).await, 60.0, "no client: the end is idle start + 60 s");

    // While a client connection is open, the normal end applies, however long it stays.
    let conn = h.request(&id, stasis_runtime::ENVD_PORT).await.unwrap();
    assert_eq!(h.secs_left(&id).await, 3000.0);
    after(120.0).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Running), "a connected client keeps it");
    drop(conn);
    assert_eq!(h.secs_left(&id).await, 60.0, "idle again: the end is now + 60 s");
    after(59.0).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
    after(1.5).await;
    assert_eq!(h.state(&id).await, None, "idle for 60 s: its timeout action (kill) ran");
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_auto_pauses_and_restarts_at_resume() {
    let h = harness().await;
    h.lc.start();
    let id = h
        .create(|p| {
            p.timeout_secs = 3000;
            p.idle_timeout_secs = Some(60);
            p.auto_pause = true;
        })
        .await;
    after(60.5).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused));
    after(600.0).await;
    h.lc.connect(&id, None, true).await.unwrap();
    assert_eq!(h.secs_left(&id).await, 60.0, "the idle time counts from the resume, not from before the pause");
}

#[tokio::test(start_paused = true)]
async fn paused_sandboxes_are_kept_without_a_retention() {
    let h = harness().await;
    h.lc.start();
    let id = h.create_auto_pause(1).await;
    after(3600.0).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused), "no expiry by default");
    assert_eq!(h.rt.count(Op::Kill), 0);
}

#[tokio::test(start_paused = true)]
async fn the_retention_kills_sandboxes_paused_longer_than_it() {
    let h =
        harness_with(LifecycleConfig { paused_retention: Some(Duration::from_secs(2)), ..Default::default() }).await;
    h.lc.start();
    let id = h.create(|_| {}).await;
    let running = h.create(|_| {}).await;
    h.lc.pause(&id, true).await.unwrap();
    after(1.5).await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused));
    after(1.0).await;
    assert_eq!(h.state(&id).await, None, "paused for longer than the retention: killed");
    assert_eq!(h.rt.state_of(&id), None);
    assert_eq!(h.state(&running).await, Some(SandboxState::Running), "the retention is for paused sandboxes only");
}
