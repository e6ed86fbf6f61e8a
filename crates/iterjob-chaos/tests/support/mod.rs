//! Helpers shared by the chaos and outage tests: the test servers (PostgreSQL and
//! MySQL/MariaDB) and the CI rule, a fresh schema or database with the log table,
//! worker processes of the `iterjob-chaos` binary, and what the log table and the
//! jobs say afterwards (read through the store's API and one plain `SELECT` of the
//! log, so every database is judged by the same code).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use iterjob::store::{JobFilter, JobId, JobRecord, NewJob, Store};
use iterjob_chaos::{LogDb, LogRow};
use sqlx::{Connection, MySqlConnection, PgConnection};

/// Writes a line straight to stderr, past the test harness's capture, so the figures
/// show in CI logs even without `--nocapture`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// The test server's URL (`ITERJOB_TEST_PG_URL`, default the local `test` database).
pub fn pg_url() -> String {
    std::env::var("ITERJOB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Whether the server answers: `Err` with the reason when it does not.
pub async fn reachable() -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&pg_url())).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out after 5 s".to_string()),
    }
}

/// The CI rule for anything the test cannot do without: panics (fails the test) when
/// `CI` is set, and otherwise prints a notice; the caller then skips.
pub fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}, and CI is set: this test must run in CI");
    }
    say!("notice: skipping: {what} (in CI this fails)");
}

/// True when the server is reachable; otherwise applies the CI rule and returns
/// false (skip).
pub async fn require_pg() -> bool {
    match reachable().await {
        Ok(()) => true,
        Err(reason) => {
            skip_or_fail(&format!(
                "PostgreSQL test server {} is unreachable ({reason}); start it \
                 (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                 or set ITERJOB_TEST_PG_URL",
                pg_url()
            ));
            false
        }
    }
}

/// The MySQL test server's URL (`ITERJOB_TEST_MYSQL_URL`, default the local `test`
/// database of MariaDB).
pub fn mysql_url() -> String {
    std::env::var("ITERJOB_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// The URL of database `name` on the MySQL test server.
fn mysql_db_url(name: &str) -> String {
    let base = mysql_url();
    let (head, query) = match base.split_once('?') {
        Some((head, query)) => (head.to_string(), format!("?{query}")),
        None => (base.clone(), String::new()),
    };
    let authority_end = head
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| head[start..].find('/').map(|j| start + j))
        .unwrap_or(head.len());
    format!("{}/{name}{query}", &head[..authority_end])
}

/// True when the MySQL server is reachable; otherwise applies the CI rule and
/// returns false (skip).
pub async fn require_mysql() -> bool {
    let url = mysql_url();
    let reason =
        match tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&url)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return true;
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out after 5 s".to_string(),
        };
    skip_or_fail(&format!(
        "MySQL test server {url} is unreachable ({reason}); start it (service mariadb start) \
         or set ITERJOB_TEST_MYSQL_URL"
    ));
    false
}

/// Runs `sql` on a connection of its own to the MySQL test server, from a thread of
/// its own (called from `Drop`, inside or outside a runtime).
fn mysql_admin(sql: String) {
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let mut conn = MySqlConnection::connect(&mysql_url()).await?;
            sqlx::query(&sql).execute(&mut conn).await?;
            conn.close().await
        })
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(err)) => say!("warning: could not drop a test database: {err}"),
        Err(_) => say!("warning: dropping a test database panicked"),
    }
}

/// The database a cluster runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// The PostgreSQL test server, in a fresh schema.
    Postgres,
    /// The MySQL/MariaDB test server, in a fresh database.
    MySql,
}

impl Db {
    /// Its name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Db::Postgres => "PostgreSQL",
            Db::MySql => "MySQL",
        }
    }

    /// Whether its server answers (the CI rule otherwise).
    async fn require(self) -> bool {
        match self {
            Db::Postgres => require_pg().await,
            Db::MySql => require_mysql().await,
        }
    }

    /// Creates a fresh schema (PostgreSQL) or database (MySQL) named `name`; returns
    /// the URL the workers get.
    async fn create(self, name: &str) -> String {
        match self {
            // the store creates its schema when it migrates
            Db::Postgres => with_schema(&pg_url(), name),
            Db::MySql => {
                let mut conn = MySqlConnection::connect(&mysql_url())
                    .await
                    .expect("connect to the MySQL test server");
                sqlx::query(&format!("CREATE DATABASE `{name}`"))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let _ = conn.close().await;
                mysql_db_url(name)
            }
        }
    }

    /// Drops what [`Db::create`] made.
    fn drop_namespace(self, name: &str) {
        match self {
            Db::Postgres => drop_schema(name),
            Db::MySql => mysql_admin(format!("DROP DATABASE IF EXISTS `{name}`")),
        }
    }
}

/// `url` with `?schema=NAME` (or `&schema=NAME`) added.
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

/// Drops `schema` on a connection of its own, from a thread of its own (called from
/// `Drop`, inside or outside a runtime).
pub fn drop_schema(schema: &str) {
    let schema = schema.to_string();
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let mut conn = PgConnection::connect(&pg_url()).await?;
            sqlx::query("SET lock_timeout = '10s'")
                .execute(&mut conn)
                .await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await?;
            conn.close().await
        })
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(err)) => say!("warning: could not drop test schema: {err}"),
        Err(_) => say!("warning: dropping a test schema panicked"),
    }
}

/// How a worker process ended.
#[derive(Clone, Debug)]
pub struct Ended {
    /// Its pid (as logged in `worker_pid`).
    pub pid: u32,
    /// The signal it was sent: `KILL` or `TERM`.
    pub signal: &'static str,
    /// Whether it was sent during the chaos phase (false: the final stop).
    pub chaos: bool,
    /// How it exited.
    pub status: Option<ExitStatus>,
    /// How long it took to exit after the signal.
    pub exit_after: Duration,
}

/// A running worker process.
pub struct WorkerProc {
    pub child: Child,
    pub pid: u32,
    pub started: Instant,
    pub log: PathBuf,
}

/// A fresh schema (PostgreSQL) or database (MySQL) with the store and the log table,
/// and the worker processes on it. Dropping it kills the workers still running and
/// drops the schema or database.
pub struct Cluster {
    /// Which database.
    pub db: Db,
    /// The schema's or database's name.
    pub schema: String,
    /// The URL the workers get.
    pub url: String,
    /// The store and log table, as the kinds open them.
    pub log: LogDb,
    pub store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    worker_args: Vec<String>,
    pub workers: Vec<WorkerProc>,
    pub ended: Vec<Ended>,
    spawned: usize,
}

impl Cluster {
    /// A fresh schema or database on `db`, migrated, with the log table; `None` to
    /// skip.
    pub async fn new(db: Db, worker_args: &[&str]) -> Option<Self> {
        if !db.require().await {
            return None;
        }
        let schema = format!("iterjob_chaos_{:016x}", rand::random::<u64>());
        let url = db.create(&schema).await;
        let log = match LogDb::connect(&url, 4).await {
            Ok(log) => log,
            Err(err) => {
                db.drop_namespace(&schema);
                panic!("open the store in {schema}: {err}");
            }
        };
        log.create_log_table().await.expect("create the log table");
        Some(Cluster {
            db,
            schema,
            url,
            store: log.store(),
            log,
            dir: tempfile::tempdir().expect("tempdir"),
            worker_args: worker_args.iter().map(|s| s.to_string()).collect(),
            workers: Vec::new(),
            ended: Vec::new(),
            spawned: 0,
        })
    }

    /// Enqueues `count` jobs of `kind` with `params`; returns their ids.
    pub async fn enqueue(
        &self,
        kind: &str,
        count: usize,
        params: serde_json::Value,
        max_attempts: u32,
    ) -> Vec<JobId> {
        self.enqueue_partitioned(kind, count, params, max_attempts, None)
            .await
    }

    /// Enqueues `count` jobs of `kind`, each split into `partitions` when given.
    pub async fn enqueue_partitioned(
        &self,
        kind: &str,
        count: usize,
        params: serde_json::Value,
        max_attempts: u32,
        partitions: Option<u32>,
    ) -> Vec<JobId> {
        let jobs: Vec<NewJob> = (0..count)
            .map(|_| {
                let mut job = NewJob::new(kind, params.clone()).max_attempts(max_attempts);
                job.partitions = partitions;
                job
            })
            .collect();
        self.store.job_insert_many(&jobs).await.expect("enqueue")
    }

    /// Starts one more worker process (`iterjob-chaos worker …`), its stderr going to
    /// a log file of its own.
    pub fn spawn_worker(&mut self) {
        self.spawned += 1;
        let log = self.dir.path().join(format!("worker-{}.log", self.spawned));
        let file = File::create(&log).expect("worker log file");
        let child = Command::new(env!("CARGO_BIN_EXE_iterjob-chaos"))
            .arg("worker")
            .args(&self.worker_args)
            .env("ITERJOB_DATABASE_URL", &self.url)
            .env_remove("ITERJOB_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn a worker");
        let pid = child.id();
        self.workers.push(WorkerProc {
            child,
            pid,
            started: Instant::now(),
            log,
        });
    }

    /// Sends `signal` (`KILL` or `TERM`) to worker `index`, waits (up to `wait`) for it
    /// to exit, and records how it ended.
    pub async fn stop_worker(
        &mut self,
        index: usize,
        signal: &'static str,
        chaos: bool,
        wait: Duration,
    ) -> Ended {
        let mut worker = self.workers.remove(index);
        send(worker.pid, signal);
        let sent = Instant::now();
        let status = loop {
            match worker.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if sent.elapsed() < wait => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => {
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                    break None;
                }
            }
        };
        let ended = Ended {
            pid: worker.pid,
            signal,
            chaos,
            status,
            exit_after: sent.elapsed(),
        };
        self.ended.push(ended.clone());
        ended
    }

    /// SIGTERM to every worker; each must exit within `wait`.
    pub async fn stop_all(&mut self, wait: Duration) {
        for w in &self.workers {
            send(w.pid, "TERM");
        }
        while !self.workers.is_empty() {
            self.stop_worker(0, "TERM", false, wait).await;
        }
    }

    /// Workers that exited on their own (none should).
    pub fn exited_on_their_own(&mut self) -> Vec<(u32, ExitStatus)> {
        self.workers
            .iter_mut()
            .filter_map(|w| match w.child.try_wait() {
                Ok(Some(status)) => Some((w.pid, status)),
                _ => None,
            })
            .collect()
    }

    /// Every worker log so far, in start order.
    pub fn logs(&self) -> Vec<(String, String)> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("worker-"))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
        paths
            .into_iter()
            .map(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                (name, std::fs::read_to_string(&p).unwrap_or_default())
            })
            .collect()
    }

    /// How many times each of `needles` occurs in the workers' logs.
    pub fn log_counts(&self, needles: &[&'static str]) -> BTreeMap<&'static str, usize> {
        let logs = self.logs();
        needles
            .iter()
            .map(|n| {
                (
                    *n,
                    logs.iter().map(|(_, text)| text.matches(n).count()).sum(),
                )
            })
            .collect()
    }

    /// Up to `max` lines of the workers' logs containing `needle`, with the log's name.
    pub fn log_lines(&self, needle: &str, max: usize) -> Vec<String> {
        self.logs()
            .iter()
            .flat_map(|(name, text)| {
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| format!("{name}: {l}"))
                    .collect::<Vec<_>>()
            })
            .take(max)
            .collect()
    }

    /// Prints the last lines of every worker log (for a failure).
    pub fn dump_logs(&self, lines: usize) {
        for (name, text) in self.logs() {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            say!("--- {name} (last {} of {} lines)", tail.len(), all.len());
            for line in tail {
                say!("    {line}");
            }
        }
    }

    /// Every job, partitions included, through the store's API.
    pub async fn jobs(&self) -> iterjob::Result<Vec<JobRecord>> {
        let mut all = Vec::new();
        let mut before_id = None;
        loop {
            let page = self
                .store
                .job_list(&JobFilter {
                    before_id,
                    limit: Some(500),
                    ..JobFilter::default()
                })
                .await?;
            let Some(last) = page.last() else {
                return Ok(all);
            };
            before_id = Some(last.id);
            all.extend(page);
        }
    }

    /// Jobs (not partitions) by state.
    pub async fn states(&self) -> iterjob::Result<BTreeMap<String, i64>> {
        let mut states = BTreeMap::new();
        for job in self.jobs().await? {
            if job.parent_id.is_none() {
                *states.entry(job.state.to_string()).or_default() += 1;
            }
        }
        Ok(states)
    }

    /// Jobs that ended in another state than completed: id, kind, state, last error.
    pub async fn not_completed(&self) -> Vec<(i64, String, String, Option<String>)> {
        self.jobs()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j.state.to_string() != "completed")
            .map(|j| (j.id, j.kind, j.state.to_string(), j.last_error))
            .collect()
    }

    /// Waits until all `total` jobs are completed, up to `timeout`; fails at once if one
    /// ends failed or cancelled, and at the timeout, with the counts by state.
    pub async fn wait_all_completed(&self, total: i64, timeout: Duration) -> Duration {
        let start = Instant::now();
        let mut last = BTreeMap::new();
        loop {
            if let Ok(states) = self.states().await {
                let done = states.get("completed").copied().unwrap_or(0);
                if done == total {
                    return start.elapsed();
                }
                let dead = states.get("failed").copied().unwrap_or(0)
                    + states.get("cancelled").copied().unwrap_or(0);
                if dead > 0 {
                    self.dump_logs(30);
                    panic!(
                        "jobs ended without completing: {states:?}; {:?}",
                        self.not_completed().await
                    );
                }
                last = states;
            }
            if start.elapsed() > timeout {
                self.dump_logs(30);
                panic!(
                    "not every job completed within {timeout:?} of draining: jobs by state \
                     {last:?} (of {total}); unfinished: {:?}",
                    self.not_completed().await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The jobs and the log, read once.
    async fn snapshot(&self) -> (Vec<JobRecord>, Vec<LogRow>) {
        let jobs = self.jobs().await.expect("list the jobs");
        let log = self.log.log_rows().await.expect("read the log table");
        (jobs, log)
    }

    /// Items logged per kind.
    pub async fn kind_stats(&self) -> BTreeMap<String, KindStats> {
        let (jobs, log) = self.snapshot().await;
        kind_stats(&jobs, &log)
    }

    /// Repeats per (kind, worker pid): every row of an item but its last one, charged
    /// to the process whose run logged it and then lost it (it died before the
    /// checkpoint past it).
    pub async fn repeats_by_pid(&self) -> BTreeMap<(String, u32), i64> {
        let (jobs, log) = self.snapshot().await;
        repeats_by_pid(&jobs, &log)
    }

    /// Runs, interruptions, attempts and crashes summed over all jobs.
    pub async fn job_totals(&self) -> (i64, i64, i64, i64) {
        let jobs = self.jobs().await.expect("list the jobs");
        jobs.iter().fold((0, 0, 0, 0), |(r, i, a, c), j| {
            (
                r + i64::from(j.runs),
                i + i64::from(j.interruptions),
                a + i64::from(j.attempts),
                c + i64::from(j.crashes),
            )
        })
    }

    /// Interruptions by reason (`shutdown`, `time_slice`, …), from every job's history.
    pub async fn interruptions_by_reason(&self) -> BTreeMap<String, i64> {
        let mut reasons = BTreeMap::new();
        for job in self.jobs().await.expect("list the jobs") {
            let events = self
                .store
                .job_events(job.id, usize::MAX)
                .await
                .expect("job history");
            for event in events {
                if let Some(reason) = event.reason {
                    *reasons.entry(reason.as_str().to_string()).or_default() += 1;
                }
            }
        }
        reasons
    }

    /// Partitioned jobs and their partitions (those from dynamic splits included).
    pub async fn partition_counts(&self) -> (i64, i64) {
        let jobs = self.jobs().await.expect("list the jobs");
        let parents = jobs.iter().filter(|j| j.partitions.is_some()).count();
        let partitions = jobs.iter().filter(|j| j.parent_id.is_some()).count();
        (parents as i64, partitions as i64)
    }

    /// Items done per job, as checkpointed.
    pub async fn items_done(&self) -> iterjob::Result<BTreeMap<i64, i64>> {
        Ok(self
            .jobs()
            .await?
            .into_iter()
            .map(|j| (j.id, j.items_done as i64))
            .collect())
    }
}

/// The job (not partition) each job id belongs to.
fn roots(jobs: &[JobRecord]) -> HashMap<JobId, JobId> {
    jobs.iter()
        .map(|j| (j.id, j.parent_id.unwrap_or(j.id)))
        .collect()
}

/// What the log says per kind: every top-level job's items `0..n` against the rows
/// its partitions logged.
pub fn kind_stats(jobs: &[JobRecord], log: &[LogRow]) -> BTreeMap<String, KindStats> {
    let roots = roots(jobs);
    let mut per_root: HashMap<JobId, (i64, BTreeSet<i64>)> = HashMap::new();
    for row in log {
        let root = roots.get(&row.job_id).copied().unwrap_or(row.job_id);
        let entry = per_root.entry(root).or_default();
        entry.0 += 1;
        entry.1.insert(row.item);
    }
    let mut stats: BTreeMap<String, KindStats> = BTreeMap::new();
    for job in jobs.iter().filter(|j| j.parent_id.is_none()) {
        let n = job
            .params
            .get("n")
            .and_then(serde_json::Value::as_i64)
            .expect("chaos jobs have n");
        let (rows, items) = per_root.get(&job.id).cloned().unwrap_or_default();
        let distinct = items.range(0..n).count() as i64;
        let s = stats.entry(job.kind.clone()).or_default();
        s.jobs += 1;
        s.expected += n;
        s.rows += rows;
        s.distinct += distinct;
        s.short_jobs += i64::from(distinct < n);
    }
    stats
}

/// Repeats per (kind, worker pid): for each (job, item), every row but the last (by
/// insertion order), charged to the process that logged it.
pub fn repeats_by_pid(jobs: &[JobRecord], log: &[LogRow]) -> BTreeMap<(String, u32), i64> {
    let roots = roots(jobs);
    let kinds: HashMap<JobId, &str> = jobs.iter().map(|j| (j.id, j.kind.as_str())).collect();
    let mut last: HashMap<(JobId, i64), &LogRow> = HashMap::new();
    let mut repeats: BTreeMap<(String, u32), i64> = BTreeMap::new();
    // in insertion order: a row followed by a later one for the same item is a repeat
    let mut ordered: Vec<&LogRow> = log.iter().collect();
    ordered.sort_by_key(|r| r.id);
    for row in ordered {
        let root = roots.get(&row.job_id).copied().unwrap_or(row.job_id);
        if let Some(earlier) = last.insert((root, row.item), row) {
            let kind = kinds
                .get(&earlier.job_id)
                .copied()
                .unwrap_or("?")
                .to_string();
            *repeats
                .entry((kind, earlier.worker_pid as u32))
                .or_default() += 1;
        }
    }
    repeats
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        self.db.drop_namespace(&self.schema);
    }
}

/// What the log table holds for one kind.
#[derive(Clone, Debug, Default)]
pub struct KindStats {
    /// Jobs of the kind.
    pub jobs: i64,
    /// Items they walk, in all.
    pub expected: i64,
    /// Rows logged.
    pub rows: i64,
    /// Distinct (job, item) logged, in range.
    pub distinct: i64,
    /// Jobs with an item never logged.
    pub short_jobs: i64,
}

impl KindStats {
    /// Rows beyond the first for an item.
    pub fn repeats(&self) -> i64 {
        self.rows - self.distinct
    }

    /// Items never logged.
    pub fn missing(&self) -> i64 {
        self.expected - self.distinct
    }
}

/// Sends `signal` to `pid` with `kill`.
pub fn send(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    let _ = status; // the process may have exited already
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Writes `text` straight to stderr.
pub fn say_raw(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}
