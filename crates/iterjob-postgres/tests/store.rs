//! PgStore specifics: connecting (URLs, unreachable servers, missing databases,
//! permissions), schemas and versions, concurrent claimers on separate pools,
//! LISTEN/NOTIFY wake-ups (on, off, foreign payloads, lost connections), and HOT
//! updates.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iterjob::Error;
use iterjob::store::{ClaimRequest, JobState, NewJob, Outcome, Progress, Store};
use iterjob_postgres::{PgOptions, PgStore, SCHEMA_VERSION};
use serde_json::json;
use sqlx::{Connection, PgConnection};

fn request(worker: &str, limit: usize) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_string(),
        queues: vec!["default".to_string()],
        kinds: vec!["k".to_string()],
        limit,
        lease: Duration::from_secs(60),
    }
}

async fn admin() -> PgConnection {
    PgConnection::connect(&common::pg_url())
        .await
        .expect("admin connection")
}

/// Waits until `store`'s LISTEN connection is up: the first wait starts it, and it
/// wakes the waiters once it listens.
async fn listening(store: &PgStore) {
    tokio::time::timeout(Duration::from_secs(10), store.job_wait_available())
        .await
        .expect("the LISTEN connection comes up and wakes the waiter");
}

/// Whether a wait on `store` resolves within `within`.
async fn wakes_within(
    store: &PgStore,
    within: Duration,
    trigger: impl Future<Output = ()>,
) -> bool {
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::timeout(within, store.job_wait_available())
                .await
                .is_ok()
        })
    };
    // let the waiter register before triggering
    tokio::time::sleep(Duration::from_millis(50)).await;
    trigger.await;
    waiter.await.expect("waiter task")
}

#[tokio::test]
async fn connect_creates_its_schema_and_migrates_idempotently() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    assert_eq!(db.store.schema(), db.name);
    let ids = db
        .store
        .job_insert_many(&[NewJob::new("k", json!({}))])
        .await
        .unwrap();
    // reconnecting keeps the jobs and migrates nothing twice
    let again = db.another(|o| o).await;
    assert!(again.job_get(ids[0]).await.unwrap().is_some());
    again.migrate().await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{}\".schema_migrations ORDER BY version",
        db.name
    ))
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert_eq!(
        versions,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration once"
    );
    // everything lives in the schema: nothing in public, no _sqlx_migrations
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY 1",
    )
    .bind(&db.name)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        vec![
            "job_events",
            "jobs",
            "leases",
            "queue_pauses",
            "rate_limits",
            "schedules",
            "schema_migrations",
            "throttles",
            "workers"
        ]
    );
    let fillfactor: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT reloptions::text[] FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'jobs'",
    )
    .bind(&db.name)
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert!(
        fillfactor
            .unwrap_or_default()
            .contains(&"fillfactor=70".to_string()),
        "jobs has a fillfactor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_together_migrate_one_after_the_other() {
    if !common::require_pg().await {
        return;
    }
    let schema = common::schema_name();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            PgStore::connect_with(PgOptions::new(common::pg_url()).schema(schema)).await
        }));
    }
    let mut stores = Vec::new();
    for task in tasks {
        stores.push(
            task.await
                .unwrap()
                .expect("every concurrent connect succeeds"),
        );
    }
    let id = stores[0]
        .job_insert(&NewJob::new("k", json!(1)))
        .await
        .unwrap();
    assert!(stores[5].job_get(id).await.unwrap().is_some());
    drop(stores);
    common::drop_schema(&schema);
}

#[tokio::test]
async fn schema_in_the_url_and_from_pool() {
    if !common::require_pg().await {
        return;
    }
    let schema = common::schema_name();
    let url = format!("{}?schema={schema}", common::pg_url());
    let store = PgStore::connect(&url).await.unwrap();
    assert_eq!(store.schema(), schema);
    let ids = store
        .job_insert_many(&[NewJob::new("k", json!(1))])
        .await
        .unwrap();
    let other = PgStore::from_pool_with(store.pool().clone(), &schema, false).unwrap();
    other.migrate().await.unwrap();
    assert_eq!(
        other.job_get(ids[0]).await.unwrap().unwrap().params,
        json!(1)
    );
    assert_eq!(other.channel(), None);
    let default = PgStore::from_pool(store.pool().clone());
    assert_eq!(default.schema(), "iterjob");
    assert!(PgStore::from_pool_with(store.pool().clone(), "no-good", true).is_err());
    store.close().await;
    common::drop_schema(&schema);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    sqlx::query(&format!(
        "INSERT INTO \"{}\".schema_migrations (version, description, checksum, applied_at) \
         VALUES ($1, 'from the future', '\\x00', 0)",
        db.name
    ))
    .bind(SCHEMA_VERSION + 1)
    .execute(db.store.pool())
    .await
    .unwrap();
    let err = PgStore::connect_with(PgOptions::new(common::pg_url()).schema(&db.name))
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
    assert!(message.contains(&db.name), "{message}");
    // Store::migrate refuses too, and the jobs are untouched
    assert!(matches!(db.store.migrate().await, Err(Error::Corrupt(_))));
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_what_to_do() {
    // nothing listens on port 1
    let started = Instant::now();
    let err = PgStore::connect("postgres://iterjob:secret@127.0.0.1:1/app")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "fails at once");
    let message = iterjob::error::error_chain(&err);
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(
        message.contains("pg_isready -h 127.0.0.1 -p 1"),
        "{message}"
    );
    assert!(
        message.contains("postgres://iterjob@127.0.0.1:1/app"),
        "{message}"
    );
    assert!(
        !message.contains("secret"),
        "no password in messages: {message}"
    );
}

#[tokio::test]
async fn bad_urls_and_schemas_are_config_errors() {
    for (url, expected) in [
        ("", "empty PostgreSQL URL"),
        ("sqlite://jobs.db", "not a PostgreSQL URL"),
        ("postgres://u@h:notaport/db", "invalid PostgreSQL URL"),
        (
            "postgres://u@h/db?schema=1bad",
            "invalid PostgreSQL schema name `1bad`",
        ),
    ] {
        let err = PgStore::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
    let err = PgStore::connect_with(PgOptions {
        schema: "pg_toast".into(),
        ..PgOptions::new("postgres://u@h/db")
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    if !common::require_pg().await {
        return;
    }
    let mut url: url::Url = common::pg_url().parse().unwrap();
    url.set_path("/iterjob_no_such_database");
    let err = PgStore::connect(url.as_str()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        message.contains("database `iterjob_no_such_database` does not exist"),
        "{message}"
    );
    assert!(message.contains("createdb"), "{message}");
}

#[tokio::test]
async fn a_user_without_permissions_is_told_which_grant_helps() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let role = format!("iterjob_noperm_{:08x}", rand::random::<u32>());
    let mut admin = admin().await;
    sqlx::query(&format!("CREATE ROLE \"{role}\" LOGIN"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url: url::Url = common::pg_url().parse().unwrap();
    url.set_username(&role).unwrap();
    let _ = url.set_password(None);

    // a new schema: no CREATE on the database
    let fresh = common::schema_name();
    let err = PgStore::connect_with(PgOptions::new(url.as_str()).schema(&fresh))
        .await
        .unwrap_err();
    let message = iterjob::error::error_chain(&err);
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(
        message.contains(&format!("user `{role}` lacks a permission")),
        "{message}"
    );
    assert!(message.contains("GRANT CREATE ON DATABASE"), "{message}");
    assert!(message.contains("permission denied"), "{message}");

    // an existing schema it may not use
    let err = PgStore::connect_with(PgOptions::new(url.as_str()).schema(&db.name))
        .await
        .unwrap_err();
    let message = iterjob::error::error_chain(&err);
    assert!(
        message.contains(&format!("GRANT USAGE, CREATE ON SCHEMA \"{}\"", db.name)),
        "{message}"
    );

    // nothing was created or damaged
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&fresh)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!exists);
    db.store.migrate().await.unwrap();
    sqlx::query(&format!("DROP ROLE \"{role}\""))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_claimers_on_separate_pools_never_claim_the_same_job() {
    const JOBS: usize = 400;
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    // a second pool on the same schema, as a second process would have
    let second = db.another(|o| o.notify(false)).await;
    let jobs: Vec<NewJob> = (0..JOBS).map(|i| NewJob::new("k", json!(i))).collect();
    db.store.job_insert_many(&jobs).await.unwrap();

    let stores = [db.store.clone(), second.clone()];
    let mut tasks = Vec::new();
    for worker in 0..12 {
        let store = stores[worker % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .job_claim(&request(&format!("w{worker}"), 1 + worker % 4))
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

/// Claims, releases, heartbeats and checkpoints keep their connection out of the
/// pool for the next one (no pool checkout, no ping round trips). A kept connection
/// holds a pool permit, so closing the pool, whether through the store or directly
/// by the application that owns it, must give the kept ones back and not hang; and
/// a kept connection the server dropped must cost one failed statement at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_connections_never_hold_up_closing_the_pool_or_outlive_their_backend() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let jobs: Vec<NewJob> = (0..4).map(|i| NewJob::new("k", json!(i))).collect();
    db.store.job_insert_many(&jobs).await.unwrap();
    let claimed = db.store.job_claim(&request("w", 2)).await.unwrap();
    assert_eq!(claimed.len(), 2);

    // the kept connection's backend is killed: the next statement on it fails, the
    // one after runs on a fresh connection
    let mut admin = admin().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND application_name <> 'iterjob-listener' AND state = 'idle' \
         AND query LIKE '%SKIP LOCKED%'",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let mut recovered = false;
    for _ in 0..2 {
        if db.store.job_claim(&request("w", 1)).await.is_ok() {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "a claim after the kept connection died succeeds");

    // closing the pool directly (as an application owning it would) completes
    let other = PgStore::from_pool_with(db.store.pool().clone(), &db.name, false).unwrap();
    assert_eq!(other.job_claim(&request("w", 1)).await.unwrap().len(), 1);
    tokio::time::timeout(Duration::from_secs(10), db.store.pool().close())
        .await
        .expect("closing the pool gives back the connections kept by both stores");
}

/// The claim statement's `LIMIT` is a literal (one prepared statement per size, so
/// PostgreSQL plans it once), rounded up to a power of two past 32: a claim of 40
/// locks up to 64 rows but must claim exactly 40, the first 40 in claim order, and
/// leave the rest queued. Claims repeated past PostgreSQL's five custom plans run on
/// the generic plan and must keep the order.
#[tokio::test]
async fn claims_take_exactly_the_limit_in_claim_order_whatever_the_statement_size() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let jobs: Vec<NewJob> = (0..200)
        .map(|i| NewJob::new("k", json!(i)).priority(i % 7))
        .collect();
    let ids = db.store.job_insert_many(&jobs).await.unwrap();
    // claim order: priority descending, then (same run_at) id
    let mut order: Vec<(i32, i64)> = ids
        .iter()
        .zip(&jobs)
        .map(|(&id, job)| (-job.priority, id))
        .collect();
    order.sort();
    let expected: Vec<i64> = order.iter().map(|&(_, id)| id).collect();
    let mut claimed_ids = Vec::new();
    for limit in [40, 33, 5, 5, 5, 5, 5, 5, 5, 3, 1, 64] {
        let claimed = db.store.job_claim(&request("w", limit)).await.unwrap();
        assert_eq!(claimed.len(), limit, "a claim of {limit} claims {limit}");
        claimed_ids.extend(claimed.iter().map(|c| c.job.id));
        let queued = db
            .store
            .job_count_by_state()
            .await
            .unwrap()
            .into_iter()
            .find(|(state, _)| *state == JobState::Queued)
            .map_or(0, |(_, n)| n);
        assert_eq!(
            queued,
            200 - claimed_ids.len() as u64,
            "rows locked past the limit stay queued"
        );
    }
    assert_eq!(claimed_ids, expected[..claimed_ids.len()], "claim order");
}

#[tokio::test]
async fn claimed_jobs_get_distinct_tokens_and_the_database_clock() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let jobs: Vec<NewJob> = (0..20).map(|i| NewJob::new("k", json!(i))).collect();
    db.store.job_insert_many(&jobs).await.unwrap();
    let claimed = db.store.job_claim(&request("w", 20)).await.unwrap();
    assert_eq!(claimed.len(), 20);
    let tokens: BTreeSet<i64> = claimed.iter().map(|c| c.token.0).collect();
    assert_eq!(tokens.len(), 20, "one fresh token per job");
    let db_now: i64 =
        sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    for c in &claimed {
        let lease = c.job.lease_expires_at.unwrap();
        assert!(
            (db_now + 60_000 - lease).abs() < 2_000,
            "lease from the database clock: {lease} vs {db_now}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_waiting_worker_in_another_process_fast() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let other = db.another(|o| o).await; // the "other process" that enqueues
    listening(&db.store).await;
    let started = Instant::now();
    let woke = wakes_within(&db.store, Duration::from_secs(5), async {
        other.job_insert(&NewJob::new("k", json!(1))).await.unwrap();
    })
    .await;
    assert!(woke, "the insert in another store woke the waiter");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "woken fast: {:?}",
        started.elapsed()
    );

    // resume and retry announce too
    let id = other
        .job_insert(&NewJob::new("k", json!(2)).run_at(iterjob::store::now_millis() + 3_600_000))
        .await
        .unwrap();
    other.job_pause(id).await.unwrap();
    assert!(
        wakes_within(&db.store, Duration::from_secs(5), async {
            other.job_resume(id).await.unwrap();
        })
        .await,
        "resume wakes"
    );
    other.job_cancel(id).await.unwrap();
    assert!(
        wakes_within(&db.store, Duration::from_secs(5), async {
            other.job_retry(id).await.unwrap();
        })
        .await,
        "retry wakes"
    );
    // a job scheduled for later is not announced
    assert!(
        !wakes_within(&db.store, Duration::from_millis(400), async {
            other
                .job_insert(
                    &NewJob::new("k", json!(3)).run_at(iterjob::store::now_millis() + 3_600_000),
                )
                .await
                .unwrap();
        })
        .await,
        "scheduled jobs wake nobody"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_payloads_on_our_channel_are_ignored() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let channel = db.store.channel().expect("notify is on").to_string();
    listening(&db.store).await;
    let mut admin = admin().await;
    for payload in [
        "",
        "hello",
        "{\"iterjob\": 2}",
        "{\"event\": \"available\"}",
        "[1, 2]",
    ] {
        let woke = wakes_within(&db.store, Duration::from_millis(300), async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&channel)
                .bind(payload)
                .execute(&mut admin)
                .await
                .unwrap();
        })
        .await;
        assert!(!woke, "payload {payload:?} was ignored");
    }
    // the listener is still alive and wakes on ours
    let other = db.another(|o| o).await;
    assert!(
        wakes_within(&db.store, Duration::from_secs(5), async {
            other.job_insert(&NewJob::new("k", json!(1))).await.unwrap();
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    listening(&db.store).await;
    let mut admin = admin().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'iterjob-listener' AND query LIKE '%' || $1 || '%'",
    )
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "killed this store's LISTEN connection");
    // the reconnect wakes the waiters (notifications may have been lost meanwhile)
    listening(&db.store).await;
    let other = db.another(|o| o).await;
    assert!(
        wakes_within(&db.store, Duration::from_secs(5), async {
            other.job_insert(&NewJob::new("k", json!(1))).await.unwrap();
        })
        .await,
        "woken again after the reconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_notify_off_nothing_listens_and_polling_runs_everything() {
    let Some(db) = common::TempSchema::with(|o| o.notify(false)).await else {
        return;
    };
    assert_eq!(db.store.channel(), None);
    let other = db.another(|o| o).await;
    // another process's insert does not reach it...
    assert!(
        !wakes_within(&db.store, Duration::from_millis(500), async {
            other.job_insert(&NewJob::new("k", json!(1))).await.unwrap();
        })
        .await
    );
    // ...nor does it send NOTIFY: a listener on the channel hears nothing
    let mut listener = sqlx::postgres::PgListener::connect(&common::pg_url())
        .await
        .unwrap();
    listener
        .listen(&iterjob_postgres::notify_channel(&db.name))
        .await
        .unwrap();
    db.store
        .job_insert(&NewJob::new("k", json!(2)))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "no NOTIFY with notify off"
    );
    // its own inserts still wake its own waiters (in process)
    assert!(
        wakes_within(&db.store, Duration::from_secs(2), async {
            db.store
                .job_insert(&NewJob::new("k", json!(3)))
                .await
                .unwrap();
        })
        .await
    );
    // and workers run jobs by polling alone (in a schema of their own: the
    // scenario waits for every job of its store)
    let Some(quiet) = common::TempSchema::with(|o| o.notify(false)).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(quiet.store.clone());
    iterjob_testkit::scenarios::completes_every_item_once(store).await;
}

#[tokio::test]
async fn checkpoints_and_heartbeats_are_hot_updates() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    // one connection, so this test's statistics can be flushed from it
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&common::pg_url())
        .await
        .unwrap();
    let store = PgStore::from_pool_with(pool.clone(), &db.name, false).unwrap();
    let jobs: Vec<NewJob> = (0..5).map(|i| NewJob::new("k", json!(i))).collect();
    store.job_insert_many(&jobs).await.unwrap();
    let claimed = store.job_claim(&request("w", 5)).await.unwrap();
    let stats = format!(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables \
         WHERE schemaname = '{}' AND relname = 'jobs'",
        db.name
    );
    let flush = || async {
        sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(&pool)
            .await
            .unwrap();
        // the flush happens at the end of the next transaction
        sqlx::query("SELECT 1").execute(&pool).await.unwrap();
        sqlx::query_as::<_, (i64, i64)>(&stats)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let (upd0, hot0) = flush().await;
    const ROUNDS: u64 = 40;
    for round in 1..=ROUNDS {
        for c in &claimed {
            let progress = Progress {
                cursor: Some(json!({"at": round, "pad": "x".repeat(100)})),
                items_done: round,
                items_total: Some(1000),
                running_ms: round * 10,
            };
            store
                .job_checkpoint(c.job.id, c.token, &progress, Duration::from_secs(60))
                .await
                .unwrap();
            store
                .job_heartbeat(c.job.id, c.token, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    let (upd1, hot1) = flush().await;
    let updates = upd1 - upd0;
    let hot = hot1 - hot0;
    assert!(updates >= (ROUNDS * 10) as i64, "{updates} updates counted");
    assert!(
        hot * 10 >= updates * 9,
        "checkpoints and heartbeats are HOT updates: {hot} of {updates}"
    );
}

/// The store refreshes the planner's statistics after enqueueing 1,000 jobs, counted
/// across small enqueues too (an application enqueueing as events arrive), and on a
/// bigger table after a tenth of its rows. Without statistics the planner takes the
/// table for empty and claims and the pruner read and sort the whole table.
#[tokio::test]
async fn small_enqueues_add_up_to_fresh_planner_statistics() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let store = &db.store;
    let mut admin = admin().await;
    let analyzes = format!(
        "SELECT analyze_count FROM pg_stat_user_tables \
         WHERE schemaname = '{}' AND relname = 'jobs'",
        db.name
    );
    let mut analyzed = async || -> i64 {
        sqlx::query_scalar(&analyzes)
            .fetch_one(&mut admin)
            .await
            .unwrap()
    };
    let enqueue = |n: usize| async move {
        let jobs: Vec<NewJob> = (0..n).map(|i| NewJob::new("k", json!(i))).collect();
        store.job_insert_many(&jobs).await.unwrap();
    };
    for _ in 0..9 {
        enqueue(100).await;
    }
    assert_eq!(analyzed().await, 0, "900 jobs: not yet");
    enqueue(100).await;
    assert_eq!(
        analyzed().await,
        1,
        "the 1,000th job in small enqueues analyzes"
    );

    enqueue(20_000).await;
    assert_eq!(analyzed().await, 2, "a large enqueue analyzes at once");
    // 21,000 rows now: the next ANALYZE after 2,100 more
    for _ in 0..15 {
        enqueue(100).await;
    }
    assert_eq!(analyzed().await, 2, "1,500 more of 21,000: not yet");
    for _ in 0..7 {
        enqueue(100).await;
    }
    assert_eq!(analyzed().await, 3, "a tenth of the table: analyzed again");
}

/// The store's ANALYZE never waits for a lock autovacuum holds: waiting would make
/// PostgreSQL cancel that autovacuum after `deadlock_timeout`, and enqueues frequent
/// enough would then keep the jobs table from ever being vacuumed (seen in the soak:
/// 1.6 million dead rows in 200 s). A session holding the lock a vacuum takes stands
/// in for autovacuum here.
#[tokio::test]
async fn enqueueing_never_waits_for_a_vacuum_of_the_jobs_table() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let mut vacuum = admin().await;
    sqlx::query("BEGIN").execute(&mut vacuum).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".jobs IN SHARE UPDATE EXCLUSIVE MODE",
        db.name
    ))
    .execute(&mut vacuum)
    .await
    .unwrap();
    let jobs: Vec<NewJob> = (0..2_000).map(|i| NewJob::new("k", json!(i))).collect();
    let enqueued = tokio::time::timeout(Duration::from_secs(5), db.store.job_insert_many(&jobs))
        .await
        .expect("an enqueue that analyzes does not wait for the vacuum's lock");
    assert_eq!(enqueued.unwrap().len(), 2_000);
    sqlx::query("ROLLBACK").execute(&mut vacuum).await.unwrap();
}

/// Rate-limit buckets live in the schema, on the server's clock: two stores (two
/// pools, as two processes would have) on one schema share them; a store in another
/// schema does not. (The `Store` default, in-process buckets, would get both of
/// these wrong.)
#[tokio::test]
async fn rate_buckets_are_shared_through_the_schema() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let Some(other) = common::TempSchema::new().await else {
        return;
    };
    let b = db.another(|o| o.notify(false)).await;
    let second = Duration::from_secs(1);
    assert!(db.store.rate_acquire("api", 10, second).await.unwrap() < second);
    let wait = b.rate_acquire("api", 1, second).await.unwrap();
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "the second pool waits for the first one's 10 s reservation: {wait:?}"
    );
    let elsewhere = other.store.rate_acquire("api", 1, second).await.unwrap();
    assert!(
        elsewhere < second,
        "another schema has buckets of its own: {elsewhere:?}"
    );
    let ahead: i64 = sqlx::query_scalar(&format!(
        "SELECT tat - (extract(epoch from clock_timestamp()) * 1000000)::bigint \
         FROM \"{}\".rate_limits WHERE key = 'api'",
        db.name
    ))
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert!(
        (10_000_000..=11_000_000).contains(&ahead),
        "the bucket's tat is 11 s of reservations ahead of the server's clock: {ahead} µs"
    );
}

/// A job enqueued inside the caller's transaction exists if and only if that
/// transaction commits, together with the caller's own write; its wake-up is
/// delivered at the commit, and a rolled-back one never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueued_in_a_callers_transaction_exist_iff_it_commits() {
    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    let store = &db.store;
    let table = format!("\"{}\".signups", db.name);
    sqlx::query(&format!("CREATE TABLE {table} (email TEXT PRIMARY KEY)"))
        .execute(store.pool())
        .await
        .unwrap();
    let signups = || async {
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let mut welcome = request("w", 5);
    welcome.kinds = vec!["welcome".into()];
    listening(store).await;

    // rolled back: neither the signup nor the job, and no wake-up
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {table} (email) VALUES ('ada@example.com')"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let id = store
        .job_insert_in(&mut tx, &NewJob::new("welcome", json!({"email": "ada"})))
        .await
        .unwrap();
    assert!(
        store.job_get(id).await.unwrap().is_none(),
        "not visible before the commit"
    );
    let woke = wakes_within(store, Duration::from_millis(700), async {
        tx.rollback().await.unwrap();
    })
    .await;
    assert!(!woke, "a rolled-back enqueue wakes no worker");
    assert!(store.job_get(id).await.unwrap().is_none(), "rolled back");
    assert_eq!(signups().await, 0);
    assert!(store.job_claim(&welcome).await.unwrap().is_empty());

    // committed: both, claimable, and the commit wakes the waiting workers
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {table} (email) VALUES ('ada@example.com')"
    ))
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
    let woke = wakes_within(store, Duration::from_secs(5), async {
        tx.commit().await.unwrap();
    })
    .await;
    assert!(woke, "the commit delivers the wake-up");
    assert_eq!(signups().await, 1);
    for id in &ids {
        assert_eq!(store.job_get(*id).await.unwrap().unwrap().kind, "welcome");
    }
    assert_eq!(store.job_claim(&welcome).await.unwrap().len(), 2);
}

/// `migrate(false)` changes nothing: a missing schema stays missing, an older one
/// is refused with what to run; a current one opens.
#[tokio::test]
async fn a_store_opened_without_migrating_checks_and_changes_nothing() {
    if !common::require_pg().await {
        return;
    }
    let name = common::schema_name();
    let unmigrated = |name: &str| {
        PgStore::connect_with(PgOptions::new(common::pg_url()).schema(name).migrate(false))
    };
    let error = unmigrated(&name).await.unwrap_err().to_string();
    assert!(
        error.contains("no iterjob tables yet") && error.contains("`migrate`"),
        "{error}"
    );
    let mut admin = admin().await;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!exists, "the schema was not created");

    let Some(db) = common::TempSchema::new().await else {
        return;
    };
    unmigrated(&db.name).await.expect("a current schema opens");
    sqlx::query(&format!(
        "DELETE FROM \"{}\".schema_migrations WHERE version = $1",
        db.name
    ))
    .bind(SCHEMA_VERSION)
    .execute(&mut admin)
    .await
    .unwrap();
    let error = unmigrated(&db.name).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "schema version {}, older than this build's {SCHEMA_VERSION}",
            SCHEMA_VERSION - 1
        )),
        "{error}"
    );
    let newest: i64 = sqlx::query_scalar(&format!(
        "SELECT MAX(version) FROM \"{}\".schema_migrations",
        db.name
    ))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(newest, SCHEMA_VERSION - 1, "left as it was");
}
