//! What the distributor's operator calls with the admin token: users, publishing, revocations.

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use treecast_license::ClientId;
use treecast_license::registry::Registry;

use super::{State, blocking, body, path};
use crate::error::ApiError;

/// Creates a user; answers its ID and credential (hand the credential to the user: it is
/// derived from the distributor secret, so this process does not store it).
pub(super) async fn create_user(
    axum::extract::State(s): State,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.admin.check(&headers)?;
    let (user, credential) = blocking(s.inline, move || {
        let user = s.distributor.register_user()?;
        Ok((user, s.distributor.user_credential(user)?))
    })
    .await?;
    let body = json!({"user": user.0, "credential": credential.to_hex().as_str()});
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// A user's account: the total billed and their clients.
pub(super) async fn user(
    axum::extract::State(s): State,
    user: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.admin.check(&headers)?;
    let user = treecast_license::UserId(path(user)?);
    let (total, clients) = blocking(s.inline, move || {
        let registry = s.distributor.registry();
        Ok((registry.user_total(user)?, registry.clients_of(user)?))
    })
    .await?;
    let clients: Vec<u64> = clients.iter().map(|c| c.0).collect();
    Ok(axum::Json(json!({"user": user.0, "total": total, "clients": clients})).into_response())
}

/// Publishes the body as a new content; answers its ID and the container's size.
pub(super) async fn publish(
    axum::extract::State(s): State,
    headers: HeaderMap,
    plain: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    s.admin.check(&headers)?;
    let plain = body(plain)?;
    if plain.is_empty() {
        return Err(ApiError::malformed("a content cannot be empty"));
    }
    let (content, size) = blocking(s.inline, move || {
        let mut rng = s.rng()?;
        let record = s.contents.publish(&s.distributor, &plain, &mut *rng)?;
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
    s.admin.check(&headers)?;
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
