//! Who may run code: the caller must hold the sandbox's envd access token.
//!
//! The SDKs send it in `X-Access-Token` on `/execute`. The service never sees the token
//! itself: the agent publishes its SHA-512, 128 hex digits and a newline
//! (`stasis_proto::agent::ACCESS_TOKEN_DIGEST_PATH`), and the service compares the
//! SHA-512 of the header with it, in constant time. The file is read on every check (it
//! is 129 bytes), so a new token (a sandbox started from a snapshot) holds from the next
//! request on. No file: 503, nothing runs until the agent has said which token counts
//! (the warm sandbox a template is captured from has no token, hence no file). An empty
//! file: the sandbox has no token, nothing is checked (as envd).

use std::path::PathBuf;

use axum::http::HeaderMap;
use sha2::{Digest, Sha512};
use stasis_proto::agent::ACCESS_TOKEN_HEADER;
use subtle::ConstantTimeEq;

/// What the digest file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenDigest {
    /// The sandbox has no access token: calls are not checked (as envd).
    NoToken,
    /// SHA-512 of the token.
    Sha512([u8; 64]),
}

/// Parse the digest file; surrounding whitespace is ignored.
pub fn parse_token_digest(text: &str) -> Result<TokenDigest, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(TokenDigest::NoToken);
    }
    if t.len() != 128 || !t.is_ascii() {
        return Err(format!("expected 128 hex digits, found {} bytes", t.len()));
    }
    let mut out = [0u8; 64];
    for (i, pair) in t.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
        out[i] = u8::from_str_radix(hex, 16).map_err(|_| format!("not hex: {hex:?}"))?;
    }
    Ok(TokenDigest::Sha512(out))
}

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
    fn digest_file_format() {
        let hex = "ab".repeat(64);
        assert_eq!(parse_token_digest(&format!("{hex}\n")), Ok(TokenDigest::Sha512([0xab; 64])));
        assert_eq!(parse_token_digest(""), Ok(TokenDigest::NoToken));
        assert!(parse_token_digest("abc").is_err());
        assert!(parse_token_digest(&"zz".repeat(64)).is_err());
        assert!(parse_token_digest(&"é".repeat(64)).is_err());
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
        // As the agent writes it (stasis-agent's envd/token_digest.rs).
        let write = |t: &str| {
            let hex: String = Sha512::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&file, format!("{hex}\n")).unwrap();
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
