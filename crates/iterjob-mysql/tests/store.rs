//! What is MySQL's own: opening the store (errors that say what to do), typed keys
//! and collations in keyset walks, index range scans, wake-ups across processes
//! without NOTIFY, and claims from many pools.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use iterjob::Error;
use iterjob::store::{ClaimRequest, NewJob, Store};
use iterjob_mysql::{KeyValue, Keyset, KeysetCursor, MySqlOptions, MySqlPool, MySqlStore};
use iterjob_testkit::{assert_resume_exact, collect_all};
use sqlx::Row;

fn request(worker: &str, limit: usize) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        queues: vec!["default".into()],
        kinds: vec!["k".into()],
        limit,
        lease: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn a_missing_database_and_an_unreachable_server_are_named() {
    if !common::require_mysql().await {
        return;
    }
    let err = MySqlStore::connect(&common::db_url("iterjob_no_such_db"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("iterjob_no_such_db") && message.contains("CREATE DATABASE"),
        "{message}"
    );
    let err = MySqlStore::connect_with(MySqlOptions {
        connect_timeout: Duration::from_secs(3),
        ..MySqlOptions::new("mysql://root@127.0.0.1:1/test")
    })
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    let err = MySqlStore::connect("mysql://root@127.0.0.1:3306")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("names no database"), "{err}");
}

#[tokio::test]
async fn connect_migrates_once_and_a_newer_schema_is_refused() {
    let Some((store, db)) = common::temp_store(|o| o).await else {
        return;
    };
    store.migrate().await.expect("migrating again is a no-op");
    let again = MySqlStore::connect(&db.url())
        .await
        .expect("a second store");
    drop(again);
    sqlx::query(
        "INSERT INTO iterjob_schema_migrations (version, description, checksum, applied_at) \
         VALUES (999, 'from the future', x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = MySqlStore::connect(&db.url()).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("newer iterjob"), "{err}");
}

/// A table keyed by every supported MySQL type.
async fn typed_table(pool: &MySqlPool) {
    sqlx::query(
        "CREATE TABLE events (id INT PRIMARY KEY, at DATETIME(6) NOT NULL, \
         stamp TIMESTAMP(6) NOT NULL, day DATE NOT NULL, amount DECIMAL(20, 6) NOT NULL, \
         uid BINARY(16) NOT NULL, big BIGINT UNSIGNED NOT NULL, ratio DOUBLE NOT NULL, \
         label VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, \
         KEY (at, id), UNIQUE KEY (uid))",
    )
    .execute(pool)
    .await
    .unwrap();
    // 60 events, several per instant (ties on `at`), before and after the epoch,
    // with microseconds; unsigned values above i64::MAX; labels differing in case
    sqlx::query(
        "INSERT INTO events \
         WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 60) \
         SELECT seq, \
                TIMESTAMP('1969-12-31 23:59:59.999999') + INTERVAL ((seq * 37) % 20) * 13 HOUR \
                  + INTERVAL 123 * ((seq * 37) % 20) MICROSECOND, \
                TIMESTAMP('2024-03-31 01:30:00') + INTERVAL ((seq * 11) % 9) * 17 MINUTE, \
                DATE('1999-12-30') + INTERVAL (seq * 13) % 5 DAY, \
                (seq * 7919) / 1000.0 - 100, \
                UNHEX(MD5(seq)), \
                18446744073709551615 - (seq * 104729) % 1000, \
                (seq % 5) / 4.0, \
                CONCAT(IF(seq % 2 = 0, 'Label-', 'label-'), seq % 4) \
         FROM numbers",
    )
    .execute(pool)
    .await
    .unwrap();
}

fn event_ids(
    keyset: &Keyset,
    pool: &MySqlPool,
    cursor: Option<KeysetCursor>,
) -> impl iterjob::enumerator::Enumerator<i32, KeysetCursor> + use<> {
    keyset
        .rows(pool, cursor)
        .map_ok(|(row, cursor)| (row.get::<i32, _>("id"), cursor))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_keys_resume_exactly_and_stay_typed() {
    let Some((store, _db)) = common::temp_store(|o| o).await else {
        return;
    };
    let pool = store.pool();
    typed_table(pool).await;
    for (keys, descending) in [
        (vec!["at", "id"], false),
        (vec!["at", "id"], true),
        (vec!["stamp", "id"], false),
        (vec!["day", "id"], true),
        (vec!["amount", "id"], false),
        (vec!["uid"], false),
        (vec!["big", "id"], true),
        (vec!["ratio", "id"], false),
        (vec!["label", "id"], false),
    ] {
        let order = keys
            .iter()
            .map(|k| format!("{k}{}", if descending { " DESC" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ");
        let expected: Vec<i32> =
            sqlx::query_scalar(&format!("SELECT id FROM events ORDER BY {order}"))
                .fetch_all(pool)
                .await
                .unwrap();
        let mut keyset = Keyset::table("events").keys(keys.clone()).batch_size(7);
        if descending {
            keyset = keyset.descending();
        }
        assert_eq!(
            collect_all(event_ids(&keyset, pool, None)).await,
            expected,
            "{keys:?}"
        );
        assert_resume_exact(|c| event_ids(&keyset, pool, c), &[1, 3, 7, 8, 13]).await;
    }
    // the cursor keeps the types, in its JSON form too
    let keyset = Keyset::table("events").keys(["at", "stamp", "day", "amount", "big", "id"]);
    let mut rows = std::pin::pin!(keyset.rows(pool, None));
    let (_, cursor) = rows.try_next().await.unwrap().unwrap();
    let values = cursor.values();
    assert!(matches!(values[0], KeyValue::Timestamp(_)), "{cursor:?}");
    assert!(matches!(values[1], KeyValue::Timestamptz(_)), "{cursor:?}");
    assert!(matches!(values[2], KeyValue::Date(_)), "{cursor:?}");
    assert!(
        matches!(&values[3], KeyValue::Decimal(d) if d.contains('.')),
        "{cursor:?}"
    );
    assert!(matches!(values[4], KeyValue::Unsigned(_)), "{cursor:?}");
    let json = serde_json::to_value(&cursor).unwrap();
    assert!(json[0]["timestamp"].is_string(), "{json}");
    assert!(json[3]["decimal"].is_string(), "{json}");
    let back: KeysetCursor = serde_json::from_value(json).unwrap();
    assert_eq!(back, cursor);
    // a key type a cursor cannot hold is named
    sqlx::query("CREATE TABLE shapes (kind ENUM('small', 'big') NOT NULL PRIMARY KEY)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO shapes VALUES ('big'), ('small')")
        .execute(pool)
        .await
        .unwrap();
    let mut walk = std::pin::pin!(Keyset::table("shapes").key("kind").rows(pool, None));
    let err = walk.try_next().await.unwrap_err().to_string();
    assert!(err.contains("key column `kind` has type ENUM"), "{err}");
}

/// A case-insensitive collation: a column unique under it walks in its order; one
/// with keys equal under it (`'a'` and `'A'`) has ties, refused before a skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_collations_order_and_tie_as_they_compare() {
    let Some((store, _db)) = common::temp_store(|o| o).await else {
        return;
    };
    let pool = store.pool();
    sqlx::query(
        "CREATE TABLE names (id INT PRIMARY KEY, \
         name VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL UNIQUE, \
         nick VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO names VALUES (1, 'bob', 'x'), (2, 'Alice', 'A'), (3, 'carol', 'a'), \
         (4, 'Dave', 'b'), (5, 'eve', 'B')",
    )
    .execute(pool)
    .await
    .unwrap();
    let keyset = Keyset::table("names").key("name").batch_size(2);
    let walked = collect_all(
        keyset
            .rows(pool, None)
            .map_ok(|(row, c)| (row.get::<String, _>("name"), c)),
    )
    .await;
    assert_eq!(walked, ["Alice", "bob", "carol", "Dave", "eve"]);
    assert_resume_exact(
        |c| {
            keyset
                .rows(pool, c)
                .map_ok(|(row, c)| (row.get::<i32, _>("id"), c))
        },
        &[1, 2, 3],
    )
    .await;
    // `nick` has 'a'/'A' and 'b'/'B': equal under the collation, so ties
    let ties = Keyset::table("names").key("nick").batch_size(2);
    let mut walk = std::pin::pin!(ties.rows(pool, None));
    let mut err = None;
    while let Some(step) = walk.as_mut().try_next().await.transpose() {
        if let Err(e) = step {
            err = Some(e);
            break;
        }
    }
    let err = err
        .expect("ties under the collation are refused")
        .to_string();
    assert!(err.contains("does not identify a row"), "{err}");
    // with the id as tiebreaker, every row once
    let keyset = Keyset::table("names").keys(["nick", "id"]).batch_size(2);
    let ids: BTreeSet<i32> = collect_all(
        keyset
            .rows(pool, None)
            .map_ok(|(row, c)| (row.get::<i32, _>("id"), c)),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn pages_are_index_range_scans() {
    let Some((store, _db)) = common::temp_store(|o| o).await else {
        return;
    };
    let pool = store.pool();
    sqlx::query("CREATE TABLE t (a INT NOT NULL, b INT NOT NULL, c INT, PRIMARY KEY (a, b))")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO t WITH RECURSIVE digits (n) AS \
         (SELECT 0 UNION ALL SELECT n + 1 FROM digits WHERE n < 199) \
         SELECT x.n, y.n, x.n * 200 + y.n FROM digits x CROSS JOIN digits y",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE TABLE t").execute(pool).await.unwrap();
    let sql = Keyset::table("t")
        .keys(["a", "b"])
        .after(KeysetCursor::new([150, 50]))
        .sql()
        .unwrap();
    assert!(!sql.contains(") > ("), "no row-value comparison: {sql}");
    let plan = sqlx::query(&format!("EXPLAIN {sql}"))
        .bind(150)
        .bind(150)
        .bind(150)
        .bind(50)
        .bind(10i64)
        .fetch_one(pool)
        .await
        .unwrap();
    let access: String = plan.try_get("type").unwrap();
    let extra: Option<String> = plan.try_get("Extra").unwrap();
    assert_eq!(access, "range", "{sql}: {extra:?}");
    assert!(!extra.unwrap_or_default().contains("filesort"), "{sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_added_by_another_process_wakes_a_waiting_worker_fast() {
    let Some((store, db)) = common::temp_store(|o| o).await else {
        return;
    };
    let other = MySqlStore::connect(&db.url()).await.expect("another store");
    let waiting = tokio::spawn({
        let store = store.clone();
        async move {
            store.job_wait_available().await;
            Instant::now()
        }
    });
    // let the watch task take its first look
    tokio::time::sleep(Duration::from_millis(400)).await;
    let added = Instant::now();
    other
        .job_insert(&NewJob::new("k", serde_json::json!({})))
        .await
        .unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .unwrap();
    let latency = woken.duration_since(added);
    assert!(
        latency < Duration::from_millis(600),
        "woken after {latency:?}"
    );
    // with the watch off, nothing wakes it but polling
    let quiet =
        MySqlStore::connect_with(MySqlOptions::new(db.url()).watch_interval(Duration::ZERO))
            .await
            .unwrap();
    let waiting = tokio::spawn(async move { quiet.job_wait_available().await });
    other
        .job_insert(&NewJob::new("k", serde_json::json!({})))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), waiting)
            .await
            .is_err(),
        "no watch, no wake-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_claimers_on_separate_pools_never_claim_the_same_job() {
    let Some((store, db)) = common::temp_store(|o| o).await else {
        return;
    };
    let jobs: Vec<NewJob> = (0..400)
        .map(|i| NewJob::new("k", serde_json::json!({ "i": i })))
        .collect();
    store.job_insert_many(&jobs).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let url = db.url();
        tasks.push(tokio::spawn(async move {
            let store = Arc::new(MySqlStore::connect(&url).await.unwrap());
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .job_claim(&request(&format!("w{w}"), 7))
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break;
                }
                mine.extend(claimed.into_iter().map(|c| c.job.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 400, "every job claimed");
    assert_eq!(unique.len(), 400, "no job claimed twice");
}

/// A job enqueued inside the caller's transaction exists if and only if that
/// transaction commits, together with the caller's own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueued_in_a_callers_transaction_exist_iff_it_commits() {
    let Some((store, _db)) = common::temp_store(|o| o).await else {
        return;
    };
    sqlx::query("CREATE TABLE signups (email VARCHAR(100) PRIMARY KEY) ENGINE=InnoDB")
        .execute(store.pool())
        .await
        .unwrap();
    let signups = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM signups")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let mut welcome = request("w", 5);
    welcome.kinds = vec!["welcome".into()];

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO signups (email) VALUES ('ada@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = store
        .job_insert_in(
            &mut tx,
            &NewJob::new("welcome", serde_json::json!({"email": "ada"})),
        )
        .await
        .unwrap();
    assert!(
        store.job_get(id).await.unwrap().is_none(),
        "not visible yet"
    );
    tx.rollback().await.unwrap();
    assert!(store.job_get(id).await.unwrap().is_none(), "rolled back");
    assert_eq!(signups().await, 0);
    assert!(store.job_claim(&welcome).await.unwrap().is_empty());

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO signups (email) VALUES ('ada@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let ids = store
        .job_insert_many_in(
            &mut tx,
            &[
                NewJob::new("welcome", serde_json::json!({"email": "ada"})),
                NewJob::new("welcome", serde_json::json!({"email": "ada"}))
                    .unique_key("welcome-ada"),
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
