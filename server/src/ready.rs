//! Liveness and readiness (issue 28): `/v1/live` is the process alone; `/v1/ready` (and
//! `/v1/health`, its older name) is 200 only when the registry answers a real query, the
//! process holds a license server's signing key and the content directory's disk accepts a
//! write, and 503 once the process drains (SIGTERM).
//!
//! A check queries the registry and writes a file, and anyone may ask for it: its result is
//! kept for [`FRESH`], and one check runs at a time (a probe that comes meanwhile gets the last
//! result), so that a flood of probes costs one check a second and one blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Service;

/// How long a check's result is answered before the next check.
const FRESH: Duration = Duration::from_secs(1);

/// The readiness of one process.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    draining: AtomicBool,
    last: Mutex<Option<(Instant, Result<(), Failed>)>>,
    /// Held by the one check that runs: a probe that finds it taken answers the last result
    /// (or waits for the first), so a flood of probes never runs two checks at once, nor holds
    /// more than one blocking thread (review of issue 28).
    running: tokio::sync::Mutex<()>,
}

impl Readiness {
    /// From now on, not ready: the process drains.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// A failed check: what the answer says, and the details only the log has (they may name a
/// database host or a path).
type Failed = (&'static str, String);

/// Checks what a request needs: a registry query, a signing key, a write to the disk.
fn check(service: &Service) -> Result<(), Failed> {
    let distributor = service.distributor();
    treecast_registry::Registry::probe(distributor.registry(), treecast_registry::Probe::Ready)
        .map_err(|e| ("the registry does not answer", e.to_string()))?;
    let keys = distributor.server_keys();
    if !keys.iter().any(|(id, _, _)| distributor.holds_server(id)) {
        let held = "no license server's signing key is loaded";
        return Err((held, held.into()));
    }
    service
        .contents
        .probe_write()
        .map_err(|e| ("the disk refuses a write", e.to_string()))
}

/// The readiness answer: 200 `{"status": "ready"}`, or 503 with the reason.
pub(crate) async fn ready(service: std::sync::Arc<Service>) -> Response {
    let readiness = &service.readiness;
    if readiness.draining() {
        crate::metrics::ready(false);
        return unready("the process is draining (SIGTERM)");
    }
    let last = |fresh_only: bool| {
        let last = readiness
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|(at, _)| !fresh_only || at.elapsed() < FRESH)
            .map(|(_, result)| result.clone())
    };
    let running = match readiness.running.try_lock() {
        Ok(running) => Some(running),
        // A check runs: its last result, or the first one once it is in.
        Err(_) => match last(false) {
            Some(_) => None,
            None => Some(readiness.running.lock().await),
        },
    };
    let cached = match &running {
        None => last(false),
        Some(_) => last(true),
    };
    let result = match cached {
        Some(result) => result,
        None => {
            let s = std::sync::Arc::clone(&service);
            let result = tokio::task::spawn_blocking(move || check(&s))
                .await
                .unwrap_or_else(|_| Err(("the check failed", "its task panicked".into())));
            if let Err((reason, detail)) = &result {
                tracing::warn!(reason, detail = %detail, "not ready");
            }
            *readiness
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), result.clone()));
            result
        }
    };
    drop(running);
    crate::metrics::ready(result.is_ok());
    match result {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err((reason, _)) => unready(reason),
    }
}

fn unready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "unavailable", "reason": reason})),
    )
        .into_response()
}

/// The liveness answer: the process answers.
pub(crate) async fn live() -> Response {
    axum::Json(json!({"status": "live"})).into_response()
}
