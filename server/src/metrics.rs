//! The service's metrics (issue 28), in Prometheus's text format at `GET /metrics`, through the
//! `metrics` facade and `metrics-exporter-prometheus`'s recorder. `docs/operations.md` says
//! what each one means and which alerts to draw from them.
//!
//! Counters and histograms are recorded where things happen (a request, a supply, a registry
//! transaction in `treecast-registry`); gauges that describe state (the epoch, the EKB cache)
//! are read from the distributor when the metrics are scraped. Without an installed recorder
//! (the library used on its own, the simulator) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::Service;

/// The buckets of every latency histogram, in seconds: 100 µs to 10 s.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// The process's metrics recorder, and the handle that renders what it recorded.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl core::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Installs the process's metrics recorder (one per process) and publishes the build-info
    /// gauge: `version` and `commit` as its labels.
    ///
    /// # Errors
    /// A message when a recorder is already installed.
    pub fn install(version: &'static str, commit: &'static str) -> Result<Self, String> {
        let handle = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map_err(|e| e.to_string())?
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .map_err(|e| e.to_string())?
            .install_recorder()
            .map_err(|e| format!("a metrics recorder: {e}"))?;
        describe();
        gauge!("treecast_build_info", "version" => version, "commit" => commit).set(1.0);
        Ok(Self { handle })
    }

    /// What was recorded, in Prometheus's text format, with the gauges of `service`'s state
    /// read now.
    pub fn render(&self, service: &Service) -> String {
        observe_state(service);
        self.handle.render()
    }

    /// Drains the histograms' recent samples into their buckets; call it every few seconds
    /// (a scrape does it too).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Describes every metric (its `# HELP` and unit).
fn describe() {
    describe_counter!(
        "treecast_http_requests_total",
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        "treecast_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer's headers, by method and route"
    );
    describe_counter!(
        "treecast_supplies_total",
        "Licenses supplied, renewed and returned, by kind (license, renewal, return)"
    );
    describe_counter!(
        "treecast_moves_total",
        "Copy certificates issued (a content moved between two clients of a user)"
    );
    describe_counter!(
        "treecast_refusals_total",
        "Requests refused or failed, by error code (the `error` of the JSON answer)"
    );
    describe_histogram!(
        "treecast_registry_transaction_duration_seconds",
        Unit::Seconds,
        "Time of a registry transaction on a SQL store, by store and kind"
    );
    describe_gauge!(
        "treecast_registry_pool_connections",
        "PostgreSQL pool connections, by state (idle, in_use), at the last checkout"
    );
    describe_counter!(
        "treecast_ekb_builds_total",
        "EKBs this process built (a cover, a wrap per subset, a signature)"
    );
    describe_gauge!(
        "treecast_ekb_build_time_seconds",
        Unit::Seconds,
        "Time this process spent building EKBs since it started (only grows)"
    );
    describe_gauge!(
        "treecast_ekb_cached_bytes",
        Unit::Bytes,
        "Bytes of the EKBs cached"
    );
    describe_gauge!("treecast_epoch", "The current key epoch");
    describe_gauge!(
        "treecast_ready",
        "1 when the last readiness check passed, 0 when it failed or the process drains"
    );
    describe_gauge!(
        "treecast_build_info",
        "1, with the version and commit as labels"
    );
}

/// Reads the gauges of the service's state.
fn observe_state(service: &Service) {
    let stats = service.distributor().ekb_stats();
    counter!("treecast_ekb_builds_total").absolute(stats.builds);
    gauge!("treecast_ekb_build_time_seconds").set(stats.build_time.as_secs_f64());
    #[allow(clippy::cast_precision_loss, reason = "a gauge of bytes")]
    gauge!("treecast_ekb_cached_bytes").set(stats.cached_bytes as f64);
    // The registry's epoch, not a cached one: a read (a revocation by another process shows).
    if let Ok(epoch) = service.distributor().epoch() {
        #[allow(clippy::cast_precision_loss, reason = "an epoch is far below 2^53")]
        gauge!("treecast_epoch").set(epoch as f64);
    }
}

/// One answered request.
pub(crate) fn request(
    method: &'static str,
    route: &str,
    status: u16,
    latency: Duration,
    error: Option<&'static str>,
) {
    counter!(
        "treecast_http_requests_total",
        "method" => method,
        "route" => route.to_owned(),
        "status" => status.to_string(),
    )
    .increment(1);
    histogram!(
        "treecast_http_request_duration_seconds",
        "method" => method,
        "route" => route.to_owned(),
    )
    .record(latency.as_secs_f64());
    if let Some(code) = error {
        counter!("treecast_refusals_total", "error" => code).increment(1);
    }
}

/// One license supplied (`license`), renewed (`renewal`) or returned (`return`).
pub(crate) fn supplied(kind: &'static str) {
    counter!("treecast_supplies_total", "kind" => kind).increment(1);
}

/// One copy certificate issued.
pub(crate) fn moved() {
    counter!("treecast_moves_total").increment(1);
}

/// Whether the last readiness check passed.
pub(crate) fn ready(ready: bool) {
    gauge!("treecast_ready").set(if ready { 1.0 } else { 0.0 });
}

/// The route of `GET /metrics`, alone: for an address of its own (`treecast serve
/// --metrics-listen`), with the request timeout and a panic caught; on the service's own address
/// it is part of [`crate::router_with_metrics`], behind the same layers as every route.
pub fn router(service: Arc<Service>, metrics: Metrics, limits: &crate::Limits) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || scrape(metrics.clone(), Arc::clone(&service))),
        )
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
}

/// A scrape's answer. Reading the service's state queries the registry (the epoch): on the
/// blocking pool, since a PostgreSQL registry's client blocks on a runtime of its own.
pub(crate) async fn scrape(metrics: Metrics, service: Arc<Service>) -> Response {
    match tokio::task::spawn_blocking(move || metrics.render(&service)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => crate::ApiError::internal("the metrics could not be read").into_response(),
    }
}
