//! A failed lifecycle action is contained (the sandbox stays usable), visible (on its row,
//! in the log once per attempt, in the counters) and retried only after an exponential
//! back-off, then not at all until an API call touches the sandbox.

use std::sync::{Arc, Mutex};

use stasis_runtime::{SandboxState as RtState, ENVD_PORT};
use stasis_store::{Operation, SandboxState};

use super::super::fake_runtime::Op;
use super::super::{LifecycleError, Refusal};
use super::{after, harness, Harness};
use crate::ids::SandboxId;

/// A running auto-pause sandbox whose every pause fails, with the scheduler running.
async fn failing_auto_pause() -> (Harness, SandboxId) {
    let h = harness().await;
    h.rt.fail_always(Op::Pause);
    h.lc.start();
    let id = h.create_auto_pause(1).await;
    (h, id)
}

/// Seconds between consecutive calls of `op`.
fn gaps(h: &Harness, op: Op) -> Vec<f64> {
    let calls = h.rt.calls(op);
    calls.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_auto_pause_backs_off_then_gives_up_and_the_sandbox_keeps_running() {
    let (h, id) = failing_auto_pause().await;
    after(60.0).await;
    // 1 s, 2 s, 4 s, 8 s apart (the scheduler's 250 ms tick is the only slack), then no
    // fifth retry: 5 attempts in all, not one CRIU dump every tick.
    let gaps = gaps(&h, Op::Pause);
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0, 8.0]) {
        assert!(*gap >= want && *gap < want + 0.3, "gaps {gaps:?}");
    }
    // Contained: still running, in the store and in the runtime, and usable.
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
    assert_eq!(h.rt.state_of(&id), Some(RtState::Running));
    assert!(h.request(&id, ENVD_PORT).await.is_ok(), "proxied traffic still reaches it");
    // Visible: on the row (as the info API shows it) and in the counters.
    let f = h.lc.get(&id).await.unwrap().last_error.expect("the failure is on the row");
    assert_eq!((f.operation, f.attempts, f.next_attempt_at), (Operation::Pause, 5, None));
    assert!(f.message.contains("injected Pause failure"), "{}", f.message);
    assert_eq!(h.lc.failed_actions().pause, 5);
    assert_eq!(h.lc.failed_actions().total, 5);
    // Given up: nothing more, however long it waits.
    after(600.0).await;
    assert_eq!(h.rt.count(Op::Pause), 5);
}

#[tokio::test(start_paused = true)]
async fn an_api_call_starts_the_backoff_over_and_a_later_success_clears_the_error() {
    let (h, id) = failing_auto_pause().await;
    after(20.0).await;
    assert_eq!(h.rt.count(Op::Pause), 5, "given up");

    let row = h.lc.set_timeout(&id, 1).await.unwrap();
    let f = row.last_error.expect("still visible after the reset");
    assert_eq!((f.attempts, f.next_attempt_at), (0, Some(h.lc.now())), "back-off reset, message kept");
    after(0.8).await;
    assert_eq!(h.rt.count(Op::Pause), 5, "nothing before the new end");
    after(0.5).await;
    assert_eq!(h.rt.count(Op::Pause), 6, "tried again at the new end");
    let f = h.row(&id).await.unwrap().last_error.unwrap();
    assert_eq!(f.attempts, 1, "counted from the reset");
    assert_eq!(f.next_attempt_at, Some(f.at + 1000), "the back-off starts at 1 s again");

    h.rt.heal(Op::Pause);
    after(1.3).await;
    let row = h.row(&id).await.unwrap();
    assert_eq!(row.state, SandboxState::Paused);
    assert_eq!(row.last_error, None, "a successful pause clears the error");
    assert_eq!(h.lc.failed_actions().pause, 6, "the counter counts failures ever made");
}

#[tokio::test(start_paused = true)]
async fn an_api_pause_that_fails_is_returned_and_recorded() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.rt.fail(Op::Pause, 1);
    assert!(matches!(h.lc.pause(&id, true).await, Err(LifecycleError::Runtime(_))));
    let row = h.lc.get(&id).await.unwrap();
    assert_eq!(row.state, SandboxState::Running, "back to running");
    let f = row.last_error.expect("the row says the pause failed");
    assert_eq!((f.operation, f.attempts), (Operation::Pause, 1));
    assert_eq!(h.lc.failed_actions().pause, 1);
    assert_eq!(h.lc.pause(&id, true).await.unwrap().last_error, None, "cleared by the next pause");
}

#[tokio::test(start_paused = true)]
async fn the_error_and_a_given_up_action_survive_a_daemon_restart() {
    let (h, id) = failing_auto_pause().await;
    after(20.0).await;
    let before = h.row(&id).await.unwrap().last_error.unwrap();
    let h = h.restart().await;
    h.lc.start();
    after(120.0).await;
    assert_eq!(h.row(&id).await.unwrap().last_error, Some(before), "still visible after the restart");
    assert_eq!(h.rt.count(Op::Pause), 5, "a restart is not an API call: still given up");
    let failing = h.lc.with_failed_actions().await.unwrap();
    assert_eq!(failing.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert_eq!(h.lc.failed_actions().total, 0, "counters are per daemon run, as Prometheus counters");
}

#[tokio::test(start_paused = true)]
async fn a_failed_kill_stays_killing_hidden_and_is_retried_until_it_succeeds() {
    let h = harness().await;
    h.rt.fail(Op::Kill, 2);
    h.lc.start();
    let id = h.create(|p| p.timeout_secs = 1).await;
    after(1.3).await;
    assert_eq!(h.rt.count(Op::Kill), 1);
    assert_eq!(h.state(&id).await, Some(SandboxState::Killing), "never shown as running again");
    assert!(matches!(h.lc.get(&id).await, Err(LifecycleError::NotFound(_))), "the E2B API does not show it");
    let failing = h.lc.with_failed_actions().await.unwrap();
    assert_eq!(failing[0].last_error.as_ref().unwrap().operation, Operation::Kill, "the status endpoint does");
    after(4.0).await;
    assert_eq!(h.rt.count(Op::Kill), 3, "retried after 1 s, then after 2 s, and it worked");
    let gaps = gaps(&h, Op::Kill);
    assert!(gaps[0] >= 1.0 && gaps[1] >= 2.0, "{gaps:?}");
    assert_eq!(h.state(&id).await, None);
    assert_eq!(h.rt.state_of(&id), None);
    assert_eq!(h.lc.failed_actions().kill, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_auto_resume_is_tried_after_its_backoff_not_on_every_request() {
    let h = harness().await;
    let id = h.create(|p| p.auto_resume = true).await;
    h.lc.pause(&id, true).await.unwrap();
    h.rt.fail_always(Op::Resume);
    match h.request(&id, ENVD_PORT).await {
        Err(Refusal::ResumeFailed(m)) => assert!(m.contains("injected Resume failure"), "{m}"),
        other => panic!("expected a failed resume, got {:?}", other.err()),
    }
    for _ in 0..10 {
        match h.request(&id, ENVD_PORT).await {
            Err(Refusal::ResumeFailed(m)) => assert!(m.contains("the next attempt is at"), "{m}"),
            other => panic!("expected a refusal during the back-off, got {:?}", other.err()),
        }
    }
    assert_eq!(h.rt.count(Op::Resume), 1, "requests during the back-off do not restore");
    after(1.1).await;
    assert!(h.request(&id, ENVD_PORT).await.is_err());
    assert_eq!(h.rt.count(Op::Resume), 2, "tried again once the back-off ran");
    // An API connect does not wait for the back-off.
    assert!(h.lc.connect(&id, None, true).await.is_err());
    assert_eq!(h.rt.count(Op::Resume), 3);
    h.rt.heal(Op::Resume);
    let (row, resumed) = h.lc.connect(&id, None, true).await.unwrap();
    assert!(resumed);
    assert_eq!(row.last_error, None, "a successful resume clears the error");
}

/// Log lines, captured from the test's thread (tokio's current-thread runtime runs every
/// task of the test there).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn one_warning_per_attempt_with_its_number_and_next_time_not_one_per_tick() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_h, _id) = failing_auto_pause().await;
    // The five attempts take 15 s of the paused clock (1+2+4+8 s apart). The clock also
    // jumps while the store's blocking calls run, so on a loaded host the fifth may come
    // later on it: wait for it (up to 10 min), then for any extra line a bug would add.
    let count = || String::from_utf8_lossy(&logs.0.lock().unwrap()).lines().filter(|l| l.contains("WARN")).count();
    for _ in 0..600 {
        if count() >= 5 {
            break;
        }
        after(1.0).await;
    }
    after(60.0).await; // 240 more ticks: none of them may warn again
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 5, "{text}");
    for (i, (line, wait)) in warnings.iter().zip(["1", "2", "4", "8"]).enumerate() {
        assert!(line.contains(&format!("pause failed (attempt {}/5), next attempt in {wait} s", i + 1)), "{line}");
    }
    assert!(
        warnings[4].contains("attempt 5/5): no more attempts until an API call touches the sandbox"),
        "{}",
        warnings[4]
    );
}
