//! Operations on one sandbox are serialised: one that arrives while another is under way
//! waits for it, then acts on the state it left (or reports a conflict), never on a stale one.

use std::time::Duration;

use stasis_runtime::SandboxState as RtState;
use stasis_store::SandboxState;

use super::super::fake_runtime::Op;
use super::super::LifecycleError;
use super::harness;

/// Lets spawned tasks run as far as they can (tokio's clock is paused).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(start_paused = true)]
async fn a_pause_while_pausing_waits_then_finds_it_paused() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    let hold = h.rt.hold(Op::Pause);
    let first = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.pause(&id, true).await }
    });
    hold.entered().await;
    assert_eq!(h.state(&id).await, Some(SandboxState::Pausing), "written before the runtime acts");
    let info = h.lc.get(&id).await.unwrap();
    assert_eq!(info.state.listed_as(), Some("running"), "a pausing sandbox lists as running");
    assert_eq!(h.lc.progress(&id).unwrap().kind, "pausing");

    let second = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.pause(&id, true).await }
    });
    settle().await;
    assert!(!second.is_finished(), "the second pause waits for the first");
    hold.release();
    assert_eq!(first.await.unwrap().unwrap().state, SandboxState::Paused);
    match second.await.unwrap() {
        Err(LifecycleError::Conflict(m)) => assert!(m.contains("already paused"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(h.rt.count(Op::Pause), 1, "one checkpoint, not two");
}

#[tokio::test(start_paused = true)]
async fn a_kill_while_pausing_waits_and_then_wins() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    let hold = h.rt.hold(Op::Pause);
    let pause = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.pause(&id, true).await }
    });
    hold.entered().await;
    let kill = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.kill(&id).await }
    });
    settle().await;
    assert!(!kill.is_finished());
    hold.release();
    pause.await.unwrap().unwrap();
    kill.await.unwrap().unwrap();
    assert_eq!(h.state(&id).await, None);
    assert_eq!(h.rt.state_of(&id), None);
}

#[tokio::test(start_paused = true)]
async fn a_resume_while_killing_finds_nothing() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.lc.pause(&id, true).await.unwrap();
    let hold = h.rt.hold(Op::Kill);
    let kill = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.kill(&id).await }
    });
    hold.entered().await;
    assert!(h.lc.get(&id).await.is_err(), "a sandbox being killed is not shown");
    let resume = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.connect(&id, None, true).await }
    });
    settle().await;
    hold.release();
    kill.await.unwrap().unwrap();
    assert!(matches!(resume.await.unwrap(), Err(LifecycleError::NotFound(_))));
    assert_eq!(h.rt.count(Op::Resume), 0);
}

#[tokio::test(start_paused = true)]
async fn a_connect_while_resuming_waits_and_finds_it_running() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.lc.pause(&id, true).await.unwrap();
    let hold = h.rt.hold(Op::Resume);
    let first = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.connect(&id, None, true).await }
    });
    hold.entered().await;
    assert_eq!(h.lc.get(&id).await.unwrap().state.listed_as(), Some("paused"), "resuming lists as paused");
    let second = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.connect(&id, Some(600), true).await }
    });
    settle().await;
    hold.release();
    assert!(first.await.unwrap().unwrap().1, "the first connect resumed it");
    let (row, resumed) = second.await.unwrap().unwrap();
    assert!(!resumed, "the second found it running");
    assert_eq!(row.state, SandboxState::Running);
    assert_eq!(h.rt.count(Op::Resume), 1);
}

#[tokio::test(start_paused = true)]
async fn operations_in_the_wrong_state_are_conflicts_or_not_found() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.lc.pause(&id, true).await.unwrap();
    assert!(matches!(h.lc.pause(&id, true).await, Err(LifecycleError::Conflict(_))));
    assert!(matches!(h.lc.snapshot(&id, None, true).await, Err(LifecycleError::Conflict(_))));
    assert!(matches!(h.lc.fork(&id, 1, 60).await, Err(LifecycleError::Conflict(_))));
    assert!(h.lc.usage(&id).await.unwrap().is_none(), "no usage while paused");
    h.lc.kill(&id).await.unwrap();
    for r in
        [h.lc.pause(&id, true).await.map(|_| ()), h.lc.kill(&id).await, h.lc.connect(&id, None, true).await.map(|_| ())]
    {
        assert!(matches!(r, Err(LifecycleError::NotFound(_))), "{r:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_operations_end_in_a_state_store_and_runtime_agree_on() {
    let h = harness().await;
    h.rt.delay(Op::Pause, Duration::from_millis(30));
    h.rt.delay(Op::Resume, Duration::from_millis(20));
    for round in 0..5 {
        let id = h.create(|_| {}).await;
        let ops: Vec<_> = (0..9)
            .map(|i| {
                let (lc, id) = (h.lc.clone(), id.clone());
                tokio::spawn(async move {
                    match (i + round) % 3 {
                        0 => lc.pause(&id, true).await.map(|_| ()),
                        1 => lc.connect(&id, Some(60), true).await.map(|_| ()),
                        _ => lc.get(&id).await.map(|_| ()),
                    }
                })
            })
            .collect();
        for op in ops {
            match op.await.unwrap() {
                Ok(()) | Err(LifecycleError::Conflict(_)) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let state = h.state(&id).await.unwrap();
        let expected = match state {
            SandboxState::Running => RtState::Running,
            SandboxState::Paused => RtState::Paused,
            other => panic!("left in {other}"),
        };
        assert_eq!(h.rt.state_of(&id), Some(expected));
        let (a, b) = tokio::join!(h.lc.pause(&id, true), h.lc.kill(&id));
        assert!(b.is_ok(), "the kill wins: {b:?}");
        assert!(matches!(a, Ok(_) | Err(LifecycleError::Conflict(_)) | Err(LifecycleError::NotFound(_))), "{a:?}");
        assert_eq!(h.state(&id).await, None);
        assert_eq!(h.rt.state_of(&id), None);
    }
}
