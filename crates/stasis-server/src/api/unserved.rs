//! Endpoints the SDKs call that Stasis does not serve yet: each answers 501 naming the SDK
//! method, so a user reads what is missing rather than a 404 the SDKs turn into "sandbox
//! not found" (docs/sdk-parity.md lists them, with why).

use axum::http::StatusCode;
use axum::routing::{any, MethodRouter};
use axum::Router;

use super::{ApiError, AppState};

/// (path, what the SDKs call it).
const UNSERVED: &[(&str, &str)] = &[("/secrets", "Secret"), ("/secrets/{id}", "Secret")];

fn not_served(what: &'static str) -> MethodRouter<AppState> {
    any(move || async move {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not served by this Stasis server yet (see docs/sdk-parity.md)"),
        )
    })
}

/// `router` with a 501 route for each unserved endpoint.
pub fn add(router: Router<AppState>) -> Router<AppState> {
    UNSERVED.iter().fold(router, |r, (path, what)| r.route(path, not_served(what)))
}
