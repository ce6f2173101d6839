//! Accepting connections: hyper's HTTP/1.1 server on tokio, in plain TCP or TLS, with the
//! bounds a service on the open internet needs ([`Limits`]): at most `connections` accepted
//! connections and `connections_per_address` from one address (more are closed at once), a
//! TLS handshake timeout, a header timeout that also closes an idle keep-alive connection, and
//! a write timeout that closes a connection whose client stopped reading (no write progress
//! for `write_timeout`). SIGTERM stops accepting and drains the requests in flight.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Limits;
use crate::throttle::address_key;

/// How long the requests in flight get to finish after SIGTERM, beyond the request timeout
/// (a download may still be streaming).
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight
/// (for at most `limits.timeout` and 30 seconds more).
///
/// # Errors
/// None today: accept errors are retried; the signature keeps room for them.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, app, limits, None, shutdown).await;
    Ok(())
}

/// A TLS certificate chain and key from PEM files, which [`Tls::reload`] reads again: each
/// handshake after a reload uses the new ones; connections already open keep theirs.
pub struct Tls {
    certificate: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
}

impl core::fmt::Debug for Tls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tls")
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain and key.
    ///
    /// # Errors
    /// A file that cannot be read, or holds no usable certificate or key.
    pub fn load(certificate: &Path, key: &Path) -> std::io::Result<Self> {
        Ok(Self {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
            acceptor: RwLock::new(TlsAcceptor::from(Arc::new(tls_config(certificate, key)?))),
        })
    }

    /// Reads the files again; on an error the certificate in use stays.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> std::io::Result<()> {
        let fresh = TlsAcceptor::from(Arc::new(tls_config(&self.certificate, &self.key)?));
        *self
            .acceptor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Serves `app` over TLS (rustls, with the `ring` provider) on `listener` until `shutdown`
/// completes, then finishes the requests in flight, as [`serve`].
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    app: axum::Router,
    limits: &Limits,
    tls: Arc<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    run(listener, app, limits, Some(tls), shutdown).await;
    Ok(())
}

/// The TLS configuration of a PEM certificate chain and key: TLS 1.2 and 1.3, HTTP/1.1.
fn tls_config(certificate: &Path, key: &Path) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| invalid(certificate, &e))?;
    let secret = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(certificate, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, secret)
        .map_err(|e| invalid(certificate, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The accept loop, then the drain.
async fn run(
    listener: TcpListener,
    app: axum::Router,
    limits: &Limits,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let admission = Arc::new(Admission::new(limits));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let handshake = limits.handshake_timeout;
    let write_timeout = limits.write_timeout;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let Some(admitted) = Admission::admit(&admission, peer.ip()) else {
            // Over a cap: closed at once, before a byte is read.
            drop(stream);
            continue;
        };
        // Without TCP_NODELAY a streamed answer waits for the client's delayed ACK (40 ms).
        let _ = stream.set_nodelay(true);
        // A client that stops reading (a zero TCP window, or pipelined requests whose answers
        // it never reads) stalls the writes: after `write_timeout` without progress the write
        // fails, and hyper closes the connection, giving back its place under the caps. Below
        // TLS, so that a stalled handshake or TLS record counts too.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(write_timeout));
        let stream = Box::pin(stream);
        let app = app.clone();
        let http = http.clone();
        let tls = tls.as_ref().map(|t| t.acceptor());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _admitted = admitted;
            match tls {
                None => {
                    let connection =
                        http.serve_connection(TokioIo::new(stream), service(app, peer));
                    let _ = watcher.watch(connection).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let connection =
                        http.serve_connection(TokioIo::new(stream), service(app, peer));
                    let _ = watcher.watch(connection).await;
                }
            }
        });
    }
    drop(listener);
    let drain = limits.timeout.saturating_add(DRAIN_GRACE);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}

/// `app` as a hyper service of one connection, which tells handlers the peer's address.
fn service(
    app: axum::Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>
             + Send
             + 'static,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    })
}

/// An accept error: a connection that failed before it was accepted is skipped; anything
/// else (out of file descriptors, say) is logged and waited out briefly.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The connection caps: overall, and per address.
#[derive(Debug)]
struct Admission {
    total: Arc<Semaphore>,
    per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// An admitted connection's place under the caps, given back when it is dropped.
#[derive(Debug)]
struct Admitted {
    _permit: OwnedSemaphorePermit,
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    fn new(limits: &Limits) -> Self {
        Self {
            total: Arc::new(Semaphore::new(limits.connections.max(1))),
            per_address: limits.connections_per_address.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for a connection from `ip`, or `None` when a cap is reached. The map holds only
    /// addresses with an open connection, so it is bounded by the overall cap.
    fn admit(this: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let permit = Arc::clone(&this.total).try_acquire_owned().ok()?;
        let address = address_key(ip);
        let mut open = this.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= this.per_address {
            return None;
        }
        *count += 1;
        Some(Admitted {
            _permit: permit,
            admission: Arc::clone(this),
            address,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}
