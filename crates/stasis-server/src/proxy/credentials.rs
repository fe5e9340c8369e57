//! What the proxy takes out of a request before it reaches code in a sandbox: Stasis's
//! own credentials. The sandbox runs untrusted code; a client that sends its API key to
//! every host it talks to (one HTTP session for the API and the sandbox hosts, a
//! `requests.Session` with default headers) must not hand that code the key to every
//! other sandbox of the tenant.
//!
//! - `X-API-KEY` and `Authorization: Bearer`, when they carry a valid Stasis API key: the
//!   same headers with other values are the application's own and pass.
//! - `e2b-traffic-access-token`: checked by the proxy, of no use behind it.
//! - `X-Access-Token` (the envd token) everywhere but the envd port, whose agent checks
//!   it again, and the code interpreter's (49999), which checks it too (the token is the
//!   sandbox's own: it opens nothing its code does not already hold). On the envd port
//!   `Authorization: Basic user:` (envd's user choice) passes.

use axum::http::{header, HeaderMap, HeaderName};

use crate::api::AppState;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The key an `X-API-KEY` or `Authorization` value would carry.
fn candidate(name: &HeaderName, value: &str) -> Option<String> {
    let v = value.trim();
    if name == header::AUTHORIZATION {
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim().to_string());
    }
    Some(v.to_string())
}

pub async fn strip(state: &AppState, port: u16, headers: &mut HeaderMap) {
    headers.remove("e2b-traffic-access-token");
    if port != stasis_proto::agent::ENVD_PORT && port != stasis_proto::agent::INTERPRETER_PORT {
        headers.remove("x-access-token");
    }
    for name in [X_API_KEY, header::AUTHORIZATION] {
        let keys: Vec<String> =
            headers.get_all(&name).iter().filter_map(|v| candidate(&name, v.to_str().ok()?)).collect();
        let mut is_stasis_key = false;
        for k in keys {
            // A store that cannot answer: treat it as a key (dropping an app's header is
            // the safe mistake).
            if state.lifecycle.verify_api_key(&k).await.unwrap_or(true) {
                is_stasis_key = true;
                break;
            }
        }
        if is_stasis_key {
            headers.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_authorization_can_carry_a_key() {
        assert_eq!(candidate(&header::AUTHORIZATION, "Bearer e2b_x ").as_deref(), Some("e2b_x"));
        assert_eq!(candidate(&header::AUTHORIZATION, "bearer e2b_x").as_deref(), Some("e2b_x"));
        assert_eq!(candidate(&header::AUTHORIZATION, "Basic dXNlcjo="), None);
        assert_eq!(candidate(&X_API_KEY, " e2b_x ").as_deref(), Some("e2b_x"));
    }
}
