//! What the distributor's operator calls with the admin token: users, publishing, revocations.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use treecast_protocol::ClientId;
use treecast_registry::Registry;

use super::gate::{Place, Upload, too_large, too_slow};
use super::{State, blocking, path};
use crate::contents::Format;
use crate::error::ApiError;

/// The buffer between an upload's body and its file, and between the file and the container.
const UPLOAD_BUFFER: usize = 1 << 20;

/// Creates a user; answers its ID and credential (hand the credential to the user: it is
/// derived from the distributor secret, so this process does not store it).
pub(super) async fn create_user(
    axum::extract::State(s): State,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.check_admin(&headers)?;
    let (user, credential) = blocking(s.inline, move || {
        let user = s.distributor.register_user()?;
        Ok((user, s.distributor.user_credential(user)?))
    })
    .await?;
    Ok(credential_answer(StatusCode::CREATED, user, &credential))
}

/// Rotates a user's credential (issue 29): answers the new one; the old one no longer checks.
pub(super) async fn rotate_credential(
    axum::extract::State(s): State,
    user: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.check_admin(&headers)?;
    let user = treecast_protocol::UserId(path(user)?);
    let credential = blocking(s.inline, move || {
        Ok(s.distributor.rotate_user_credential(user)?)
    })
    .await?;
    Ok(credential_answer(StatusCode::OK, user, &credential))
}

/// A user and their credential, as `create_user` and `rotate_credential` answer them.
fn credential_answer(
    status: StatusCode,
    user: treecast_protocol::UserId,
    credential: &treecast_protocol::credential::UserCredential,
) -> Response {
    let body = json!({"user": user.0, "credential": credential.to_hex().as_str()});
    (status, axum::Json(body)).into_response()
}

/// Re-wraps every content key under storage key `{key_id}` (issue 29): online, on the blocking
/// pool; answers what it did. A rotation longer than the request timeout goes on after the 408
/// and finishes; run it again to see everything under the new key.
pub(super) async fn rekey(
    axum::extract::State(s): State,
    key_id: Result<Path<u32>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.check_admin(&headers)?;
    let to = path(key_id)?;
    let done = blocking(false, move || Ok(s.distributor.rekey_contents(to)?)).await?;
    let body = json!({
        "key_id": to,
        "rewrapped": done.rewrapped,
        "already": done.already,
        "changed": done.changed,
    });
    Ok(axum::Json(body).into_response())
}

/// A user's account: the total billed and their clients.
pub(super) async fn user(
    axum::extract::State(s): State,
    user: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.check_admin(&headers)?;
    let user = treecast_protocol::UserId(path(user)?);
    let (total, clients) = blocking(s.inline, move || {
        let registry = s.distributor.registry();
        Ok((registry.user_total(user)?, registry.clients_of(user)?))
    })
    .await?;
    let clients: Vec<u64> = clients.iter().map(|c| c.0).collect();
    Ok(axum::Json(json!({"user": user.0, "total": total, "clients": clients})).into_response())
}

/// Publishes the body as a new content; answers its ID and the container's size. The gate
/// checked the admin token and the announced size before any of the body was read; the body is
/// streamed to a temporary file (never held in memory) within the request timeout, then
/// packaged from it on the blocking pool. The packaging has no deadline (it is bounded by the
/// content's size), so that a publish is never answered 408 once it can no longer be stopped;
/// it keeps its publish place until it ends, even if the client went away.
pub(super) async fn publish(
    axum::extract::State(s): State,
    Extension(upload): Extension<Upload>,
    Extension(place): Extension<Place>,
    headers: HeaderMap,
    mut plain: Body,
) -> Result<Response, ApiError> {
    s.check_admin(&headers)?;
    // A clear fragmented MP4 sent as such is packaged with Common Encryption (issue 30).
    let format = match headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        // The media type, its parameters (`; codecs=…`) aside.
        Some(t)
            if t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("video/mp4")) =>
        {
            Format::Cenc
        }
        _ => Format::Container,
    };
    let file = s.contents.upload()?;
    let io = |e: std::io::Error| ApiError::internal(format!("the upload's file: {e}"));
    let mut out = tokio::io::BufWriter::with_capacity(
        UPLOAD_BUFFER,
        tokio::fs::File::from_std(file.reopen().map_err(io)?),
    );
    let mut size = 0usize;
    let deadline = tokio::time::Instant::now() + upload.deadline;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = tokio::time::timeout(upload.idle.min(left), plain.frame())
            .await
            .map_err(|_| too_slow())?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ApiError::malformed(format!("the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            size = size.saturating_add(data.len());
            if size > upload.max {
                return Err(too_large(upload.max));
            }
            out.write_all(&data).await.map_err(io)?;
        }
    }
    out.flush().await.map_err(io)?;
    drop(out);
    if size == 0 {
        return Err(ApiError::malformed("a content cannot be empty"));
    }
    // Always on the blocking pool: packaging encrypts the whole content, which would hold a
    // reactor thread for seconds.
    let (content, size) = blocking(false, move || {
        let _place = place;
        let plain = std::io::BufReader::with_capacity(UPLOAD_BUFFER, file.reopen().map_err(io)?);
        let mut rng = s.rng()?;
        let record = s
            .contents
            .publish(&s.distributor, plain, format, &mut *rng)?;
        drop(file);
        let size = std::fs::metadata(s.contents.path(record.id))
            .map(|m| m.len())
            .map_err(|e| ApiError::internal(format!("the container: {e}")))?;
        Ok((record.id, size))
    })
    .await?;
    let body = json!({"content": content.0, "size": size});
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// Revokes a client: a new epoch whose EKB excludes it.
pub(super) async fn revoke(
    state: State,
    client: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    end_client(state, client, headers, false).await
}

/// Deregisters a client (for the key tree, a revocation).
pub(super) async fn deregister(
    state: State,
    client: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    end_client(state, client, headers, true).await
}

/// A revocation or a deregistration: the client and the new epoch.
async fn end_client(
    axum::extract::State(s): State,
    client: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
    deregister: bool,
) -> Result<Response, ApiError> {
    s.check_admin(&headers)?;
    let client = ClientId(path(client)?);
    let epoch = blocking(s.inline, move || {
        Ok(if deregister {
            s.distributor.deregister_client(client)?
        } else {
            s.distributor.revoke_client(client)?
        })
    })
    .await?;
    Ok(axum::Json(json!({"client": client.0, "epoch": epoch})).into_response())
}
