//! Who is calling: the sandbox's access token, and the user a call acts as.

use axum::http::HeaderMap;
use base64::Engine;
use stasis_proto::connect::{Code, ConnectError};

use super::State;
use crate::supervisor::User;

pub const DEFAULT_USER: &str = "user";
pub use stasis_proto::agent::ACCESS_TOKEN_HEADER as TOKEN_HEADER;

/// 401 unless the call carries the sandbox's access token (when it has one).
pub fn check_token(state: &State, headers: &HeaderMap) -> Result<(), ConnectError> {
    let expected = state.access_token.read().unwrap().clone();
    let Some(expected) = expected else { return Ok(()) };
    let given = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ConnectError::new(Code::Unauthenticated, "invalid access token")),
        None => Err(ConnectError::new(Code::Unauthenticated, "missing access token (X-Access-Token header)")),
    }
}

/// The same comparison as the host's (`stasis_store::constant_time_eq`, which the static
/// agent cannot link): `subtle`'s, not a hand-written one the optimiser may short-cut.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The user named by `Authorization: Basic base64("name:")`, else `fallback`, else `user`.
pub fn user_name(headers: &HeaderMap, fallback: Option<&str>) -> Result<String, ConnectError> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let bad = || ConnectError::invalid_argument("Authorization must be Basic base64(\"username:\")");
        let s = v.to_str().map_err(|_| bad())?;
        let b64 = s.strip_prefix("Basic ").ok_or_else(bad)?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let name = text.split(':').next().unwrap_or_default();
        if !name.is_empty() {
            return Ok(name.to_string());
        }
    }
    Ok(fallback.filter(|f| !f.is_empty()).unwrap_or(DEFAULT_USER).to_string())
}

pub fn lookup_user(name: &str) -> Result<User, ConnectError> {
    User::lookup(name).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConnectError::new(Code::InvalidArgument, e.to_string()),
        _ => ConnectError::internal(format!("cannot read users: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_names_user() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic cm9vdDo=".parse().unwrap()); // "root:"
        assert_eq!(user_name(&h, None).unwrap(), "root");
        assert_eq!(user_name(&HeaderMap::new(), None).unwrap(), "user");
        assert_eq!(user_name(&HeaderMap::new(), Some("root")).unwrap(), "root");
        h.insert("authorization", "Bearer x".parse().unwrap());
        assert!(user_name(&h, None).is_err());
    }
}
