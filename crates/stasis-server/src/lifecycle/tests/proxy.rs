//! Proxied requests: tokens first, then auto-resume (only when the sandbox asked), then
//! the connection; a running sandbox is routed from the cache, and every state change
//! invalidates it, so no request reaches a sandbox on a stale route.

use std::time::Duration;

use stasis_runtime::ENVD_PORT;
use stasis_store::SandboxState;

use super::super::fake_runtime::Op;
use super::super::{Credentials, Refusal};
use super::harness;
use crate::ids::SandboxId;

#[tokio::test(start_paused = true)]
async fn traffic_resumes_a_paused_sandbox_only_when_it_asked() {
    let h = harness().await;
    let auto = h.create(|p| p.auto_resume = true).await;
    let plain = h.create(|_| {}).await;
    for id in [&auto, &plain] {
        h.lc.pause(id, true).await.unwrap();
    }
    h.request(&auto, ENVD_PORT).await.expect("resumed and connected");
    assert_eq!(h.state(&auto).await, Some(SandboxState::Running));
    assert!(
        h.secs_left(&auto).await >= h.config.defaults.min_auto_resume_secs as f64,
        "after an auto-resume it lives at least 5 minutes"
    );

    assert_eq!(h.request(&plain, ENVD_PORT).await.err(), Some(Refusal::NotRunning));
    assert_eq!(h.state(&plain).await, Some(SandboxState::Paused), "and still paused");
    assert_eq!(
        h.request(&SandboxId::parse("nosuchsandbox").unwrap(), ENVD_PORT).await.err(),
        Some(Refusal::NotRunning)
    );
    assert_eq!(h.rt.count(Op::Resume), 1);
}

#[tokio::test(start_paused = true)]
async fn tokens_are_checked_before_anything_else() {
    let h = harness().await;
    let id = h
        .create(|p| {
            p.auto_resume = true;
            p.secure = true;
            p.network = serde_json::json!({"allowPublicTraffic": false});
        })
        .await;
    let row = h.row(&id).await.unwrap();
    let (envd, traffic) = (row.envd_access_token.unwrap(), row.traffic_access_token.unwrap());
    h.lc.pause(&id, true).await.unwrap();
    let ask = |access: Option<&'static str>, traffic: Option<&'static str>, port| {
        let (lc, id) = (h.lc.clone(), id.clone());
        async move {
            lc.connect_port(&id, port, Credentials { access_token: access, traffic_token: traffic, file_call: None })
                .await
                .err()
        }
    };
    assert_eq!(ask(None, None, ENVD_PORT).await, Some(Refusal::MissingAccessToken));
    assert_eq!(ask(Some("wrong"), None, ENVD_PORT).await, Some(Refusal::InvalidAccessToken));
    assert_eq!(ask(None, Some("wrong"), 8000).await, Some(Refusal::TrafficTokenRequired));
    assert_eq!(h.state(&id).await, Some(SandboxState::Paused), "no unauthenticated auto-resume");
    assert_eq!(h.rt.count(Op::Resume), 0);

    let envd: &'static str = Box::leak(envd.into_boxed_str());
    let traffic: &'static str = Box::leak(traffic.into_boxed_str());
    assert!(ask(Some(envd), None, ENVD_PORT).await.is_none(), "the agent's port takes the access token");
    assert!(ask(None, Some(traffic), 8000).await.is_none(), "a user port takes the traffic token");
    assert_eq!(ask(Some(envd), None, 8000).await, Some(Refusal::TrafficTokenRequired));
}

/// `secure` guards the agent only: the SDK releases that create every sandbox `secure`
/// keep its user ports public (E2B's `network.allowPublicTraffic` defaults to true).
#[tokio::test(start_paused = true)]
async fn a_secure_sandbox_keeps_public_ports_unless_public_traffic_is_off() {
    let h = harness().await;
    let secure = h.create(|p| p.secure = true).await;
    let row = h.row(&secure).await.unwrap();
    assert!(row.envd_access_token.is_some() && row.traffic_access_token.is_none());
    let open =
        h.lc.connect_port(&secure, 8000, Credentials { access_token: None, traffic_token: None, file_call: None });
    assert!(open.await.is_ok(), "a user port of a secure sandbox needs no token");
    let envd =
        h.lc.connect_port(&secure, ENVD_PORT, Credentials { access_token: None, traffic_token: None, file_call: None });
    assert_eq!(envd.await.err(), Some(Refusal::MissingAccessToken), "its agent still does");

    let closed = h.create(|p| p.network = serde_json::json!({"allowPublicTraffic": false})).await;
    assert!(h.row(&closed).await.unwrap().traffic_access_token.is_some());
    let ask =
        h.lc.connect_port(&closed, 8000, Credentials { access_token: None, traffic_token: None, file_call: None });
    assert_eq!(ask.await.err(), Some(Refusal::TrafficTokenRequired));
}

/// `downloadUrl` / `uploadUrl` of a `secure` sandbox: the signed URL stands in for the
/// access token on the agent's `/files`, and a forged or expired one resumes nothing.
#[tokio::test(start_paused = true)]
async fn signed_file_urls_stand_in_for_the_access_token() {
    use stasis_proto::file_signing::{signature, Operation, SignedQuery};
    let h = harness().await;
    let id = h
        .create(|p| {
            p.auto_resume = true;
            p.secure = true;
        })
        .await;
    let token = h.row(&id).await.unwrap().envd_access_token.unwrap();
    h.lc.pause(&id, true).await.unwrap();
    let now = h.lc.now() / 1000;
    let ask = |sig: String, exp: Option<i64>, op: Operation| {
        let (lc, id) = (h.lc.clone(), id.clone());
        async move {
            let exp = exp.map(|e| e.to_string());
            let q = SignedQuery {
                path: Some("hello.txt"),
                username: None,
                signature: Some(&sig),
                signature_expiration: exp.as_deref(),
            };
            let creds = Credentials { access_token: None, traffic_token: None, file_call: Some((op, q)) };
            lc.connect_port(&id, ENVD_PORT, creds).await.err()
        }
    };
    let refused = |m: &str| Some(Refusal::FileSignature { status: 401, message: m.into() });
    assert_eq!(ask("v1_forged".into(), None, Operation::Read).await, refused("invalid signature"));
    let expired = signature("hello.txt", Operation::Read, "", &token, Some(now - 10));
    assert_eq!(ask(expired, Some(now - 10), Operation::Read).await, refused("signature is already expired"));
    let read = signature("hello.txt", Operation::Read, "", &token, None);
    assert_eq!(ask(read.clone(), None, Operation::Write).await, refused("invalid signature"));
    assert_eq!(h.rt.count(Op::Resume), 0, "no refused URL resumes the sandbox");
    assert!(ask(read, None, Operation::Read).await.is_none(), "a valid one does");
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
}

#[tokio::test(start_paused = true)]
async fn a_running_sandbox_is_routed_without_reading_the_store() {
    let h = harness().await;
    let id = h.create(|_| {}).await;
    h.request(&id, ENVD_PORT).await.unwrap();
    let before = h.reads();
    for _ in 0..100 {
        h.request(&id, ENVD_PORT).await.unwrap();
    }
    assert_eq!(h.reads(), before, "100 requests, no sandbox read");
    assert_eq!(h.rt.count(Op::Connect), 101);
}

#[tokio::test(start_paused = true)]
async fn after_a_pause_a_request_is_refused_or_resumes_never_routed_stale() {
    let h = harness().await;
    let plain = h.create(|_| {}).await;
    let auto = h.create(|p| p.auto_resume = true).await;
    let open_plain = h.request(&plain, ENVD_PORT).await.unwrap();
    h.request(&auto, ENVD_PORT).await.unwrap();

    h.lc.pause(&plain, true).await.unwrap();
    h.lc.pause(&auto, true).await.unwrap();
    assert!(open_plain.guard.cancel.is_cancelled(), "the pause cut the open connection");
    let connects = h.rt.count(Op::Connect);
    assert_eq!(h.request(&plain, ENVD_PORT).await.err(), Some(Refusal::NotRunning), "refused, not routed");
    assert_eq!(h.rt.count(Op::Connect), connects, "nothing reached the runtime");

    h.request(&auto, ENVD_PORT).await.expect("resumed, then connected");
    assert_eq!(h.rt.count(Op::Resume), 1);
    assert_eq!(h.state(&auto).await, Some(SandboxState::Running));

    h.lc.kill(&auto).await.unwrap();
    assert_eq!(h.request(&auto, ENVD_PORT).await.err(), Some(Refusal::NotRunning), "killed: refused");
}

#[tokio::test(start_paused = true)]
async fn a_request_during_a_pause_waits_for_it_then_resumes_the_sandbox() {
    let h = harness().await;
    let id = h.create(|p| p.auto_resume = true).await;
    h.request(&id, ENVD_PORT).await.unwrap();
    let hold = h.rt.hold(Op::Pause);
    let pause = tokio::spawn({
        let (lc, id) = (h.lc.clone(), id.clone());
        async move { lc.pause(&id, true).await }
    });
    hold.entered().await;
    let request = tokio::spawn({
        let row = h.row(&id).await.unwrap();
        let (lc, id) = (h.lc.clone(), id.clone());
        async move {
            let creds =
                Credentials { access_token: row.envd_access_token.as_deref(), traffic_token: None, file_call: None };
            lc.connect_port(&id, ENVD_PORT, creds).await.map(|_| ())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!request.is_finished(), "the request waits for the pause under way");
    assert_eq!(h.rt.count(Op::Connect), 1, "and does not reach the sandbox being dumped");
    hold.release();
    pause.await.unwrap().unwrap();
    request.await.unwrap().expect("then resumes it and is served");
    assert_eq!((h.rt.count(Op::Pause), h.rt.count(Op::Resume), h.rt.count(Op::Connect)), (1, 1, 2));
    assert_eq!(h.state(&id).await, Some(SandboxState::Running));
}
