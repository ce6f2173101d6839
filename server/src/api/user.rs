//! What a user calls with their credential: registering a device, listing their devices,
//! a license's status, and downloading a container. Each checks that the credential is the
//! user's of the path, so that no one acts for another user.

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower::ServiceExt;
use treecast_protocol::registration::RegistrationRequest;
use treecast_protocol::{ContentId, LicenseId, UserId};

use super::{State, blocking, body, misdirected, octets, path};
use crate::Service;
use crate::auth::credential;
use crate::error::ApiError;

/// What the gate puts on a request whose credential it checked: the user it is (issue 28,
/// review: one registry read a request, not one in the gate and another in the handler).
#[derive(Clone, Copy, Debug)]
pub(super) struct Authorized(pub(super) UserId);

/// Checks that the gate authenticated the request as `user` (every `/v1/users/{user}/…` route
/// is behind it; a request without its mark is refused, never served).
fn authorize(caller: Option<&Authorized>, user: UserId) -> Result<(), ApiError> {
    match caller {
        Some(Authorized(checked)) if *checked == user => Ok(()),
        _ => Err(ApiError::unauthorized("the credential is not this user's")),
    }
}

/// Checks the request's credential against `user` (a registry read: the user's credential
/// epoch).
pub(super) fn check_credential(
    s: &Service,
    headers: &HeaderMap,
    user: UserId,
) -> Result<(), ApiError> {
    let presented = credential(headers)?;
    s.distributor
        .check_user_credential(user, &presented)
        .map_err(|e| match e {
            treecast_protocol::Error::BadCredential => {
                ApiError::unauthorized("the credential is not this user's")
            }
            // The registry did not answer: not the caller's fault (503), nor a failed login.
            e => e.into(),
        })
}

/// Registers a device of the user with a license server: a [`RegistrationRequest`] in (the
/// server's ID, the device's Ed25519 and X25519 public keys, signed by the device over the
/// user), the registration (the signed client certificate, the device's key set and the
/// servers' public keys) sealed to the device's X25519 key out (`docs/formats.md`, "Sealed
/// registration"): the key set crosses the network, and any TLS-terminating proxy, encrypted to
/// the device, and no one but the device can name the key it is sealed to.
pub(super) async fn register(
    axum::extract::State(s): State,
    user: Result<Path<u64>, PathRejection>,
    caller: Option<axum::Extension<Authorized>>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let user = UserId(path(user)?);
    let request = body(request)?;
    let sealed = blocking(s.inline, move || {
        authorize(caller.as_deref(), user)?;
        // A generator of its own, seeded from the service's: the service's lock is not held
        // across the registry write.
        let mut rng = {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            rand_core::Rng::fill_bytes(&mut *s.rng()?, seed.as_mut_slice());
            <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(*seed)
        };
        s.distributor
            .register_sealed(user, &request, &mut rng)
            .map_err(|e| match e {
                treecast_protocol::Error::Decode(_) => ApiError::malformed(format!(
                    "a registration is {} bytes: a server ID, an Ed25519 public key, an X25519 \
                     public key and the device's signature",
                    RegistrationRequest::LEN
                )),
                e => misdirected(&s, e),
            })
    })
    .await?;
    Ok(octets(StatusCode::CREATED, sealed))
}

/// The user's devices.
pub(super) async fn clients(
    axum::extract::State(s): State,
    user: Result<Path<u64>, PathRejection>,
    caller: Option<axum::Extension<Authorized>>,
) -> Result<Response, ApiError> {
    let user = UserId(path(user)?);
    let list = blocking(s.inline, move || {
        authorize(caller.as_deref(), user)?;
        let registry = s.distributor.registry();
        let mut list = Vec::new();
        for id in registry.clients_of(user)? {
            if let Some(c) = registry.client(id)? {
                list.push(json!({
                    "client": c.id.0,
                    "server": c.server.0,
                    "leaf": c.leaf.get(),
                    "revoked": c.revoked,
                }));
            }
        }
        Ok(list)
    })
    .await?;
    Ok(axum::Json(json!({ "user": user.0, "clients": list })).into_response())
}

/// A license's state: `active`, `moved` (to another of the user's devices) or `revoked` (its
/// device is). Another user's license is not found.
pub(super) async fn license_status(
    axum::extract::State(s): State,
    ids: Result<Path<(u64, u64)>, PathRejection>,
    caller: Option<axum::Extension<Authorized>>,
) -> Result<Response, ApiError> {
    let (user, license) = path(ids)?;
    let (user, license) = (UserId(user), LicenseId(license));
    let status = blocking(s.inline, move || {
        authorize(caller.as_deref(), user)?;
        let (l, state) = s.distributor.license_state(user, license)?;
        let state = state.name();
        Ok(json!({
            "license": l.id.0,
            "content": l.content.0,
            "client": l.client.0,
            "epoch": l.epoch,
            "issued_at": l.issued_at.0,
            "state": state,
        }))
    })
    .await?;
    Ok(axum::Json(status).into_response())
}

/// A license's status document (issue 27), after Readium LCP's: its state, dates, the events
/// of its history with their devices, and where to renew and return it.
pub(super) async fn status_document(
    axum::extract::State(s): State,
    ids: Result<Path<(u64, u64)>, PathRejection>,
    caller: Option<axum::Extension<Authorized>>,
) -> Result<Response, ApiError> {
    let (user, license) = path(ids)?;
    let (user, license) = (UserId(user), LicenseId(license));
    let document = blocking(s.inline, move || {
        authorize(caller.as_deref(), user)?;
        let d = s.distributor.status_document(user, license)?;
        let updated = d.events.last().map_or(d.issued_at, |e| e.at);
        let events: Vec<_> = d
            .events
            .iter()
            .map(|e| json!({"type": e.kind, "time": e.at.0, "device": e.device.0}))
            .collect();
        let mut document = json!({
            "id": d.license.0,
            "content": d.content.0,
            "device": d.client.0,
            "status": d.status.name(),
            "updated": {"license": d.issued_at.0, "status": updated.0},
            "events": events,
        });
        if let (Some(t), Some(map)) = (d.terms, document.as_object_mut()) {
            map.insert("offer".into(), json!(t.offer().name()));
            map.insert(
                "rights".into(),
                json!({
                    "start": t.not_before().0,
                    "end": t.not_after().0,
                    "play_window": t.play_window(),
                }),
            );
            map.insert("potential_rights".into(), json!({"end": t.renew_until().0}));
            map.insert(
                "links".into(),
                json!([
                    {"rel": "renew", "href": "/v1/renewals", "method": "POST"},
                    {"rel": "return", "href": "/v1/returns", "method": "POST"},
                ]),
            );
        }
        Ok(document)
    })
    .await?;
    Ok(axum::Json(document).into_response())
}

/// A content's container, streamed, with range requests; the download is recorded (claim 6).
pub(super) async fn download(
    axum::extract::State(s): State,
    ids: Result<Path<(u64, u64)>, PathRejection>,
    caller: Option<axum::Extension<Authorized>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (user, content) = path(ids)?;
    let (user, content) = (UserId(user), ContentId(content));
    let file = {
        blocking(s.inline, move || {
            authorize(caller.as_deref(), user)?;
            s.distributor.supply_content(user, content)?;
            let file = s.contents.path(content);
            if !file.is_file() {
                return Err(ApiError::not_found(format!(
                    "{content} is registered but its container is not in this process's \
                     content directory"
                )));
            }
            Ok(file)
        })
        .await?
    };
    let mut request = Request::new(Body::empty());
    for name in [axum::http::header::RANGE, axum::http::header::IF_RANGE] {
        if let Some(v) = headers.get(&name) {
            request.headers_mut().insert(name, v.clone());
        }
    }
    let response = tower_http::services::ServeFile::new_with_mime(
        file,
        &"application/octet-stream"
            .parse()
            .map_err(|_| ApiError::internal("a MIME type"))?,
    )
    .oneshot(request)
    .await
    .map_err(|e| ApiError::internal(format!("reading the container: {e}")))?;
    Ok(response.map(Body::new))
}
