//! The browser client: the built files of `web/`, served from `--web-dir` on the API's own origin.
//!
//! Serving the app from the API's origin means no CORS, and the gateways' default allowed origins match it.
//! Paths under `/api/` never reach here. A path with no file extension that names no file is a client route
//! (`/r/ROOM`), answered with `index.html` so a reload or a shared link opens the app where it was.

use std::path::Path;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;
use crate::state::AppState;

/// The page's Content-Security-Policy: only its own scripts and styles, no inline code, no framing. Message
/// bodies are rendered as text anyway; this keeps a slip from ever running script, and `connect-src` keeps
/// anything that did run from sending what it reads anywhere but this origin and the gateways: those this API has
/// heard from since it started (the URLs it hands out), listed when the page is served.
fn content_security_policy(state: &AppState) -> HeaderValue {
    let mut connect = String::from("'self'");
    for origin in state.gateways.origins() {
        connect.push(' ');
        connect.push_str(&origin);
    }
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src {connect}; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    );
    // Gateway origins are checked to be plain (crate::fleet::ws_origin), so this is always a valid value.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

/// Whether `dir` holds a built client (its `index.html`).
pub fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// Answers every request no route took: the client's files when `--web-dir` is set, else a JSON 404.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path();
    let Some(dir) = state.settings.web_dir.as_deref() else {
        return not_found();
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) || path.starts_with("/api/") || path == "/api" {
        return not_found();
    }
    let (response, cache) = if path == "/" || path == "/index.html" {
        (index(dir, req).await, "no-cache")
    } else {
        // Built assets carry a content hash in their names: they never change, so they are cached for good.
        let cache = if path.starts_with("/assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        };
        let client_route = !path.rsplit('/').next().unwrap_or_default().contains('.');
        let served = serve(ServeDir::new(dir).precompressed_gzip(), req.map(Body::new)).await;
        match served {
            Some(response) if response.status() != StatusCode::NOT_FOUND => (response, cache),
            _ if client_route => (index_file(dir).await, "no-cache"),
            _ => return not_found(),
        }
    };
    with_headers(response, cache, content_security_policy(&state))
}

async fn index(dir: &Path, req: Request) -> Response {
    serve(
        ServeFile::new(dir.join("index.html")).precompressed_gzip(),
        req.map(Body::new),
    )
    .await
    .unwrap_or_else(not_found)
}

async fn index_file(dir: &Path) -> Response {
    let req = Request::get("/index.html").body(Body::empty()).unwrap_or_default();
    index(dir, req).await
}

/// Runs a file service; `None` when it failed (an I/O error other than a missing file).
async fn serve<S>(service: S, req: Request) -> Option<Response>
where
    S: tower::Service<Request, Response = Response<tower_http::services::fs::ServeFileSystemResponseBody>>,
    S::Error: std::fmt::Display,
{
    match service.oneshot(req).await {
        Ok(response) => Some(response.map(Body::new)),
        Err(err) => {
            tracing::warn!(error = %err, "failed to read a web client file");
            None
        }
    }
}

fn with_headers(mut response: Response, cache: &'static str, csp: HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // The same URL answers gzip or not by the request's Accept-Encoding: shared caches must keep both apart.
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn not_found() -> Response {
    ApiError::not_found("not_found", "no such endpoint; see /api/openapi.json").into_response()
}
