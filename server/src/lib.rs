//! treecast as a network service: a distributor's license servers over HTTP (`treecast serve`).
//!
//! The API is versioned under `/v1/` and described by the OpenAPI document served at
//! `/v1/openapi.json` (also `docs/openapi.json`). Request and answer bodies are the library's
//! signed binary encodings (`application/octet-stream`); errors are JSON
//! `{"error": CODE, "message": …}`. `docs/service.md` walks through a session.
//!
//! - Devices call the license and certificate endpoints with signed requests: the signature
//!   authenticates them, nothing else is needed.
//! - A user's credential (the bearer token of `/v1/users/{user}/…`) registers devices and reads
//!   the user's own rows: no endpoint lets one user act for another.
//! - The admin token (`--admin-token FILE`) guards users, publishing and revocations.
//! - Every registry call runs on the blocking pool; body sizes, time and concurrency are bounded
//!   ([`Limits`]); SIGTERM drains in-flight requests before the process exits.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use treecast_server::{Limits, Service};
//! # let service: Service = todo!();
//! let app = treecast_server::router(Arc::new(service), &Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! treecast_server::serve(listener, app, treecast_server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

use std::sync::Mutex;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use treecast_license::registry::Registry;
use treecast_license::{Distributor, Error};

mod api;
pub mod auth;
pub mod contents;
pub mod error;

pub use api::router;
pub use auth::AdminToken;
pub use contents::ContentDir;
pub use error::ApiError;

/// The OpenAPI document of the service (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What one `serve` process holds: the distributor (with the license servers whose keys it was
/// given), the content directory and the admin token.
pub struct Service {
    distributor: Distributor<Box<dyn Registry>>,
    contents: ContentDir,
    admin: AdminToken,
    rng: Mutex<ChaCha20Rng>,
    inline: bool,
}

impl core::fmt::Debug for Service {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Service")
            .field("contents", &self.contents)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service over `distributor`, publishing into `contents`, guarded by `admin`. Content
    /// keys and nonces come from `rng` (seed it from the operating system in production).
    pub fn new(
        distributor: Distributor<Box<dyn Registry>>,
        contents: ContentDir,
        admin: AdminToken,
        rng: ChaCha20Rng,
    ) -> Self {
        Self {
            distributor,
            contents,
            admin,
            rng: Mutex::new(rng),
            inline: false,
        }
    }

    /// Runs registry calls on the request's own task instead of tokio's blocking pool. For a
    /// store behind one connection (SQLite, memory), whose calls are short and serialized
    /// anyway, this saves two thread switches per request (measured in `docs/performance.md`);
    /// a PostgreSQL registry, whose calls wait on the network, keeps the blocking pool so that
    /// its connection pool works in parallel.
    #[must_use]
    pub fn inline(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    /// The distributor.
    pub fn distributor(&self) -> &Distributor<Box<dyn Registry>> {
        &self.distributor
    }

    fn rng(&self) -> Result<std::sync::MutexGuard<'_, ChaCha20Rng>, Error> {
        self.rng
            .lock()
            .map_err(|_| Error::Internal("random generator lock poisoned"))
    }
}

/// The bounds the service puts on requests.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// The largest body of a device or user request (a signed request is a few hundred
    /// bytes).
    pub body: usize,
    /// The largest content an admin publishes in one request.
    pub content: usize,
    /// How long a request may take before it is answered 408.
    pub timeout: Duration,
    /// How many requests are served at once; more wait for a slot (within the timeout).
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body: 64 * 1024,
            content: 256 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 256,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a streamed answer waits for the client's delayed ACK (40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` over TLS (rustls, with the `ring` provider) on `listener` until `shutdown`
/// completes, then finishes the requests in flight (at most 30 seconds more).
///
/// # Errors
/// An I/O error of the listener, or a certificate or key file that cannot be read or used.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    app: axum::Router,
    certificate: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // One process-wide provider; a second installation (a second server) is not an error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(certificate, key).await?;
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    listener.set_nonblocking(true)?;
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle)
        .serve(app.into_make_service())
        .await
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
