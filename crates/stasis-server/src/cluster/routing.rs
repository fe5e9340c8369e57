//! Which node answers a request: the one that runs the sandbox it names (REST calls on
//! `/sandboxes/{id}...`, envd and port traffic through the proxy); for a create, the node
//! that holds the snapshot its `templateID` names (`lifecycle::affinity`), else the node
//! placement picks (`lifecycle::nodes::place`); for a delete of a snapshot, the node that
//! holds it. Everything else (lists, templates, volumes, secrets, nodes) reads or writes
//! the shared store and is answered by whichever node received it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use stasis_store::NodeRow;

use super::Cluster;
use crate::api::{ApiError, MAX_BODY_BYTES};
use crate::ids::SandboxId;
use crate::lifecycle::affinity::{draining_message, gone_message, Affinity};
use crate::proxy::target;

/// What a request is about, as far as where it is answered goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Subject {
    /// A sandbox (by the proxy's target, or the API path).
    Sandbox(SandboxId),
    /// A new sandbox (`POST /sandboxes`, `/v2/sandboxes`) from the body's `templateID`
    /// (`None`: not read yet, or the default template; `with_create_body` reads it).
    Create(Option<String>),
    /// A snapshot's (or template's) files are deleted (`DELETE /templates/{id}`, the id
    /// decoded).
    Held(String),
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

/// The template or snapshot reference of `/templates/{id}` (one segment, percent-decoded
/// as the API's router decodes it: the SDKs send `ns%2Fname%3Atag`).
fn template_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/templates/")?;
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    percent_encoding::percent_decode_str(rest).decode_utf8().ok().map(|r| r.into_owned())
}

/// The only field of a create's body routing reads.
#[derive(serde::Deserialize)]
struct CreateTemplate {
    #[serde(rename = "templateID")]
    template_id: Option<String>,
}

/// Reads a create's body (up to the API's limit) for its `templateID` and puts it back,
/// unchanged, for the node that answers. A body over the limit is answered here (413,
/// as the API would); one that is not JSON goes on without a template (placement
/// decides; the node that answers says what is wrong with it).
pub async fn with_create_body(req: Request) -> Result<(Request, Subject), Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_BODY_BYTES} bytes"))
            .into_response()
    })?;
    let template = serde_json::from_slice::<CreateTemplate>(&bytes)
        .ok()
        .and_then(|c| c.template_id)
        .filter(|t| !t.trim().is_empty());
    Ok((Request::from_parts(parts, Body::from(bytes)), Subject::Create(template)))
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
        return Subject::Create(None);
    }
    if req.method() == Method::DELETE {
        if let Some(reference) = template_of_path(path) {
            return Subject::Held(reference);
        }
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
    /// The node that holds what the request needs cannot take it: the answer.
    Refused(StatusCode, String),
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
            Subject::Create(Some(template)) => match self.held(template, true).await {
                Some(d) => d,
                None => self.placed().await,
            },
            Subject::Create(None) => self.placed().await,
            Subject::Held(reference) => self.held(reference, false).await.unwrap_or(Destination::Here),
        }
    }

    /// Where a request about what `reference` names is answered when a node holds it (a
    /// snapshot): that node while it answers, else the error (`create`: a new sandbox,
    /// which a draining node does not make). `None`: nothing holds it.
    async fn held(&self, reference: &str, create: bool) -> Option<Destination> {
        let here = self.lifecycle().node_id();
        Some(match self.lifecycle().affinity(reference).await {
            Ok(Affinity::Free) => return None,
            // A draining node makes no new sandbox: with shared layers another one fetches
            // the snapshot, else nobody can.
            Ok(Affinity::Draining { .. }) if create && self.lifecycle().shares_layers() => self.placed().await,
            Ok(Affinity::Draining { node, snapshot }) if create => {
                Destination::Refused(StatusCode::CONFLICT, draining_message(&snapshot, &node.id))
            }
            Ok(Affinity::Here) => Destination::Here,
            Ok(Affinity::Draining { node, .. }) if node.id == here => Destination::Here,
            Ok(Affinity::Node { node, .. } | Affinity::Draining { node, .. }) if reachable(&node.url).await => {
                Destination::Node(node)
            }
            // Shared through the object store: when its node does not answer, any node
            // makes sandboxes from it or deletes it.
            Ok(Affinity::Node { .. } | Affinity::Draining { .. } | Affinity::Gone(_))
                if self.lifecycle().shares_layers() =>
            {
                match create {
                    true => self.placed().await,
                    false => Destination::Here,
                }
            }
            // A node killed a moment ago still holds its lease: it is not waited for.
            Ok(Affinity::Node { node, snapshot } | Affinity::Draining { node, snapshot }) => {
                Destination::Refused(StatusCode::SERVICE_UNAVAILABLE, gone_message(&snapshot, &node.id))
            }
            Ok(Affinity::Gone(m)) => Destination::Refused(StatusCode::SERVICE_UNAVAILABLE, m),
            Err(e) => {
                tracing::warn!(reference, "cannot read which node holds it, answering here: {e}");
                Destination::Here
            }
        })
    }

    /// The node placement picks for a new sandbox from a template.
    async fn placed(&self) -> Destination {
        let lc = self.lifecycle();
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
        assert_eq!(subject(&req(Method::POST, "/sandboxes", &[]), d), Subject::Create(None));
        assert_eq!(subject(&req(Method::POST, "/v2/sandboxes", &[]), d), Subject::Create(None));
        assert_eq!(
            subject(&req(Method::DELETE, "/templates/stasis%2Fwarm%3Adefault", &[]), d),
            Subject::Held("stasis/warm:default".into())
        );
        assert_eq!(subject(&req(Method::DELETE, "/templates/snap1", &[]), d), Subject::Held("snap1".into()));
        for (m, uri) in [
            (Method::GET, "/sandboxes"),
            (Method::GET, "/v2/sandboxes"),
            (Method::GET, "/snapshots"),
            (Method::GET, "/sandboxes/NOT-AN-ID"),
            (Method::GET, "/stasis/nodes"),
            (Method::GET, "/templates/snap1"),
            (Method::DELETE, "/templates/a/b"),
            (Method::DELETE, "/templates/"),
        ] {
            assert_eq!(subject(&req(m, uri, &[]), d), Subject::Here, "{uri}");
        }
    }

    async fn read(req: Request) -> (Subject, Vec<u8>) {
        let (req, subject) = with_create_body(req).await.unwrap();
        (subject, axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap().to_vec())
    }

    fn post(body: impl Into<Body>) -> Request {
        Request::builder().method(Method::POST).uri("/sandboxes").body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn a_creates_template_is_read_from_its_body_which_goes_on_unchanged() {
        let body = br#"{"templateID": "stasis/warm:default", "timeout": 30, "metadata": {"k": "v"}}"#;
        let (s, back) = read(post(body.to_vec())).await;
        assert_eq!(s, Subject::Create(Some("stasis/warm:default".into())));
        assert_eq!(back, body, "forwarded or handled here byte for byte");
        for (body, why) in [
            ("", "empty: the default template"),
            ("{}", "no templateID"),
            (r#"{"templateID": " "}"#, "blank"),
            ("not json", "bad JSON: the answering node says so"),
            (r#"{"templateID": 5}"#, "not a string"),
        ] {
            let (s, back) = read(post(body)).await;
            assert_eq!(s, Subject::Create(None), "{why}");
            assert_eq!(back, body.as_bytes(), "{why}");
        }
        // Over the API's limit: refused here, as the API refuses it.
        let big = format!(r#"{{"templateID": "x", "pad": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
        let answer = with_create_body(post(big)).await.unwrap_err();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
