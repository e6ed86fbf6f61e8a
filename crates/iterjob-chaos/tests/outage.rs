//! Outage: the PostgreSQL server goes away for real while 2 worker processes walk a
//! few jobs of each kind — first stopped for 3 s and started again, then restarted —
//! and the workers must ride it out: every job completes, every item is logged, and
//! the exactly-once kind repeats nothing.
//!
//! Runs `pg_ctlcluster` on the local cluster (as root); a guard starts the server
//! again whatever happens. The one test of this binary, so that nothing else of this
//! crate runs while the server is down (cargo runs test binaries one at a time).

#[macro_use]
mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{Cluster, Db, pg_url, reachable, skip_or_fail};

const JOBS_PER_KIND: usize = 2;
const ITEMS: i64 = 6000;
const BATCH: i64 = 20;
const PAUSE_MS: u64 = 50;

/// The local PostgreSQL cluster, driven with `pg_ctlcluster`.
struct Server {
    version: String,
}

impl Server {
    /// The cluster `main` of the one version in `/etc/postgresql`, if the test server
    /// is local and `pg_ctlcluster` is there.
    fn find() -> Result<Server, String> {
        let url = pg_url();
        let host = url
            .split('@')
            .nth(1)
            .unwrap_or(&url)
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
        if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]") {
            return Err(format!(
                "the test server {url} is not local; the outage test restarts the local cluster"
            ));
        }
        let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .map_err(|e| format!("no /etc/postgresql ({e})"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let [version] = versions.as_slice() else {
            return Err(format!(
                "expected one PostgreSQL version in /etc/postgresql, found {versions:?}"
            ));
        };
        let server = Server {
            version: version.clone(),
        };
        let status = server
            .ctl("status")
            .map_err(|e| format!("cannot run pg_ctlcluster: {e}"))?;
        if !status.status.success() {
            return Err(format!(
                "pg_ctlcluster {version} main status says it is not running: {}",
                String::from_utf8_lossy(&status.stdout)
            ));
        }
        Ok(server)
    }

    fn ctl(&self, action: &str) -> std::io::Result<Output> {
        Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", action])
            .output()
    }

    /// Runs `action`; panics if it fails.
    fn must(&self, action: &str) {
        let out = self.ctl(action).expect("run pg_ctlcluster");
        assert!(
            out.status.success(),
            "pg_ctlcluster {} main {action}: {} {}",
            self.version,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn running(&self) -> bool {
        self.ctl("status").is_ok_and(|o| o.status.success())
    }
}

/// Starts the server again when dropped, if it is not running (the test failed while
/// it was down), and waits for it to accept connections.
struct StartOnDrop<'a>(&'a Server);

impl Drop for StartOnDrop<'_> {
    fn drop(&mut self) {
        if !self.0.running() {
            say!("outage: the server is down at the end; starting it again");
            match self.0.ctl("start") {
                Ok(out) if out.status.success() => {}
                Ok(out) => say!(
                    "outage: could not start the server: {} {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => say!("outage: could not run pg_ctlcluster start: {e}"),
            }
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let ok = Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits until the server accepts connections again.
async fn wait_reachable(limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if reachable().await.is_ok() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the server did not come back in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every unfinished job has checkpointed at least `more` items past
/// `base` (or has finished), up to `limit`.
async fn wait_progress(
    cluster: &Cluster,
    more: i64,
    limit: Duration,
) -> std::collections::BTreeMap<i64, i64> {
    let base = loop {
        if let Ok(done) = cluster.items_done().await {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let start = Instant::now();
    loop {
        if let Ok(done) = cluster.items_done().await {
            let behind: Vec<_> = done
                .iter()
                .filter(|(id, n)| **n < ITEMS && **n < base[*id] + more)
                .collect();
            if behind.is_empty() {
                return done;
            }
            if start.elapsed() > limit {
                cluster.dump_logs(30);
                panic!(
                    "jobs made no progress in {limit:?} (items done: {done:?}, before: {base:?})"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_database_restart() {
    let server = match Server::find() {
        Ok(server) => server,
        Err(why) => {
            skip_or_fail(&format!("cannot restart the PostgreSQL server: {why}"));
            return;
        }
    };
    let Some(mut cluster) = Cluster::new(
        Db::Postgres,
        &[
            "--concurrency",
            "4",
            "--lease",
            "2s",
            "--heartbeat-interval",
            "500ms",
            "--checkpoint-interval",
            "1s",
            "--poll-interval",
            "100ms",
        ],
    )
    .await
    else {
        return;
    };
    // declared after the cluster, so dropped first: the server is up again before
    // the cluster drops its schema
    let _guard = StartOnDrop(&server);
    let test_start = Instant::now();

    let params = serde_json::json!({"n": ITEMS, "batch": BATCH, "pause_ms": PAUSE_MS});
    cluster
        .enqueue("chaos_items", JOBS_PER_KIND, params.clone(), 10)
        .await;
    cluster
        .enqueue("chaos_tx_items", JOBS_PER_KIND, params, 10)
        .await;
    cluster.spawn_worker();
    cluster.spawn_worker();
    let jobs = (2 * JOBS_PER_KIND) as i64;
    say!(
        "outage: schema {}, {jobs} jobs x {ITEMS} items (batches of {BATCH} every {PAUSE_MS} \
         ms), 2 workers x 4",
        cluster.schema
    );

    // Outage 1: stop, 3 s without a server, start.
    let before = wait_progress(&cluster, 500, Duration::from_secs(60)).await;
    say!("outage: items done before the stop: {before:?}");
    let down = Instant::now();
    server.must("stop");
    let stopped = down.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starting = Instant::now();
    server.must("start");
    wait_reachable(Duration::from_secs(30)).await;
    say!(
        "outage: server stopped (stop took {:.1}s), down 3 s, started (took {:.1}s): {:.1}s \
         without a server in all",
        stopped.as_secs_f64(),
        starting.elapsed().as_secs_f64(),
        down.elapsed().as_secs_f64()
    );

    // The workers must pick up again; then outage 2: a restart.
    let after = wait_progress(&cluster, 400, Duration::from_secs(60)).await;
    say!(
        "outage: items done {:.1}s after the first outage: {after:?}",
        down.elapsed().as_secs_f64()
    );
    let exited = cluster.exited_on_their_own();
    assert!(
        exited.is_empty(),
        "workers exited during the outage: {exited:?}"
    );
    let down2 = Instant::now();
    server.must("restart");
    wait_reachable(Duration::from_secs(30)).await;
    say!(
        "outage: server restarted in {} ms",
        down2.elapsed().as_millis()
    );

    let drain = cluster
        .wait_all_completed(jobs, Duration::from_secs(120))
        .await;
    let exited = cluster.exited_on_their_own();
    assert!(exited.is_empty(), "workers exited on their own: {exited:?}");
    cluster.stop_all(Duration::from_secs(40)).await;

    let stats = cluster.kind_stats().await;
    let (runs, interruptions, attempts, crashes) = cluster.job_totals().await;
    let log_counts = cluster.log_counts(&[
        "rescued a job whose lease expired",
        "lease lost",
        "heartbeat failed",
        "checkpoint failed",
        "claiming jobs failed",
        "rescuing expired leases failed",
        "release failed",
        "job error",
        "LISTEN connection",
    ]);
    say!("outage: ===== summary =====");
    say!(
        "outage: runtime {:.1}s; all jobs completed {:.1}s after the restart",
        test_start.elapsed().as_secs_f64(),
        drain.as_secs_f64()
    );
    for (kind, s) in &stats {
        say!(
            "outage: {kind}: {} jobs, {} items expected, {} distinct logged, {} missing, {} rows, \
             {} repeats",
            s.jobs,
            s.expected,
            s.distinct,
            s.missing(),
            s.rows,
            s.repeats()
        );
    }
    say!(
        "outage: jobs: {runs} runs, {interruptions} interruptions, {attempts} attempts used, \
         {crashes} crashes outstanding"
    );
    say!("outage: worker log lines: {log_counts:?}");
    for needle in [
        "lease lost",
        "heartbeat failed",
        "claiming jobs failed",
        "job error",
    ] {
        for line in cluster.log_lines(needle, 6) {
            say!("outage:   {line}");
        }
    }
    if std::env::var_os("ITERJOB_CHAOS_SHOW_LOGS").is_some() {
        cluster.dump_logs(200);
    }

    for e in &cluster.ended {
        assert!(
            e.status.is_some_and(|s| s.success()),
            "a worker stopped with SIGTERM exits 0: {e:?}"
        );
    }
    for (kind, s) in &stats {
        assert_eq!(s.short_jobs, 0, "{kind}: jobs with an item never logged");
        assert_eq!(s.missing(), 0, "{kind}: items never logged (skipped)");
    }
    let tx = stats.get("chaos_tx_items").cloned().unwrap_or_default();
    assert_eq!(tx.jobs, JOBS_PER_KIND as i64);
    assert_eq!(tx.repeats(), 0, "chaos_tx_items logged items twice");
}
