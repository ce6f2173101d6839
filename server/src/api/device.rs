//! What devices call with signed requests: the EKB, licenses and copy certificates.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use treecast_distributor::Distributor;
use treecast_keytree::SignedEkb;
use treecast_protocol::ServerId;
use treecast_registry::Registry;

use super::{State, blocking, body, misdirected, octets, path};
use crate::Service;
use crate::error::ApiError;
use crate::observe::Caller;

/// The current EKB, with its epoch in the `treecast-epoch` header. A cached EKB is answered
/// on the request's task when the service runs registry calls inline; reading an EKB from the
/// registry or building one (0.2 s at 1.7 M subsets) always runs on the blocking pool.
pub(super) async fn current_ekb(axum::extract::State(s): State) -> Result<Response, ApiError> {
    let cached = if s.inline {
        s.distributor.cached_current_ekb()?
    } else {
        None
    };
    let (epoch, ekb) = match cached {
        Some(hit) => hit,
        None => blocking(false, move || Ok(s.distributor.current_ekb()?)).await?,
    };
    let mut response = octets(StatusCode::OK, ekb_body(ekb));
    response
        .headers_mut()
        .insert("treecast-epoch", epoch.into());
    Ok(response)
}

/// The EKB of an epoch this process built (the current one, or one it served before). As for
/// the current EKB, only a cache hit is answered inline.
pub(super) async fn ekb(
    axum::extract::State(s): State,
    epoch: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let epoch = path(epoch)?;
    let cached = if s.inline {
        s.distributor.cached_ekb(epoch)?
    } else {
        None
    };
    let ekb =
        match cached {
            Some(hit) => hit,
            None => blocking(false, move || match s.distributor.ekb(epoch) {
                Err(treecast_protocol::Error::StaleEpoch { got, current }) => {
                    Err(ApiError::not_found(format!(
                        "this process has no EKB of epoch {got} (the current epoch is {current})"
                    )))
                }
                other => Ok(other?),
            })
            .await?,
        };
    Ok(octets(StatusCode::OK, ekb_body(ekb)))
}

/// The authority's newest signed list of a license server's keys (issue 29): what a device
/// fetches when an object names a key of that server it does not hold.
pub(super) async fn server_keys(
    axum::extract::State(s): State,
    server: Result<Path<u32>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = ServerId(path(server)?);
    let list = blocking(s.inline, move || Ok(s.distributor.server_key_list(id)?)).await?;
    // None yet: the keys of the devices' registrations stand. A 204, not a refusal: every
    // device asks before it stores a license.
    Ok(match list {
        Some(list) => octets(StatusCode::OK, list),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// An EKB's encoding, held by the answer's body through the cached EKB's `Arc`.
struct SharedEkb(Arc<SignedEkb>);

impl AsRef<[u8]> for SharedEkb {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// An answer's body of `ekb`'s bytes, shared with the cache rather than copied: an EKB is up
/// to 40 MB, and anyone may ask for one without a login.
fn ekb_body(ekb: Arc<SignedEkb>) -> Bytes {
    Bytes::from_owner(SharedEkb(ekb))
}

/// A distributor's supply of one signed request.
type Supply<T> = fn(&Distributor<Box<dyn Registry>>, &[u8]) -> Result<T, treecast_protocol::Error>;

/// Runs a supply: on the request's task when the service runs registry calls inline and the
/// current epoch's EKB is cached, with EKB fetches barred there (a revocation between the
/// check and the supply would otherwise build the new EKB on the reactor); otherwise, or when
/// the supply needed an EKB after all, on the blocking pool.
async fn supply<T: Send + 'static>(
    s: Arc<Service>,
    request: Bytes,
    f: Supply<T>,
) -> Result<T, ApiError> {
    if s.inline && s.distributor.cached_current_ekb()?.is_some() {
        let inline = s
            .distributor
            .with_cached_ekbs_only(|| f(&s.distributor, &request));
        if let Some(done) = inline {
            return done.map_err(|e| misdirected(&s, e));
        }
    }
    blocking(false, move || {
        f(&s.distributor, &request).map_err(|e| misdirected(&s, e))
    })
    .await
}

/// A signed license request in, the signed license out (claim 1, license supply).
pub(super) async fn license(
    axum::extract::State(s): State,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let license = supply(s, request, |d, r| d.supply_license(r)).await?;
    crate::metrics::supplied("license");
    Ok(for_client(
        octets(StatusCode::OK, license.as_bytes().to_vec()),
        license.tbs().client_id,
    ))
}

/// An answer that names its client for the access log.
fn for_client(mut response: Response, client: treecast_protocol::ClientId) -> Response {
    response.extensions_mut().insert(Caller {
        client: Some(client.0),
    });
    response
}

/// A signed move request in, the copy certificate (signed by the destination's server, with
/// the destination's license) out (claims 1, 2 and 4).
pub(super) async fn certificate(
    axum::extract::State(s): State,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let certificate = supply(s, request, |d, r| d.supply_certificate(r)).await?;
    crate::metrics::moved();
    Ok(for_client(
        octets(StatusCode::OK, certificate.as_bytes().to_vec()),
        certificate.tbs().source,
    ))
}

/// A signed renewal request in, the renewed license out (issue 27).
pub(super) async fn renewal(
    axum::extract::State(s): State,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let license = supply(s, request, |d, r| d.renew_license(r)).await?;
    crate::metrics::supplied("renewal");
    Ok(for_client(
        octets(StatusCode::OK, license.as_bytes().to_vec()),
        license.tbs().client_id,
    ))
}

/// A signed return request (with the device's receipt) in; 204 once the license is returned
/// (issue 27).
pub(super) async fn giveback(
    axum::extract::State(s): State,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    supply(s, request, |d, r| d.return_license(r)).await?;
    crate::metrics::supplied("return");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::sync::Arc;

    use treecast_keytree::{
        Authority, MasterSecret, RevocationSet, Scheme, TreeConfig, TreeHeight, TreeId,
    };

    use super::ekb_body;

    /// Review of issue 24, item 2: an EKB's answer is its very bytes, not a copy of them.
    #[test]
    fn an_ekb_answer_shares_the_cached_ekbs_bytes() {
        let height = TreeHeight::new(8).unwrap();
        let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
        let authority = Authority::new(&MasterSecret::from_bytes([7; 32]), config).unwrap();
        let revoked = RevocationSet::from_leaves(height, [3, 200]).unwrap();
        let ekb = Arc::new(
            authority
                .build_ekb(&authority.epoch_key(1), &revoked, 1)
                .unwrap(),
        );
        let body = ekb_body(Arc::clone(&ekb));
        assert_eq!(&body[..], ekb.as_bytes());
        assert_eq!(body.as_ptr(), ekb.as_bytes().as_ptr(), "no copy");
        assert_eq!(Arc::strong_count(&ekb), 2, "the body holds the EKB");
        drop(body);
        assert_eq!(Arc::strong_count(&ekb), 1);
    }
}
