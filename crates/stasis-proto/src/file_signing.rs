//! Signed `/files` URLs (`downloadUrl` / `uploadUrl` of a `secure` sandbox): the SDKs sign
//! `path:operation:username:accessToken[:expiration]` with SHA-256, base64 without padding,
//! prefixed `v1_`, and send it as `?signature=` (and `?signature_expiration=`, Unix
//! seconds). The path and username are the query's own text (an absent username signs as
//! the empty string). The checks and their messages are envd's, because the SDKs' tests
//! compare the JSON error bodies: a matching `X-Access-Token` header lets the call in
//! without a signature, a wrong one is refused, then the signature is compared (in
//! constant time) before its expiration is, so a forger never learns which one failed.
//!
//! Pure: both the agent and the host proxy check with it (the proxy so that a forged URL
//! cannot even auto-resume a paused sandbox).

use base64::Engine;
use sha2::{Digest, Sha256};

/// What a signature allows: `GET /files` reads, `POST /files` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }

    /// The operation of a `/files` request by its HTTP method; `None` for other methods.
    pub fn of_method(method: &http::Method) -> Option<Operation> {
        match *method {
            http::Method::GET => Some(Operation::Read),
            http::Method::POST => Some(Operation::Write),
            _ => None,
        }
    }
}

/// The signing parts of a `/files` query, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct SignedQuery<'a> {
    pub path: Option<&'a str>,
    pub username: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub signature_expiration: Option<&'a str>,
}

impl<'a> SignedQuery<'a> {
    /// The parts from a raw (percent-encoded) query string.
    pub fn parse(query: &'a str) -> SignedQueryOwned {
        let mut q = SignedQueryOwned::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = Some(percent_decode(v));
            match percent_decode(k).as_str() {
                "path" if q.path.is_none() => q.path = v,
                "username" if q.username.is_none() => q.username = v,
                "signature" if q.signature.is_none() => q.signature = v,
                "signature_expiration" if q.signature_expiration.is_none() => q.signature_expiration = v,
                _ => {}
            }
        }
        q
    }
}

/// [`SignedQuery`] with owned strings (what [`SignedQuery::parse`] decodes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SignedQueryOwned {
    pub path: Option<String>,
    pub username: Option<String>,
    pub signature: Option<String>,
    pub signature_expiration: Option<String>,
}

impl SignedQueryOwned {
    pub fn borrow(&self) -> SignedQuery<'_> {
        SignedQuery {
            path: self.path.as_deref(),
            username: self.username.as_deref(),
            signature: self.signature.as_deref(),
            signature_expiration: self.signature_expiration.as_deref(),
        }
    }
}

/// Why a `/files` call is refused. `message` is envd's text; every refusal is a 401 but a
/// malformed expiration (400, as envd's parameter binding answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

impl Refused {
    fn unauthorized(message: &str) -> Refused {
        Refused { status: 401, message: message.into() }
    }
}

/// The signature the SDKs compute (`getSignature` in JS, `get_signature` in Python).
pub fn signature(path: &str, op: Operation, username: &str, token: &str, expiration: Option<i64>) -> String {
    let raw = match expiration {
        None => format!("{path}:{}:{username}:{token}", op.as_str()),
        Some(e) => format!("{path}:{}:{username}:{token}:{e}", op.as_str()),
    };
    let digest = Sha256::digest(raw.as_bytes());
    format!("v1_{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// Whether a `/files` call may go on: always when the sandbox has no access token (`token`
/// `None`); else with the right `X-Access-Token` (`header_token`) or a valid, unexpired
/// signature. `now` is Unix seconds.
pub fn authorize(
    token: Option<&str>,
    header_token: Option<&str>,
    q: SignedQuery<'_>,
    op: Operation,
    now: i64,
) -> Result<(), Refused> {
    let Some(token) = token else { return Ok(()) };
    if let Some(given) = header_token.filter(|t| !t.is_empty()) {
        return if same(given, token) {
            Ok(())
        } else {
            Err(Refused::unauthorized("access token present in header but does not match"))
        };
    }
    let Some(sig) = q.signature else { return Err(Refused::unauthorized("missing signature query parameter")) };
    let expiration = match q.signature_expiration {
        None => None,
        Some(e) => Some(e.trim().parse::<i64>().map_err(|_| Refused {
            status: 400,
            message: format!("Invalid format for parameter signature_expiration: {e:?} is not an integer"),
        })?),
    };
    let expected = signature(q.path.unwrap_or_default(), op, q.username.unwrap_or_default(), token, expiration);
    if !same(&expected, sig) {
        return Err(Refused::unauthorized("invalid signature"));
    }
    match expiration {
        Some(e) if e < now => Err(Refused::unauthorized("signature is already expired")),
        _ => Ok(()),
    }
}

fn same(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// `application/x-www-form-urlencoded` decoding of one query component (`+` is a space).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "tok-123";

    fn q<'a>(path: &'a str, sig: Option<&'a str>, exp: Option<&'a str>) -> SignedQuery<'a> {
        SignedQuery { path: Some(path), username: None, signature: sig, signature_expiration: exp }
    }

    #[test]
    fn signature_as_the_sdks_compute_it() {
        // sha256("hello.txt:read::tok-123"), base64 without '=', as JS `getSignature` gives.
        let s = signature("hello.txt", Operation::Read, "", TOKEN, None);
        assert_eq!(s, "v1_azICoKbjc+KxI5FscbMRmK75/XFD9Pga1lt6jELtxbA");
        assert_ne!(s, signature("hello.txt", Operation::Write, "", TOKEN, None));
        assert_ne!(s, signature("hello.txt", Operation::Read, "root", TOKEN, None));
        assert_ne!(s, signature("hello.txt", Operation::Read, "", TOKEN, Some(1)));
    }

    #[test]
    fn checks_in_envd_order() {
        let now = 1_000;
        let ok = signature("x", Operation::Read, "", TOKEN, None);
        assert_eq!(authorize(None, None, q("x", None, None), Operation::Read, now), Ok(()));
        assert_eq!(authorize(Some(TOKEN), Some(TOKEN), q("x", None, None), Operation::Read, now), Ok(()));
        let msg = |r: Result<(), Refused>| r.unwrap_err().message;
        assert_eq!(
            msg(authorize(Some(TOKEN), Some("bad"), q("x", Some(&ok), None), Operation::Read, now)),
            "access token present in header but does not match"
        );
        assert_eq!(
            msg(authorize(Some(TOKEN), None, q("x", None, None), Operation::Read, now)),
            "missing signature query parameter"
        );
        assert_eq!(authorize(Some(TOKEN), None, q("x", Some(&ok), None), Operation::Read, now), Ok(()));
        // A read signature opens no write, nor another path.
        assert_eq!(
            msg(authorize(Some(TOKEN), None, q("x", Some(&ok), None), Operation::Write, now)),
            "invalid signature"
        );
        assert_eq!(
            msg(authorize(Some(TOKEN), None, q("y", Some(&ok), None), Operation::Read, now)),
            "invalid signature"
        );
        let past = signature("x", Operation::Read, "", TOKEN, Some(now - 10));
        let r = authorize(Some(TOKEN), None, q("x", Some(&past), Some("990")), Operation::Read, now).unwrap_err();
        assert_eq!((r.status, r.message.as_str()), (401, "signature is already expired"));
        // A forged signature with a past expiration says "invalid signature" first.
        assert_eq!(
            msg(authorize(Some(TOKEN), None, q("x", Some("v1_forged"), Some("990")), Operation::Read, now)),
            "invalid signature"
        );
        let future = signature("x", Operation::Read, "", TOKEN, Some(now + 10));
        assert_eq!(authorize(Some(TOKEN), None, q("x", Some(&future), Some("1010")), Operation::Read, now), Ok(()));
        assert_eq!(
            authorize(Some(TOKEN), None, q("x", Some(&future), Some("soon")), Operation::Read, now).unwrap_err().status,
            400
        );
    }

    #[test]
    fn query_parsing() {
        let p = SignedQuery::parse(
            "path=%2Fhome%2Fuser%2Fa+b.txt&username=root&signature=v1_ab%2Bc%2F&signature_expiration=12&x=1",
        );
        assert_eq!(p.path.as_deref(), Some("/home/user/a b.txt"));
        assert_eq!(p.username.as_deref(), Some("root"));
        assert_eq!(p.signature.as_deref(), Some("v1_ab+c/"));
        assert_eq!(p.signature_expiration.as_deref(), Some("12"));
        assert_eq!(
            SignedQuery::parse("path=100%"),
            SignedQueryOwned { path: Some("100%".into()), ..Default::default() }
        );
        assert_eq!(SignedQuery::parse("").borrow().signature, None);
    }
}
