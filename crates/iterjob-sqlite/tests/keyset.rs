//! Keyset enumerator: resume exactness (property tests on real temporary SQLite
//! files), cursor types, bounds, and errors.

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::future::Future;

use futures::{StreamExt, TryStreamExt};
use iterjob::JobError;
use iterjob_sqlite::{KeyValue, Keyset, KeysetCursor, SqliteStore};
use iterjob_testkit::{assert_resume_exact, collect_all, walk_with_interruptions};
use proptest::prelude::*;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Row, SqlitePool};
use tempfile::TempDir;

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

/// A temporary database with an `items` table holding `items`.
async fn items_db(items: &[Item]) -> (TempDir, SqlitePool) {
    let dir = common::temp_dir();
    let path = common::db_path(&dir, "data.db");
    let options = SqliteStore::options(path.to_str().unwrap()).unwrap();
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .expect("open the test database");
    sqlx::query(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, \
         name TEXT NOT NULL, archived INTEGER NOT NULL, score REAL NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX items_grp_id ON items (grp, id)")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for item in items {
        sqlx::query("INSERT INTO items (id, grp, name, archived, score) VALUES (?, ?, ?, ?, ?)")
            .bind(item.id)
            .bind(item.grp)
            .bind(format!("item-{:05}", item.id))
            .bind(item.archived)
            .bind(item.id as f64 / 4.0)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    (dir, pool)
}

fn items_strategy(max: usize) -> impl Strategy<Value = Vec<Item>> {
    prop::collection::btree_map(-1000i64..1000, (0i64..3, any::<bool>()), 0..max).prop_map(|m| {
        m.into_iter()
            .map(|(id, (grp, archived))| Item { id, grp, archived })
            .collect()
    })
}

/// The rows' ids with their cursors.
fn ids(
    keyset: &Keyset,
    pool: &SqlitePool,
    cursor: Option<KeysetCursor>,
) -> impl iterjob::enumerator::Enumerator<i64, KeysetCursor> + use<> {
    keyset
        .rows(pool, cursor)
        .map_ok(|(row, cursor)| (row.get::<i64, _>("id"), cursor))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn single_key_resumes_exactly(
        items in items_strategy(40),
        batch in 1usize..8,
        stretches in prop::collection::vec(0usize..10, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let keyset = Keyset::table("items").key("id").batch_size(batch);
            let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
            assert_eq!(collect_all(ids(&keyset, &pool, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, &pool, c), &stretches).await;
        });
    }

    #[test]
    fn composite_keys_with_ties_resume_exactly(
        items in items_strategy(40),
        batch in 1usize..8,
        descending in any::<bool>(),
        stretches in prop::collection::vec(0usize..10, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let mut keyset = Keyset::table("items")
                .keys(["grp", "id"])
                .columns(["name"])
                .batch_size(batch);
            let mut expected: Vec<(i64, i64)> = items.iter().map(|i| (i.grp, i.id)).collect();
            expected.sort();
            if descending {
                keyset = keyset.descending();
                expected.reverse();
            }
            let expected: Vec<i64> = expected.into_iter().map(|(_, id)| id).collect();
            assert_eq!(collect_all(ids(&keyset, &pool, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, &pool, c), &stretches).await;
        });
    }

    #[test]
    fn filter_resumes_exactly(
        items in items_strategy(40),
        batch in 1usize..8,
        stretches in prop::collection::vec(0usize..10, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let keyset = Keyset::table("items").key("id").filter("archived = 0").batch_size(batch);
            let expected: Vec<i64> = items.iter().filter(|i| !i.archived).map(|i| i.id).collect();
            assert_eq!(collect_all(ids(&keyset, &pool, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, &pool, c), &stretches).await;
        });
    }

    #[test]
    fn bounded_range_resumes_exactly(
        items in items_strategy(40),
        batch in 1usize..8,
        a in -1100i64..1100,
        b in -1100i64..1100,
        inclusive in any::<bool>(),
        descending in any::<bool>(),
        stretches in prop::collection::vec(0usize..10, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let (lo, hi) = (a.min(b), a.max(b));
            let mut keyset = Keyset::table("items").key("id").batch_size(batch);
            let (start, end) = if descending { (hi, lo) } else { (lo, hi) };
            keyset = keyset.after(start);
            keyset = if inclusive { keyset.until(end) } else { keyset.until_exclusive(end) };
            let mut expected: Vec<i64> = items
                .iter()
                .map(|i| i.id)
                .filter(|&id| id > lo && (id < hi || (inclusive && id == hi)))
                .collect();
            if descending {
                keyset = keyset.descending();
                expected = items
                    .iter()
                    .rev()
                    .map(|i| i.id)
                    .filter(|&id| id < hi && (id > lo || (inclusive && id == lo)))
                    .collect();
            }
            assert_eq!(collect_all(ids(&keyset, &pool, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, &pool, c), &stretches).await;
        });
    }

    #[test]
    fn batches_resume_exactly_when_the_batch_size_changes(
        items in items_strategy(60),
        sizes in prop::collection::vec(1usize..9, 1..8),
        stretches in prop::collection::vec(0usize..5, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let run = Cell::new(0usize);
            let make = |cursor| {
                let size = sizes[run.get() % sizes.len()];
                run.set(run.get() + 1);
                Keyset::table("items")
                    .key("id")
                    .batch_size(size)
                    .batches(&pool, cursor)
                    .map_ok(move |(rows, cursor)| {
                        assert!(!rows.is_empty() && rows.len() <= size, "a page has 1..=batch rows");
                        let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
                        (ids, cursor)
                    })
            };
            let walked: Vec<i64> = walk_with_interruptions(make, &stretches)
                .await
                .into_iter()
                .flatten()
                .collect();
            let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
            assert_eq!(walked, expected);
        });
    }

    #[test]
    fn rows_resume_exactly_when_the_batch_size_changes(
        items in items_strategy(40),
        sizes in prop::collection::vec(1usize..9, 1..8),
        stretches in prop::collection::vec(0usize..10, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let run = Cell::new(0usize);
            let make = |cursor| {
                let size = sizes[run.get() % sizes.len()];
                run.set(run.get() + 1);
                ids(&Keyset::table("items").key("id").batch_size(size), &pool, cursor)
            };
            let walked = walk_with_interruptions(make, &stretches).await;
            let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
            assert_eq!(walked, expected);
        });
    }

    #[test]
    fn text_and_real_keys_resume_exactly(
        items in items_strategy(30),
        batch in 1usize..6,
        stretches in prop::collection::vec(0usize..10, 0..6),
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let by_name = Keyset::table("items").key("name").batch_size(batch);
            let mut names: Vec<String> = items.iter().map(|i| format!("item-{:05}", i.id)).collect();
            names.sort();
            let walk = |c| by_name.rows(&pool, c).map_ok(|(row, c)| (row.get::<String, _>("name"), c));
            assert_eq!(collect_all(walk(None)).await, names);
            assert_resume_exact(walk, &stretches).await;

            let by_score = Keyset::table("items").keys(["score", "id"]).batch_size(batch);
            assert_resume_exact(|c| ids(&by_score, &pool, c), &stretches).await;
        });
    }
}

#[test]
fn empty_table_yields_nothing() {
    block_on(async {
        let (_dir, pool) = items_db(&[]).await;
        let keyset = Keyset::table("items").key("id");
        assert!(collect_all(ids(&keyset, &pool, None)).await.is_empty());
        let batches = collect_all(keyset.batches(&pool, None)).await;
        assert!(batches.is_empty());
        assert_resume_exact(|c| ids(&keyset, &pool, c), &[0, 1]).await;
    });
}

fn item(id: i64) -> Item {
    Item {
        id,
        grp: id % 2,
        archived: false,
    }
}

#[test]
fn cursor_keeps_sqlite_types() {
    block_on(async {
        let (_dir, pool) = items_db(&[item(7), item(9)]).await;
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

#[test]
fn columns_and_rows_as() {
    #[derive(Debug, PartialEq, sqlx::FromRow)]
    struct Named {
        id: i64,
        name: String,
    }
    block_on(async {
        let (_dir, pool) = items_db(&[item(1), item(2), item(3)]).await;
        // the key is not among the columns: it is added at the end
        let keyset = Keyset::table("items")
            .key("id")
            .columns(["name"])
            .batch_size(2);
        let rows = collect_all(keyset.rows(&pool, None)).await;
        assert_eq!(rows[0].len(), 2);
        assert_eq!(rows[0].get::<String, _>(0), "item-00001");
        let named = collect_all(keyset.rows_as::<Named>(&pool, Some(KeysetCursor::from(1)))).await;
        assert_eq!(
            named,
            vec![
                Named {
                    id: 2,
                    name: "item-00002".into()
                },
                Named {
                    id: 3,
                    name: "item-00003".into()
                },
            ]
        );
        // a key that is a keyword needs quoting
        sqlx::query("CREATE TABLE \"order\" (\"group\" INTEGER PRIMARY KEY, \"select\" TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO \"order\" VALUES (1, 'a'), (2, 'b')")
            .execute(&pool)
            .await
            .unwrap();
        let keyset = Keyset::table("order").key("group").columns(["select"]);
        assert_eq!(collect_all(keyset.rows(&pool, None)).await.len(), 2);
    });
}

#[test]
fn query_source() {
    block_on(async {
        let (_dir, pool) = items_db(&(1..=10).map(item).collect::<Vec<_>>()).await;
        let keyset = Keyset::query("SELECT id, name FROM items WHERE grp = 1")
            .key("id")
            .batch_size(2);
        let expected = vec![1, 3, 5, 7, 9];
        assert_eq!(collect_all(ids(&keyset, &pool, None)).await, expected);
        assert_resume_exact(|c| ids(&keyset, &pool, c), &[1, 2]).await;
    });
}

#[test]
fn short_page_ends_the_walk_without_another_query() {
    block_on(async {
        let (_dir, pool) = items_db(&(1..=25).map(item).collect::<Vec<_>>()).await;
        let keyset = Keyset::table("items").key("id").batch_size(10);
        let mut batches = std::pin::pin!(keyset.batches(&pool, None));
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let (rows, _) = batches.try_next().await.unwrap().unwrap();
            sizes.push(rows.len());
        }
        assert_eq!(sizes, vec![10, 10, 5]);
        // another query would now fail: the walk must end without one
        sqlx::query("DROP TABLE items")
            .execute(&pool)
            .await
            .unwrap();
        assert!(batches.next().await.is_none());
    });
}

#[test]
fn pages_use_keyset_sql_without_offset() {
    let sql = Keyset::table("items")
        .keys(["grp", "id"])
        .filter("archived = 0")
        .until(KeysetCursor::new([2, 100]))
        .sql()
        .unwrap();
    assert_eq!(
        sql,
        "SELECT * FROM \"items\" WHERE (\"items\".\"grp\", \"items\".\"id\") > (?, ?) \
         AND (archived = 0) AND (\"items\".\"grp\", \"items\".\"id\") <= (?, ?) \
         ORDER BY \"items\".\"grp\", \"items\".\"id\" LIMIT ?"
    );
    assert!(!sql.contains("OFFSET"));
}

/// The first item's error, as text, with whether it is fatal.
async fn first_error<S>(stream: S) -> (bool, String)
where
    S: futures::Stream<Item = Result<(sqlx::sqlite::SqliteRow, KeysetCursor), JobError>>,
{
    let mut stream = std::pin::pin!(stream);
    match stream.next().await {
        Some(Err(err)) => (err.is_fatal(), err.to_string()),
        Some(Ok(_)) => panic!("expected an error, got a row"),
        None => panic!("expected an error, got the end"),
    }
}

#[test]
fn invalid_identifiers_are_rejected_with_the_name() {
    block_on(async {
        let (_dir, pool) = items_db(&[item(1)]).await;
        let cases = [
            (
                Keyset::table("items; DROP TABLE items").key("id"),
                "table name `items; DROP TABLE items`",
            ),
            (
                Keyset::table("items").key("id\" OR 1"),
                "key column name `id\" OR 1`",
            ),
            (
                Keyset::table("items").key("id").columns(["name", "1st"]),
                "column name `1st`",
            ),
            (Keyset::table("a.b.c").key("id"), "table name `a.b.c`"),
        ];
        for (keyset, expected) in cases {
            let err = keyset.check().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            let (fatal, message) = first_error(keyset.rows(&pool, None)).await;
            assert!(fatal, "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("plain SQL identifier"), "{message}");
        }
        let err = Keyset::table("items").check().unwrap_err().to_string();
        assert!(
            err.contains("no key column") && err.contains(".key("),
            "{err}"
        );
        let err = Keyset::table("items")
            .key("id")
            .batch_size(0)
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch size"), "{err}");
    });
}

#[test]
fn missing_table_and_columns_are_named() {
    block_on(async {
        let (_dir, pool) = items_db(&[item(1), item(2)]).await;

        let (fatal, message) =
            first_error(Keyset::table("products").key("id").rows(&pool, None)).await;
        assert!(fatal, "{message}");
        assert!(
            message.contains("table `products` does not exist"),
            "{message}"
        );

        let (fatal, message) =
            first_error(Keyset::table("items").key("sku").rows(&pool, None)).await;
        assert!(fatal, "{message}");
        assert!(message.contains("column `sku` does not exist"), "{message}");

        let keyset = Keyset::table("items").key("id").columns(["name", "price"]);
        let (_, message) = first_error(keyset.rows(&pool, None)).await;
        assert!(
            message.contains("column `price` does not exist"),
            "{message}"
        );

        // a missing column must not be read as a string literal by SQLite
        let keyset = Keyset::table("items").keys(["grp", "missing"]);
        let (_, message) = first_error(keyset.rows(&pool, None)).await;
        assert!(
            message.contains("column `missing` does not exist"),
            "{message}"
        );

        let keyset = Keyset::table("items").key("id").filter("archivd = 0");
        let (fatal, message) = first_error(keyset.rows(&pool, None)).await;
        assert!(
            fatal && message.contains("column `archivd` does not exist"),
            "{message}"
        );

        let keyset = Keyset::table("items").key("id").filter("archived = = 0");
        let (fatal, message) = first_error(keyset.rows(&pool, None)).await;
        assert!(fatal && message.contains("syntax error"), "{message}");
    });
}

#[test]
fn cursor_of_the_wrong_shape_is_rejected() {
    block_on(async {
        let (_dir, pool) = items_db(&[item(1)]).await;
        let keyset = Keyset::table("items").keys(["grp", "id"]);
        let (fatal, message) = first_error(keyset.rows(&pool, Some(KeysetCursor::from(5)))).await;
        assert!(fatal, "{message}");
        assert!(
            message.contains("cursor has 1 key value(s)") && message.contains("grp, id"),
            "{message}"
        );
    });
}

#[test]
fn null_keys_stop_the_walk() {
    block_on(async {
        let (_dir, pool) = items_db(&[]).await;
        sqlx::query("CREATE TABLE t (k INTEGER, id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (NULL, 1), (2, 2)")
            .execute(&pool)
            .await
            .unwrap();
        let (fatal, message) = first_error(Keyset::table("t").key("k").rows(&pool, None)).await;
        assert!(fatal, "{message}");
        assert!(message.contains("key column `k` is NULL"), "{message}");
    });
}

#[test]
fn ranges_split_a_table_exactly() {
    block_on(async {
        let items: Vec<Item> = (1..=50).map(|i| item(i * 3)).collect();
        let (_dir, pool) = items_db(&items).await;
        let splits = [0i64, 20, 21, 75, 100, 1000];
        let mut seen = Vec::new();
        for pair in splits.windows(2) {
            let keyset = Keyset::table("items")
                .key("id")
                .after(pair[0])
                .until(pair[1])
                .batch_size(4);
            seen.extend(collect_all(ids(&keyset, &pool, None)).await);
        }
        let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
        assert_eq!(seen, expected);
        let unique: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len());
    });
}

proptest! {
    #![proptest_config(config())]

    /// `Keyset::quantile_ranges` and `Keyset::midpoint` (counted and found by SQLite)
    /// cut exactly where the generic walks of `iterjob::partition` cut, for composite
    /// keys with ties, either direction, a filter and bounds; and the ranges, split
    /// again at midpoints from random cursors, walk every row exactly once.
    #[test]
    fn quantile_ranges_and_midpoints_match_the_walks(
        items in items_strategy(60),
        n in 1u32..7,
        descending in any::<bool>(),
        filtered in any::<bool>(),
        cursor_at in 0usize..60,
    ) {
        block_on(async {
            let (_dir, pool) = items_db(&items).await;
            let mut keyset = Keyset::table("items").keys(["grp", "id"]).batch_size(4);
            if descending {
                keyset = keyset.descending();
            }
            if filtered {
                keyset = keyset.filter("archived = 0");
            }
            let fast = keyset.quantile_ranges(&pool, n).await.expect("quantiles");
            let slow = iterjob::partition::quantile_ranges(|c| keyset.rows(&pool, c), n)
                .await
                .expect("walked quantiles");
            assert_eq!(fast, slow);

            let all = collect_all(ids(&keyset, &pool, None)).await;
            let mut seen = Vec::new();
            for range in &fast {
                let part = keyset.clone().range(range);
                let rows: Vec<(i64, KeysetCursor)> = part
                    .rows(&pool, None)
                    .map_ok(|(row, c)| (row.get::<i64, _>("id"), c))
                    .try_collect()
                    .await
                    .expect("part");
                // split the part at a random cursor, as a running partition would
                let cursor = (!rows.is_empty() && cursor_at % 2 == 1)
                    .then(|| rows[cursor_at % rows.len()].1.clone());
                let mid = part.midpoint(&pool, cursor.as_ref()).await.expect("midpoint");
                let walked = iterjob::partition::midpoint(|c| part.rows(&pool, c), cursor.clone())
                    .await
                    .expect("walked midpoint");
                assert_eq!(mid, walked);
                match mid {
                    None => seen.extend(rows.iter().map(|(id, _)| *id)),
                    Some(mid) => {
                        let (keep, give) = range.split_at(mid);
                        for r in [keep, give] {
                            let ids: Vec<i64> = keyset
                                .clone()
                                .range(&r)
                                .rows(&pool, None)
                                .map_ok(|(row, _)| row.get::<i64, _>("id"))
                                .try_collect()
                                .await
                                .expect("half");
                            assert!(!ids.is_empty(), "both halves hold rows");
                            seen.extend(ids);
                        }
                    }
                }
            }
            let mut expected = all.clone();
            expected.sort_unstable();
            seen.sort_unstable();
            assert_eq!(seen, expected, "every row exactly once across the parts");
        });
    }
}
