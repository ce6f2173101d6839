//! The web device's page at `/app/` (issue 30, `docs/web.md`): the files
//! `scripts/build-web.sh` builds (`index.html`, `app.js`, `style.css`, `pkg/`), served from a
//! directory with headers that keep the page to its own origin.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::TimeoutLayer;

/// What the page may load: scripts and the WebAssembly module of its own origin only (no
/// inline script, no `eval` but WebAssembly's compilation), media from the blobs it makes, and
/// the service's API on the same origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' \
    'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `router` with the web device's page served from `dir` at `/app/` (`/app` redirects there),
/// behind the same access log, request IDs, metrics, timeout and panic catching as the API.
///
/// The files are read at each request: a build of the page replaces them without a restart.
/// Only files are answered: a directory but `/app/` itself is a 404 (no redirect built from a
/// path the client chose).
pub fn with_app(router: Router, dir: &Path, timeout: std::time::Duration) -> Router {
    let files = Router::new()
        .route_service("/", ServeFile::new(dir.join("index.html")))
        .fallback_service(ServeDir::new(dir).append_index_html_on_directories(false))
        .layer(axum::middleware::map_response(headers));
    let app = Router::new()
        .route(
            "/app",
            axum::routing::get(|| async { axum::response::Redirect::to("/app/") }),
        )
        .nest_service("/app/", files)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            crate::ApiError::internal("the service failed on this request").into_response()
        }))
        .layer(axum::middleware::from_fn(crate::observe::observe));
    router.merge(app)
}

async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The page and its module change with each build: always revalidated.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
