//! Issue 9: the control API's body parsing is total. Any bytes posted to an endpoint
//! (through [`json_body`], the path every JSON endpoint uses) become the request type or
//! an `ApiError` with a 4xx status and a message, never a panic; oversized bodies are
//! refused with 413 without being read whole.

use axum::body::Body;
use axum::http::StatusCode;
use proptest::prelude::*;

use super::snapshots::{ForkBody, SnapshotBody};
use super::wire::{ConnectBody, NewSandbox, PauseBody, TimeoutBody};
use super::{json_body, ApiError, MAX_BODY_BYTES};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Every JSON endpoint's parse of `bytes`: `Ok` or the error each would answer.
fn parse_all(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Vec<Result<(), ApiError>> {
    rt.block_on(async {
        let b = || Body::from(bytes.to_vec());
        let mut out = vec![
            json_body::<NewSandbox>(b()).await.map(|_| ()),
            json_body::<ConnectBody>(b()).await.map(|_| ()),
            json_body::<PauseBody>(b()).await.map(|_| ()),
            json_body::<SnapshotBody>(b()).await.map(|_| ()),
            json_body::<ForkBody>(b()).await.map(|_| ()),
            json_body::<std::collections::BTreeMap<String, serde_json::Value>>(b()).await.map(|_| ()),
        ];
        // `POST /sandboxes/{id}/timeout` parses without json_body: same contract.
        out.push(
            serde_json::from_slice::<TimeoutBody>(bytes)
                .map(|_| ())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"))),
        );
        out
    })
}

fn check(results: Vec<Result<(), ApiError>>) -> Result<(), TestCaseError> {
    for r in results {
        if let Err(e) = r {
            prop_assert!(e.status.is_client_error(), "parse failure must be 4xx, got {}", e);
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

/// JSON values shaped like the real bodies, with hostile leaves: wrong types, huge and
/// negative numbers, unicode, control characters, lone surrogates, traversal strings.
fn hostile_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e400".to_string()),
        Just("-0.0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("4294967296".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"../../etc/shadow\"".to_string()),
        Just("\"é🦀\u{202e}\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        "-?[0-9]{1,25}",
        "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let key = prop::sample::select(vec![
        "templateID",
        "timeout",
        "metadata",
        "envVars",
        "autoPause",
        "autoPauseMemory",
        "autoResume",
        "lifecycle",
        "onTimeout",
        "enabled",
        "secure",
        "allow_internet_access",
        "allowInternetAccess",
        "network",
        "memoryMB",
        "cpuCount",
        "memory",
        "name",
        "count",
        "duration",
        "__proto__",
        "",
    ]);
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                let body: Vec<String> =
                    kv.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap())).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(parse_all(&rt(), &bytes))?;
    }

    #[test]
    fn hostile_json_never_panics(json in hostile_json(), truncate in proptest::option::of(any::<usize>())) {
        let mut bytes = json.into_bytes();
        if let Some(t) = truncate {
            bytes.truncate(t % (bytes.len() + 1));
        }
        check(parse_all(&rt(), &bytes))?;
    }

    #[test]
    fn ids_from_paths_are_validated_without_panic(id in prop_oneof![".{0,80}", "[a-z0-9]{0,80}", "(\\.\\./)+[a-z]{0,8}"]) {
        if crate::ids::SandboxId::parse(&id).is_ok() {
            prop_assert!(!id.is_empty() && id.len() <= 64);
            prop_assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{:?}", id);
        }
    }

    #[test]
    fn timeouts_are_bounded(t in any::<u64>()) {
        let max = crate::lifecycle::SandboxDefaults::default().max_timeout_secs;
        if let Ok(v) = super::sandboxes::check_timeout(t, max) {
            prop_assert!((1..=max.unwrap()).contains(&v));
        }
        let v = super::sandboxes::check_timeout(t, None);
        prop_assert_eq!(v.is_ok(), t > 0);
        if let Ok(v) = v {
            prop_assert!((1..=crate::lifecycle::FOREVER_SECS).contains(&v));
        }
    }
}

#[test]
fn oversized_bodies_are_413() {
    let rt = rt();
    for size in [MAX_BODY_BYTES + 1, 8 << 20] {
        let body = format!("{{\"metadata\":{{\"k\":\"{}\"}}}}", "x".repeat(size));
        let err = rt.block_on(json_body::<NewSandbox>(Body::from(body))).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    }
    // A streamed body with no length is cut at the limit too, not read to its end.
    let chunks = futures_util::stream::iter((0..1024).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let err = rt.block_on(json_body::<NewSandbox>(Body::from_stream(chunks))).unwrap_err();
    assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn deep_nesting_and_duplicates_are_400() {
    let rt = rt();
    let deep = format!("{{\"metadata\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    let dup = br#"{"timeout":1,"timeout":2}"#.to_vec();
    for bytes in [deep.into_bytes(), dup] {
        let r = rt.block_on(json_body::<NewSandbox>(Body::from(bytes)));
        assert_eq!(r.unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
