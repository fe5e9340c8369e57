//! Who may run code: the caller must hold the sandbox's envd access token.
//!
//! The SDKs send it in `X-Access-Token` on `/execute`. The service never sees the token
//! itself: the agent publishes its SHA-512 (`stasis_proto::interpreter::TOKEN_DIGEST_FILE`)
//! and the service compares the SHA-512 of the header with it, in constant time. The file
//! is read on every check (it is 129 bytes), so a new token (a sandbox started from a
//! snapshot) holds from the next request on. No file: 503, nothing runs until the agent
//! has said which token counts. An empty file: the sandbox has no token, nothing is
//! checked (as envd).

use std::path::PathBuf;

use axum::http::HeaderMap;
use sha2::{Digest, Sha512};
use stasis_proto::agent::ACCESS_TOKEN_HEADER;
use stasis_proto::interpreter::{parse_token_digest, TokenDigest};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone)]
pub struct Auth {
    digest_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication unavailable")]
    Unavailable,
    #[error("missing access token (X-Access-Token header)")]
    Missing,
    #[error("invalid access token")]
    Invalid,
}

impl Auth {
    /// `--no-auth`: everything is accepted.
    pub fn disabled() -> Self {
        Auth { digest_file: None }
    }

    pub fn from_file(digest_file: PathBuf) -> Self {
        Auth { digest_file: Some(digest_file) }
    }

    pub async fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(file) = &self.digest_file else { return Ok(()) };
        let text = tokio::fs::read_to_string(file).await.map_err(|e| {
            tracing::warn!(file = %file.display(), "no token digest: {e}");
            AuthError::Unavailable
        })?;
        let digest = parse_token_digest(&text).map_err(|e| {
            tracing::warn!(file = %file.display(), "bad token digest: {e}");
            AuthError::Unavailable
        })?;
        check_token(&digest, headers.get(ACCESS_TOKEN_HEADER).map(|v| v.as_bytes()))
    }
}

/// The rule, without the file.
pub fn check_token(digest: &TokenDigest, token: Option<&[u8]>) -> Result<(), AuthError> {
    let TokenDigest::Sha512(expected) = digest else { return Ok(()) };
    let token = token.ok_or(AuthError::Missing)?;
    let got = Sha512::digest(token);
    if bool::from(got.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(token: &str) -> TokenDigest {
        TokenDigest::Sha512(Sha512::digest(token.as_bytes()).into())
    }

    #[test]
    fn token_rule() {
        let d = digest_of("secret");
        assert_eq!(check_token(&d, Some(b"secret")), Ok(()));
        assert_eq!(check_token(&d, Some(b"secreT")), Err(AuthError::Invalid));
        assert_eq!(check_token(&d, Some(b"")), Err(AuthError::Invalid));
        assert_eq!(check_token(&d, None), Err(AuthError::Missing));
        assert_eq!(check_token(&TokenDigest::NoToken, None), Ok(()));
    }

    #[tokio::test]
    async fn file_is_reread_and_required() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("digest");
        let auth = Auth::from_file(file.clone());
        let mut h = HeaderMap::new();
        h.insert(ACCESS_TOKEN_HEADER, "one".parse().unwrap());
        assert_eq!(auth.check(&h).await, Err(AuthError::Unavailable));
        let write = |t: &str| {
            let d: [u8; 64] = Sha512::digest(t.as_bytes()).into();
            std::fs::write(&file, stasis_proto::interpreter::token_digest_file(Some(&d))).unwrap();
        };
        write("one");
        assert_eq!(auth.check(&h).await, Ok(()));
        write("two");
        assert_eq!(auth.check(&h).await, Err(AuthError::Invalid));
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(auth.check(&h).await, Err(AuthError::Unavailable));
        std::fs::write(&file, "").unwrap();
        assert_eq!(auth.check(&HeaderMap::new()).await, Ok(()));
        assert_eq!(Auth::disabled().check(&HeaderMap::new()).await, Ok(()));
    }
}
