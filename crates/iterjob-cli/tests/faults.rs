//! Faults a worker meets for real, reproduced for real: the release binary's worker
//! must come back from each by itself, never keep running as a zombie.

mod support;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqlitePoolOptions;
use support::{Sandbox, stdout};

/// A tmpfs of a fixed size, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it). Needs root, which CI
    /// has: there, failing to mount fails the test; elsewhere it is skipped.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        if status.as_ref().is_ok_and(|s| s.success()) {
            return Some(Tmpfs { dir });
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a {size} tmpfs (CI runs as root): {status:?}"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).expect("create filler");
    let chunk = vec![0u8; 4096];
    let mut written = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = file.sync_all();
    written
}

/// The demo's job: its state, items done and attempts used, read from the database
/// file.
async fn job_state(db: &Path) -> (String, i64, i64) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    let row: (String, i64, i64) =
        sqlx::query_as("SELECT state, items_done, attempts FROM iterjob_jobs WHERE id = 1")
            .fetch_one(&pool)
            .await
            .expect("job 1");
    pool.close().await;
    row
}

/// A worker whose SQLite database sits on a 2 MB tmpfs that fills up for three
/// seconds mid-job: afterwards the same worker finishes the job by itself (before the
/// connection hygiene, a connection left inside a failed transaction went back to
/// the pool and the worker kept claiming but could no longer release or rescue:
/// "attempted to call begin_with at non-zero transaction depth").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_for_seconds_leaves_no_zombie_sqlite_worker() {
    let Some(fs) = Tmpfs::mount("2M") else {
        return;
    };
    let db = fs.path().join("h.db");
    let sandbox = Sandbox::with_url(&format!("sqlite://{}", db.display()));
    let setup = sandbox.run(&[
        "demo",
        "--products",
        "5000",
        "--api-latency",
        "100ms",
        "--interrupt-after",
        "1s",
    ]);
    assert!(setup.status.success(), "{}", stdout(&setup));
    // the WAL folded into the database, so the fill below leaves SQLite no room
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .expect("checkpoint");
    pool.close().await;

    let log_path: PathBuf = sandbox.path().join("worker.log");
    let log = File::create(&log_path).expect("log");
    let mut worker = sandbox
        .cmd(&["worker", "--lease", "6s", "--heartbeat-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn worker");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let filler = fs.path().join("filler");
    let filled = fill(&filler);
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&filler).expect("remove filler");

    let start = Instant::now();
    let (state, done, attempts) = loop {
        let (state, done, attempts) = job_state(&db).await;
        if state == "completed" || start.elapsed() > Duration::from_secs(60) {
            break (state, done, attempts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stuck = log.matches("non-zero transaction depth").count();
    // a full disk is not the job's fault: interruptions, no attempt used
    assert_eq!(
        (state.as_str(), stuck, attempts),
        ("completed", 0, 0),
        "after a full disk ({filled} bytes of filler), the worker did not finish the job \
         ({done} items done); its log:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    let show = sandbox.run(&["show", "1"]);
    assert!(stdout(&show).contains("completed"), "{}", stdout(&show));
}
