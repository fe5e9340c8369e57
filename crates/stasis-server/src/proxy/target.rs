//! Which sandbox and port a request is for: `E2b-Sandbox-Id` / `E2b-Sandbox-Port` (or the
//! `Novita-Sandbox-*` pair) headers, else a Host of the form `{port}-{id}.{domain}`.

use axum::http::HeaderMap;

/// The agent's (envd's) port: the default when only a sandbox id is given.
pub use stasis_runtime::ENVD_PORT;

use crate::ids::{InvalidSandboxId, SandboxId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sandbox_id: SandboxId,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    BadPort(String),
    BadId(InvalidSandboxId),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::BadPort(p) => write!(f, "invalid sandbox port {p:?}: use 1-65535"),
            TargetError::BadId(e) => e.fmt(f),
        }
    }
}

fn header<'a>(h: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| h.get(*n)).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `Ok(None)`: the request is for the control API.
pub fn resolve(headers: &HeaderMap, domain: &str) -> Result<Option<Target>, TargetError> {
    if let Some(id) = header(headers, &["e2b-sandbox-id", "novita-sandbox-id"]) {
        let id = SandboxId::parse(id).map_err(TargetError::BadId)?;
        let port = match header(headers, &["e2b-sandbox-port", "novita-sandbox-port"]) {
            Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or_else(|| TargetError::BadPort(p.to_string()))?,
            None => ENVD_PORT,
        };
        return Ok(Some(Target { sandbox_id: id, port }));
    }
    let Some(host) = header(headers, &["host"]) else { return Ok(None) };
    Ok(from_host(host, domain))
}

/// Parses `{port}-{id}.{domain}[:listen-port]`; anything else is not a sandbox host.
pub fn from_host(host: &str, domain: &str) -> Option<Target> {
    let host = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let (label, rest) = host.split_once('.')?;
    if !rest.eq_ignore_ascii_case(domain) {
        return None;
    }
    let (port, id) = label.split_once('-')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    SandboxId::parse(id).ok().map(|sandbox_id| Target { sandbox_id, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn headers_name_the_target() {
        let t = resolve(&h(&[("e2b-sandbox-id", "sbx1"), ("e2b-sandbox-port", "8000")]), "localhost").unwrap();
        assert_eq!(t, Some(Target { sandbox_id: SandboxId::parse("sbx1").unwrap(), port: 8000 }));
        // Novita sends the id alone: the agent's port.
        let t = resolve(&h(&[("novita-sandbox-id", "sbx1")]), "localhost").unwrap();
        assert_eq!(t.unwrap().port, ENVD_PORT);
        assert!(resolve(&h(&[("e2b-sandbox-id", "Bad-Id")]), "localhost").is_err());
        assert!(resolve(&h(&[("e2b-sandbox-id", "a"), ("e2b-sandbox-port", "0")]), "localhost").is_err());
        assert!(resolve(&h(&[("e2b-sandbox-id", "a"), ("e2b-sandbox-port", "70000")]), "localhost").is_err());
    }

    #[test]
    fn host_names_the_target() {
        assert_eq!(
            from_host("49983-abc123.localhost:3000", "localhost"),
            Some(Target { sandbox_id: SandboxId::parse("abc123").unwrap(), port: 49983 })
        );
        assert_eq!(from_host("8000-abc.sandbox.example.test", "sandbox.example.test").unwrap().port, 8000);
        assert_eq!(from_host("127.0.0.1:3000", "localhost"), None);
        assert_eq!(from_host("localhost:3000", "localhost"), None);
        assert_eq!(from_host("8000-abc.other.test", "localhost"), None);
        assert_eq!(from_host("x-abc.localhost", "localhost"), None);
        let t = resolve(&h(&[("host", "3000-zz9.localhost")]), "localhost").unwrap();
        assert_eq!(t.unwrap().sandbox_id.as_str(), "zz9");
        assert_eq!(resolve(&h(&[("host", "127.0.0.1:3000")]), "localhost").unwrap(), None);
    }
}
