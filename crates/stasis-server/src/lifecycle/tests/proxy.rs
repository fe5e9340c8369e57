//! Proxied traffic: a paused sandbox that asked for auto-resume is resumed by a request,
//! one that did not is refused and stays paused.

use stasis_store::SandboxState;

use super::super::fake_runtime::Op;
use super::super::MIN_AUTO_RESUME_SECS;
use super::harness;

#[tokio::test(start_paused = true)]
async fn traffic_resumes_a_paused_sandbox_only_when_it_asked() {
    let h = harness().await;
    let auto = h.create(|p| p.auto_resume = true).await;
    let plain = h.create(|_| {}).await;
    for id in [&auto, &plain] {
        h.lc.pause(id, true).await.unwrap();
    }
    let routed =
        h.lc.route(&auto)
            .await
            .unwrap()
            .expect("resumed and routed");
    assert_eq!(routed.state, SandboxState::Running);
    assert!(
        h.secs_left(&auto).await >= MIN_AUTO_RESUME_SECS as f64,
        "after an auto-resume it lives at least 5 minutes"
    );

    assert!(h.lc.route(&plain).await.unwrap().is_none(), "refused");
    assert_eq!(
        h.state(&plain).await,
        Some(SandboxState::Paused),
        "and still paused"
    );
    assert!(h.lc.route("nosuchsandbox").await.unwrap().is_none());
    assert_eq!(h.rt.count(Op::Resume), 1);
}
