//! The contract between the agent and the code-interpreter service (`stasis-interpreter`)
//! of interpreter sandboxes: two small files the agent writes and the service reads.
//!
//! - [`TOKEN_DIGEST_FILE`]: the SHA-512 of the sandbox's current envd access token, as
//!   128 lower-case hex digits and a newline ([`token_digest_file`]); an empty file when
//!   the sandbox has no token (then, as envd, nothing is checked). The service requires
//!   `X-Access-Token` on every call that runs code and compares its SHA-512 with this
//!   digest; with no file at all it answers 503. The agent rewrites it (atomically:
//!   write beside, rename) whenever the token changes, i.e. at boot and at `/init` when a
//!   sandbox starts from a snapshot. A digest, not the token: the service never holds a
//!   secret it could leak, and the file may be readable by the sandbox's `user`.
//! - [`ENVS_FILE`]: the sandbox's environment (`envVars` of the create request, replaced
//!   at `/init`) as one JSON object of strings ([`envs_file`]). The service's kernels were
//!   started before the sandbox existed (in the template's snapshot), so it applies these
//!   in each context before it runs code, as E2B's server reads envd's `/envs`. Missing
//!   file: no variables. Written like the digest (atomically), mode 0600 owned by `user`
//!   (the values may be secrets; `user` runs all the sandbox's code anyway).
//!
//! Pure functions only: each side does its own I/O.

use std::collections::BTreeMap;

/// Port of the code-interpreter service inside the sandbox: E2B's Jupyter port, the
/// SDKs address it by number.
pub const INTERPRETER_PORT: u16 = 49999;

/// Where the agent publishes the digest of the current access token.
pub const TOKEN_DIGEST_FILE: &str = "/run/stasis/access-token.sha512";

/// Where the agent publishes the sandbox's environment variables.
pub const ENVS_FILE: &str = "/run/stasis/envs.json";

/// What [`TOKEN_DIGEST_FILE`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenDigest {
    /// The sandbox has no access token: calls are not checked (as envd).
    NoToken,
    /// SHA-512 of the token.
    Sha512([u8; 64]),
}

/// Contents of [`TOKEN_DIGEST_FILE`] for a token's SHA-512 (`None`: no token).
pub fn token_digest_file(sha512: Option<&[u8; 64]>) -> String {
    match sha512 {
        None => String::new(),
        Some(d) => {
            let mut s: String = d.iter().map(|b| format!("{b:02x}")).collect();
            s.push('\n');
            s
        }
    }
}

/// Parse [`TOKEN_DIGEST_FILE`]; surrounding whitespace is ignored.
pub fn parse_token_digest(text: &str) -> Result<TokenDigest, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(TokenDigest::NoToken);
    }
    if t.len() != 128 {
        return Err(format!("expected 128 hex digits, found {} characters", t.len()));
    }
    let mut out = [0u8; 64];
    for (i, pair) in t.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
        out[i] = u8::from_str_radix(hex, 16).map_err(|_| format!("not hex: {hex:?}"))?;
    }
    Ok(TokenDigest::Sha512(out))
}

/// Contents of [`ENVS_FILE`].
pub fn envs_file(envs: &BTreeMap<String, String>) -> String {
    serde_json::to_string(envs).expect("a map of strings serializes")
}

/// Parse [`ENVS_FILE`].
pub fn parse_envs(text: &str) -> Result<BTreeMap<String, String>, serde_json::Error> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips() {
        let d = [0xabu8; 64];
        let text = token_digest_file(Some(&d));
        assert_eq!(text.len(), 129);
        assert_eq!(parse_token_digest(&text).unwrap(), TokenDigest::Sha512(d));
        assert_eq!(parse_token_digest(&token_digest_file(None)).unwrap(), TokenDigest::NoToken);
        assert!(parse_token_digest("abc").is_err());
        assert!(parse_token_digest(&"zz".repeat(64)).is_err());
    }

    #[test]
    fn envs_round_trip() {
        let envs = BTreeMap::from([("A".to_string(), "1 \"two\"".to_string())]);
        assert_eq!(parse_envs(&envs_file(&envs)).unwrap(), envs);
        assert!(parse_envs("").unwrap().is_empty());
        assert!(parse_envs("[1]").is_err());
    }
}
