//! The admin listener: `GET /metrics` in Prometheus text format, on its
//! own address (`--admin-listen`, loopback by default) so that it is never
//! reachable through the public one. The layers report through the
//! `metrics` facade ([`tollgate_core::metrics`]); [`install_prometheus`]
//! installs `metrics-exporter-prometheus`'s recorder, whose handle this
//! router renders. No exporter server of the crate's own is used.

use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::header;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::middleware;

/// How often the recorder's histograms are compacted.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the process-wide Prometheus recorder (once per process) with
/// key-id labels on or off, and spawns its upkeep. The error says why
/// it could not be installed (another recorder already is).
pub fn install_prometheus(key_id_labels: bool) -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    tollgate_core::metrics::set_key_id_labels(key_id_labels);
    // The recorder is global and for good: each request counter's handle
    // can be kept instead of looked up on every report.
    tollgate_core::metrics::keep_handles();
    spawn_upkeep(handle.clone());
    Ok(handle)
}

/// Compacts the recorder's histograms every [`UPKEEP_INTERVAL`], while the process runs.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The admin listener's routes: `GET /metrics`, JSON 404 and 405 otherwise.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(handle)
}

async fn metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], handle.render())
}
