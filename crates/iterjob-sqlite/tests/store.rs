//! SqliteStore specifics: opening (URLs, paths, bad files), schema versions, locking,
//! and two pools on one file claiming concurrently.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use iterjob::Error;
use iterjob::store::{ClaimRequest, JobState, NewJob, Outcome, Store};
use iterjob_sqlite::{SCHEMA_VERSION, SqliteStore};
use serde_json::json;

fn request(worker: &str, limit: usize) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_string(),
        queues: vec!["default".to_string()],
        kinds: vec!["k".to_string()],
        limit,
        lease: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn connect_accepts_urls_and_paths_and_creates_the_file() {
    let dir = common::temp_dir();
    for (i, form) in ["sqlite://{}", "sqlite:{}", "{}"].into_iter().enumerate() {
        let path = dir.path().join(format!("jobs-{i}.db"));
        assert!(!path.exists());
        let url = form.replace("{}", path.to_str().unwrap());
        let store = SqliteStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(path.exists(), "{url} created the file");
        let ids = store
            .job_insert_many(&[NewJob::new("k", json!({}))])
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
        store.close().await;
        // reopening keeps the jobs and migrates nothing twice
        let store = SqliteStore::connect(&url).await.unwrap();
        assert!(store.job_get(ids[0]).await.unwrap().is_some());
        store.migrate().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
    }
}

#[tokio::test]
async fn from_pool_shares_the_database() {
    let store = common::TempStore::new().await;
    let other = SqliteStore::from_pool(store.store.pool().clone());
    other.migrate().await.unwrap();
    let ids = other
        .job_insert_many(&[NewJob::new("k", json!(1))])
        .await
        .unwrap();
    assert_eq!(
        store.store.job_get(ids[0]).await.unwrap().unwrap().params,
        json!(1)
    );
    assert!(other.path().ends_with("jobs.db"), "{}", other.path());
}

#[tokio::test]
async fn missing_directory_is_named() {
    let dir = common::temp_dir();
    let path = dir.path().join("no/such/dir/jobs.db");
    let err = SqliteStore::connect(path.to_str().unwrap())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("mkdir -p"), "{message}");
}

#[tokio::test]
async fn directory_instead_of_file_is_rejected() {
    let dir = common::temp_dir();
    let err = SqliteStore::connect(dir.path().to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_reported_as_corrupt() {
    let dir = common::temp_dir();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the rows you are looking for\n".repeat(200),
    )
    .unwrap();
    let err = SqliteStore::connect(path.to_str().unwrap())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");
    assert!(message.contains("not an iterjob store"), "{message}");
    // the file is left alone
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("these are not")
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let store = common::TempStore::new().await;
    let path = store.dir.path().join("jobs.db");
    sqlx::query(
        "INSERT INTO iterjob_schema_migrations (version, description, checksum, applied_at) \
         VALUES (?, 'from the future', x'00', 0)",
    )
    .bind(SCHEMA_VERSION + 1)
    .execute(store.store.pool())
    .await
    .unwrap();
    store.store.close().await;
    let err = SqliteStore::connect(path.to_str().unwrap())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{message}"
    );
    assert!(message.contains("newer iterjob"), "{message}");
    assert!(message.contains("Upgrade iterjob"), "{message}");
}

#[tokio::test]
async fn a_locked_database_says_so_after_the_busy_timeout() {
    let store = common::TempStore::new().await;
    let path = store.dir.path().join("jobs.db");
    // another "process" holds the write lock
    let mut holder = store.store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let options = SqliteStore::options(path.to_str().unwrap())
        .unwrap()
        .busy_timeout(Duration::from_millis(200));
    // opening an up-to-date store only reads: it does not wait for the lock (a
    // worker starts while another process holds it)
    let other = SqliteStore::connect_with(options).await.expect("opens");
    // its first write waits the busy timeout, then says why
    let started = std::time::Instant::now();
    let err = other
        .job_insert(&NewJob::new("k", json!(1)))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(150));
    let message = iterjob::error::error_chain(&err);
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("locked"), "{message}");
    assert!(message.contains("busy timeout"), "{message}");

    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
}

#[tokio::test]
async fn an_invalid_url_is_a_config_error() {
    let err = SqliteStore::connect("sqlite://x.db?mode=sideways")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("sqlite://x.db?mode=sideways"),
        "{err}"
    );
    let err = SqliteStore::connect("").await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_claim_the_same_job() {
    const JOBS: usize = 300;
    let first = common::TempStore::new().await;
    let path = first.dir.path().join("jobs.db");
    // a second pool on the same file, as a second process would have
    let second = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    let jobs: Vec<NewJob> = (0..JOBS).map(|i| NewJob::new("k", json!(i))).collect();
    first.store.job_insert_many(&jobs).await.unwrap();

    let stores = [first.store.clone(), second.clone()];
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = stores[worker % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .job_claim(&request(&format!("w{worker}"), 3))
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                for c in claimed {
                    assert_eq!(
                        c.job.worker_id.as_deref(),
                        Some(format!("w{worker}").as_str())
                    );
                    store
                        .job_release(c.job.id, c.token, None, &Outcome::Completed)
                        .await
                        .unwrap();
                    mine.push(c.job.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a job was claimed twice");
    assert_eq!(all.len(), JOBS, "every job was claimed once");
    let counts = Arc::new(second.job_count_by_state().await.unwrap());
    assert!(
        counts.contains(&(JobState::Completed, JOBS as u64)),
        "{counts:?}"
    );
}

#[tokio::test]
async fn in_memory_url_works_for_quick_experiments() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let ids = store
        .job_insert_many(&[NewJob::new("k", json!({"a": 1}))])
        .await
        .unwrap();
    let claimed = store.job_claim(&request("w", 5)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, ids[0]);
}

/// Rate-limit buckets live in the database file: two stores (two pools, as two
/// processes would have) on one file share them; a store on another file does not.
/// (The `Store` default, in-process buckets, would get both of these wrong.)
#[tokio::test]
async fn rate_buckets_are_shared_through_the_file() {
    let dir = common::temp_dir();
    let path = common::db_path(&dir, "jobs.db");
    let a = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    let b = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    let other_dir = common::temp_dir();
    let other = SqliteStore::connect(common::db_path(&other_dir, "jobs.db").to_str().unwrap())
        .await
        .unwrap();
    let second = Duration::from_secs(1);
    assert!(a.rate_acquire("api", 10, second).await.unwrap() < Duration::from_secs(1));
    let wait = b.rate_acquire("api", 1, second).await.unwrap();
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "the second pool waits for the first one's 10 s reservation: {wait:?}"
    );
    let elsewhere = other.rate_acquire("api", 1, second).await.unwrap();
    assert!(
        elsewhere < Duration::from_secs(1),
        "another file has buckets of its own: {elsewhere:?}"
    );
    let tat: i64 = sqlx::query_scalar("SELECT tat FROM iterjob_rate_limits WHERE key = 'api'")
        .fetch_one(a.pool())
        .await
        .unwrap();
    let ahead = tat - iterjob::store::now_micros();
    assert!(
        (10_000_000..=11_000_000).contains(&ahead),
        "the bucket's tat is 11 s of reservations ahead of now: {ahead} µs"
    );
}

/// Listing a page (`before_id`, the dashboard's keyset pages) seeks on the primary
/// key in id order: no temporary sort, no walk from the newest job, whatever the
/// table's size.
#[tokio::test]
async fn list_pages_seek_on_the_primary_key() {
    let dir = common::temp_dir();
    let store = SqliteStore::connect(dir.path().join("plan.db").to_str().unwrap())
        .await
        .unwrap();
    let sql = include_str!("../queries/job_list.sql");
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
        .bind(Option::<&str>::None)
        .bind(Option::<&str>::None)
        .bind(Option::<&str>::None)
        .bind(Some(500_000_i64))
        .bind(51_i64)
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|e| panic!("explain job_list.sql: {e}"));
    let plan: Vec<String> = rows
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("USING INTEGER PRIMARY KEY (rowid<?)"),
        "job_list must seek to before_id on the primary key, plan:\n{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "no sort, plan:\n{plan}");
}

/// A job enqueued inside the caller's transaction exists if and only if that
/// transaction commits, together with the caller's own write.
#[tokio::test]
async fn jobs_enqueued_in_a_callers_transaction_exist_iff_it_commits() {
    let store = common::TempStore::new().await;
    let store = &store.store;
    sqlx::query("CREATE TABLE signups (email TEXT PRIMARY KEY)")
        .execute(store.pool())
        .await
        .unwrap();
    let signups = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM signups")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };

    // rolled back: neither the signup nor the job
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO signups (email) VALUES ('ada@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = store
        .job_insert_in(&mut tx, &NewJob::new("welcome", json!({"email": "ada"})))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(store.job_get(id).await.unwrap().is_none(), "rolled back");
    assert_eq!(signups().await, 0);
    let mut welcome = request("w", 5);
    welcome.kinds = vec!["welcome".into()];
    assert!(store.job_claim(&welcome).await.unwrap().is_empty());

    // committed: both, and the job is claimable
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO signups (email) VALUES ('ada@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let ids = store
        .job_insert_many_in(
            &mut tx,
            &[
                NewJob::new("welcome", json!({"email": "ada"})),
                NewJob::new("welcome", json!({"email": "ada"})).unique_key("welcome-ada"),
            ],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(signups().await, 1);
    for id in &ids {
        assert_eq!(store.job_get(*id).await.unwrap().unwrap().kind, "welcome");
    }
    assert_eq!(store.job_claim(&welcome).await.unwrap().len(), 2);
}
