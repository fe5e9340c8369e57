//! Who may call `/files`: the sandbox's access token, or a signed URL
//! (`stasis_proto::file_signing` holds the rule, shared with the host proxy).

use axum::http::HeaderMap;
pub use stasis_proto::file_signing::Operation;
use stasis_proto::file_signing::{authorize as check, SignedQuery};

use super::FileQuery;
use crate::envd::auth::TOKEN_HEADER;

/// Ok, or envd's refusal (status, message).
pub fn authorize(
    token: Option<&str>,
    headers: &HeaderMap,
    q: &FileQuery,
    op: Operation,
    now: i64,
) -> Result<(), (u16, String)> {
    let header_token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let signed = SignedQuery {
        path: q.path.as_deref(),
        username: q.username.as_deref(),
        signature: q.signature.as_deref(),
        signature_expiration: q.signature_expiration.as_deref(),
    };
    check(token, header_token, signed, op, now).map_err(|r| (r.status, r.message))
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
