//! Unit tests of `query.rs`: the SDKs' encodings of list queries.

use super::*;
use proptest::prelude::*;

/// The metadata every capture used: `{"user": "a b", "k&=": "v/?"}`.
fn captured_metadata() -> Vec<(String, String)> {
    vec![("user".into(), "a b".into()), ("k&=".into(), "v/?".into())]
}

// Request lines copied from captures/*.jsonl.
const JS_LIST: &str = "metadata=user%3Da%252520b%26k%252526%25253D%3Dv%25252F%25253F&state=running,paused&limit=2";
const JS_LIST_PAGE2: &str =
    "metadata=user%3Da%252520b%26k%252526%25253D%3Dv%25252F%25253F&state=running,paused&limit=2&nextToken=tok2";
const PY_LIST: &str = "metadata=user%3Da%252520b%26k%252526%25253D%3Dv%252F%25253F&state=running%2Cpaused&limit=2";

fn all_listed() -> Vec<SandboxState> {
    ListQuery::default().effective_states()
}

#[test]
fn js_capture_parses() {
    let q = ListQuery::from_query_string(JS_LIST).unwrap();
    assert_eq!(q.metadata, captured_metadata());
    assert_eq!(q.states, all_listed());
    assert_eq!(q.limit, 2);
    assert_eq!(q.next_token, None);
    assert_eq!(q.order, Order::Desc);
}

#[test]
fn python_capture_parses() {
    let q = ListQuery::from_query_string(PY_LIST).unwrap();
    assert_eq!(q.metadata, captured_metadata());
    assert_eq!(q.states, all_listed());
    assert_eq!(q.limit, 2);
}

#[test]
fn capture_tokens_are_not_ours() {
    // The captures ran against a stand-in server that handed out "tok2"; a real token
    // is base64 of "time:id", so this one is refused rather than silently restarting.
    assert_eq!(ListQuery::from_query_string(JS_LIST_PAGE2), Err(QueryError::BadNextToken));
}

#[test]
fn state_forms() {
    for raw in [
        "state=running,paused",
        "state=running%2Cpaused",
        "state=running%2cpaused",
        "state=running&state=paused",
        "state=paused,running,running",
        "",
        "state=",
    ] {
        let q = ListQuery::from_query_string(raw).unwrap();
        let mut got = q.effective_states();
        got.sort();
        let mut want = all_listed();
        want.sort();
        assert_eq!(got, want, "{raw}");
    }
    let q = ListQuery::from_query_string("state=paused").unwrap();
    assert_eq!(q.states, SandboxState::LISTED_PAUSED.to_vec());
    assert_eq!(ListQuery::from_query_string("state=running,zombie"), Err(QueryError::UnknownState("zombie".into())));
    assert!(ListQuery::from_query_string("state=killed").is_err());
}

#[test]
fn limits() {
    let lim = |raw: &str| ListQuery::from_query_string(raw).map(|q| q.limit);
    assert_eq!(lim(""), Ok(100));
    assert_eq!(lim("limit=1"), Ok(1));
    assert_eq!(lim("limit=100"), Ok(100));
    assert_eq!(lim("limit=101"), Ok(100));
    assert_eq!(lim("limit=99999999999999999999999"), Ok(100));
    assert!(matches!(lim("limit=0"), Err(QueryError::BadLimit(_))));
    assert!(matches!(lim("limit=-1"), Err(QueryError::BadLimit(_))));
    assert!(matches!(lim("limit=ten"), Err(QueryError::BadLimit(_))));
    assert_eq!(effective_limit(500), Ok(100));
    assert!(effective_limit(0).is_err());
}

#[test]
fn order_template_started_after() {
    let q = ListQuery::from_query_string("order=asc&template=base&startedAfter=2024-01-02T03%3A04%3A05Z").unwrap();
    assert_eq!(q.order, Order::Asc);
    assert_eq!(q.template.as_deref(), Some("base"));
    assert_eq!(q.started_after, Some(1_704_164_645_000));
    let q = ListQuery::from_query_string("startedAfter=1704164645&order=DESC").unwrap();
    assert_eq!(q.started_after, Some(1_704_164_645_000));
    assert_eq!(q.order, Order::Desc);
    assert!(matches!(ListQuery::from_query_string("order=sideways"), Err(QueryError::BadOrder(_))));
    assert!(matches!(ListQuery::from_query_string("startedAfter=yesterday"), Err(QueryError::BadStartedAfter(_))));
}

#[test]
fn bad_escapes_are_errors() {
    for raw in ["metadata=%zz", "metadata=a%25zz", "metadata=k%253", "state=%ff"] {
        assert!(matches!(ListQuery::from_query_string(raw), Err(QueryError::BadEncoding(_))), "{raw}");
    }
    // Unknown parameters are ignored, even when badly escaped.
    assert!(ListQuery::from_query_string("x%zz=%zz&foo=bar").is_ok());
}

#[test]
fn metadata_edge_cases() {
    let md = |raw: &str| ListQuery::from_query_string(raw).unwrap().metadata;
    assert_eq!(md("metadata="), vec![]);
    assert_eq!(md("metadata=k"), vec![("k".into(), "".into())]);
    // One layer less than the SDKs send still works when unambiguous.
    assert_eq!(md("metadata=a%3Db"), vec![("a".into(), "b".into())]);
    // Repeated parameters add up.
    assert_eq!(md("metadata=a%3D1&metadata=b%3D2"), vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
    // A value holding '=' keeps it: only the first '=' splits.
    assert_eq!(md("metadata=a%3Db%3Dc"), vec![("a".into(), "b=c".into())]);
}

#[test]
fn cursor_round_trip() {
    let c = Cursor { time: 1_700_000_000_123, id: "team/snap:1".into() };
    assert_eq!(Cursor::decode(&c.encode()), Ok(c));
    assert!(Cursor::decode("!!").is_err());
    assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12:")).is_err());
    assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("x:abc")).is_err());
}

#[test]
fn snapshot_query() {
    let q = SnapshotQuery::from_query_string("limit=5").unwrap();
    assert_eq!(q.limit, 5);
    let q = SnapshotQuery::from_query_string("sandboxID=abc&name=team%2Fsnap1").unwrap();
    assert_eq!(q.source_sandbox_id.as_deref(), Some("abc"));
    assert_eq!(q.name.as_deref(), Some("team/snap1"));
}

// --- Models of what each SDK puts on the wire, checked against the captures. ---

/// Python's `urllib.parse.quote(s, safe)`: unreserved `A-Za-z0-9_.-~` plus `safe`.
fn py_quote(s: &str, safe: &[u8]) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Python's `quote_plus` (what `urlencode` uses): space is `+`, `~` kept.
fn py_quote_plus(s: &str) -> String {
    s.split(' ').map(|part| py_quote(part, b"")).collect::<Vec<_>>().join("+")
}

/// JS SDKs: `encodeURIComponent` on pairs, `URLSearchParams`, `encodeURIComponent` in the
/// HTTP client.
fn js_raw(pairs: &[(String, String)]) -> String {
    let param = metadata_filter_param(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    format!("metadata={}", encode_uri_component(&param))
}

/// Python SDK: `urlencode({quote(k): quote(v)})`, then httpx escaping the parameter.
fn py_raw(pairs: &[(String, String)]) -> String {
    let joined = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", py_quote_plus(&py_quote(k, b"/")), py_quote_plus(&py_quote(v, b"/"))))
        .collect::<Vec<_>>()
        .join("&");
    format!("metadata={}", py_quote(&joined, b""))
}

/// A client that form-encodes at every layer (space as `+` in the innermost one).
fn form_raw(pairs: &[(String, String)]) -> String {
    let joined = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_urlencode(&form_urlencode(k)), form_urlencode(&form_urlencode(v))))
        .collect::<Vec<_>>()
        .join("&");
    format!("metadata={}", form_urlencode(&joined))
}

#[test]
fn sdk_models_reproduce_captures() {
    let md = captured_metadata();
    assert!(JS_LIST.starts_with(&js_raw(&md)));
    assert!(PY_LIST.starts_with(&py_raw(&md)));
}

#[test]
fn metadata_vectors_round_trip_for_each_encoding() {
    let md: Vec<(String, String)> = vec![
        ("user".into(), "a b".into()),
        ("k&=".into(), "v/?".into()),
        ("plus+sign".into(), "1+1=2".into()),
        ("pct%".into(), "100%25".into()),
        ("ключ".into(), "значение ✓ 🚀".into()),
        ("tab\tkey".into(), "".into()),
    ];
    for raw in [js_raw(&md), py_raw(&md), form_raw(&md)] {
        let q = ListQuery::from_query_string(&raw).unwrap();
        assert_eq!(q.metadata, md, "{raw}");
    }
}

proptest! {
    #[test]
    fn from_query_string_never_panics(raw in ".*") {
        let _ = ListQuery::from_query_string(&raw);
        let _ = SnapshotQuery::from_query_string(&raw);
    }

    #[test]
    fn from_query_string_never_panics_on_query_like_input(
        raw in "[a-zA-Z=&%,+0-9]{0,64}",
    ) {
        let _ = ListQuery::from_query_string(&raw);
    }

    #[test]
    fn metadata_round_trips(
        pairs in proptest::collection::vec((".+", ".*"), 0..4),
    ) {
        for raw in [js_raw(&pairs), py_raw(&pairs), form_raw(&pairs)] {
            let q = ListQuery::from_query_string(&raw).unwrap();
            prop_assert_eq!(&q.metadata, &pairs, "{}", raw);
        }
    }

    #[test]
    fn cursor_round_trips(time in any::<i64>(), id in ".+") {
        let c = Cursor { time, id };
        prop_assert_eq!(Cursor::decode(&c.encode()), Ok(c));
    }
}
