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
//! - Every registry call runs on the blocking pool; connections, body sizes, time, concurrency
//!   and failed authentications are bounded ([`Limits`]); tokens, credentials and sizes are
//!   checked before a body is read; SIGTERM drains in-flight requests before the process exits.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use treecast_server::{Limits, Service};
//! # let service: Service = todo!();
//! let app = treecast_server::router(Arc::new(service), &Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! treecast_server::serve(listener, app, &Limits::default(), treecast_server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use treecast_distributor::Distributor;
use treecast_protocol::Error;
use treecast_registry::Registry;

mod api;
pub mod app;
pub mod auth;
pub mod contents;
pub mod error;
pub mod metrics;
mod net;
mod observe;
mod ready;
mod throttle;

pub use api::{router, router_with_metrics};
pub use auth::AdminToken;
pub use contents::ContentDir;
pub use error::ApiError;
pub use metrics::Metrics;
pub use net::{Tls, serve, serve_tls};
pub use observe::REQUEST_ID;

/// The OpenAPI document of the service (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What one `serve` process holds: the distributor (with the license servers whose keys it was
/// given), the content directory and the admin token.
pub struct Service {
    distributor: Distributor<Box<dyn Registry>>,
    contents: ContentDir,
    admin: RwLock<AdminToken>,
    rng: Mutex<ChaCha20Rng>,
    inline: bool,
    readiness: ready::Readiness,
    /// Where each license server of the deployment is served (`serve --server-url`).
    server_urls: std::collections::BTreeMap<u32, String>,
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
            admin: RwLock::new(admin),
            rng: Mutex::new(rng),
            inline: false,
            readiness: ready::Readiness::default(),
            server_urls: std::collections::BTreeMap::new(),
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

    /// Names the URL of each license server's process (issue 29): a request for a server this
    /// process does not hold is answered `421 other_server` with that server's URL, so that
    /// clients send it there.
    #[must_use]
    pub fn with_server_urls(mut self, urls: impl IntoIterator<Item = (u32, String)>) -> Self {
        self.server_urls = urls.into_iter().collect();
        self
    }

    /// From now on `/v1/ready` answers 503: the process drains (on SIGTERM, before it stops
    /// accepting connections, so that a load balancer sends new requests elsewhere).
    pub fn drain(&self) {
        self.readiness.drain();
        tracing::info!("draining: /v1/ready answers 503");
    }

    /// Replaces the admin token (`treecast serve` does on SIGHUP, after reading the token
    /// file again): the next request is checked against the new one; requests in flight and
    /// open connections are untouched.
    pub fn replace_admin_token(&self, token: AdminToken) {
        *self.admin.write().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// Checks a request's admin token.
    pub(crate) fn check_admin(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        self.admin
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .check(headers)
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

/// The bounds the service puts on connections and requests (`docs/service.md`, "Limits").
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
    /// How many requests are served at once; more wait for a slot (within the timeout). A
    /// request takes its slot only once its body is read; the health check takes none.
    pub concurrency: usize,
    /// How long a device or user request's body may take to arrive before it is answered 408
    /// (a publish's body may pause this long between two reads).
    pub body_timeout: Duration,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may stay idle, before it is closed (one hyper timer does both).
    pub header_timeout: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a write to a client may make no progress (a client that stopped reading, or
    /// advertises a zero TCP window) before its connection is closed.
    pub write_timeout: Duration,
    /// How many connections are open at once; more are closed as they are accepted.
    pub connections: usize,
    /// How many connections one address (an IPv6 /56) may have open at once.
    pub connections_per_address: usize,
    /// How many publishes run at once; more are answered 503 with `Retry-After`.
    pub publishes: usize,
    /// Failed authentications allowed per minute from one address (0: no limit); beyond it,
    /// 429.
    pub auth_failures_per_address: u32,
    /// Failed authentications allowed per minute for one user (0: no limit). Ten times the
    /// per-address default, so that one address alone cannot lock a user out.
    pub auth_failures_per_user: u32,
    /// How many addresses and users the failure throttle remembers (its memory bound); once
    /// it is full, an address or user it does not remember is not throttled.
    pub throttle_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body: 64 * 1024,
            content: 256 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 256,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            connections: 1024,
            connections_per_address: 64,
            publishes: 2,
            auth_failures_per_address: 10,
            auth_failures_per_user: 100,
            throttle_entries: 100_000,
        }
    }
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
