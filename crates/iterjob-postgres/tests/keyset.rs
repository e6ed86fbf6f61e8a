//! Keyset enumerator on PostgreSQL, what is PostgreSQL's own: typed cursors (times
//! stay times), index use, the held connection, streamed pages. The behaviour every
//! SQL store shares is the testkit's keyset suite (`tests/suites.rs`).

mod common;

use std::future::Future;

use futures::{StreamExt, TryStreamExt};
use iterjob::JobError;
use iterjob_postgres::{KeyValue, Keyset, KeysetCursor};
use iterjob_testkit::{assert_resume_exact, collect_all};
use sqlx::{PgPool, Row};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// One row of the `items` test table.
#[derive(Clone, Debug, PartialEq)]
struct Item {
    id: i64,
    grp: i64,
    archived: bool,
}

/// A fresh schema (the pool's `search_path`) with an `items` table holding `items`;
/// `None` to skip (see `common::require_pg`).
async fn items_db(items: &[Item]) -> Option<(common::TempDb, PgPool)> {
    let db = common::TempDb::new().await?;
    let pool = db.pool.clone();
    sqlx::query(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, grp INTEGER NOT NULL, \
         name TEXT COLLATE \"C\" NOT NULL, archived BOOLEAN NOT NULL, score DOUBLE PRECISION NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX items_grp_id ON items (grp, id)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO items (id, grp, name, archived, score) \
         SELECT id, grp, name, archived, id / 4.0 \
         FROM unnest($1::bigint[], $2::integer[], $3::boolean[], $4::text[]) \
             AS t(id, grp, archived, name)",
    )
    .bind(items.iter().map(|i| i.id).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.grp as i32).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.archived).collect::<Vec<_>>())
    .bind(
        items
            .iter()
            .map(|i| format!("item-{:05}", i.id))
            .collect::<Vec<_>>(),
    )
    .execute(&pool)
    .await
    .unwrap();
    Some((db, pool))
}

/// The rows' ids with their cursors.
fn ids(
    keyset: &Keyset,
    pool: &PgPool,
    cursor: Option<KeysetCursor>,
) -> impl iterjob::enumerator::Enumerator<i64, KeysetCursor> + use<> {
    keyset
        .rows(pool, cursor)
        .map_ok(|(row, cursor)| (row.get::<i64, _>("id"), cursor))
}

fn item(id: i64) -> Item {
    Item {
        id,
        grp: id % 2,
        archived: false,
    }
}

#[test]
fn cursor_keeps_pg_types() {
    block_on(async {
        let Some((_db, pool)) = items_db(&[item(7), item(9)]).await else {
            return;
        };
        let keyset = Keyset::table("items").keys(["name", "grp", "score", "id"]);
        let mut rows = std::pin::pin!(keyset.rows(&pool, None));
        let (_, cursor) = rows.try_next().await.unwrap().unwrap();
        assert_eq!(
            cursor.values(),
            &[
                KeyValue::Text("item-00007".into()),
                KeyValue::Integer(1),
                KeyValue::Real(1.75),
                KeyValue::Integer(7),
            ]
        );
        let json = serde_json::to_value(&cursor).unwrap();
        assert_eq!(json, serde_json::json!(["item-00007", 1, 1.75, 7]));
        let back: KeysetCursor = serde_json::from_value(json).unwrap();
        assert_eq!(back, cursor);
        // a real with no fraction stays a real, an integer an integer
        let back: KeysetCursor = serde_json::from_str("[2.0, 2, \"2\"]").unwrap();
        assert_eq!(
            back.values(),
            &[
                KeyValue::Real(2.0),
                KeyValue::Integer(2),
                KeyValue::Text("2".into())
            ]
        );
        assert_eq!(
            serde_json::to_string(&KeysetCursor::new([KeyValue::Real(2.0)])).unwrap(),
            "[2.0]"
        );
    });
}

/// A table keyed by every supported type, for typed cursors.
async fn typed_db() -> Option<(common::TempDb, PgPool)> {
    let db = common::TempDb::new().await?;
    let pool = db.pool.clone();
    sqlx::query(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, small SMALLINT NOT NULL, \
         at TIMESTAMPTZ NOT NULL, local TIMESTAMP NOT NULL, day DATE NOT NULL, \
         uid UUID NOT NULL, flag BOOLEAN NOT NULL, raw BYTEA NOT NULL, \
         label VARCHAR(20) NOT NULL, ratio REAL NOT NULL, amount NUMERIC NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX events_at_id ON events (at, id)")
        .execute(&pool)
        .await
        .unwrap();
    // 60 events, several per instant (ties on `at`), over a DST change and the
    // epoch, with microseconds; ids not in time order
    sqlx::query(
        "INSERT INTO events \
         SELECT i, (i % 7)::smallint, \
                timestamptz '1969-12-31 23:59:59.999999+00' + ((i * 37) % 20) * interval '13 hours 0.000123 seconds', \
                timestamp '2024-03-31 01:30:00' + ((i * 11) % 9) * interval '17 minutes', \
                date '1999-12-30' + (i * 13) % 5, \
                md5(i::text)::uuid, i % 3 = 0, decode(lpad(to_hex(i * 7919), 6, '0'), 'hex'), \
                'label-' || (i % 4), (i % 5) / 4.0, i / 3.0 \
         FROM generate_series(1, 60) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    Some((db, pool))
}

/// The `id`s of a typed walk.
fn event_ids(
    keyset: &Keyset,
    pool: &PgPool,
    cursor: Option<KeysetCursor>,
) -> impl iterjob::enumerator::Enumerator<i32, KeysetCursor> + use<> {
    keyset
        .rows(pool, cursor)
        .map_ok(|(row, cursor)| (row.get::<i32, _>("id"), cursor))
}

#[test]
fn typed_keys_resume_exactly_and_times_stay_times() {
    block_on(async {
        let Some((_db, pool)) = typed_db().await else {
            return;
        };
        for (keys, descending) in [
            (vec!["at", "id"], false),
            (vec!["at", "id"], true),
            (vec!["local", "id"], false),
            (vec!["day", "id"], true),
            (vec!["uid"], false),
            (vec!["flag", "small", "id"], false),
            (vec!["raw"], true),
            (vec!["label", "id"], false),
            (vec!["ratio", "id"], false),
            // one unique integer column: the walk's fast path for the key
            (vec!["id"], false),
            (vec!["id"], true),
        ] {
            let order = keys
                .iter()
                .map(|k| {
                    if descending {
                        format!("{k} DESC")
                    } else {
                        k.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let expected: Vec<i32> =
                sqlx::query_scalar(&format!("SELECT id FROM events ORDER BY {order}"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let mut keyset = Keyset::table("events").keys(keys.clone()).batch_size(7);
            if descending {
                keyset = keyset.descending();
            }
            assert_eq!(
                collect_all(event_ids(&keyset, &pool, None)).await,
                expected,
                "{keys:?}"
            );
            // every cursor goes through JSON (assert_resume_exact round-trips it)
            assert_resume_exact(|c| event_ids(&keyset, &pool, c), &[1, 3, 7, 8, 13]).await;
        }

        // the JSON form of a time is tagged, and reads back as the same instant
        let keyset = Keyset::table("events").keys(["at", "local", "day", "uid", "id"]);
        let mut rows = std::pin::pin!(keyset.rows(&pool, None));
        let (row, cursor) = rows.try_next().await.unwrap().unwrap();
        let json = serde_json::to_value(&cursor).unwrap();
        let at = &json[0]["timestamptz"];
        assert!(at.is_string(), "{json}");
        assert_eq!(
            json[1]["timestamp"].as_str().map(|s| s.len()),
            Some(19),
            "{json}"
        );
        assert!(json[2]["date"].is_string(), "{json}");
        assert!(json[3]["uuid"].is_string(), "{json}");
        let text: String = sqlx::query_scalar(
            "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM events WHERE id = $1",
        )
        .bind(row.get::<i32, _>("id"))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            at.as_str().unwrap().trim_end_matches('Z'),
            text.trim_end_matches('Z').trim_end_matches(".000000")
        );
        let back: KeysetCursor = serde_json::from_value(json).unwrap();
        assert_eq!(back, cursor);
        // the session's time zone does not matter: the comparison is typed
        sqlx::query("SET TIME ZONE 'America/New_York'")
            .execute(&pool)
            .await
            .ok();
        let after: Vec<i32> = collect_all(event_ids(&keyset, &pool, Some(back))).await;
        assert_eq!(after.len(), 59);

        // a bound given by hand, in the JSON form
        let start: KeyValue =
            serde_json::from_value(serde_json::json!({"timestamptz": "1970-01-02T00:00:00Z"}))
                .unwrap();
        // (with the id as tiebreaker: `at` alone has ties)
        let late = Keyset::table("events")
            .keys(["at", "id"])
            .after(KeysetCursor::new([start, KeyValue::Integer(i64::MAX)]));
        let expected: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE at > timestamptz '1970-01-02 00:00:00+00'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let walked = collect_all(late.rows(&pool, None)).await;
        assert_eq!(walked.len() as i64, expected);

        // a key the cursor cannot hold is named
        let (fatal, message) =
            first_error(Keyset::table("events").key("amount").rows(&pool, None)).await;
        assert!(fatal, "{message}");
        assert!(
            message.contains("key column `amount` has type NUMERIC"),
            "{message}"
        );
    });
}

#[test]
fn pages_are_index_range_scans() {
    block_on(async {
        let Some((_db, pool)) = typed_db().await else {
            return;
        };
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        let keyset = Keyset::table("events").keys(["at", "id"]).batch_size(10);
        let cursor = serde_json::from_value::<KeysetCursor>(serde_json::json!([
            {"timestamptz": "1970-01-01T13:00:00Z"},
            5
        ]))
        .unwrap();
        let sql = Keyset::table("events")
            .keys(["at", "id"])
            .after(cursor.clone())
            .sql()
            .unwrap();
        assert!(sql.contains("> ($1::timestamptz, $2::int8)"), "{sql}");
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
            .bind("1970-01-01 13:00:00+00")
            .bind(5i64)
            .bind(10i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan using events_at_id"), "{plan}");
        assert!(plan.contains("Index Cond: (ROW(at, id) > ROW("), "{plan}");
        assert!(!plan.contains("Sort"), "{plan}");
        drop(conn);
        let _ = keyset;
    });
}

/// The first item's error, as text, with whether it is fatal.
async fn first_error<S>(stream: S) -> (bool, String)
where
    S: futures::Stream<Item = Result<(sqlx::postgres::PgRow, KeysetCursor), JobError>>,
{
    let mut stream = std::pin::pin!(stream);
    match stream.next().await {
        Some(Err(err)) => (err.is_fatal(), err.to_string()),
        Some(Ok(_)) => panic!("expected an error, got a row"),
        None => panic!("expected an error, got the end"),
    }
}

async fn tagged_pool(db: &common::TempDb, max: u32, application_name: &str) -> PgPool {
    let options: iterjob_postgres::PgConnectOptions = common::pg_url().parse().expect("test URL");
    iterjob_postgres::PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(
            options
                .application_name(application_name)
                .options([("search_path", db.name.as_str())]),
        )
        .await
        .expect("connect a tagged pool")
}

/// Whether another connection of `pool` can be had within 200 ms.
async fn can_acquire(pool: &PgPool) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(200), pool.acquire())
        .await
        .is_ok_and(|conn| conn.is_ok())
}

#[test]
fn the_walk_holds_one_connection_and_gives_it_back() {
    block_on(async {
        let items: Vec<Item> = (1..=20).map(item).collect();
        let Some((db, _)) = items_db(&items).await else {
            return;
        };
        let pool = tagged_pool(&db, 1, "iterjob_keyset_hold").await;
        let expected: Vec<i64> = (1..=20).collect();

        // held (the default): the pool's only connection stays with the walk between
        // pages, and comes back when the last (short) page is read
        let keyset = Keyset::table("items").key("id").batch_size(3);
        let mut walk = std::pin::pin!(ids(&keyset, &pool, None));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(walk.try_next().await.unwrap().unwrap().0);
        }
        assert!(!can_acquire(&pool).await, "the walk holds the connection");
        while seen.len() < 20 {
            seen.push(walk.try_next().await.unwrap().unwrap().0);
        }
        assert!(can_acquire(&pool).await, "the short last page gave it back");
        assert!(walk.try_next().await.unwrap().is_none());
        assert_eq!(seen, expected);

        // not held: the connection is free between pages
        let keyset = keyset.hold_connection(false);
        let mut walk = std::pin::pin!(ids(&keyset, &pool, None));
        let first = walk.try_next().await.unwrap().unwrap().0;
        assert!(can_acquire(&pool).await, "free between pages");
        let mut seen = vec![first];
        while let Some((id, _)) = walk.try_next().await.unwrap() {
            seen.push(id);
        }
        assert_eq!(seen, expected);

        // dropped mid-walk, or ended by an error: given back
        let keyset = Keyset::table("items").key("id").batch_size(3);
        {
            let mut walk = std::pin::pin!(ids(&keyset, &pool, None));
            walk.try_next().await.unwrap().unwrap();
            assert!(!can_acquire(&pool).await);
        }
        assert!(can_acquire(&pool).await, "a dropped walk gave it back");
        sqlx::query("CREATE TABLE t (k INTEGER, id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t SELECT i, i FROM generate_series(1, 5) AS i")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (7, 6), (7, 7)")
            .execute(&pool)
            .await
            .unwrap();
        // the page is read (and the connection kept), then its tie fails the walk
        let keyset = Keyset::table("t").key("k").batch_size(10);
        let mut walk = std::pin::pin!(keyset.rows(&pool, None));
        let mut err = None;
        while let Some(step) = walk.next().await {
            if let Err(e) = step {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the tie ends the walk");
        assert!(err.to_string().contains("does not identify a row"), "{err}");
        assert!(can_acquire(&pool).await, "a failed walk gave it back");
    });
}

#[test]
fn a_held_connection_lost_between_pages_is_replaced() {
    block_on(async {
        let items: Vec<Item> = (1..=30).map(item).collect();
        let Some((db, _)) = items_db(&items).await else {
            return;
        };
        let tag = format!("iterjob_keyset_{:08x}", rand::random::<u32>());
        let pool = tagged_pool(&db, 2, &tag).await;
        let keyset = Keyset::table("items").key("id").batch_size(4);
        let mut walk = std::pin::pin!(ids(&keyset, &pool, None));
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(walk.try_next().await.unwrap().unwrap().0);
        }
        // the server closes the held connection (a restart, idle_session_timeout)
        let killer = PgPool::connect(&common::pg_url()).await.unwrap();
        let killed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) AS t",
        )
        .bind(&tag)
        .fetch_one(&killer)
        .await
        .unwrap();
        killer.close().await;
        assert!(killed >= 1, "terminated the walk's connection");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        while let Some((id, _)) = walk.try_next().await.unwrap() {
            seen.push(id);
        }
        assert_eq!(seen, (1..=30).collect::<Vec<i64>>());
    });
}

#[test]
fn rows_of_a_page_are_yielded_as_they_arrive() {
    block_on(async {
        let items: Vec<Item> = (1..=3000).map(item).collect();
        let Some((db, _)) = items_db(&items).await else {
            return;
        };
        // an index scan (not a sort, which would produce every row before the first)
        let options: iterjob_postgres::PgConnectOptions = common::pg_url().parse().unwrap();
        let pool = iterjob_postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options([
                ("search_path", db.name.as_str()),
                ("enable_sort", "off"),
                ("enable_seqscan", "off"),
            ]))
            .await
            .unwrap();
        // one page of 3000 rows whose row 2900 takes 2 s for the server to produce:
        // the first rows must reach the job long before the page query ends
        let keyset = Keyset::table("items")
            .key("id")
            .filter("CASE WHEN id = 2900 THEN pg_sleep(2)::text IS NOT NULL ELSE true END")
            .batch_size(3000);
        let start = std::time::Instant::now();
        let mut walk = std::pin::pin!(ids(&keyset, &pool, None));
        let (first, _) = walk.try_next().await.unwrap().unwrap();
        let first_after = start.elapsed();
        let mut seen = vec![first];
        while let Some((id, _)) = walk.try_next().await.unwrap() {
            seen.push(id);
        }
        let whole = start.elapsed();
        assert_eq!(seen, (1..=3000).collect::<Vec<i64>>());
        assert!(whole >= std::time::Duration::from_secs(2), "{whole:?}");
        assert!(
            first_after < std::time::Duration::from_secs(1),
            "the first row came after {first_after:?}: the page was collected before the walk \
             saw any of it"
        );
    });
}

/// Pages grow only while they end quickly: with slow work they stay at the batch
/// size, so each page is read shortly before the job needs it and sees recent
/// writes. Here the job takes 1 ms per row and a page may stay open 50 ms: every page
/// halves back to 100 rows, and a row updated while the job is at row 800 is seen
/// updated at row 1,900. With pages doubling regardless (100, 200, 400, 800,
/// 1,600), rows 1,501–3,100 would be one page, read when the job was near row 700,
/// before the update.
#[test]
fn with_slow_work_pages_stay_small_and_rows_fresh() {
    block_on(async {
        let items: Vec<Item> = (1..=2000).map(item).collect();
        let Some((_db, pool)) = items_db(&items).await else {
            return;
        };
        let keyset = Keyset::table("items")
            .key("id")
            .batch_size(100)
            .max_page_time(std::time::Duration::from_millis(50));
        let mut walk = std::pin::pin!(keyset.rows(&pool, None));
        let mut score_of_1900 = None;
        while let Some((row, _)) = walk.try_next().await.unwrap() {
            let id: i64 = row.get("id");
            if id == 800 {
                sqlx::query("UPDATE items SET score = -1 WHERE id = 1900")
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            if id == 1900 {
                score_of_1900 = Some(row.get::<f64, _>("score"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(
            score_of_1900,
            Some(-1.0),
            "row 1900 was read in a page sent before the update at row 800: pages grew \
             although they stayed open longer than max_page_time"
        );
    });
}

#[test]
fn a_page_that_fails_midway_ends_the_walk_in_order() {
    block_on(async {
        let items: Vec<Item> = (1..=400).map(item).collect();
        let Some((db, _)) = items_db(&items).await else {
            return;
        };
        let pool = tagged_pool(&db, 1, "iterjob_keyset_midway").await;
        // the server fails the page at row 250, after sending the rows before it
        let keyset = Keyset::table("items")
            .key("id")
            .filter("1 / (id - 250) IS NOT NULL")
            .batch_size(400);
        let mut walk = std::pin::pin!(ids(&keyset, &pool, None));
        let mut seen = Vec::new();
        let err = loop {
            match walk.next().await {
                Some(Ok((id, cursor))) => {
                    assert_eq!(cursor, KeysetCursor::from(id));
                    seen.push(id);
                }
                Some(Err(err)) => break err,
                None => panic!("the walk ended without the division's error"),
            }
        };
        assert!(err.to_string().contains("division by zero"), "{err}");
        assert!(err.is_fatal(), "{err}");
        assert_eq!(seen, (1..=seen.len() as i64).collect::<Vec<_>>());
        assert!(seen.len() < 250);
        assert!(walk.next().await.is_none(), "nothing after the error");
        assert!(
            can_acquire(&pool).await,
            "the failed walk gave its connection back"
        );
    });
}

/// Counted quantiles on typed keys (a timestamptz and an id) come back typed, and
/// match the walk.
#[test]
fn quantile_ranges_keep_key_types() {
    block_on(async {
        let Some((_db, pool)) = typed_db().await else {
            return;
        };
        let keyset = Keyset::table("events").keys(["at", "id"]).batch_size(3);
        let fast = keyset.quantile_ranges(&pool, 3).await.expect("quantiles");
        let slow = iterjob::partition::quantile_ranges(|c| keyset.rows(&pool, c), 3)
            .await
            .expect("walked");
        assert_eq!(fast, slow);
        assert!(fast.len() > 1, "{fast:?}");
        let bound = fast[0].until.as_ref().expect("a cut");
        assert!(
            matches!(bound.values()[0], KeyValue::Timestamptz(_)),
            "{bound:?}"
        );
    });
}

/// The fast path for one integer key column (`Dialect::int_key`) reads what the
/// general decoding reads, for every width and at the extremes, and steps aside for
/// NULL and for the text format (which only the general path decodes).
#[test]
fn the_integer_key_fast_path_agrees_with_the_general_decoding() {
    use iterjob_postgres::{PgDialect, PgKeyKind};
    use iterjob_sql::dialect::Dialect;
    block_on(async {
        let Some(db) = common::TempDb::new().await else {
            return;
        };
        let cases: [(&str, PgKeyKind, &[i64]); 3] = [
            (
                "int2",
                PgKeyKind::Int2,
                &[i16::MIN as i64, -1, 0, 1, i16::MAX as i64],
            ),
            (
                "int4",
                PgKeyKind::Int4,
                &[i32::MIN as i64, -7, 0, 7, i32::MAX as i64],
            ),
            ("int8", PgKeyKind::Int8, &[i64::MIN, -300, 0, 300, i64::MAX]),
        ];
        for (ty, kind, values) in cases {
            for &v in values {
                let sql = format!("SELECT $1::{ty} AS k, NULL::{ty} AS n");
                let row = sqlx::query(&sql).bind(v).fetch_one(&db.pool).await.unwrap();
                let general = PgDialect::decode_key(kind, PgDialect::value_at(&row, 0).unwrap());
                assert_eq!(general.unwrap(), KeyValue::Integer(v), "{ty} {v}");
                assert_eq!(PgDialect::int_key(&row, 0, kind), Some(v), "{ty} {v}");
                assert_eq!(PgDialect::int_key(&row, 1, kind), None, "{ty} NULL");
                // a kind that is not an integer never takes the fast path
                assert_eq!(PgDialect::int_key(&row, 0, PgKeyKind::Text), None);
            }
        }
        // the simple query protocol sends text: the fast path must not read "7" as bytes
        let rows = sqlx::raw_sql("SELECT 12345678::int8 AS k")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(PgDialect::int_key(&rows[0], 0, PgKeyKind::Int8), None);
    });
}
