//! The web dashboard at `/dashboard`: one HTML page, a script and a style sheet, embedded
//! in the binary (no build step, nothing fetched at run time). The page is a client of
//! the same API the SDKs use, with the API key the operator logs in with (kept in the
//! tab's session storage): sandboxes, their metrics, events and a terminal (the envd PTY
//! API through the proxy), snapshots and templates. Serving it needs no key; every call
//! it makes does.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// Only this page's own script and style; no framing (the key is typed here).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(|| async { Redirect::permanent("/dashboard/") }))
        .route("/dashboard/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/dashboard/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/dashboard/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_the_binary() {
        let app = super::router::<()>();
        for (path, ct, needle) in [
            ("/dashboard/", "text/html", "<script src=\"app.js\""),
            ("/dashboard/app.js", "text/javascript", "X-API-KEY"),
            ("/dashboard/style.css", "text/css", "body"),
        ] {
            let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(ct), "{path}");
            assert!(resp.headers().contains_key("content-security-policy"), "{path}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
        }
        let resp = app.oneshot(Request::get("/dashboard").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    }
}
