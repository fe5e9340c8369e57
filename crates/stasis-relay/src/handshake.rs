//! Opening a leg: an HTTP/1.1 upgrade to the agent's port on [`PATH`], authenticated with
//! the sandbox's access token like every other call to the agent.
//!
//! The request names what it wants in the [`HEADER`] header, `open port=P park=SECS`
//! (a new session to `127.0.0.1:P` inside the sandbox, kept `SECS` seconds of the
//! sandbox's running time when its leg is lost) or `resume session=ID received=N fin=F`
//! (the host has `N` bytes of the sandbox's direction, and its FIN if `F` is 1). A 101
//! answer carries `session=ID received=N fin=F`, the agent's side of the same.
//! Other answers: 401 (token), 404 (no such session: it ended or the sandbox was started
//! afresh), 502 (nothing listens on the port), 400 (a malformed header).

/// The agent's path for relay legs.
pub const PATH: &str = "/stasis/relay";
/// The `Upgrade` protocol name.
pub const PROTOCOL: &str = "stasis-relay/1";
/// Request and answer header.
pub const HEADER: &str = "x-stasis-relay";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Open { port: u16, park_secs: u64 },
    Resume { session: String, received: u64, fin: bool },
}

/// The agent's side of a new leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    pub session: String,
    pub received: u64,
    pub fin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {HEADER} header {0:?}")]
pub struct BadHeader(pub String);

fn fields(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split_ascii_whitespace().filter_map(|f| f.split_once('='))
}

fn field<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    fields(s).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// A session id: what the agent makes, and all a request may name.
fn valid_session(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Request {
    pub fn header_value(&self) -> String {
        match self {
            Request::Open { port, park_secs } => format!("open port={port} park={park_secs}"),
            Request::Resume { session, received, fin } => {
                format!("resume session={session} received={received} fin={}", *fin as u8)
            }
        }
    }

    pub fn parse(v: &str) -> Result<Self, BadHeader> {
        let bad = || BadHeader(v.to_string());
        let (verb, rest) = v.trim().split_once(' ').ok_or_else(bad)?;
        match verb {
            "open" => {
                let port = field(rest, "port").and_then(|p| p.parse().ok()).filter(|p| *p != 0).ok_or_else(bad)?;
                let park_secs = field(rest, "park").and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                Ok(Request::Open { port, park_secs })
            }
            "resume" => {
                let session = field(rest, "session").filter(|s| valid_session(s)).ok_or_else(bad)?;
                let received = field(rest, "received").and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                let fin = field(rest, "fin").map(|f| f == "1").ok_or_else(bad)?;
                Ok(Request::Resume { session: session.to_string(), received, fin })
            }
            _ => Err(bad()),
        }
    }

    /// The whole HTTP request that opens a leg with it.
    pub fn http(&self, access_token: Option<&str>) -> String {
        let token = access_token.map(|t| format!("X-Access-Token: {t}\r\n")).unwrap_or_default();
        format!(
            "GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: {PROTOCOL}\r\n{token}{HEADER}: {}\r\n\r\n",
            self.header_value()
        )
    }
}

impl Accept {
    pub fn header_value(&self) -> String {
        format!("session={} received={} fin={}", self.session, self.received, self.fin as u8)
    }

    pub fn parse(v: &str) -> Result<Self, BadHeader> {
        let bad = || BadHeader(v.to_string());
        let session = field(v, "session").filter(|s| valid_session(s)).ok_or_else(bad)?;
        let received = field(v, "received").and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let fin = field(v, "fin").map(|f| f == "1").ok_or_else(bad)?;
        Ok(Accept { session: session.to_string(), received, fin })
    }
}

/// How an agent answered a leg's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted(Accept),
    /// Any other status, with the body's start if it had one.
    Refused {
        status: u16,
    },
}

/// Reads the head of the agent's answer (everything before the blank line).
pub fn parse_answer(head: &str) -> Result<Answer, BadHeader> {
    let bad = || BadHeader(head.lines().next().unwrap_or_default().to_string());
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split_ascii_whitespace().nth(1)).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if status != 101 {
        return Ok(Answer::Refused { status });
    }
    let value = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(HEADER))
        .map(|(_, v)| v.trim())
        .ok_or_else(bad)?;
    Ok(Answer::Accepted(Accept::parse(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        for r in [
            Request::Open { port: 8000, park_secs: 600 },
            Request::Resume { session: "ab12".into(), received: 77, fin: true },
        ] {
            assert_eq!(Request::parse(&r.header_value()), Ok(r));
        }
        for bad in
            ["", "open", "open port=0 park=1", "open port=70000 park=1", "resume session=a/b received=1 fin=0", "x y=1"]
        {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read() {
        let a = Accept { session: "s1".into(), received: 5, fin: false };
        let head =
            format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: {PROTOCOL}\r\nX-Stasis-Relay: {}", a.header_value());
        assert_eq!(parse_answer(&head), Ok(Answer::Accepted(a)));
        assert_eq!(parse_answer("HTTP/1.1 404 Not Found\r\ncontent-length: 0"), Ok(Answer::Refused { status: 404 }));
        assert!(parse_answer("HTTP/1.1 101 Switching Protocols\r\n").is_err());
    }
}
