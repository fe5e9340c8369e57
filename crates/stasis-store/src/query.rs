//! What a list request asks for, and how it is read off the URL.
//!
//! This module owns the list semantics of the E2B API (`GET /v2/sandboxes`,
//! `GET /snapshots`): which states are listed by default, how `metadata` filters are
//! unescaped, limits, ordering and the pagination token. It parses the raw query string
//! itself, because the `metadata` parameter is encoded in layers that a generic query
//! deserializer would get wrong.
//!
//! # The `metadata` parameter
//! The SDKs escape each key and value, serialize the pairs with a form encoder (which
//! escapes the `%` of the first layer again), and their HTTP client escapes the resulting
//! parameter once more. For the metadata `{"user": "a b", "k&=": "v/?"}` the captures show:
//!
//! - JS (`e2b` 2.51, `novita-sandbox` 2.1.1): `encodeURIComponent` on each key and value,
//!   then `URLSearchParams`, then the client:
//!   `metadata=user%3Da%252520b%26k%252526%25253D%3Dv%25252F%25253F`
//! - Python (`e2b` 2.63): `quote` (keeps `/`) on each key and value, then `urlencode`, then
//!   httpx: `metadata=user%3Da%252520b%26k%252526%25253D%3Dv%252F%25253F`
//!
//! Decoding mirrors E2B's own server (Go: the router decodes the parameter, then
//! `url.QueryUnescape`, then `url.ParseQuery`): decode the parameter, unescape the whole
//! string, split on `&` and then on the first `=`, unescape each key and value. `+` means
//! a space at every layer: no SDK leaves a literal `+` bare at any layer (it is always
//! `%2B`), while the form encoders (`URLSearchParams`, `urlencode`) write a space as `+`.
//! Malformed escapes (`%zz`, a truncated `%4`) and escapes that are not UTF-8 are errors,
//! as in Go, rather than guesses.
//!
//! # Limits
//! `limit` defaults to 100. Values above 100 are clamped to 100 (the client just gets more
//! pages, which the SDK paginators follow); `0`, negative and non-numeric values are a
//! [`QueryError`], because no page size could honour them.
//!
//! # Pagination
//! `nextToken` is opaque to clients: URL-safe base64 (no padding) of `"{time}:{id}"` for the
//! last row of the page, where time is `started_at` (sandboxes) or `created_at` (snapshots)
//! in Unix ms. The next page is the rows strictly after that key in the listing order, so a
//! page boundary does not move when rows are inserted or deleted concurrently: no row is
//! returned twice and no existing row is skipped.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::model::{SandboxState, UnixMillis};

/// Page size when the request names none.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page the store returns; larger requests are clamped.
pub const MAX_LIMIT: u32 = 100;

/// Listing order, by time then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest first (the API default).
    #[default]
    Desc,
    Asc,
}

/// A sandbox list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Rows in any of these states. Empty means what the API lists by default: running and
    /// paused, i.e. [`SandboxState::LISTED_RUNNING`] + [`SandboxState::LISTED_PAUSED`].
    pub states: Vec<SandboxState>,
    /// Every pair must match exactly (AND). Duplicate keys with different values match
    /// nothing.
    pub metadata: Vec<(String, String)>,
    /// Matches the template id or the template alias.
    pub template: Option<String>,
    /// Only sandboxes with `started_at` strictly after this time.
    pub started_after: Option<UnixMillis>,
    pub order: Order,
    /// 1..=[`MAX_LIMIT`]; the store clamps larger values and refuses 0.
    pub limit: u32,
    /// The token returned with the previous page.
    pub next_token: Option<String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            states: Vec::new(),
            metadata: Vec::new(),
            template: None,
            started_after: None,
            order: Order::Desc,
            limit: DEFAULT_LIMIT,
            next_token: None,
        }
    }
}

/// A request that cannot be answered as written. Maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown sandbox state {0:?} (expected \"running\" or \"paused\")")]
    UnknownState(String),
    #[error("invalid limit {0:?} (expected an integer from 1 to {MAX_LIMIT})")]
    BadLimit(String),
    #[error("invalid order {0:?} (expected \"asc\" or \"desc\")")]
    BadOrder(String),
    #[error("invalid startedAfter {0:?} (expected an RFC 3339 time or Unix seconds)")]
    BadStartedAfter(String),
    #[error("invalid nextToken")]
    BadNextToken,
    #[error("invalid escaping in query parameter {0:?}")]
    BadEncoding(String),
}

impl ListQuery {
    /// Parses the raw query string of `GET /v2/sandboxes` (without or with the leading `?`).
    /// Unknown parameters are ignored; a repeated `state` or `metadata` adds to the earlier
    /// ones, other repeated parameters take the last value.
    pub fn from_query_string(raw: &str) -> Result<ListQuery, QueryError> {
        let mut q = ListQuery::default();
        for (name, value) in raw_params(raw) {
            match name.as_str() {
                "state" => {
                    let value = decode_param(&name, value)?;
                    for piece in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        for st in wire_state(piece)? {
                            if !q.states.contains(st) {
                                q.states.push(*st);
                            }
                        }
                    }
                }
                "metadata" => {
                    let value = decode_param(&name, value)?;
                    q.metadata.extend(parse_metadata_filter(&value)?);
                }
                "template" => {
                    let value = decode_param(&name, value)?;
                    q.template = (!value.is_empty()).then_some(value);
                }
                "startedAfter" => {
                    let value = decode_param(&name, value)?;
                    q.started_after = if value.is_empty() { None } else { Some(parse_time(&value)?) };
                }
                "order" => {
                    let value = decode_param(&name, value)?;
                    q.order = parse_order(&value)?;
                }
                "limit" => q.limit = parse_limit(&decode_param(&name, value)?)?,
                "nextToken" => q.next_token = parse_token(&decode_param(&name, value)?)?,
                _ => {}
            }
        }
        Ok(q)
    }

    /// The states to match: [`ListQuery::states`], or running + paused when empty.
    pub fn effective_states(&self) -> Vec<SandboxState> {
        if self.states.is_empty() {
            let mut v = SandboxState::LISTED_RUNNING.to_vec();
            v.extend(SandboxState::LISTED_PAUSED);
            v
        } else {
            self.states.clone()
        }
    }
}

/// A snapshot list request (`GET /snapshots?sandboxID=&name=&limit=&nextToken=`), newest
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotQuery {
    pub source_sandbox_id: Option<String>,
    /// Only the snapshot carrying this name.
    pub name: Option<String>,
    pub limit: u32,
    pub next_token: Option<String>,
}

impl Default for SnapshotQuery {
    fn default() -> Self {
        SnapshotQuery { source_sandbox_id: None, name: None, limit: DEFAULT_LIMIT, next_token: None }
    }
}

impl SnapshotQuery {
    /// Parses the raw query string of `GET /snapshots`, with the same rules as
    /// [`ListQuery::from_query_string`].
    pub fn from_query_string(raw: &str) -> Result<SnapshotQuery, QueryError> {
        let mut q = SnapshotQuery::default();
        for (name, value) in raw_params(raw) {
            match name.as_str() {
                "sandboxID" => {
                    let v = decode_param(&name, value)?;
                    q.source_sandbox_id = (!v.is_empty()).then_some(v);
                }
                "name" => {
                    let v = decode_param(&name, value)?;
                    q.name = (!v.is_empty()).then_some(v);
                }
                "limit" => q.limit = parse_limit(&decode_param(&name, value)?)?,
                "nextToken" => q.next_token = parse_token(&decode_param(&name, value)?)?,
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A position in a listing: the sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: UnixMillis,
    pub id: String,
}

impl Cursor {
    /// The opaque `nextToken` form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.time, self.id))
    }

    pub fn decode(token: &str) -> Result<Cursor, QueryError> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| QueryError::BadNextToken)?;
        let text = String::from_utf8(bytes).map_err(|_| QueryError::BadNextToken)?;
        let (time, id) = text.split_once(':').ok_or(QueryError::BadNextToken)?;
        let time = time.parse().map_err(|_| QueryError::BadNextToken)?;
        if id.is_empty() {
            return Err(QueryError::BadNextToken);
        }
        Ok(Cursor { time, id: id.to_owned() })
    }
}

/// Clamps a requested page size to 1..=[`MAX_LIMIT`]; 0 is refused.
pub fn effective_limit(limit: u32) -> Result<u32, QueryError> {
    if limit == 0 {
        return Err(QueryError::BadLimit("0".into()));
    }
    Ok(limit.min(MAX_LIMIT))
}

/// Parses the `metadata` parameter after its URL layer was decoded (what a router hands
/// over): unescape the whole string, split on `&` and the first `=`, unescape each part. A
/// piece without `=` is a key with an empty value, as in Go's `url.ParseQuery`.
pub fn parse_metadata_filter(param: &str) -> Result<Vec<(String, String)>, QueryError> {
    let bad = || QueryError::BadEncoding("metadata".into());
    let inner = percent_decode(param).ok_or_else(bad)?;
    let mut pairs = Vec::new();
    for piece in inner.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        pairs.push((percent_decode(k).ok_or_else(bad)?, percent_decode(v).ok_or_else(bad)?));
    }
    Ok(pairs)
}

/// Builds the `metadata` parameter value the way the JS SDK does, before the HTTP client's
/// own escaping of the parameter: `encodeURIComponent` on each key and value, then
/// `URLSearchParams` serialization.
pub fn metadata_filter_param<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| {
            format!("{}={}", form_urlencode(&encode_uri_component(k)), form_urlencode(&encode_uri_component(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The WHATWG `application/x-www-form-urlencoded` serializer (`URLSearchParams`): keeps
/// `A-Za-z0-9*-._`, writes a space as `+`, escapes the rest.
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// JavaScript's `encodeURIComponent`: everything but `A-Za-z0-9-_.!~*'()` is escaped.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Strict `application/x-www-form-urlencoded` unescaping: `+` is a space, `%XX` a byte;
/// `None` on a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a raw query into (decoded name, raw value). Names that do not decode cannot be a
/// parameter we know, so they are passed on raw and end up ignored.
fn raw_params(raw: &str) -> impl Iterator<Item = (String, &str)> {
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    raw.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(name).unwrap_or_else(|| name.to_owned()), value)
    })
}

fn decode_param(name: &str, value: &str) -> Result<String, QueryError> {
    percent_decode(value).ok_or_else(|| QueryError::BadEncoding(name.to_owned()))
}

fn wire_state(name: &str) -> Result<&'static [SandboxState], QueryError> {
    if name.eq_ignore_ascii_case("running") {
        Ok(&SandboxState::LISTED_RUNNING)
    } else if name.eq_ignore_ascii_case("paused") {
        Ok(&SandboxState::LISTED_PAUSED)
    } else {
        Err(QueryError::UnknownState(name.to_owned()))
    }
}

fn parse_limit(value: &str) -> Result<u32, QueryError> {
    let bad = || QueryError::BadLimit(value.to_owned());
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(DEFAULT_LIMIT);
    }
    if !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All digits: anything too large for u64 is still "more than the maximum".
    let n = trimmed.parse::<u64>().unwrap_or(u64::MAX);
    if n == 0 {
        return Err(bad());
    }
    Ok(n.min(u64::from(MAX_LIMIT)) as u32)
}

fn parse_order(value: &str) -> Result<Order, QueryError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("desc") || v.is_empty() => Ok(Order::Desc),
        v if v.eq_ignore_ascii_case("asc") => Ok(Order::Asc),
        _ => Err(QueryError::BadOrder(value.to_owned())),
    }
}

fn parse_time(value: &str) -> Result<UnixMillis, QueryError> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return secs.checked_mul(1000).ok_or_else(|| QueryError::BadStartedAfter(value.to_owned()));
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| QueryError::BadStartedAfter(value.to_owned()))
}

fn parse_token(value: &str) -> Result<Option<String>, QueryError> {
    if value.is_empty() {
        return Ok(None);
    }
    Cursor::decode(value)?;
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            ListQuery::from_query_string("state=running,zombie"),
            Err(QueryError::UnknownState("zombie".into()))
        );
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
}
