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
//! # Filters
//! `state` (comma-separated or repeated), `metadata`, `template` (the template id or its
//! alias) and `startedAfter` (RFC 3339, as JS `toISOString()` and Python `isoformat()`
//! write it, or Unix seconds; inclusive) all apply together (AND); `order` is `asc` or
//! `desc` by start time. The JS SDK sends all of them; the Python SDK all but an explicit
//! `order` default; `novita-sandbox` only `state`, `metadata`, `limit`, `nextToken`.
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
    /// Only sandboxes started at or after this time (`startedAfter`: inclusive, as the SDKs
    /// document it and E2B's API filters, so passing a sandbox's own `startedAt` lists it).
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
/// One page of `rows` fetched with `LIMIT limit + 1`: keeps `limit` rows and, when there
/// was one more, the token of the next page (shared by both stores' keyset pagination).
pub fn finish_page<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> Cursor) -> crate::Page<T> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let token = rows.last().map(|r| key(r).encode());
        (rows, token)
    } else {
        (rows, None)
    }
}

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
#[path = "query_tests.rs"]
mod tests;
