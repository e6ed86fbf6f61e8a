//! iterjob inside a service that owns its runtime: one axum server with the
//! service's own routes, the iterjob worker and the dashboard, in one process on
//! one SQLite pool.
//!
//! ```text
//! cargo run -p iterjob-examples --example service
//! curl -X POST localhost:3000/signups -H 'content-type: application/json' -d '{"email": "ada@example.com"}'
//! curl -X POST localhost:3000/backfills/welcome
//! curl localhost:3000/jobs/1
//! # and the dashboard at http://localhost:3000/admin/jobs
//! ```
//!
//! * `POST /signups` stores a signup **and** enqueues its welcome job in the same
//!   transaction (`SqliteStore::job_insert_in`): the job exists if and only if the
//!   signup does.
//! * `POST /backfills/welcome` enqueues a walk over every signup not welcomed yet
//!   (a keyset walk, exactly once per signup through `Transactional`), for the
//!   signups from before the feature.
//! * `GET /jobs/{id}` is the service's own view of a job.
//!
//! The pool is built once, in `main`, and shared by the routes, the job kinds (the
//! job value holds it) and the worker's store. Ctrl-C drains: running jobs
//! checkpoint, the server stops taking requests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::{
    CancellationToken, Job, JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig,
};
use iterjob_dashboard::Dashboard;
use iterjob_sqlite::{
    Keyset, KeysetCursor, SqlitePool, SqliteStore, Transactional, TransactionalJob,
};
use serde::{Deserialize, Serialize};
use sqlx::Sqlite;

/// Welcomes one new signup (here: records when; a real one would send an email).
struct Welcome {
    pool: SqlitePool,
}

/// The signup a welcome job is for.
#[derive(Serialize, Deserialize)]
struct WelcomeParams {
    signup_id: i64,
}

impl Job for Welcome {
    const KIND: &'static str = "welcome";
    type Params = WelcomeParams;
    type Cursor = usize;
    type Item = i64;

    fn enumerate(
        &self,
        p: &WelcomeParams,
        cursor: Option<usize>,
    ) -> Result<impl Enumerator<i64, usize>, JobError> {
        Ok(enumerator::from_vec(vec![p.signup_id], cursor))
    }

    async fn process(&self, _ctx: &JobContext<WelcomeParams>, id: i64) -> Result<(), JobError> {
        // idempotent: a retried run does not welcome twice
        sqlx::query(
            "UPDATE signups SET welcomed_at = unixepoch('subsec') * 1000
             WHERE id = ? AND welcomed_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Welcomes every signup not welcomed yet, 100 per transaction.
struct WelcomeBackfill {
    pool: SqlitePool,
}

/// One signup id, as the keyset decodes it.
#[derive(sqlx::FromRow)]
struct SignupId {
    id: i64,
}

impl TransactionalJob<Sqlite> for WelcomeBackfill {
    const KIND: &'static str = "welcome_backfill";
    type Params = ();
    type Cursor = KeysetCursor;
    type Item = Vec<SignupId>;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Vec<SignupId>, KeysetCursor>, JobError> {
        Ok(Keyset::table("signups")
            .key("id")
            .columns(["id"])
            .filter("welcomed_at IS NULL")
            .rows_as::<SignupId>(&self.pool, cursor)
            .batched(100))
    }

    fn count_items(&self, batch: &Vec<SignupId>) -> u64 {
        batch.len() as u64
    }

    async fn process(
        &self,
        _ctx: &JobContext<()>,
        batch: Vec<SignupId>,
        tx: &mut sqlx::Transaction<'_, Sqlite>,
    ) -> Result<(), JobError> {
        for signup in batch {
            sqlx::query(
                "UPDATE signups SET welcomed_at = unixepoch('subsec') * 1000
                 WHERE id = ? AND welcomed_at IS NULL",
            )
            .bind(signup.id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// What the routes share.
#[derive(Clone)]
struct AppState {
    store: SqliteStore,
}

/// The body of `POST /signups`.
#[derive(Deserialize)]
struct Signup {
    email: String,
}

/// A route's error: a status and a message.
type Failure = (StatusCode, String);

fn internal(e: impl std::fmt::Display) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Stores the signup and enqueues its welcome in one transaction.
async fn signup(
    State(state): State<AppState>,
    Json(body): Json<Signup>,
) -> Result<Json<serde_json::Value>, Failure> {
    let mut tx = state.store.pool().begin().await.map_err(internal)?;
    let id: i64 = sqlx::query_scalar("INSERT INTO signups (email) VALUES (?) RETURNING id")
        .bind(&body.email)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| (StatusCode::CONFLICT, format!("{}: {e}", body.email)))?;
    let welcome = NewJob::new("welcome", serde_json::json!({ "signup_id": id }));
    let job = state
        .store
        .job_insert_in(&mut tx, &welcome)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(Json(serde_json::json!({ "signup": id, "job": job })))
}

/// Enqueues the walk over the signups not welcomed yet (at most one at a time).
async fn welcome_backfill(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, Failure> {
    let job =
        NewJob::new("welcome_backfill", serde_json::Value::Null).unique_key("welcome-backfill");
    let id = state.store.job_insert(&job).await.map_err(internal)?;
    Ok(Json(serde_json::json!({ "job": id })))
}

/// The service's own view of a job.
async fn job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Failure> {
    let job = state
        .store
        .job_get(id)
        .await
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no job {id}")))?;
    Ok(Json(serde_json::json!({
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "items_done": job.items_done,
        "last_error": job.last_error,
    })))
}

/// Starts the service on `bind` over the SQLite database at `database_url`: the
/// routes, the dashboard under `/admin/jobs` and a worker, until `shutdown` is
/// cancelled. Returns the bound address and the task that ends when all of it has
/// stopped.
pub(crate) async fn start(
    database_url: &str,
    bind: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    // the one pool: the job store's, with the service's table beside iterjob's
    let store = SqliteStore::connect(database_url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS signups (
             id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, welcomed_at INTEGER)",
    )
    .execute(store.pool())
    .await?;
    let pool = store.pool().clone();
    let registry = Registry::new()
        .with(Welcome { pool: pool.clone() })
        .with(Transactional::new(WelcomeBackfill { pool }, store.clone()));

    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let dashboard = Dashboard::new(Arc::clone(&shared))
        .registry(registry.clone())
        .mount_path("/admin/jobs");
    dashboard.check_bind(bind)?;
    let app = Router::new()
        .route("/signups", post(signup))
        .route("/backfills/welcome", post(welcome_backfill))
        .route("/jobs/{id}", get(job))
        .with_state(AppState { store })
        .nest("/admin/jobs", dashboard.router());

    let mut config = WorkerConfig::default();
    config.poll_interval = std::time::Duration::from_millis(100);
    let worker = Worker::new(shared, registry, config)?;
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let local = listener.local_addr()?;
    let running = tokio::spawn(async move {
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        let drain = worker.shutdown_token();
        let worker = tokio::spawn(async move { worker.run().await });
        shutdown.cancelled().await;
        drain.cancel();
        worker.await??;
        server.await??;
        Ok(())
    });
    Ok((local, running))
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://service.db".into());
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let shutdown = CancellationToken::new();
    let (addr, running) = start(&url, bind, shutdown.clone()).await?;
    println!("listening on http://{addr} (dashboard at /admin/jobs); Ctrl-C stops");
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    running.await?
}
