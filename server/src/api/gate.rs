//! What a routed request passes before its handler runs, in this order: the failed
//! authentication throttle (429), the admin token or the user's credential (401), the
//! announced body size (413), then the body itself within its deadline (408), and only then
//! a concurrency slot. So no body is read for a caller that is not authorised, and a body
//! that trickles in holds no slot. A publish instead takes one of a few publish places (503
//! beyond them), held until its packaging ends, and streams its body itself
//! (`admin::publish`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use treecast_protocol::UserId;

use super::user::{Authorized, check_credential};
use crate::error::ApiError;
use crate::throttle::{AuthThrottle, Subject};
use crate::{Limits, Service};

/// The most credential checks in flight at once (fewer with a smaller concurrency limit).
const MAX_CHECKS: usize = 64;

/// How long a caller turned away for lack of a publish place is asked to wait.
const PUBLISH_RETRY: Duration = Duration::from_secs(5);

/// The shared state of the gate.
#[derive(Debug)]
pub(super) struct Gate {
    service: Arc<Service>,
    slots: Arc<Semaphore>,
    /// Credential checks in flight: each reads the registry (the user's credential epoch)
    /// before the request holds a slot, so they are bounded on their own (review of issue 29).
    credential_checks: Arc<Semaphore>,
    publishes: Arc<Semaphore>,
    throttle: AuthThrottle,
    body: usize,
    content: usize,
    body_timeout: Duration,
    timeout: Duration,
}

/// The bounds of a publish's body, for its handler.
#[derive(Clone, Copy, Debug)]
pub(super) struct Upload {
    /// The largest content.
    pub(super) max: usize,
    /// The longest pause between two parts of the body.
    pub(super) idle: Duration,
    /// How long the whole body may take.
    pub(super) deadline: Duration,
}

/// A publish's place among the `Limits::publishes` that run at once. Its handler moves it into
/// the packaging task, so that the place stays taken until the packaging ends, even when the
/// client went away before it.
#[derive(Clone, Debug)]
pub(super) struct Place {
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Gate {
    pub(super) fn new(service: Arc<Service>, limits: &Limits) -> Self {
        Self {
            service,
            slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            credential_checks: Arc::new(Semaphore::new(limits.concurrency.clamp(1, MAX_CHECKS))),
            publishes: Arc::new(Semaphore::new(limits.publishes.max(1))),
            throttle: AuthThrottle::new(
                limits.auth_failures_per_address,
                limits.auth_failures_per_user,
                limits.throttle_entries,
            ),
            body: limits.body,
            content: limits.content,
            body_timeout: limits.body_timeout,
            timeout: limits.timeout,
        }
    }
}

/// A device, user or admin request other than a publish: authorised, its body read within
/// the body deadline, then served in a concurrency slot.
pub(super) async fn small(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(e) = authenticated(&gate, &mut request).await {
        // A refused request's body is read and dropped when it announces no more than a small
        // body's limit (within the body deadline): a connection closed with unread bytes is
        // reset, and the reset can destroy the refusal before the client reads it (seen as
        // "broken pipe" or "peer disconnected" in CI). A larger or unannounced body is not read.
        let body = request.into_body();
        let announced = body.size_hint().upper();
        if announced.is_some_and(|n| n > 0 && n <= u64::try_from(gate.body).unwrap_or(0)) {
            let _ = read(body, gate.body, gate.body_timeout).await;
        }
        return e.into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match read(body, gate.body, gate.body_timeout).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let Ok(_slot) = Arc::clone(&gate.slots).acquire_owned().await else {
        return ApiError::internal("the request slots are closed").into_response();
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A publish: the admin token and the announced size are checked before any of the body is
/// read, and it runs only in one of the publish places; its handler streams the body to a
/// file ([`Upload`]).
pub(super) async fn publish(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(e) = authenticated(&gate, &mut request).await {
        return e.into_response();
    }
    if let Err(e) = announced(request.body(), gate.content) {
        return e.into_response();
    }
    let Ok(place) = Arc::clone(&gate.publishes).try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "as many publishes as the service runs at once are running; retry later",
        )
        .retry_after(PUBLISH_RETRY)
        .into_response();
    };
    request.extensions_mut().insert(Upload {
        max: gate.content,
        idle: gate.body_timeout,
        deadline: gate.timeout,
    });
    request.extensions_mut().insert(Place {
        _permit: Arc::new(place),
    });
    next.run(request).await
}

/// Authenticates `request` ([`authenticate`]); a user's request then carries [`Authorized`],
/// which its handler checks instead of reading the registry a second time.
async fn authenticated(gate: &Gate, request: &mut Request) -> Result<(), ApiError> {
    let address = peer(request);
    let user = authenticate(gate, request.uri().path(), request.headers(), address).await?;
    if let Some(user) = user {
        request.extensions_mut().insert(Authorized(user));
    }
    Ok(())
}

/// Checks the request's admin token or user credential, as its path asks, unless the caller
/// failed too often; records a failure. Answers the user whose credential was checked.
async fn authenticate(
    gate: &Gate,
    path: &str,
    headers: &axum::http::HeaderMap,
    address: Option<std::net::IpAddr>,
) -> Result<Option<UserId>, ApiError> {
    let subject = if path.starts_with("/v1/admin/") {
        Subject::Admin
    } else if let Some(rest) = path.strip_prefix("/v1/users/") {
        let user = rest
            .split('/')
            .next()
            .and_then(|u| u.parse::<u64>().ok())
            .ok_or_else(|| ApiError::malformed("a user ID is a decimal number"))?;
        Subject::User(user)
    } else {
        return Ok(None);
    };
    if !headers.contains_key(header::AUTHORIZATION) {
        // Nothing presented, nothing guessed: 401 at once, neither throttled nor counted.
        return Err(ApiError::unauthorized(
            "an `Authorization: Bearer …` header is required",
        ));
    }
    if let Some(wait) = gate.throttle.wait(address, subject) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "too many failed authentications; retry later",
        )
        .retry_after(wait));
    }
    let checked = match subject {
        Subject::Admin => gate.service.check_admin(headers),
        // A credential is checked against the user's credential epoch in the registry (issue
        // 29): a registry call, so on the blocking pool unless the store runs inline.
        Subject::User(user) => {
            let Ok(check) = Arc::clone(&gate.credential_checks).try_acquire_owned() else {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "as many credential checks as the service runs at once are running; retry",
                )
                .retry_after(Duration::from_secs(1)));
            };
            let service = Arc::clone(&gate.service);
            let headers = headers.clone();
            // The place goes with the check: a request that times out leaves its place taken
            // until its registry read ends.
            super::blocking(gate.service.inline, move || {
                let _check = check;
                check_credential(&service, &headers, UserId(user))
            })
            .await
        }
    };
    // Only a wrong token or credential counts: a registry that did not answer is no guess.
    if checked
        .as_ref()
        .is_err_and(|e| e.status() == StatusCode::UNAUTHORIZED)
    {
        gate.throttle.fail(address, subject);
    }
    checked?;
    Ok(match subject {
        Subject::User(user) => Some(UserId(user)),
        Subject::Admin => None,
    })
}

/// The address a request came from.
fn peer(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

/// 413 when the body announces (`Content-Length`) more than `limit` bytes.
fn announced(body: &Body, limit: usize) -> Result<(), ApiError> {
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(too_large(limit));
    }
    Ok(())
}

/// 413: a body beyond `limit`.
pub(super) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {limit} bytes"),
    )
}

/// 408: a body that did not arrive in time.
pub(super) fn too_slow() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        "the request's body did not arrive in time",
    )
}

/// The whole body, at most `limit` bytes, within `deadline`.
async fn read(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, ApiError> {
    announced(&body, limit)?;
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(too_slow()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Ok(Err(e)) => Err(ApiError::malformed(format!("the body: {e}"))),
    }
}
