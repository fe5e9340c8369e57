//! Which node answers a request: the one that runs the sandbox it names (REST calls on
//! `/sandboxes/{id}...`, envd and port traffic through the proxy), or for a create, the
//! node placement picks (`lifecycle::nodes::place`). Everything else (lists, snapshots,
//! templates, volumes, secrets, nodes) reads or writes the shared store and is answered
//! by whichever node received it.

use axum::extract::Request;
use axum::http::Method;
use stasis_store::NodeRow;

use super::Cluster;
use crate::ids::SandboxId;
use crate::proxy::target;

/// What a request is about, as far as where it is answered goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Subject {
    /// A sandbox (by the proxy's target, or the API path).
    Sandbox(SandboxId),
    /// A new sandbox from a template (`POST /sandboxes`, `/v2/sandboxes`).
    Create,
    /// Anything else: answered here.
    Here,
}

/// The sandbox id of an API path about one sandbox.
fn sandbox_of_path(path: &str) -> Option<SandboxId> {
    let rest = path
        .strip_prefix("/v2/sandboxes/")
        .or_else(|| path.strip_prefix("/stasis/sandboxes/"))
        .or_else(|| path.strip_prefix("/sandboxes/"))?;
    SandboxId::parse(rest.split('/').next()?).ok()
}

/// What `req` is about (`domain`: the sandbox hosts' domain).
pub fn subject(req: &Request, domain: &str) -> Subject {
    let by_authority = (req.method() == Method::CONNECT)
        .then(|| req.uri().authority().and_then(|a| target::from_host(a.as_str(), domain)))
        .flatten();
    if let Some(t) = by_authority.or_else(|| target::resolve(req.headers(), domain).ok().flatten()) {
        return Subject::Sandbox(t.sandbox_id);
    }
    let path = req.uri().path();
    if req.method() == Method::POST && (path == "/sandboxes" || path == "/v2/sandboxes") {
        return Subject::Create;
    }
    sandbox_of_path(path).map_or(Subject::Here, Subject::Sandbox)
}

/// Where a request is answered.
#[derive(Debug)]
pub enum Destination {
    Here,
    Node(NodeRow),
    /// A create no node can take (every node draining, or none alive).
    Nowhere,
}

/// Whether the node at `url` accepts a TCP connection within a second.
async fn reachable(url: &str) -> bool {
    let Ok(addr) = super::forward::authority(url) else { return false };
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(tokio::time::timeout(std::time::Duration::from_secs(1), connect).await, Ok(Ok(_)))
}

impl Cluster {
    /// Which node should answer `subject`. Errors reading the store answer here (the
    /// local answer then says what is wrong).
    pub async fn destination(&self, subject: &Subject) -> Destination {
        let lc = self.lifecycle();
        match subject {
            Subject::Here => Destination::Here,
            Subject::Sandbox(id) => match lc.remote_owner(id).await {
                Ok(Some(node)) => Destination::Node(node),
                Ok(None) => Destination::Here,
                Err(e) => {
                    tracing::warn!(sandbox = %id, "cannot read its owner, answering here: {e}");
                    Destination::Here
                }
            },
            Subject::Create => {
                let Ok(nodes) = lc.nodes().await else { return Destination::Here };
                // A node killed a moment ago still holds its lease: the next one is taken
                // when it does not accept a connection, so a create never waits for a
                // dead node's lease to run out.
                for n in crate::lifecycle::nodes::placement_order(&nodes, lc.now()) {
                    if n.id == lc.node_id() {
                        return Destination::Here;
                    }
                    if reachable(&n.url).await {
                        return Destination::Node(n.clone());
                    }
                    tracing::warn!(node = %n.id, "placement skips a node that does not accept connections");
                }
                Destination::Nowhere
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    fn sbx(id: &str) -> Subject {
        Subject::Sandbox(SandboxId::parse(id).unwrap())
    }

    #[test]
    fn sandbox_calls_creates_and_the_rest() {
        let d = "example.com";
        assert_eq!(subject(&req(Method::GET, "/sandboxes/abc1", &[]), d), sbx("abc1"));
        assert_eq!(subject(&req(Method::POST, "/sandboxes/abc1/pause", &[]), d), sbx("abc1"));
        assert_eq!(subject(&req(Method::POST, "/v2/sandboxes/abc1/connect", &[]), d), sbx("abc1"));
        assert_eq!(subject(&req(Method::GET, "/stasis/sandboxes/abc1/events", &[]), d), sbx("abc1"));
        assert_eq!(
            subject(&req(Method::POST, "/process.Process/Start", &[("e2b-sandbox-id", "abc1")]), d),
            sbx("abc1")
        );
        assert_eq!(subject(&req(Method::GET, "/", &[("host", "8080-abc1.example.com")]), d), sbx("abc1"));
        assert_eq!(subject(&req(Method::CONNECT, "5432-abc1.example.com:443", &[]), d), sbx("abc1"));
        assert_eq!(subject(&req(Method::POST, "/sandboxes", &[]), d), Subject::Create);
        assert_eq!(subject(&req(Method::POST, "/v2/sandboxes", &[]), d), Subject::Create);
        for (m, uri) in [
            (Method::GET, "/sandboxes"),
            (Method::GET, "/v2/sandboxes"),
            (Method::GET, "/snapshots"),
            (Method::GET, "/sandboxes/NOT-AN-ID"),
            (Method::GET, "/stasis/nodes"),
        ] {
            assert_eq!(subject(&req(m, uri, &[]), d), Subject::Here, "{uri}");
        }
    }
}
