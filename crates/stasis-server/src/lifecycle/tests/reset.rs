//! Novita's reset: the same sandbox (id, tokens, metadata) made anew from its template,
//! written `creating` before the runtime tears the old one down.

use stasis_runtime::ENVD_PORT;
use stasis_store::SandboxState;

use super::super::fake_runtime::Op;
use super::super::LifecycleError;
use super::harness;

#[tokio::test(start_paused = true)]
async fn reset_remakes_the_sandbox_in_place_running_or_paused() {
    let h = harness().await;
    let id = h
        .create(|p| {
            p.secure = true;
            p.network = serde_json::json!({"allowPublicTraffic": false});
        })
        .await;
    let before = h.row(&id).await.unwrap();
    // A connection open across the reset is cut; the new sandbox's are not.
    let open = h.request(&id, ENVD_PORT).await.unwrap();
    h.lc.reset(&id, true, None).await.unwrap();
    assert!(open.guard.cancel.is_cancelled(), "the old sandbox's connection is cut");
    let fresh = h.request(&id, ENVD_PORT).await.unwrap();
    assert!(!fresh.guard.cancel.is_cancelled(), "the new one's are not");
    drop((open, fresh));
    h.lc.pause(&id, true).await.unwrap();

    let row = h.lc.reset(&id, true, Some(600)).await.unwrap();
    assert_eq!(row.state, SandboxState::Running);
    assert_eq!(
        (row.envd_access_token, row.traffic_access_token),
        (before.envd_access_token.clone(), before.traffic_access_token.clone())
    );
    assert_eq!((row.metadata, row.timeout_secs), (before.metadata.clone(), 600));
    assert_eq!((h.rt.count(Op::Kill), h.rt.count(Op::Create)), (2, 3), "torn down, then made from the template");
    assert!(h.secs_left(&id).await > 590.0);

    let row = h.lc.reset(&id, false, None).await.unwrap();
    assert_eq!(row.state, SandboxState::Paused, "resume: false leaves it paused");
    assert_eq!(row.timeout_secs, 600);
}

#[tokio::test(start_paused = true)]
async fn a_failed_remake_removes_the_sandbox_and_unknown_ones_are_not_found() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.rt.fail(Op::Create, 1);
    assert!(h.lc.reset(&id, true, None).await.is_err());
    assert_eq!(h.state(&id).await, None, "neither old nor new: gone, as a failed create");
    let unknown = crate::ids::SandboxId::parse("nosuchsandbox").unwrap();
    assert!(matches!(h.lc.reset(&unknown, true, None).await, Err(LifecycleError::NotFound(_))));
}
