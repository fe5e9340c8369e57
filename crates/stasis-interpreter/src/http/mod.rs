//! The HTTP routes (E2B's code-interpreter API, port 49999): parse and check requests,
//! hand them to the registry and contexts, map their errors once ([`error`]).
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /health` | no | 200 `OK` once the prestarted contexts are ready, 503 before |
//! | `POST /execute` | `X-Access-Token` | 200 NDJSON stream (`crate::output`) |
//! | `POST /contexts` | no | 200 `{id, language, cwd}` |
//! | `GET /contexts` | no | 200 `[{id, language, cwd}, ...]` in creation order |
//! | `DELETE /contexts/{id}` | no | 204, 404 |
//! | `POST /contexts/{id}/restart` | no | 204, 404 |
//!
//! The SDKs send the access token only on `/execute` (docs/security.md).

mod contexts;
mod error;
mod execute;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::auth::Auth;
use crate::registry::Registry;

#[derive(Clone)]
pub struct AppState {
    registry: Arc<Registry>,
    auth: Auth,
    ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, auth: Auth) -> Self {
        AppState { registry, auth, ready: Arc::default() }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/execute", post(execute::execute))
        .route("/contexts", post(contexts::create).get(contexts::list))
        .route("/contexts/{id}", delete(contexts::remove))
        .route("/contexts/{id}/restart", post(contexts::restart))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
