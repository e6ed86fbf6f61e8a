//! `/metrics` in the Prometheus text format: jobs by state, read from the store at
//! scrape time, followed by whatever the installed recorder holds (the runtime's
//! counters and histograms when a worker runs in the same process).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{AppState, Error};

/// Latency buckets (seconds) for the runtime's `*_seconds` histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs a Prometheus recorder as the process's global [`metrics`] recorder and
/// returns its handle, for [`Dashboard::prometheus`](crate::Dashboard::prometheus).
/// The runtime's histograms (`iterjob_checkpoint_seconds`, `iterjob_claim_seconds`)
/// get latency buckets from 100 µs to 10 s. Call it once per process, before the
/// worker starts.
///
/// # Errors
/// [`Error::Metrics`] when another recorder is already installed.
pub fn install_prometheus() -> Result<PrometheusHandle, Error> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| Error::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| Error::Metrics(e.to_string()))
}

pub(crate) async fn render(State(state): State<Arc<AppState>>) -> Response {
    let counts = match state.store.job_count_by_state().await {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(%error, "dashboard: /metrics could not count jobs");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("counting jobs failed: {error}\n"),
            )
                .into_response();
        }
    };
    let mut out = String::new();
    out.push_str("# HELP iterjob_jobs Jobs in the store, by state (read at scrape time).\n");
    out.push_str("# TYPE iterjob_jobs gauge\n");
    for (s, n) in counts {
        let _ = writeln!(out, "iterjob_jobs{{state=\"{}\"}} {n}", s.as_str());
    }
    if let Some(handle) = &state.prometheus {
        out.push('\n');
        out.push_str(&handle.render());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
