//! `/metrics` in the Prometheus text format: jobs by state, read from the store at
//! scrape time, followed by whatever the installed recorder holds (the runtime's
//! counters and histograms when a worker runs in the same process).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use iterjob::store::QueueStats;

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

/// A label value in the text format: backslash, double quote and line feed escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The per-queue gauges: what an autoscaler acts on (`iterjob_queue_waiting`,
/// `iterjob_queue_oldest_wait_seconds`, `iterjob_queue_work_left_seconds`) and
/// what an operator watches (jobs per state, paused).
fn render_queues(out: &mut String, queues: &[QueueStats]) {
    type Gauge = fn(&QueueStats) -> f64;
    let gauges: [(&str, &str, Gauge); 6] = [
        (
            "iterjob_queue_waiting",
            "Jobs that could start now (queued or retrying, due; 0 while the queue is paused).",
            |q| q.waiting as f64,
        ),
        (
            "iterjob_queue_oldest_wait_seconds",
            "How long the oldest waiting job has been due (0 when none waits).",
            |q| q.oldest_wait_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        (
            "iterjob_queue_work_left_seconds",
            "Estimated work left in the running and waiting jobs, in seconds of one worker slot \
             (divide by a worker's concurrency for workers).",
            |q| q.work_left_secs,
        ),
        (
            "iterjob_queue_items_left",
            "Items left in the running and waiting jobs whose totals are known.",
            |q| q.items_left as f64,
        ),
        (
            "iterjob_queue_unestimated_jobs",
            "Running or waiting jobs whose work cannot be estimated yet (no rate measured for their kind).",
            |q| q.unestimated_jobs as f64,
        ),
        (
            "iterjob_queue_paused",
            "1 while the queue is paused, else 0.",
            |q| f64::from(u8::from(q.paused.is_some())),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for q in queues {
            let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", label(&q.queue), value(q));
        }
    }
    out.push_str("# HELP iterjob_queue_jobs Jobs per queue and state (a partitioned job counts as its partitions).\n");
    out.push_str("# TYPE iterjob_queue_jobs gauge\n");
    for q in queues {
        for (state, n) in &q.counts {
            let _ = writeln!(
                out,
                "iterjob_queue_jobs{{queue=\"{}\",state=\"{}\"}} {n}",
                label(&q.queue),
                state.as_str()
            );
        }
    }
}

/// The operators' throttle switches on (`*`: every queue or kind), with since when.
fn render_switches(out: &mut String, switches: &[iterjob::ThrottleSwitch]) {
    out.push_str(
        "# HELP iterjob_throttle_switch_since_seconds When each operator throttle switch on now \
         was switched on (Unix time; `*`: every queue or kind).\n",
    );
    out.push_str("# TYPE iterjob_throttle_switch_since_seconds gauge\n");
    for s in switches {
        let _ = writeln!(
            out,
            "iterjob_throttle_switch_since_seconds{{queue=\"{}\",kind=\"{}\"}} {}",
            label(s.queue.as_deref().unwrap_or("*")),
            label(s.kind.as_deref().unwrap_or("*")),
            s.since as f64 / 1000.0
        );
    }
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
    let queues = match state.store.queue_stats().await {
        Ok(q) => q,
        Err(error) => {
            tracing::warn!(%error, "dashboard: /metrics could not read the queues");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the queues failed: {error}\n"),
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
    render_queues(&mut out, &queues);
    match state
        .store
        .throttle_switches(iterjob::store::now_millis())
        .await
    {
        Ok(switches) => render_switches(&mut out, &switches),
        Err(error) => {
            tracing::warn!(%error, "dashboard: /metrics could not read the throttle switches")
        }
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
