//! The routes of `/v1/`, and what every handler shares.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use treecast_protocol::Error;

use crate::error::ApiError;
use crate::{Limits, Service};

mod admin;
mod device;
mod gate;
mod user;

use gate::Gate;

/// The service's routes, with its limits and layers, over `service`. Every route but the
/// health check and the OpenAPI document passes the gate (`gate.rs`): authorisation and sizes
/// before the body, the body within its deadline, then a concurrency slot.
pub fn router(service: Arc<Service>, limits: &Limits) -> Router {
    router_with_metrics(service, limits, None)
}

/// [`router`], with `GET /metrics` among the open routes when `metrics` is given (behind the
/// same timeout, panic catching and access log as the rest).
pub fn router_with_metrics(
    service: Arc<Service>,
    limits: &Limits,
    metrics: Option<crate::Metrics>,
) -> Router {
    let gate = Arc::new(Gate::new(Arc::clone(&service), limits));
    let mut open = Router::new()
        .route("/v1/live", get(crate::ready::live))
        .route("/v1/ready", get(ready))
        .route("/v1/health", get(ready))
        .route("/v1/openapi.json", get(openapi));
    if let Some(metrics) = metrics {
        open = open.route(
            "/metrics",
            get(move |axum::extract::State(s): State| crate::metrics::scrape(metrics.clone(), s)),
        );
    }
    let small = Router::new()
        .route("/v1/ekb", get(device::current_ekb))
        .route("/v1/ekb/{epoch}", get(device::ekb))
        .route("/v1/servers/{server}/keys", get(device::server_keys))
        .route("/v1/licenses", post(device::license))
        .route("/v1/certificates", post(device::certificate))
        .route("/v1/renewals", post(device::renewal))
        .route("/v1/returns", post(device::giveback))
        .route(
            "/v1/users/{user}/clients",
            post(user::register).get(user::clients),
        )
        .route(
            "/v1/users/{user}/licenses/{license}",
            get(user::license_status),
        )
        .route(
            "/v1/users/{user}/licenses/{license}/status",
            get(user::status_document),
        )
        .route("/v1/users/{user}/contents/{content}", get(user::download))
        .route("/v1/admin/users", post(admin::create_user))
        .route("/v1/admin/users/{user}", get(admin::user))
        .route(
            "/v1/admin/users/{user}/credential",
            post(admin::rotate_credential),
        )
        .route("/v1/admin/clients/{client}/revoke", post(admin::revoke))
        .route("/v1/admin/storage-keys/{key_id}/rekey", post(admin::rekey))
        .route("/v1/admin/clients/{client}", delete(admin::deregister))
        .layer(DefaultBodyLimit::max(limits.body))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&gate),
            gate::small,
        ));
    // A publish bounds its upload by the request timeout itself, and its packaging not at all
    // (`admin::publish`): a 408 during the packaging answered a publish that went on.
    let large = Router::new()
        .route("/v1/admin/contents", post(admin::publish))
        .route_layer(middleware::from_fn_with_state(gate, gate::publish));
    open.merge(small)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ))
        .merge(large)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(service)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("the service failed on this request").into_response()
        }))
        .layer(middleware::from_fn(crate::observe::observe))
}

/// The shared state of every handler.
type State = axum::extract::State<Arc<Service>>;

/// Readiness (`ready.rs`); `/v1/health` is its older name.
async fn ready(axum::extract::State(s): State) -> Response {
    crate::ready::ready(s).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}

/// Runs `f`, which calls the registry: on the blocking pool, or right here when the service
/// runs registry calls inline (a store behind one connection: see [`Service::inline`]).
async fn blocking<T: Send + 'static>(
    inline: bool,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if inline {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("the request's task failed"))?
}

/// A binary answer.
fn octets(status: StatusCode, bytes: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes.into(),
    )
        .into_response()
}

/// A path's parameters, or 400.
fn path<T>(p: Result<axum::extract::Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|axum::extract::Path(v)| v)
        .map_err(|e| ApiError::malformed(e.body_text()))
}

/// A request's body, or 413 / 400.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "malformed"
        };
        ApiError::new(status, code, e.body_text())
    })
}

/// A library error of a request that names a license server this process does not hold the
/// key of: 421, so that the caller sends it to that server's process.
/// The answer names that process's URL when the operator gave it (`serve --server-url N=URL`,
/// issue 29), in `server_url`.
fn misdirected(service: &Service, e: Error) -> ApiError {
    if let Error::UnknownServer(id) = e
        && service.distributor.server_keys().has_server(id)
    {
        let answer = ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "other_server",
            format!("{id} is served by another process of this distributor"),
        );
        return match service.server_urls.get(&id.0) {
            Some(url) => answer.server_url(url.clone()),
            None => answer,
        };
    }
    e.into()
}
