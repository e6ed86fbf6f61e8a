//! [`SqliteStore`]: the [`Store`] on an SQLite file.
//!
//! Every method is one SQL statement, or one `BEGIN IMMEDIATE` transaction when it
//! must read before it writes (enqueueing with unique keys, the admin actions), so
//! two pools on the same file (two processes) never deadlock upgrading a read lock
//! and never claim the same job. The SQL lives in `queries/`, one file per method.
//!
//! Choices the [`Store`] trait leaves open are made as in
//! [`MemoryStore`](iterjob::store::MemoryStore): a fenced write for a job that does
//! not exist fails with [`Error::JobNotFound`], for a job under another token (or no
//! longer running) with [`Error::LeaseLost`]; a release clears pending pause and
//! cancel requests when the job ends paused or finished, and keeps them on an
//! interruption or a retry.
//!
//! Rate-limit buckets ([`Store::rate_acquire`]) are rows of `iterjob_rate_limits`,
//! updated by one upsert under the database's write lock, so every process using the
//! file shares them. Their clock is the system clock of the machine the file is on
//! (the only machine that can safely share an SQLite file).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iterjob::store::rules::{
    AdminAction, AdminStep, UNIQUE_KEY_HELD, admin_step, delete_check, invalid, prune_check,
};
use iterjob::store::{
    ClaimRequest, Claimed, Control, Failure, JobEvent, JobEventKind, JobFilter, JobId, JobRecord,
    JobState, Millis, NewJob, Outcome, Progress, PruneBatch, QueuePause, QueuePauseMode, QueueRow,
    Release, Rescued, RunToken, ScheduleState, ScheduleTick, Split, SplitRequest, Store,
    ThrottleSwitch, TickOutcome, WorkerPresence, check_queue_name, merge_listing, now_micros,
    now_millis, parent_outcome, rate_cost_micros, release_event, shown_by_split_parents,
    split_parents_showing,
};
use iterjob::{Error, Result};
use iterjob_sql::record;
pub(crate) use iterjob_sql::release::{
    ReleaseChange, failure_text, json_text, lease_until, to_i64,
};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::dialect::SqliteDialect;
use crate::error::{is_unique_violation, map_sqlx};
use crate::{events, migrate};

mod release_many;

/// Jobs enqueued by one statement at most (each a JSON object in one parameter).
const BULK_INSERT_ROWS: usize = 1000;

const Q_INSERT: &str = include_str!("../queries/job_insert_many.sql");
const Q_INSERT_BULK: &str = include_str!("../queries/job_insert_bulk.sql");
const Q_INSERT_EXISTING: &str = include_str!("../queries/job_insert_many_existing.sql");
const Q_CLAIM: &str = include_str!("../queries/job_claim.sql");
const Q_HEARTBEAT: &str = include_str!("../queries/job_heartbeat.sql");
const Q_NOTE_FAILURE: &str = include_str!("../queries/job_note_failure.sql");
const Q_LIST_SPLIT_PARENTS: &str = include_str!("../queries/job_list_split_parents.sql");
const Q_CHECKPOINT: &str = include_str!("../queries/job_checkpoint.sql");
const Q_RELEASE: &str = include_str!("../queries/job_release.sql");
const Q_RESCUE: &str = include_str!("../queries/job_rescue_expired.sql");
const Q_GET: &str = include_str!("../queries/job_get.sql");
const Q_EXISTS: &str = include_str!("../queries/job_exists.sql");
const Q_LIST: &str = include_str!("../queries/job_list.sql");
const Q_COUNT: &str = include_str!("../queries/job_count_by_state.sql");
const Q_COUNT_SPLIT: &str = include_str!("../queries/job_count_split_partitions.sql");
const Q_QUEUE_DEPTHS: &str = include_str!("../queries/queue_depths.sql");
const Q_QUEUE_DEPTHS_PARENTS: &str = include_str!("../queries/queue_depths_split_parents.sql");
const Q_PAUSE: &str = include_str!("../queries/job_pause.sql");
const Q_RESUME: &str = include_str!("../queries/job_resume.sql");
const Q_CANCEL: &str = include_str!("../queries/job_cancel.sql");
const Q_RETRY: &str = include_str!("../queries/job_retry.sql");
const Q_INSERT_PARTITION: &str = include_str!("../queries/job_insert_partition.sql");
const Q_PARTITION: &str = include_str!("../queries/job_partition.sql");
const Q_SPLIT: &str = include_str!("../queries/job_split.sql");
const Q_REQUEST_SPLIT: &str = include_str!("../queries/job_request_split.sql");
const Q_PARTITIONS: &str = include_str!("../queries/job_partitions.sql");
const Q_DELETE_EVENTS: &str = include_str!("../queries/job_delete_events.sql");
const Q_DELETE_CHILDREN: &str = include_str!("../queries/job_delete_children.sql");
const Q_DELETE: &str = include_str!("../queries/job_delete.sql");
const Q_PRUNE_PICK: &str = include_str!("../queries/job_prune_pick.sql");
const Q_PRUNABLE: &str = include_str!("../queries/job_prunable.sql");
const Q_PRUNE_EVENTS: &str = include_str!("../queries/job_prune_events.sql");
const Q_PRUNE_CHILDREN: &str = include_str!("../queries/job_prune_children.sql");
const Q_PRUNE: &str = include_str!("../queries/job_prune.sql");
const Q_PARENT_PROGRESS: &str = include_str!("../queries/job_parent_progress.sql");
const Q_PARENT_STATE: &str = include_str!("../queries/job_parent_state.sql");
const Q_FINALIZE_CANDIDATES: &str = include_str!("../queries/job_finalize_candidates.sql");
const Q_PAUSE_CHILDREN: &str = include_str!("../queries/job_pause_children.sql");
const Q_RESUME_CHILDREN: &str = include_str!("../queries/job_resume_children.sql");
const Q_CANCEL_CHILDREN: &str = include_str!("../queries/job_cancel_children.sql");
const Q_RETRY_CHILDREN: &str = include_str!("../queries/job_retry_children.sql");
const Q_RATE_ACQUIRE: &str = include_str!("../queries/rate_acquire.sql");
const Q_QUEUE_PAUSE: &str = include_str!("../queries/queue_pause.sql");
const Q_QUEUE_RESUME: &str = include_str!("../queries/queue_resume.sql");
const Q_QUEUE_PAUSES: &str = include_str!("../queries/queue_pauses.sql");
const Q_QUEUE_ROWS: &str = include_str!("../queries/queue_rows.sql");
const Q_LEASE_ACQUIRE: &str = include_str!("../queries/lease_acquire.sql");
const Q_LEASE_RELEASE: &str = include_str!("../queries/lease_release.sql");
const Q_SCHEDULE_INSERT: &str = include_str!("../queries/schedule_insert.sql");
const Q_SCHEDULE_ADVANCE: &str = include_str!("../queries/schedule_advance.sql");
const Q_SCHEDULE_SET_JOB: &str = include_str!("../queries/schedule_set_job.sql");
const Q_SCHEDULE_STATES: &str = include_str!("../queries/schedule_states.sql");
const Q_JOB_UNFINISHED: &str = include_str!("../queries/job_unfinished.sql");

/// How many jobs `job_list` returns when the filter sets no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// How long a connection waits for another connection's write lock before failing
/// with "database is locked".
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The embedded default [`Store`]: jobs in an SQLite database file, next to (or in
/// the same file as) the data the jobs walk.
///
/// Cloning is cheap and clones share the connection pool.
///
/// ```no_run
/// use iterjob::store::{NewJob, Store};
/// use iterjob_sqlite::SqliteStore;
///
/// # async fn demo() -> iterjob::Result<()> {
/// let store = SqliteStore::connect("sqlite://jobs.db").await?; // created and migrated
/// let ids = store
///     .job_insert_many(&[NewJob::new("reindex", serde_json::json!({"shard": 3}))])
///     .await?;
/// println!("enqueued job {}", ids[0]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database's path (or URL), for error messages.
    db: Arc<str>,
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the store at `url_or_path`:
    /// `sqlite://path`, `sqlite:path`, or a plain file path. The database runs in WAL
    /// mode with `synchronous=FULL`, a 5 s busy timeout and foreign keys on; see
    /// [`SqliteStore::options`] to change those.
    ///
    /// # Errors
    /// [`Error::Config`] when the path's directory does not exist or the URL does not
    /// parse; [`Error::Corrupt`] when the file is not an SQLite database or holds a
    /// schema from a newer iterjob; [`Error::Backend`] when the database cannot be
    /// opened or stays locked beyond the busy timeout.
    pub async fn connect(url_or_path: &str) -> Result<Self> {
        Self::connect_with(Self::options(url_or_path)?).await
    }

    /// The options [`SqliteStore::connect`] uses for `url_or_path`, to adjust before
    /// [`SqliteStore::connect_with`]:
    ///
    /// ```no_run
    /// use iterjob_sqlite::SqliteStore;
    /// use sqlx::sqlite::SqliteSynchronous;
    ///
    /// # async fn demo() -> iterjob::Result<()> {
    /// // trade durability of the last transactions on power loss for speed
    /// let options = SqliteStore::options("jobs.db")?.synchronous(SqliteSynchronous::Normal);
    /// let store = SqliteStore::connect_with(options).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when a `sqlite:` URL does not parse.
    pub fn options(url_or_path: &str) -> Result<SqliteConnectOptions> {
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path).map_err(|err| {
                Error::Config(format!(
                    "invalid SQLite URL `{url_or_path}`: {err}; expected `sqlite://path`, \
                     `sqlite:path` or a plain file path"
                ))
            })?
        } else if url_or_path.is_empty() {
            return Err(Error::Config(
                "empty SQLite store path; give a file path such as `jobs.db` or a URL such as \
                 `sqlite://jobs.db`"
                    .to_string(),
            ));
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        Ok(options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(DEFAULT_BUSY_TIMEOUT)
            .foreign_keys(true))
    }

    /// Opens the store with exactly these options (see [`SqliteStore::options`] for
    /// the defaults) and migrates it.
    ///
    /// # Errors
    /// As [`SqliteStore::connect`].
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self> {
        let store = Self::open(options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the pool, after the checks that name what is wrong with the path.
    async fn open(options: SqliteConnectOptions) -> Result<Self> {
        let path = options.get_filename().to_path_buf();
        let db: Arc<str> = path.display().to_string().into();
        check_path(&path, &db)?;
        // a store writes (and a WAL database is written even to be read, its
        // shared-memory index): say why it cannot before SQLite's "unable to open
        // database file" (or a worker that starts and then fails every claim)
        if on_disk(&path)
            && let Some(why) = crate::error::not_writable(&db)
        {
            return Err(Error::Config(format!("SQLite store `{db}`: {why}")));
        }
        let pool = iterjob_sql::pool::hygienic(SqlitePoolOptions::new())
            // SQLite has no server to drop idle connections; keeping them saves reopening
            // the file and re-preparing statements.
            .idle_timeout(None)
            .max_lifetime(None)
            // nor a network to check a connection over: a ping per acquire only adds a
            // round trip to the connection's worker thread
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|err| map_sqlx(&db, "opening the database", err))?;
        Ok(SqliteStore { pool, db })
    }

    /// Opens an existing store without creating or changing anything: the file must
    /// exist and hold the schema this build writes ([`SqliteStore::check_schema`]).
    /// For read-only tools (the command line's `jobs`, `show` …), which must not
    /// upgrade a schema that workers of another build still use.
    ///
    /// # Errors
    /// As [`SqliteStore::connect`], and as [`SqliteStore::check_schema`].
    pub async fn connect_existing(url_or_path: &str) -> Result<Self> {
        let store = Self::open(Self::options(url_or_path)?.create_if_missing(false)).await?;
        store.check_schema().await?;
        Ok(store)
    }

    /// Checks, changing nothing, that the database holds the schema this build
    /// writes.
    ///
    /// # Errors
    /// [`Error::Config`] when the file has no iterjob tables or an older version
    /// (the message says to run `migrate`); [`Error::Corrupt`] when a newer iterjob
    /// wrote it, or the file is not an SQLite database.
    pub async fn check_schema(&self) -> Result<()> {
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master \
             WHERE type = 'table' AND name = 'iterjob_schema_migrations'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(self.err("looking up the tables"))?;
        let newest: Option<i64> = if exists > 0 {
            sqlx::query_scalar("SELECT MAX(version) FROM iterjob_schema_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(self.err("reading the schema version"))?
        } else {
            None
        };
        iterjob_sql::schema::check_version(
            &format!("SQLite store `{}`", self.db),
            newest,
            crate::SCHEMA_VERSION,
            concat!("iterjob-sqlite ", env!("CARGO_PKG_VERSION")),
        )
    }

    /// A store on an existing pool, for an application that already has one. Does not
    /// touch the database: call [`Store::migrate`] before using the store.
    pub fn from_pool(pool: SqlitePool) -> Self {
        let db = pool
            .connect_options()
            .get_filename()
            .display()
            .to_string()
            .into();
        SqliteStore { pool, db }
    }

    /// A store whose pool opens the file on first use, with at most
    /// `max_connections` connections: no migration (the store's tables must exist).
    /// For a job that opens the store its parameters name from synchronous code; use
    /// [`SqliteStore::connect_with`] to open a store that is checked and migrated.
    /// Options from [`SqliteStore::options`] create a missing file: add
    /// `.create_if_missing(false)` when the file must exist already.
    ///
    /// # Errors
    /// [`Error::Config`] when the path's directory does not exist.
    pub fn lazy(options: SqliteConnectOptions, max_connections: u32) -> Result<Self> {
        let path = options.get_filename().to_path_buf();
        let db: Arc<str> = path.display().to_string().into();
        check_path(&path, &db)?;
        let pool = iterjob_sql::pool::hygienic(SqlitePoolOptions::new())
            .max_connections(max_connections.max(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(SqliteStore { pool, db })
    }

    /// The connection pool, for a job that reads or writes its own tables in the same
    /// database (for example through [`Keyset`](crate::Keyset)).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file's path, as given.
    pub fn path(&self) -> &str {
        &self.db
    }

    /// Closes every connection of the pool (also those of clones), waiting for
    /// checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |err| map_sqlx(&self.db, what, err)
    }

    async fn begin(&self, what: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err(what))
    }

    /// The error for a fenced write that changed nothing: the job is gone, or it is
    /// not running under this token any more.
    async fn fence_failed(&self, id: JobId) -> Error {
        match sqlx::query(Q_EXISTS)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
        {
            Ok(Some(_)) => Error::LeaseLost { job: id },
            Ok(None) => Error::JobNotFound(id),
            Err(err) => map_sqlx(&self.db, "checking a job after a rejected write", err),
        }
    }

    fn record(&self, row: &SqliteRow) -> Result<JobRecord> {
        record::job_record::<SqliteDialect>(row).map_err(|message| self.corrupt(message))
    }

    fn control(&self, row: &SqliteRow) -> Result<Control> {
        record::control::<SqliteDialect>(row).map_err(|message| self.corrupt(message))
    }

    /// Inserts one job in `tx` (or finds the unfinished job holding its unique key).
    /// Enqueues a job inside **your** transaction (or on your connection), so that
    /// the job exists if and only if your transaction commits: the write that calls
    /// for the job and the job itself are one atomic change. `conn` must be a
    /// connection to this store's database file (`&mut *tx` for a transaction from
    /// [`SqliteStore::pool`]); workers see the job when you commit (they poll: no
    /// wake-up crosses processes on SQLite), and nothing of it if you roll back. As
    /// [`Store::job_insert`] otherwise (unique keys included).
    ///
    /// ```no_run
    /// # async fn demo(store: iterjob_sqlite::SqliteStore) -> Result<(), Box<dyn std::error::Error>> {
    /// use iterjob::NewJob;
    ///
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO signups (email) VALUES (?)")
    ///     .bind("ada@example.com")
    ///     .execute(&mut *tx)
    ///     .await?;
    /// let id = store
    ///     .job_insert_in(&mut tx, &NewJob::new("welcome", serde_json::json!({"email": "ada@example.com"})))
    ///     .await?;
    /// tx.commit().await?; // the signup and job `id` exist from here on, together
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Store::job_insert`]; an error leaves your transaction open for you to
    /// roll back.
    pub async fn job_insert_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        job: &NewJob,
    ) -> Result<JobId> {
        self.insert_in(conn, job, now_millis()).await
    }

    /// Enqueues jobs inside your transaction; see [`SqliteStore::job_insert_in`].
    ///
    /// # Errors
    /// As [`SqliteStore::job_insert_in`].
    pub async fn job_insert_many_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let now = now_millis();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut rest = jobs;
        while let Some(first) = rest.first() {
            // a job with a unique key is looked up first, alone; a run of jobs
            // without one goes in by the statement
            if first.unique_key.is_some() {
                ids.push(self.insert_in(conn, first, now).await?);
                rest = &rest[1..];
                continue;
            }
            let run = rest
                .iter()
                .take(BULK_INSERT_ROWS)
                .take_while(|job| job.unique_key.is_none())
                .count();
            if run == 1 {
                ids.push(self.insert_in(conn, first, now).await?);
            } else {
                ids.extend(self.insert_bulk(conn, &rest[..run], now).await?);
            }
            rest = &rest[run..];
        }
        Ok(ids)
    }

    /// Inserts `jobs` (none with a unique key) with one statement; their ids in order.
    async fn insert_bulk(
        &self,
        conn: &mut sqlx::SqliteConnection,
        jobs: &[NewJob],
        now: Millis,
    ) -> Result<Vec<JobId>> {
        /// One job as the bulk statement reads it (`queries/job_insert_bulk.sql`).
        #[derive(serde::Serialize)]
        struct Row<'a> {
            k: &'a str,
            q: &'a str,
            p: i32,
            a: String,
            c: Option<String>,
            m: u32,
            r: Option<Millis>,
            n: Option<u32>,
            t: Option<&'a str>,
        }
        let rows = jobs
            .iter()
            .map(|job| {
                Ok(Row {
                    k: &job.kind,
                    q: &job.queue,
                    p: job.priority,
                    a: json_text(&job.params, "job parameters")?,
                    c: job
                        .cursor
                        .as_ref()
                        .map(|c| json_text(c, "job cursor"))
                        .transpose()?,
                    m: job.max_attempts,
                    r: job.run_at,
                    n: job.partitions,
                    t: job.trace_context.as_deref(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = serde_json::to_string(&rows).map_err(|source| Error::Serialize {
            what: "jobs to enqueue",
            source,
        })?;
        let mut ids: Vec<JobId> = sqlx::query_scalar(Q_INSERT_BULK)
            .bind(rows)
            .bind(now)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.err("enqueueing jobs"))?;
        if ids.len() != jobs.len() {
            return Err(self.corrupt(format!(
                "enqueueing {} jobs in one statement inserted {}",
                jobs.len(),
                ids.len()
            )));
        }
        // RETURNING gives no order; the rows went in in the array's order, and
        // AUTOINCREMENT hands out ascending ids within the statement
        ids.sort_unstable();
        Ok(ids)
    }

    async fn insert_in(
        &self,
        tx: &mut sqlx::SqliteConnection,
        job: &NewJob,
        now: Millis,
    ) -> Result<JobId> {
        if let Some(key) = &job.unique_key {
            let existing: Option<JobId> = sqlx::query_scalar(Q_INSERT_EXISTING)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("looking up a job's unique key"))?;
            if let Some(existing) = existing {
                return Ok(existing);
            }
        }
        let params = json_text(&job.params, "job parameters")?;
        let cursor = job
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        sqlx::query_scalar(Q_INSERT)
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(job.priority)
            .bind(params)
            .bind(cursor)
            .bind(i64::from(job.max_attempts))
            .bind(&job.unique_key)
            .bind(now)
            .bind(job.run_at)
            .bind(job.partitions.map(i64::from))
            .bind(&job.trace_context)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("enqueueing a job"))
    }

    fn corrupt(&self, message: String) -> Error {
        Error::Corrupt(format!("SQLite store `{}`: {message}", self.db))
    }

    /// Reads a job inside a transaction, for the admin actions.
    async fn get_in(&self, tx: &mut Transaction<'static, Sqlite>, id: JobId) -> Result<JobRecord> {
        let row = sqlx::query(Q_GET)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err("reading a job"))?
            .ok_or(Error::JobNotFound(id))?;
        self.record(&row)
    }

    /// Runs an admin update (`?1` id, `?2` now) inside the transaction that read the
    /// job, records the operator's `event`, and commits it.
    async fn admin_update(
        &self,
        mut tx: Transaction<'static, Sqlite>,
        query: &'static str,
        id: JobId,
        event: JobEventKind,
        on_error: impl FnOnce(sqlx::Error) -> Error + Send,
    ) -> Result<JobRecord> {
        let now = now_millis();
        let row = match sqlx::query(query)
            .bind(id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(err) => return Err(on_error(err)),
        };
        events::insert(&mut *tx, id, now, event, None, None)
            .await
            .map_err(self.err("recording an admin action in the job's history"))?;
        tx.commit()
            .await
            .map_err(self.err("committing an admin action"))?;
        self.record(&row)
    }
}

impl SqliteStore {
    /// A split parent reports its partitions' summed progress.
    async fn with_progress(&self, mut record: JobRecord) -> Result<JobRecord> {
        if record.partitions.is_none() {
            return Ok(record);
        }
        let row = sqlx::query(Q_PARENT_PROGRESS)
            .bind(record.id)
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("summing a partitioned job's progress"))?;
        record::apply_parent_progress::<SqliteDialect>(&mut record, &row)
            .map_err(|message| self.corrupt(message))?;
        Ok(record)
    }

    /// True if `record` is a parent already split into partitions.
    async fn is_split_parent(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        record: &JobRecord,
    ) -> Result<bool> {
        if record.partitions.is_none() {
            return Ok(false);
        }
        let partitions: i64 = sqlx::query_scalar(Q_PARENT_PROGRESS)
            .bind(record.id)
            .fetch_one(&mut **tx)
            .await
            .map_err(self.err("counting a job's partitions"))?;
        Ok(partitions > 0)
    }

    /// Moves a split parent to `state` and its partitions along with it (the
    /// `children` query: `?1` parent, `?2` now when `bind_now`), and commits.
    async fn cascade(
        &self,
        mut tx: Transaction<'static, Sqlite>,
        id: JobId,
        state: JobState,
        children: &'static str,
        bind_now: bool,
        what: &'static str,
    ) -> Result<JobRecord> {
        let now = now_millis();
        let retry = state == JobState::Running && children == Q_RETRY_CHILDREN;
        sqlx::query(Q_PARENT_STATE)
            .bind(id)
            .bind(state.as_str())
            .bind(now)
            .bind(None::<String>)
            .bind(retry)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        let mut query = sqlx::query(children).bind(id);
        if bind_now {
            query = query.bind(now);
        }
        query.execute(&mut *tx).await.map_err(self.err(what))?;
        let event = match state {
            JobState::Paused => JobEventKind::OperatorPause,
            JobState::Cancelled => JobEventKind::OperatorCancel,
            _ if retry => JobEventKind::OperatorRetry,
            _ => JobEventKind::OperatorResume,
        };
        events::insert(&mut *tx, id, now, event, None, None)
            .await
            .map_err(self.err("recording an admin action in the job's history"))?;
        if retry {
            self.finalize(&mut tx, id).await?;
        }
        let record = self.get_in(&mut tx, id).await?;
        tx.commit().await.map_err(self.err(what))?;
        self.with_progress(record).await
    }

    /// Finishes a split parent whose partitions have all finished: completed if they
    /// all completed, failed (naming the others) if not.
    async fn finalize(&self, tx: &mut Transaction<'static, Sqlite>, parent: JobId) -> Result<()> {
        let rows = sqlx::query(Q_PARTITIONS)
            .bind(parent)
            .fetch_all(&mut **tx)
            .await
            .map_err(self.err("reading a job's partitions"))?;
        let children = rows
            .iter()
            .map(|row| self.record(row))
            .collect::<Result<Vec<_>>>()?;
        let Some((state, error)) = parent_outcome(&children) else {
            return Ok(());
        };
        let record = self.get_in(tx, parent).await?;
        if !matches!(record.state, JobState::Running | JobState::Paused) {
            return Ok(());
        }
        sqlx::query(Q_PARENT_STATE)
            .bind(parent)
            .bind(state.as_str())
            .bind(now_millis())
            .bind(error)
            .bind(false)
            .execute(&mut **tx)
            .await
            .map_err(self.err("finishing a partitioned job"))?;
        Ok(())
    }
}

/// Refuses paths that SQLite would fail to open with an unhelpful message.
/// Is `path` a file on disk (not in-memory, not a URI filename)?
fn on_disk(path: &Path) -> bool {
    let name = path.to_string_lossy();
    !(name.starts_with("file:") || name == ":memory:" || name.is_empty())
}

fn check_path(path: &Path, db: &str) -> Result<()> {
    if !on_disk(path) {
        return Ok(()); // in-memory or URI filename: nothing on disk to check
    }
    if path.is_dir() {
        return Err(Error::Config(format!(
            "SQLite store `{db}` is a directory; give the path of a database file inside it, \
             such as `{}`",
            path.join("iterjob.db").display()
        )));
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        return Err(Error::Config(format!(
            "SQLite store `{db}`: directory `{}` does not exist; create it first (mkdir -p {}) \
             or choose another path",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

impl SqliteStore {
    /// A state read from the store; an unknown one is corruption, named.
    fn state(&self, s: &str) -> Result<JobState> {
        JobState::from_str(s).map_err(|_| {
            Error::Corrupt(format!(
                "SQLite store `{}`: jobs with an unknown state `{s}`",
                self.db
            ))
        })
    }
}

/// A `COUNT(*)` as read.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        migrate::run(&self.pool, &self.db).await
    }

    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin("enqueueing jobs").await?;
        let ids = self.job_insert_many_in(&mut tx, jobs).await?;
        tx.commit().await.map_err(self.err("enqueueing jobs"))?;
        Ok(ids)
    }

    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        if request.limit == 0 || request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let queues = serde_json::to_string(&request.queues).map_err(|source| Error::Serialize {
            what: "claim queues",
            source,
        })?;
        let kinds = serde_json::to_string(&request.kinds).map_err(|source| Error::Serialize {
            what: "claim kinds",
            source,
        })?;
        let rows = sqlx::query(Q_CLAIM)
            .bind(now)
            .bind(&request.worker_id)
            .bind(lease_until(now, request.lease))
            .bind(queues)
            .bind(kinds)
            .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("claiming jobs"))?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let token: i64 = row
                    .try_get("run_token")
                    .map_err(|e| Error::Corrupt(format!("claimed job without a token: {e}")))?;
                Ok(Claimed {
                    job: self.record(row)?,
                    token: RunToken(token),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING gives no order; hand jobs out in claim order
        claimed.sort_by(|a, b| {
            (b.job.priority.cmp(&a.job.priority))
                .then(a.job.run_at.cmp(&b.job.run_at))
                .then(a.job.id.cmp(&b.job.id))
        });
        Ok(claimed)
    }

    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control> {
        let row = sqlx::query(Q_HEARTBEAT)
            .bind(id)
            .bind(token.0)
            .bind(lease_until(now_millis(), lease))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("extending a lease"))?;
        match row {
            Some(row) => self.control(&row),
            None => Err(self.fence_failed(id).await),
        }
    }

    async fn job_note_failure(&self, id: JobId, token: RunToken, failure: &Failure) -> Result<()> {
        let failure = failure_text(failure)?;
        let done = sqlx::query(Q_NOTE_FAILURE)
            .bind(id)
            .bind(token.0)
            .bind(failure)
            .execute(&self.pool)
            .await
            .map_err(self.err("recording where a run failed"))?;
        if done.rows_affected() == 0 {
            return Err(self.fence_failed(id).await);
        }
        Ok(())
    }

    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> Result<Control> {
        let now = now_millis();
        let cursor = progress
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let row = sqlx::query(Q_CHECKPOINT)
            .bind(id)
            .bind(token.0)
            .bind(now)
            .bind(lease_until(now, lease))
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("writing a checkpoint"))?;
        match row {
            Some(row) => self.control(&row),
            None => Err(self.fence_failed(id).await),
        }
    }

    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> Result<()> {
        let now = now_millis();
        let cursor = progress
            .and_then(|p| p.cursor.as_ref())
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let change = ReleaseChange::of(outcome);
        // Completion writes no event: one statement on the pool, as it always was.
        // Any other outcome records its event in the same transaction.
        let event = release_event(outcome);
        let mut tx = match event {
            Some(_) => Some(self.begin("releasing a job").await?),
            None => None,
        };
        let release = sqlx::query(Q_RELEASE)
            .bind(id)
            .bind(token.0)
            .bind(now)
            .bind(progress.is_some())
            .bind(cursor)
            .bind(progress.map(|p| to_i64(p.items_done)))
            .bind(progress.and_then(|p| p.items_total).map(to_i64))
            .bind(progress.map(|p| to_i64(p.running_ms)))
            .bind(change.state.as_str())
            .bind(change.run_at)
            .bind(change.attempts)
            .bind(change.interruptions)
            .bind(change.error)
            .bind(change.finished)
            .bind(change.clear_requests);
        let released = match tx.as_mut() {
            Some(tx) => release.fetch_optional(&mut **tx).await,
            None => release.fetch_optional(&self.pool).await,
        }
        .map_err(self.err("releasing a job"))?;
        let Some(row) = released else {
            drop(tx); // rolls back
            return Err(self.fence_failed(id).await);
        };
        let parent: Option<JobId> = row
            .try_get("parent_id")
            .map_err(self.err("releasing a job"))?;
        if let (Some(mut tx), Some((kind, reason, error))) = (tx, event) {
            events::insert(&mut *tx, id, now, kind, reason, error)
                .await
                .map_err(self.err("recording a release in the job's history"))?;
            tx.commit().await.map_err(self.err("releasing a job"))?;
        }
        if let Some(parent) = parent
            && change.state.is_finished()
        {
            // The release is durable already; if this fails, the rescuer finishes
            // the parent later.
            let mut tx = self.begin("finishing a partitioned job").await?;
            self.finalize(&mut tx, parent).await?;
            tx.commit()
                .await
                .map_err(self.err("finishing a partitioned job"))?;
        }
        Ok(())
    }

    async fn job_release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        self.release_many(releases).await
    }

    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        let now = now_millis();
        let mut tx = self.begin("rescuing jobs with expired leases").await?;
        let rows = sqlx::query(Q_RESCUE)
            .bind(now)
            .bind(i64::from(max_crashes))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        for row in &rows {
            let id: JobId = row.try_get("id").map_err(self.err("rescuing jobs"))?;
            let state: String = row.try_get("state").map_err(self.err("rescuing jobs"))?;
            let error: Option<String> = row
                .try_get("last_error")
                .map_err(self.err("rescuing jobs"))?;
            let error = error.filter(|_| state == JobState::Failed.as_str());
            events::insert(
                &mut *tx,
                id,
                now,
                JobEventKind::Rescued,
                None,
                error.as_deref(),
            )
            .await
            .map_err(self.err("recording a rescue in the job's history"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        let mut rescued = rows
            .iter()
            .map(|row| {
                let id: JobId = row.try_get("id").map_err(self.err("rescuing jobs"))?;
                let state: String = row.try_get("state").map_err(self.err("rescuing jobs"))?;
                let state = JobState::from_str(&state).map_err(|_| {
                    Error::Corrupt(format!("job {id} has an unknown state `{state}`"))
                })?;
                Ok(Rescued { id, state })
            })
            .collect::<Result<Vec<_>>>()?;
        rescued.sort_by_key(|r| r.id);
        for r in &rescued {
            tracing::debug!(job = r.id, state = %r.state, "rescued a job whose lease expired");
        }
        let parents: Vec<JobId> = sqlx::query_scalar(Q_FINALIZE_CANDIDATES)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("looking for finished partitioned jobs"))?;
        if !parents.is_empty() {
            let mut tx = self.begin("finishing partitioned jobs").await?;
            for parent in parents {
                self.finalize(&mut tx, parent).await?;
            }
            tx.commit()
                .await
                .map_err(self.err("finishing partitioned jobs"))?;
        }
        Ok(rescued)
    }

    async fn job_get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let row = sqlx::query(Q_GET)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading a job"))?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.with_progress(self.record(&row)?).await?)),
        }
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let rows = sqlx::query(Q_LIST)
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.before_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(filter.top_level)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing jobs"))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = self.with_progress(self.record(row)?).await?;
            // a split parent's shown state follows its partitions: one stored as
            // `running` whose partitions all wait is not a running job
            if filter.state.is_none_or(|s| s == record.state) {
                records.push(record);
            }
        }
        if let Some(state) = filter.state.filter(|s| shown_by_split_parents(*s)) {
            // split parents stored `running` that show the state listed
            let parents = split_parents_showing(state, filter.before_id, limit, |before| {
                self.split_parents_page(filter, before, limit)
            })
            .await?;
            records = merge_listing(records, parents, limit);
        }
        Ok(records)
    }

    async fn job_count_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(Q_COUNT)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting jobs"))?;
        let mut counts: Vec<(JobState, u64)> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for (state, n) in rows {
            let state = JobState::from_str(&state).map_err(|_| {
                Error::Corrupt(format!(
                    "SQLite store `{}`: jobs with an unknown state `{state}`",
                    self.db
                ))
            })?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    async fn job_count_top_level_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let all = self.job_count_by_state().await?;
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(Q_COUNT_SPLIT)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting top-level jobs"))?;
        let partitions = rows
            .iter()
            .map(|(parent, parent_state, s, n)| {
                Ok((
                    *parent,
                    self.state(parent_state)?,
                    self.state(s)?,
                    count(*n),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(iterjob::store::top_level_counts(all, partitions))
    }

    async fn queue_depths(&self) -> Result<Vec<(String, JobState, u64)>> {
        let what = "counting jobs by queue";
        let all: Vec<(String, String, i64)> = sqlx::query_as(Q_QUEUE_DEPTHS)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(what))?;
        let parents: Vec<(String, String, i64)> = sqlx::query_as(Q_QUEUE_DEPTHS_PARENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(what))?;
        let typed = |rows: Vec<(String, String, i64)>| {
            rows.into_iter()
                .map(|(q, s, n)| Ok((q, self.state(&s)?, count(n))))
                .collect::<Result<Vec<_>>>()
        };
        Ok(iterjob::store::subtract_depths(
            typed(all)?,
            typed(parents)?,
        ))
    }

    async fn job_pause(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("pausing a job").await?;
        let record = self.get_in(&mut tx, id).await?;
        let split = self.is_split_parent(&mut tx, &record).await?;
        match admin_step(AdminAction::Pause, &record, split)? {
            AdminStep::Unchanged => Ok(record),
            AdminStep::Cascade => {
                self.cascade(
                    tx,
                    id,
                    JobState::Paused,
                    Q_PAUSE_CHILDREN,
                    false,
                    "pausing a job",
                )
                .await
            }
            AdminStep::Now | AdminStep::Requested => {
                self.admin_update(
                    tx,
                    Q_PAUSE,
                    id,
                    JobEventKind::OperatorPause,
                    self.err("pausing a job"),
                )
                .await
            }
        }
    }

    async fn job_resume(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("resuming a job").await?;
        let record = self.get_in(&mut tx, id).await?;
        let split = self.is_split_parent(&mut tx, &record).await?;
        match admin_step(AdminAction::Resume, &record, split)? {
            AdminStep::Unchanged => Ok(record),
            AdminStep::Cascade => {
                self.cascade(
                    tx,
                    id,
                    JobState::Running,
                    Q_RESUME_CHILDREN,
                    true,
                    "resuming a job",
                )
                .await
            }
            AdminStep::Now | AdminStep::Requested => {
                self.admin_update(
                    tx,
                    Q_RESUME,
                    id,
                    JobEventKind::OperatorResume,
                    self.err("resuming a job"),
                )
                .await
            }
        }
    }

    async fn job_cancel(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("cancelling a job").await?;
        let record = self.get_in(&mut tx, id).await?;
        let split = self.is_split_parent(&mut tx, &record).await?;
        match admin_step(AdminAction::Cancel, &record, split)? {
            AdminStep::Unchanged => return Ok(record),
            AdminStep::Cascade => {
                return self
                    .cascade(
                        tx,
                        id,
                        JobState::Cancelled,
                        Q_CANCEL_CHILDREN,
                        true,
                        "cancelling a job",
                    )
                    .await;
            }
            AdminStep::Now | AdminStep::Requested => {}
        }
        if let Some(parent) = record.parent_id
            && record.state != JobState::Running
        {
            // a waiting partition finishes now: its parent may be done
            sqlx::query(Q_CANCEL)
                .bind(id)
                .bind(now_millis())
                .execute(&mut *tx)
                .await
                .map_err(self.err("cancelling a job"))?;
            events::insert(
                &mut *tx,
                id,
                now_millis(),
                JobEventKind::OperatorCancel,
                None,
                None,
            )
            .await
            .map_err(self.err("recording an admin action in the job's history"))?;
            self.finalize(&mut tx, parent).await?;
            let record = self.get_in(&mut tx, id).await?;
            tx.commit().await.map_err(self.err("cancelling a job"))?;
            return Ok(record);
        }
        self.admin_update(
            tx,
            Q_CANCEL,
            id,
            JobEventKind::OperatorCancel,
            self.err("cancelling a job"),
        )
        .await
    }

    async fn job_retry(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("retrying a job").await?;
        let record = self.get_in(&mut tx, id).await?;
        let split = self.is_split_parent(&mut tx, &record).await?;
        match admin_step(AdminAction::Retry, &record, split)? {
            AdminStep::Unchanged => return Ok(record),
            AdminStep::Cascade => {
                return self
                    .cascade(
                        tx,
                        id,
                        JobState::Running,
                        Q_RETRY_CHILDREN,
                        true,
                        "retrying a job",
                    )
                    .await;
            }
            AdminStep::Now | AdminStep::Requested => {}
        }
        let on_error = |err: sqlx::Error| {
            if is_unique_violation(&err) {
                invalid(&record, "retry", UNIQUE_KEY_HELD)
            } else {
                map_sqlx(&self.db, "retrying a job", err)
            }
        };
        self.admin_update(tx, Q_RETRY, id, JobEventKind::OperatorRetry, on_error)
            .await
    }

    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<JobEvent>> {
        let rows = events::list(&self.pool, id, limit)
            .await
            .map_err(self.err("reading a job's history"))?;
        rows.iter()
            .map(|row| {
                record::job_event::<SqliteDialect>(row).map_err(|message| self.corrupt(message))
            })
            .collect()
    }

    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[Value],
    ) -> Result<Vec<JobId>> {
        let now = now_millis();
        let mut tx = self.begin("splitting a job into partitions").await?;
        let planned = sqlx::query(Q_PARTITION)
            .bind(id)
            .bind(token.0)
            .bind(now)
            .bind(i64::try_from(children.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(self.err("splitting a job into partitions"))?;
        if planned.rows_affected() == 0 {
            drop(tx);
            return Err(match self.job_get(id).await? {
                Some(record) if record.partitions.is_none() => Error::Config(format!(
                    "job {id} was not enqueued as a partitioned job; it cannot be split into partitions"
                )),
                _ => self.fence_failed(id).await,
            });
        }
        let mut ids = Vec::with_capacity(children.len());
        for params in children {
            let child: JobId = sqlx::query_scalar(Q_INSERT_PARTITION)
                .bind(id)
                .bind(json_text(params, "partition parameters")?)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.err("enqueueing a partition"))?;
            ids.push(child);
        }
        tx.commit()
            .await
            .map_err(self.err("splitting a job into partitions"))?;
        Ok(ids)
    }

    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&Split>,
        lease: Duration,
    ) -> Result<Option<JobId>> {
        let now = now_millis();
        let cursor = progress
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let keep = split
            .map(|s| json_text(&s.keep, "partition parameters"))
            .transpose()?;
        let mut tx = self.begin("splitting a partition").await?;
        let row = sqlx::query(Q_SPLIT)
            .bind(id)
            .bind(token.0)
            .bind(now)
            .bind(lease_until(now, lease))
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .bind(keep)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("splitting a partition"))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.fence_failed(id).await);
        };
        let Some(split) = split else {
            tx.commit()
                .await
                .map_err(self.err("writing a checkpoint"))?;
            return Ok(None);
        };
        let parent: Option<JobId> = row
            .try_get("parent_id")
            .map_err(self.err("splitting a partition"))?;
        let Some(parent) = parent else {
            return Err(Error::Config(format!(
                "job {id} is not a partition of a partitioned job; only partitions can be split"
            )));
        };
        let new: JobId = sqlx::query_scalar(Q_INSERT_PARTITION)
            .bind(parent)
            .bind(json_text(&split.give, "partition parameters")?)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("enqueueing a partition"))?;
        tx.commit()
            .await
            .map_err(self.err("splitting a partition"))?;
        Ok(Some(new))
    }

    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>> {
        if request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(None);
        }
        let queues = serde_json::to_string(&request.queues).map_err(|source| Error::Serialize {
            what: "split request queues",
            source,
        })?;
        let kinds = serde_json::to_string(&request.kinds).map_err(|source| Error::Serialize {
            what: "split request kinds",
            source,
        })?;
        sqlx::query_scalar(Q_REQUEST_SPLIT)
            .bind(queues)
            .bind(kinds)
            .bind(to_i64(request.min_remaining.max(2)))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("asking a partition to split"))
    }

    async fn job_delete(&self, id: JobId) -> Result<u64> {
        const WHAT: &str = "deleting a job";
        // BEGIN IMMEDIATE: no other writer between the check and the delete
        let mut tx = self.begin(WHAT).await?;
        let record = self.get_in(&mut tx, id).await?;
        let rows = sqlx::query(Q_PARTITIONS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err(WHAT))?;
        let children = rows
            .iter()
            .map(|row| self.record(row))
            .collect::<Result<Vec<_>>>()?;
        delete_check(&record, &children)?;
        for query in [Q_DELETE_EVENTS, Q_DELETE_CHILDREN] {
            sqlx::query(query)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err(WHAT))?;
        }
        sqlx::query(Q_DELETE)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.err(WHAT))?;
        tx.commit().await.map_err(self.err(WHAT))?;
        Ok(1 + children.len() as u64)
    }

    async fn job_prune(
        &self,
        state: JobState,
        finished_before: iterjob::store::Millis,
        after: JobId,
        limit: usize,
    ) -> Result<PruneBatch> {
        const WHAT: &str = "pruning finished jobs";
        prune_check(state)?;
        let mut tx = self.begin(WHAT).await?;
        let ids: Vec<i64> = sqlx::query_scalar(Q_PRUNE_PICK)
            .bind(state.as_str())
            .bind(finished_before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err(WHAT))?;
        if ids.is_empty() {
            return Ok(PruneBatch::default());
        }
        let list = serde_json::to_string(&ids).map_err(|source| Error::Serialize {
            what: "job ids",
            source,
        })?;
        for query in [Q_PRUNE_EVENTS, Q_PRUNE_CHILDREN, Q_PRUNE] {
            sqlx::query(query)
                .bind(&list)
                .execute(&mut *tx)
                .await
                .map_err(self.err(WHAT))?;
        }
        tx.commit().await.map_err(self.err(WHAT))?;
        Ok(PruneBatch {
            deleted: ids.len() as u64,
            last_id: ids.iter().max().copied(),
        })
    }

    async fn job_prunable(
        &self,
        state: JobState,
        finished_before: iterjob::store::Millis,
    ) -> Result<u64> {
        prune_check(state)?;
        let n: i64 = sqlx::query_scalar(Q_PRUNABLE)
            .bind(state.as_str())
            .bind(finished_before)
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("counting prunable jobs"))?;
        Ok(n.max(0) as u64)
    }

    async fn schedule_tick(&self, tick: &ScheduleTick) -> Result<TickOutcome> {
        let what = "taking a schedule's tick";
        let now = now_millis();
        let mut tx = self.begin(what).await?;
        let taken: Option<Option<i64>> = match tick.previous {
            None => sqlx::query_scalar(Q_SCHEDULE_INSERT)
                .bind(&tick.name)
                .bind(tick.tick),
            Some(previous) => sqlx::query_scalar(Q_SCHEDULE_ADVANCE)
                .bind(&tick.name)
                .bind(tick.tick)
                .bind(previous),
        }
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.err(what))?;
        let Some(last_job) = taken else {
            let _ = tx.rollback().await;
            return Ok(TickOutcome::Stale);
        };
        let Some(job) = &tick.job else {
            tx.commit().await.map_err(self.err(what))?;
            return Ok(TickOutcome::Recorded);
        };
        if tick.skip_if_running
            && let Some(previous) = last_job
        {
            let running: Option<i64> = sqlx::query_scalar(Q_JOB_UNFINISHED)
                .bind(previous)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err(what))?;
            if running.is_some() {
                tx.commit().await.map_err(self.err(what))?;
                return Ok(TickOutcome::SkippedRunning(previous));
            }
        }
        let id = self.insert_in(&mut tx, job, now).await?;
        sqlx::query(Q_SCHEDULE_SET_JOB)
            .bind(&tick.name)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))?;
        Ok(TickOutcome::Enqueued(id))
    }

    async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let rows = sqlx::query(Q_SCHEDULE_STATES)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading the schedules"))?;
        rows.iter()
            .map(|row| record::schedule_state::<SqliteDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = now_millis();
        let row = sqlx::query(Q_LEASE_ACQUIRE)
            .bind(name)
            .bind(holder)
            .bind(now)
            .bind(lease_until(now, ttl))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("taking a lease"))?;
        Ok(row.is_some())
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(Q_LEASE_RELEASE)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(self.err("giving up a lease"))?;
        Ok(())
    }

    async fn queue_pause(&self, queue: &str, mode: QueuePauseMode) -> Result<QueuePause> {
        check_queue_name(queue)?;
        let row = sqlx::query(Q_QUEUE_PAUSE)
            .bind(queue)
            .bind(now_millis())
            .bind(mode.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("pausing a queue"))?;
        record::queue_pause::<SqliteDialect>(&row).map_err(|m| self.corrupt(m))
    }

    async fn queue_resume(&self, queue: &str) -> Result<bool> {
        Ok(sqlx::query(Q_QUEUE_RESUME)
            .bind(queue)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("resuming a queue"))?
            .is_some())
    }

    async fn queue_pauses(&self) -> Result<Vec<QueuePause>> {
        let rows = sqlx::query(Q_QUEUE_PAUSES)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading paused queues"))?;
        rows.iter()
            .map(|row| record::queue_pause::<SqliteDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn throttle_on(&self, switch: &ThrottleSwitch) -> Result<ThrottleSwitch> {
        switch.validate()?;
        iterjob_sql::throttles::throttle_on::<SqliteDialect>(
            &self.pool,
            "iterjob_throttles",
            switch,
        )
        .await
        .map_err(self.err("switching a throttle on"))
    }

    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> Result<bool> {
        iterjob_sql::throttles::throttle_off::<SqliteDialect>(
            &self.pool,
            "iterjob_throttles",
            queue,
            kind,
            iterjob::store::now_millis(),
        )
        .await
        .map_err(self.err("switching a throttle off"))
    }

    async fn worker_beat(&self, presence: &WorkerPresence) -> Result<()> {
        iterjob_sql::workers::worker_beat::<SqliteDialect>(&self.pool, "iterjob_workers", presence)
            .await
            .map_err(self.err("recording a worker's beat"))
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        iterjob_sql::workers::worker_gone::<SqliteDialect>(&self.pool, "iterjob_workers", id)
            .await
            .map_err(self.err("removing a worker's presence"))
    }

    async fn workers(&self) -> Result<Vec<WorkerPresence>> {
        iterjob_sql::workers::workers::<SqliteDialect>(
            &self.pool,
            "iterjob_workers",
            iterjob::store::now_millis(),
        )
        .await
        .map_err(self.err("listing the workers"))
    }

    async fn throttle_switches(&self, now: Millis) -> Result<Vec<ThrottleSwitch>> {
        iterjob_sql::throttles::throttle_switches::<SqliteDialect>(
            &self.pool,
            "iterjob_throttles",
            now,
        )
        .await
        .map_err(self.err("reading the throttle switches"))
    }

    async fn queue_rows(&self, now: Millis) -> Result<Vec<QueueRow>> {
        let rows = sqlx::query(Q_QUEUE_ROWS)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting the jobs of each queue"))?;
        rows.iter()
            .map(|row| record::queue_row::<SqliteDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(Q_PARTITIONS)
            .bind(parent)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing a job's partitions"))?;
        rows.iter().map(|row| self.record(row)).collect()
    }

    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        let now = now_micros();
        let wait_us: i64 = sqlx::query_scalar(Q_RATE_ACQUIRE)
            .bind(key)
            .bind(now)
            .bind(rate_cost_micros(n, interval))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reserving from a rate limit"))?;
        Ok(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
    }
}

impl SqliteStore {
    /// A page of split parents (stored `running`), newest first, below `before`,
    /// with their progress and shown state: for [`split_parents_showing`].
    async fn split_parents_page(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(Q_LIST_SPLIT_PARENTS)
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing jobs"))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(self.with_progress(self.record(row)?).await?);
        }
        Ok(records)
    }
}
