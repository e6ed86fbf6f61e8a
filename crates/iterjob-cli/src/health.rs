//! `worker --health ADDR`: liveness and readiness over HTTP for an orchestrator.
//!
//! * `GET /healthz` answers 200 while the worker's process serves requests: a
//!   deadlocked or stopped process stops answering, and is restarted.
//! * `GET /readyz` answers 200 once the store is open and migrated and while it
//!   answers (a light read every 2 s, within 2 s); 503 with the reason otherwise,
//!   and from the moment SIGTERM arrives, before running jobs checkpoint, so a load
//!   balancer or a rollout stops counting on the worker first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use iterjob::{CancellationToken, Store};

/// How often, and within how long, the store must answer for the worker to be ready.
const PING_EVERY: Duration = Duration::from_secs(2);

/// What the probes read.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// SIGTERM arrived: not ready, whatever the store says.
    stopping: AtomicBool,
    /// Why the worker is not ready (`None`: ready).
    not_ready: Mutex<Option<String>>,
}

impl Health {
    /// Not ready until the first ping answers.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Health {
            stopping: AtomicBool::new(false),
            not_ready: Mutex::new(Some("the store has not answered yet".into())),
        })
    }

    /// Readiness turns false for good: the worker is shutting down.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn set(&self, why: Option<String>) {
        *self.not_ready.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// `None` when ready, else why not.
    fn why_not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        self.not_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    match health.why_not_ready() {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Binds `addr` now (so a taken port fails the start, naming it), then serves the
/// probes and pings the store until `stop` is cancelled.
pub(crate) async fn spawn(
    addr: SocketAddr,
    store: Arc<dyn Store>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--health {addr}: cannot listen there"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("reading the address bound for {addr}"))?;
    eprintln!("health probes on http://{local}/healthz and /readyz");
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&health));
    let served = stop.clone();
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { served.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "the health probe server failed");
        }
    });
    tokio::spawn(async move {
        loop {
            let answer = tokio::time::timeout(PING_EVERY, store.queue_pauses()).await;
            health.set(match answer {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(format!("the store failed: {error}")),
                Err(_) => Some(format!("the store did not answer within {PING_EVERY:?}")),
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PING_EVERY) => {}
            }
        }
    });
    Ok(())
}
