//! # iterjob-dashboard
//!
//! A live web dashboard for [iterjob] jobs: an [axum] [`Router`] you mount
//! in your own service, or serve on its own (`iterjob dashboard`).
//!
//! ## What an operator gets
//!
//! - **Overview**: top-level jobs by state (a partitioned job once), jobs finished per
//!   minute over the last hour, items per second right now, every running job with a
//!   live progress bar, the workers (slots in use, last heartbeat) and the queues'
//!   depths, paused or not.
//! - **Tasks**: every job kind with its description ([`Job::DESCRIPTION`](iterjob::Job::DESCRIPTION)),
//!   counts and last runs, and a typed parameters form built from its JSON Schema
//!   ([`Job::params_schema`](iterjob::Job::params_schema)).
//! - **Job list**: filters by state, kind and queue; keyset pagination (`before` an
//!   id, never `OFFSET`), so page 1,000 costs what page 1 costs on a million jobs;
//!   search by id or by text in parameters and errors, bounded by [`MAX_SEARCH_SCAN`].
//! - **Live progress**: progress bars, items, rate and ETA update every second over
//!   server-sent events, without reloading the page.
//! - **Job page**: parameters, cursor, progress, attempts, the last error with its
//!   cause chain, and the job's history (interruptions with their reason and cursor,
//!   retries, failures, lease rescues, operator actions).
//! - **Actions**: pause, resume, cancel, retry; enqueue a job of a registered kind,
//!   its parameters validated against the kind's type before anything is stored;
//!   for kinds that read a CSV file, upload the file with the form.
//! - **Metrics**: `/metrics` in the Prometheus text format: jobs by state (read from
//!   the store at scrape time) and, with [`install_prometheus`], the runtime's
//!   counters and histograms of a worker in the same process.
//!
//! ## Safe by default
//!
//! - [`Dashboard::serve`] refuses to bind an address other than loopback unless an
//!   auth token is set ([`Dashboard::token`]); with a token, every request must
//!   carry it (`Authorization: Bearer …`, or the session cookie set by the login
//!   form: a random session id, never the token). Tokens are compared in constant
//!   time, must have at least [`MIN_TOKEN_LEN`] characters of which
//!   [`MIN_TOKEN_DISTINCT`] different ones, and wrong ones are limited to
//!   ten a minute at the login form.
//! - Without a token, only loopback host names are served (`localhost`, `127.0.0.1`,
//!   `[::1]`, plus [`Dashboard::allowed_hosts`]): a page whose name an attacker
//!   re-points at 127.0.0.1 (DNS rebinding) gets a 421 and reads nothing.
//!   `X-Forwarded-Host` counts only behind a declared proxy
//!   ([`Dashboard::trust_forwarded_headers`]).
//! - Every mutating request must come from the dashboard's own pages: a cross-site
//!   `Origin` or `Sec-Fetch-Site` is refused, and forms carry a per-session token.
//!   The `Origin`'s scheme counts too: `https` when the dashboard is declared to be
//!   served over TLS ([`Dashboard::served_over_https`], which also marks its cookies
//!   `Secure`) or a trusted proxy says so in `X-Forwarded-Proto`, `http` otherwise.
//! - Every value that came from a job (parameters, cursors, errors, kinds, queues) is
//!   escaped by the template engine ([maud]); the page's script only ever sets
//!   `textContent`; a strict Content-Security-Policy forbids inline scripts.
//! - Filters become typed [`JobFilter`](iterjob::JobFilter)s bound as query
//!   parameters: no SQL is built from request strings. Request bodies are bounded
//!   (64 KiB for forms, [`Dashboard::max_upload_bytes`] for uploads, and only when a
//!   kind takes a CSV upload; an enqueue without a session cookie is refused before
//!   its body is read).
//!
//! ## Mounting it in your service
//!
//! ```no_run
//! use std::sync::Arc;
//! use iterjob::{Registry, Store};
//! use iterjob_dashboard::Dashboard;
//!
//! # async fn demo(store: Arc<dyn Store>, registry: Registry) -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = iterjob_dashboard::install_prometheus()?; // optional: runtime metrics
//! let jobs_admin = Dashboard::new(store)
//!     .registry(registry) // enables "enqueue" for these kinds
//!     .mount_path("/admin/jobs")
//!     .prometheus(metrics)
//!     .token(std::env::var("JOBS_ADMIN_TOKEN")?)
//!     .router();
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my service" }))
//!     .nest("/admin/jobs", jobs_admin);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Or on its own, with the bind rules enforced:
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn iterjob::Store>) -> Result<(), iterjob_dashboard::Error> {
//! use iterjob_dashboard::Dashboard;
//! let shutdown = iterjob::CancellationToken::new();
//! Dashboard::new(store).serve("127.0.0.1:8080".parse().unwrap(), shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! ## On a big store
//!
//! Every page reads the store through [`Store`] methods only. The job
//! list walks the jobs newest first from `before` (a primary-key seek, so a page deep
//! in a million jobs costs what the first page costs) and stops once a page is full;
//! a filter matching few jobs walks further before the page fills (a state held by
//! 0.01% of a million jobs: one walk of the table). The overview counts jobs by state
//! and lists the running and recently failed ones. `examples/million_jobs.rs` times
//! each page on a million jobs in SQLite.
//!
//! Live pages hold one server-sent-events connection each. Browsers open at most
//! six HTTP/1.1 connections per host, so more than about five dashboard tabs on one
//! browser wait for each other; put the dashboard behind an HTTP/2 proxy if your
//! operators keep many open. Each page closes its stream when it goes away.
//!
//! ## Routes
//!
//! | route | what |
//! |---|---|
//! | `GET /` | overview |
//! | `GET /tasks` | every job kind: description, counts by state, last runs |
//! | `GET /tasks/{kind}` · `POST /tasks/{kind}` | a kind's page: its typed parameters form (from [`Job::params_schema`](iterjob::Job::params_schema)), CSV upload, last runs |
//! | `GET /jobs?state=&kind=&queue=&top=&q=&before=` | job list; `q` searches parameters, errors and unique keys (bounded, see [`MAX_SEARCH_SCAN`]) |
//! | `GET /jobs/{id}` | job page |
//! | `POST /jobs/{id}/pause` · `resume` · `cancel` · `retry` · `delete` | actions (form + CSRF token) |
//! | `GET /queues` · `POST /queues` | queues: counts, backlog, work left; pause and resume (form + CSRF token) |
//! | `GET /enqueue` · `POST /enqueue` | enqueue form (multipart, with a CSV file for CSV kinds) |
//! | `GET /live?ids=1,2,3` | server-sent events: progress of those jobs, counts |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /login` · `POST /login` | the token form, when a token is set |

mod assets;
mod form;
mod format;
mod handlers;
mod live;
mod pages;
mod prometheus;
mod security;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use iterjob::CancellationToken;
use iterjob::{Registry, Store};
use metrics_exporter_prometheus::PrometheusHandle;

pub use prometheus::install_prometheus;

/// Form bodies (actions, enqueue without a file, login) are refused above this size.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Uploads (enqueue with a CSV file) are refused above this size unless
/// [`Dashboard::max_upload_bytes`] says otherwise.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Jobs per page of the job list.
pub const PAGE_SIZE: usize = 50;

/// The most jobs one bulk action (retry, cancel … every job a filter matches)
/// reaches per submit; the page says when more are left, and submitting again
/// goes on with them. Bounded so that one click never holds a request for minutes.
pub const MAX_BULK: usize = 10_000;

/// The most jobs one search of the job list reads (text in parameters, errors
/// and unique keys): a search stops there and offers to go on with older jobs, so
/// it never stalls the page on a big store (0.14–0.2 s on a million SQLite jobs,
/// see `examples/million_jobs.rs` and BENCHMARKS.md).
pub const MAX_SEARCH_SCAN: usize = 20_000;

/// Errors starting the dashboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address is not loopback and no auth token was given.
    #[error(
        "refusing to serve the dashboard on {addr} without an auth token: anyone who can reach \
         that address could pause, cancel and enqueue jobs. Set a token (`--token` or \
         ITERJOB_DASHBOARD_TOKEN), or bind 127.0.0.1"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is too short to resist guessing.
    #[error(
        "the dashboard auth token is too easy to guess ({len} characters): use at least {min} \
         random characters, not a word or one character repeated (e.g. `openssl rand -hex 16`)"
    )]
    WeakToken {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the dashboard server failed: {0}")]
    Serve(std::io::Error),
    /// The Prometheus recorder could not be installed.
    #[error("cannot install the Prometheus metrics recorder: {0}")]
    Metrics(String),
}

/// The shortest auth token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// The fewest different characters an auth token must have (sixteen spaces, or one
/// character repeated, are refused).
pub const MIN_TOKEN_DISTINCT: usize = 8;

/// True for a token too easy to guess: too short, or too few different characters
/// (whitespace does not count).
fn weak_token(token: &str) -> bool {
    let distinct: std::collections::BTreeSet<char> =
        token.chars().filter(|c| !c.is_whitespace()).collect();
    token.chars().count() < MIN_TOKEN_LEN || distinct.len() < MIN_TOKEN_DISTINCT
}

/// A kind whose jobs read a CSV file: the enqueue form takes an upload, stores it
/// in `dir` and passes its path in the parameter `param`.
#[derive(Clone, Debug)]
pub(crate) struct CsvKind {
    pub(crate) param: String,
    pub(crate) dir: PathBuf,
}

/// The dashboard's configuration; [`Dashboard::router`] turns it into a router.
#[derive(Clone)]
pub struct Dashboard {
    store: Arc<dyn Store>,
    registry: Registry,
    token: Option<String>,
    mount_path: String,
    prometheus: Option<PrometheusHandle>,
    csv_kinds: BTreeMap<String, CsvKind>,
    max_upload_bytes: usize,
    live_interval: Duration,
    title: String,
    allowed_hosts: Vec<String>,
    trust_forwarded: bool,
    https: bool,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("registry", &self.registry)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("mount_path", &self.mount_path)
            .field("csv_kinds", &self.csv_kinds)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("live_interval", &self.live_interval)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard over `store`: pages, actions and metrics; no enqueue until
    /// [`Dashboard::registry`] names the kinds; no auth token.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Dashboard {
            store,
            registry: Registry::new(),
            token: None,
            mount_path: String::new(),
            prometheus: None,
            csv_kinds: BTreeMap::new(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            live_interval: Duration::from_secs(1),
            title: "iterjob".to_string(),
            allowed_hosts: Vec::new(),
            trust_forwarded: false,
            https: false,
        }
    }

    /// The host names (as in the `Host` header, without the port) the dashboard
    /// answers to besides the loopback ones (`localhost`, `127.0.0.1`, `[::1]`).
    /// Without a token and without this list, only loopback names are served: a web
    /// page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) is refused
    /// (421) before it can read a page or a form token. With a token, any name is
    /// served unless this list is set.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_hosts = hosts
            .into_iter()
            .map(|h| h.into().trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        self
    }

    /// Trusts `X-Forwarded-Host` as the name the browser used, for a dashboard behind
    /// a reverse proxy that rewrites `Host` and sets that header itself. Off by
    /// default: a proxy that passes a client's `X-Forwarded-Host` through would let
    /// any site pass the same-origin check.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> Self {
        self.trust_forwarded = trust;
        self
    }

    /// Declares that browsers reach the dashboard over HTTPS (a TLS-terminating
    /// proxy in front of it): its cookies get `Secure`, so a browser never sends the
    /// session over plain HTTP, and a mutating request must come from an `https://`
    /// origin. Off by default, when an `https://` origin is refused as cross-site
    /// with a hint to declare this. Behind a trusted proxy
    /// ([`Dashboard::trust_forwarded_headers`]) `X-Forwarded-Proto` names the scheme
    /// for the origin check as well.
    pub fn served_over_https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// The kinds operators may enqueue; parameters are checked against each kind's
    /// `Params` type ([`Registry::new_job`]) before anything is stored.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Requires this token on every request (bearer header, or the session cookie
    /// the login form sets: a random session id, never the token). Required to serve
    /// on a non-loopback address; at least [`MIN_TOKEN_LEN`] characters, of which at
    /// least [`MIN_TOKEN_DISTINCT`] different ones ([`Dashboard::check_bind`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The path the router is nested under in your service (`/admin/jobs`), so the
    /// pages link to the right place. Default: the root.
    pub fn mount_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.mount_path = path.trim_end_matches('/').to_string();
        self
    }

    /// Renders this recorder's metrics (see [`install_prometheus`]) at `/metrics`,
    /// after the jobs-by-state gauge.
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Declares that jobs of `kind` read a CSV file named by their parameter
    /// `param`: the enqueue form then takes an upload, checks that it parses as CSV,
    /// stores it in `dir` under a fresh name and sets `param` to its absolute path.
    /// The workers must read `dir` at the same path (a shared volume when they run
    /// on other machines).
    pub fn csv_upload(
        mut self,
        kind: impl Into<String>,
        param: impl Into<String>,
        dir: impl Into<PathBuf>,
    ) -> Self {
        self.csv_kinds.insert(
            kind.into(),
            CsvKind {
                param: param.into(),
                dir: dir.into(),
            },
        );
        self
    }

    /// The largest upload accepted. Default: [`DEFAULT_MAX_UPLOAD_BYTES`].
    pub fn max_upload_bytes(mut self, bytes: usize) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// How often live pages are updated. Default: 1 s.
    pub fn live_interval(mut self, interval: Duration) -> Self {
        self.live_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// The name shown in the page header. Default: `iterjob`.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The router, to mount in your own service or serve with [`axum::serve()`].
    /// Binding rules are yours to keep in that case; [`Dashboard::serve`] keeps them.
    pub fn router(self) -> Router {
        handlers::router(Arc::new(self.into_state()))
    }

    /// Checks that the dashboard may be served on `addr`: a non-loopback address
    /// needs a token of at least [`MIN_TOKEN_LEN`] characters.
    ///
    /// # Errors
    /// [`Error::TokenRequired`] or [`Error::WeakToken`].
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), Error> {
        match &self.token {
            Some(token) if weak_token(token) => Err(Error::WeakToken {
                len: token.chars().count(),
                min: MIN_TOKEN_LEN,
            }),
            Some(_) => Ok(()),
            None if addr.ip().is_loopback() => Ok(()),
            None => Err(Error::TokenRequired { addr }),
        }
    }

    /// Binds `addr` (port 0 picks a free port) after [`Dashboard::check_bind`], and
    /// returns the listener and the router, for a caller that wants the bound
    /// address before serving.
    ///
    /// # Errors
    /// As [`Dashboard::check_bind`], or [`Error::Bind`].
    pub async fn bind(self, addr: SocketAddr) -> Result<(tokio::net::TcpListener, Router), Error> {
        self.check_bind(addr)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok((listener, self.router()))
    }

    /// Serves the dashboard on `addr` until `shutdown` is cancelled.
    ///
    /// # Errors
    /// As [`Dashboard::bind`], or [`Error::Serve`].
    pub async fn serve(self, addr: SocketAddr, shutdown: CancellationToken) -> Result<(), Error> {
        let (listener, router) = self.bind(addr).await?;
        if let Ok(local) = listener.local_addr() {
            tracing::info!(addr = %local, "dashboard listening");
        }
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(Error::Serve)
    }

    fn into_state(self) -> AppState {
        AppState {
            store: self.store,
            registry: self.registry,
            token: self.token,
            base: self.mount_path,
            prometheus: self.prometheus,
            csv_kinds: self.csv_kinds,
            max_upload_bytes: self.max_upload_bytes,
            live_interval: self.live_interval,
            title: self.title,
            allowed_hosts: self.allowed_hosts,
            trust_forwarded: self.trust_forwarded,
            https: self.https,
            sessions: std::sync::Mutex::new(security::Sessions::default()),
            login_failures: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }
}

/// What every handler sees.
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) token: Option<String>,
    /// Mount path, without a trailing slash ("" at the root).
    pub(crate) base: String,
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) csv_kinds: BTreeMap<String, CsvKind>,
    pub(crate) max_upload_bytes: usize,
    pub(crate) live_interval: Duration,
    pub(crate) title: String,
    /// Host names served besides loopback ones ([`Dashboard::allowed_hosts`]).
    pub(crate) allowed_hosts: Vec<String>,
    /// Whether `X-Forwarded-Host` and `X-Forwarded-Proto` are believed.
    pub(crate) trust_forwarded: bool,
    /// Served over HTTPS ([`Dashboard::served_over_https`]).
    pub(crate) https: bool,
    /// Session ids handed out by the login form.
    pub(crate) sessions: std::sync::Mutex<security::Sessions>,
    /// When recent logins failed (for the rate limit).
    pub(crate) login_failures: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
}

impl AppState {
    /// A link inside the dashboard. The root of a dashboard nested under a path is
    /// the path itself (`/admin/jobs`, not `/admin/jobs/`, which axum's `nest` does
    /// not route).
    pub(crate) fn url(&self, path: &str) -> String {
        if path == "/" && !self.base.is_empty() {
            return self.base.clone();
        }
        format!("{}{path}", self.base)
    }
}
