//! Node-to-node requests: a request one node forwards to another carries the forwarding
//! node's id and the cluster's shared secret. The receiving node answers such a request
//! itself (it never forwards it again, so two nodes that disagree on an owner cannot
//! bounce a request between them); a request claiming to be forwarded without the right
//! secret is refused, so a client cannot use the claim to pin a request on a node.
//!
//! The secret travels as a header: node-to-node traffic belongs on a private network
//! (as the PostgreSQL connection does); it is not encrypted by Stasis.

use axum::http::HeaderMap;

/// The forwarding node's id.
pub const FORWARDED_BY: &str = "x-stasis-forwarded-by";
/// The cluster secret.
pub const NODE_AUTH: &str = "x-stasis-node-auth";

/// What a request says of where it comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    /// From a client: may be forwarded.
    Client,
    /// Forwarded by this node of the cluster (the secret matched): answered here.
    Node(String),
    /// Claims to be forwarded, without the cluster's secret.
    Forged,
}

/// Where `headers` come from, given this cluster's secret (`None`: no cluster, so every
/// claim is forged).
pub fn origin(headers: &HeaderMap, secret: Option<&str>) -> Origin {
    let Some(by) = headers.get(FORWARDED_BY) else { return Origin::Client };
    let given = headers.get(NODE_AUTH).map(|v| v.as_bytes()).unwrap_or_default();
    match secret {
        Some(s) if stasis_store::constant_time_eq(given, s.as_bytes()) => {
            Origin::Node(String::from_utf8_lossy(by.as_bytes()).into_owned())
        }
        _ => Origin::Forged,
    }
}

/// Marks `headers` as forwarded by node `from` (replacing whatever a client sent).
pub fn mark(headers: &mut HeaderMap, from: &str, secret: &str) -> Result<(), String> {
    let value = |s: &str| axum::http::HeaderValue::from_str(s).map_err(|e| e.to_string());
    headers.insert(FORWARDED_BY, value(from)?);
    let mut auth = value(secret)?;
    auth.set_sensitive(true);
    headers.insert(NODE_AUTH, auth);
    Ok(())
}

/// Takes the node headers off a request answered here (they must not reach a sandbox).
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(FORWARDED_BY);
    headers.remove(NODE_AUTH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_makes_a_request_a_nodes() {
        let secret = "0123456789abcdef";
        let mut h = HeaderMap::new();
        assert_eq!(origin(&h, Some(secret)), Origin::Client);
        mark(&mut h, "node-a", secret).unwrap();
        assert_eq!(origin(&h, Some(secret)), Origin::Node("node-a".into()));
        assert_eq!(origin(&h, Some("another-secret-16")), Origin::Forged);
        assert_eq!(origin(&h, None), Origin::Forged, "no cluster: no node may forward");
        h.remove(NODE_AUTH);
        assert_eq!(origin(&h, Some(secret)), Origin::Forged);
        mark(&mut h, "node-a", secret).unwrap();
        strip(&mut h);
        assert!(h.is_empty());
    }
}
