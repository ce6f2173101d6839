//! What an operator sees of each request (issue 28): its request ID, one access log line, and
//! the request metrics.
//!
//! - The request ID is the caller's `x-request-id` when it is 1 to 128 characters of
//!   `[A-Za-z0-9._:+=/-]` (so that nothing a caller sends can forge a log line), and otherwise
//!   one made here; the answer carries it back in `x-request-id`, and every log line of the
//!   request is in its span.
//! - The access line (target `treecast::access`) names the method, the route (the matched
//!   pattern, never the raw path: bounded, and no ID of a row in a metric label), the status,
//!   the latency, the user or client where known, and the error code of a refusal. It is at
//!   `INFO` for an answer (and a `421` that sends the caller to another process), `WARN` for a
//!   refusal (4xx) and `ERROR` for a failure (5xx).
//! - Nothing a caller presents as a secret (a bearer token, a credential, a body) is logged:
//!   the line holds only the fields above (`tests/service/operations.rs` greps a whole flow's
//!   logs for every secret it used).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics as m;

/// The request ID's header, read and answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request ID taken from a caller.
const MAX_REQUEST_ID: usize = 128;

/// Who a request acted for, when its handler knows: put on the answer's extensions, read by
/// the access log.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Caller {
    /// The client whose signed request it was.
    pub(crate) client: Option<u64>,
}

/// The error code of a refusal or failure, put on the answer's extensions by
/// [`crate::ApiError`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal(pub(crate) &'static str);

/// The ID of a request: the caller's, when it is acceptable, or a new one.
fn request_id(request: &Request) -> HeaderValue {
    if let Some(given) = request.headers().get(&REQUEST_ID)
        && acceptable(given.as_bytes())
    {
        return given.clone();
    }
    made_id()
}

/// Whether a caller's request ID is taken as it is.
fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:+=/-".contains(b))
}

/// A new request ID: this process's random prefix and a counter, so unique across the
/// processes of a deployment without a random draw per request.
fn made_id() -> HeaderValue {
    static PREFIX: LazyLock<u32> = LazyLock::new(|| {
        let mut bytes = [0u8; 4];
        // Without system randomness the IDs are still unique within the process.
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{:08x}-{n:012x}", *PREFIX))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The method as a metric label: one of the methods the API uses, or `other` (bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// The user of a `/v1/users/{user}/…` path.
fn user_of(path: &str) -> Option<u64> {
    path.strip_prefix("/v1/users/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The middleware around every route: the request ID, the access line and the request
/// metrics.
pub(crate) async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let user = user_of(request.uri().path());
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let shown = id.to_str().unwrap_or("unknown").to_owned();
    let span = tracing::info_span!("request", id = %shown);
    let mut response = next.run(request).instrument(span).await;
    let latency = started.elapsed();
    let status = response.status();
    let client = response.extensions().get::<Caller>().and_then(|c| c.client);
    let error = response.extensions().get::<Refusal>().map(|r| r.0);
    m::request(method, &route, status.as_u16(), latency, error);
    let latency_ms = latency.as_secs_f64() * 1e3;
    macro_rules! access {
        ($level:expr) => {
            tracing::event!(
                target: "treecast::access",
                $level,
                request_id = %shown,
                method,
                route = %route,
                status = status.as_u16(),
                latency_ms,
                user,
                client,
                error,
            )
        };
    }
    if status.is_server_error() {
        access!(tracing::Level::ERROR);
    } else if status.is_client_error() && status != axum::http::StatusCode::MISDIRECTED_REQUEST {
        // A 421 is routing (the caller follows it to the right process), not a refusal.
        access!(tracing::Level::WARN);
    } else {
        access!(tracing::Level::INFO);
    }
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

#[cfg(test)]
mod tests {
    use super::{acceptable, made_id, user_of};

    #[test]
    fn a_request_id_that_could_forge_a_log_line_is_replaced() {
        assert!(acceptable(b"abc-123_x.y:z"));
        assert!(!acceptable(b""));
        assert!(!acceptable(b"a\nb"));
        assert!(!acceptable(b"a b"));
        assert!(!acceptable(b"a\"b"));
        assert!(!acceptable(&[b'a'; 129]));
        assert!(acceptable(&[b'a'; 128]));
        assert_ne!(made_id(), made_id());
    }

    #[test]
    fn the_user_of_a_path() {
        assert_eq!(user_of("/v1/users/42/clients"), Some(42));
        assert_eq!(user_of("/v1/users/x/clients"), None);
        assert_eq!(user_of("/v1/licenses"), None);
    }
}
