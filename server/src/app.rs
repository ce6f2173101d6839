//! The web device's page at `/app/` (issue 30, `docs/web.md`): the files
//! `scripts/build-web.sh` builds (`index.html`, `app.js`, `style.css`, `pkg/`), served from a
//! directory with headers that keep the page to its own origin.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tower_http::services::ServeDir;

/// What the page may load: scripts and the WebAssembly module of its own origin only (no
/// inline script, no `eval` but WebAssembly's compilation), media from the blobs it makes, and
/// the service's API on the same origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' \
    'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `router` with the web device's page served from `dir` at `/app/` (`/app` redirects there).
///
/// The files are read at each request: a build of the page replaces them without a restart.
pub fn with_app(router: Router, dir: &Path) -> Router {
    let files = Router::new()
        .fallback_service(ServeDir::new(dir).append_index_html_on_directories(true))
        .layer(axum::middleware::map_response(headers));
    router
        .route(
            "/app",
            axum::routing::get(|| async { axum::response::Redirect::permanent("/app/") }),
        )
        .nest_service("/app/", files)
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
