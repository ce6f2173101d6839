//! What devices call with signed requests: the EKB, licenses and copy certificates.

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{State, blocking, body, misdirected, octets, path};
use crate::error::ApiError;

/// The current EKB, with its epoch in the `treecast-epoch` header.
pub(super) async fn current_ekb(axum::extract::State(s): State) -> Result<Response, ApiError> {
    let (epoch, ekb) = blocking(s.inline, move || Ok(s.distributor.current_ekb()?)).await?;
    let mut response = octets(StatusCode::OK, ekb.as_bytes().to_vec());
    response
        .headers_mut()
        .insert("treecast-epoch", epoch.into());
    Ok(response)
}

/// The EKB of an epoch this process built (the current one, or one it served before).
pub(super) async fn ekb(
    axum::extract::State(s): State,
    epoch: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let epoch = path(epoch)?;
    let ekb = blocking(s.inline, move || match s.distributor.ekb(epoch) {
        Err(treecast_license::Error::StaleEpoch { got, current }) => Err(ApiError::not_found(
            format!("this process has no EKB of epoch {got} (the current epoch is {current})"),
        )),
        other => Ok(other?),
    })
    .await?;
    Ok(octets(StatusCode::OK, ekb.as_bytes().to_vec()))
}

/// A signed license request in, the signed license out (claim 1, license supply).
pub(super) async fn license(
    axum::extract::State(s): State,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let license = blocking(s.inline, move || {
        s.distributor
            .supply_license(&request)
            .map_err(|e| misdirected(&s, e))
    })
    .await?;
    Ok(octets(StatusCode::OK, license.as_bytes().to_vec()))
}

/// A signed move request in, the copy certificate (signed by the destination's server, with
/// the destination's license) out (claims 1, 2 and 4).
pub(super) async fn certificate(
    axum::extract::State(s): State,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let certificate = blocking(s.inline, move || {
        s.distributor
            .supply_certificate(&request)
            .map_err(|e| misdirected(&s, e))
    })
    .await?;
    Ok(octets(StatusCode::OK, certificate.as_bytes().to_vec()).into_response())
}
