//! Helpers shared by the chaos and outage tests: the test server and the CI rule, a
//! fresh schema with the log table, worker processes of the `iterjob-chaos` binary,
//! and what the log table and the jobs say afterwards.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use iterjob::store::{JobId, NewJob, Store};
use iterjob_chaos::{LOG_TABLE, create_log_table};
use iterjob_postgres::{PgOptions, PgPool, PgStore};
use sqlx::{Connection, PgConnection};

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

/// A fresh schema with the store and the log table, and the worker processes on it.
/// Dropping it kills the workers still running and drops the schema.
pub struct Cluster {
    pub schema: String,
    /// The URL the workers get: the test server's, with `?schema=`.
    pub url: String,
    pub store: PgStore,
    dir: tempfile::TempDir,
    worker_args: Vec<String>,
    pub workers: Vec<WorkerProc>,
    pub ended: Vec<Ended>,
    spawned: usize,
}

impl Cluster {
    /// A fresh schema, migrated, with the log table; `None` to skip.
    pub async fn new(worker_args: &[&str]) -> Option<Self> {
        if !require_pg().await {
            return None;
        }
        let schema = format!("iterjob_chaos_{:016x}", rand::random::<u64>());
        let url = with_schema(&pg_url(), &schema);
        let store = PgStore::connect_with(PgOptions::new(&url).max_connections(4).notify(false))
            .await
            .unwrap_or_else(|err| panic!("open the store in schema {schema}: {err}"));
        create_log_table(store.pool(), &schema)
            .await
            .expect("create the log table");
        Some(Cluster {
            schema,
            url,
            store,
            dir: tempfile::tempdir().expect("tempdir"),
            worker_args: worker_args.iter().map(|s| s.to_string()).collect(),
            workers: Vec::new(),
            ended: Vec::new(),
            spawned: 0,
        })
    }

    pub fn pool(&self) -> &PgPool {
        self.store.pool()
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

    /// Jobs by state.
    pub async fn states(&self) -> Result<BTreeMap<String, i64>, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT state, COUNT(*) FROM \"{}\".jobs WHERE parent_id IS NULL GROUP BY state",
            self.schema
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Jobs that ended in another state than completed: id, kind, state, last error.
    pub async fn not_completed(&self) -> Vec<(i64, String, String, Option<String>)> {
        sqlx::query_as(&format!(
            "SELECT id, kind, state, last_error FROM \"{}\".jobs WHERE state <> 'completed' \
             ORDER BY id",
            self.schema
        ))
        .fetch_all(self.pool())
        .await
        .unwrap_or_default()
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

    /// Items logged per kind.
    pub async fn kind_stats(&self) -> BTreeMap<String, KindStats> {
        let s = &self.schema;
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
            "WITH logs AS (
                SELECT COALESCE(c.parent_id, c.id) AS root, l.id, l.item
                FROM \"{s}\".{LOG_TABLE} l JOIN \"{s}\".jobs c ON c.id = l.job_id
             ),
             per_job AS (
                SELECT j.id, j.kind, (j.params->>'n')::bigint AS n,
                       COUNT(l.id) AS rows,
                       COUNT(DISTINCT l.item) FILTER (
                           WHERE l.item >= 0 AND l.item < (j.params->>'n')::bigint) AS items
                FROM \"{s}\".jobs j LEFT JOIN logs l ON l.root = j.id
                WHERE j.parent_id IS NULL
                GROUP BY j.id
             )
             SELECT kind, COUNT(*), SUM(n)::bigint, SUM(rows)::bigint, SUM(items)::bigint,
                    COUNT(*) FILTER (WHERE items < n)
             FROM per_job GROUP BY kind"
        ))
        .fetch_all(self.pool())
        .await
        .expect("item counts");
        rows.into_iter()
            .map(|(kind, jobs, expected, rows, distinct, short_jobs)| {
                (
                    kind,
                    KindStats {
                        jobs,
                        expected,
                        rows,
                        distinct,
                        short_jobs,
                    },
                )
            })
            .collect()
    }

    /// Repeats per (kind, worker pid): every row of an item but its last one, charged
    /// to the process whose run logged it and then lost it (it died before the
    /// checkpoint past it).
    pub async fn repeats_by_pid(&self) -> BTreeMap<(String, u32), i64> {
        let s = &self.schema;
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(&format!(
            "WITH ranked AS (
                SELECT j.kind, l.worker_pid,
                       row_number() OVER (
                           PARTITION BY COALESCE(j.parent_id, j.id), l.item ORDER BY l.id DESC
                       ) AS rn
                FROM \"{s}\".{LOG_TABLE} l JOIN \"{s}\".jobs j ON j.id = l.job_id
             )
             SELECT kind, worker_pid, COUNT(*)
             FROM ranked
             WHERE rn > 1 GROUP BY kind, worker_pid"
        ))
        .fetch_all(self.pool())
        .await
        .expect("repeats");
        rows.into_iter()
            .map(|(kind, pid, n)| ((kind, pid as u32), n))
            .collect()
    }

    /// Runs, interruptions, attempts and crashes summed over all jobs.
    pub async fn job_totals(&self) -> (i64, i64, i64, i64) {
        sqlx::query_as(&format!(
            "SELECT COALESCE(SUM(runs), 0)::bigint, COALESCE(SUM(interruptions), 0)::bigint,
                    COALESCE(SUM(attempts), 0)::bigint, COALESCE(SUM(crashes), 0)::bigint
             FROM \"{}\".jobs",
            self.schema
        ))
        .fetch_one(self.pool())
        .await
        .expect("job totals")
    }

    /// Partitioned jobs and their partitions (those from dynamic splits included).
    pub async fn partition_counts(&self) -> (i64, i64) {
        sqlx::query_as(&format!(
            "SELECT COUNT(*) FILTER (WHERE partitions IS NOT NULL),
                    COUNT(*) FILTER (WHERE parent_id IS NOT NULL)
             FROM \"{}\".jobs",
            self.schema
        ))
        .fetch_one(self.pool())
        .await
        .expect("partition counts")
    }

    /// Items done per job, as checkpointed.
    pub async fn items_done(&self) -> Result<BTreeMap<i64, i64>, sqlx::Error> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT id, items_done FROM \"{}\".jobs",
            self.schema
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        drop_schema(&self.schema);
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
