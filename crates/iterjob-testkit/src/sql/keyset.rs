//! The keyset suite: resume exactness at every cursor position (property tests over
//! random tables, interrupted after any number of items and resumed through a JSON
//! round trip of the cursor), composite keys with ties on leading columns, both
//! directions, filters, bounded ranges, quantiles and midpoints, nullable keys in
//! any position, keys that do not identify a row, and the errors a user meets.
//!
//! Run it with [`keyset_suite!`](crate::keyset_suite). Every scenario takes the
//! expected order from the database's own `ORDER BY` (its NULL placement, its
//! collation), so it checks each dialect against itself.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use iterjob::JobError;
use iterjob::enumerator::Enumerator;
use iterjob::partition::KeyRange;
use iterjob_sql::dialect::RowOf;
use iterjob_sql::{KeyValue, Keyset, KeysetCursor};
use proptest::prelude::*;

use super::{
    ColumnType, SqlHarness, create_table, execute, fetch, ids_of, insert, int, proptest_db, q,
    text, with_db,
};
use crate::{assert_resume_exact, collect_all, walk_with_interruptions};

/// Runs the keyset suite against a harness: one `#[test]` per scenario.
///
/// ```ignore
/// iterjob_testkit::keyset_suite!(common::Db);
/// ```
#[macro_export]
macro_rules! keyset_suite {
    ($harness:ty $(,)?) => {
        $crate::__keyset_tests! {
            ($harness)
            single_key_resumes_exactly,
            composite_keys_with_ties_resume_exactly,
            filter_resumes_exactly,
            bounded_range_resumes_exactly,
            batches_resume_exactly_when_the_batch_size_changes,
            rows_resume_exactly_when_the_batch_size_changes,
            text_and_real_keys_resume_exactly,
            quantile_ranges_and_midpoints_match_the_walks,
            nullable_keys_resume_exactly,
            nullable_ranges_and_splits_cover_every_row_once,
            null_keys_are_walked_exactly,
            a_key_that_is_not_unique_is_refused_before_it_skips,
            ties_at_a_page_boundary_or_a_saved_cursor_are_caught,
            outer_join_query_walks_its_null_keys,
            assumptions_are_the_users_promise,
            empty_table_yields_nothing,
            cursor_keeps_types,
            columns_and_rows_as,
            query_source,
            short_page_ends_the_walk_without_another_query,
            pages_use_keyset_sql_without_offset,
            invalid_identifiers_are_rejected_with_the_name,
            missing_table_and_columns_are_named,
            cursor_of_the_wrong_shape_is_rejected,
            ranges_split_a_table_exactly,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __keyset_tests {
    (($harness:ty) $($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                $crate::sql::keyset::$scenario::<$harness>();
            }
        )*
    };
}

/// Time limit of a plain scenario.
const LIMIT: Duration = Duration::from_secs(120);

/// Property-test cases per scenario.
const CASES: u32 = 24;

/// One row of the `items` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Primary key.
    pub id: i64,
    /// A key with ties.
    pub grp: i64,
    /// 1 for rows the filter leaves out.
    pub flag: i64,
}

/// Random items: distinct ids, few groups.
pub fn items_strategy(max: usize) -> impl Strategy<Value = Vec<Item>> {
    prop::collection::btree_map(-1000i64..1000, (0i64..3, 0i64..2), 0..max).prop_map(|m| {
        m.into_iter()
            .map(|(id, (grp, flag))| Item { id, grp, flag })
            .collect()
    })
}

fn item(id: i64) -> Item {
    Item {
        id,
        grp: id % 2,
        flag: 0,
    }
}

/// (Re)creates `items (id PK, grp, name, flag, score)` holding `items`, indexed on
/// `(grp, id)`.
pub async fn items_table<H: SqlHarness>(db: &H, items: &[Item]) {
    use ColumnType::{Int, Real, Text};
    create_table(
        db,
        "items",
        &[
            ("id", Int, true),
            ("grp", Int, true),
            ("name", Text, true),
            ("flag", Int, true),
            ("score", Real, true),
        ],
        &["id"],
        &[&["grp", "id"]],
    )
    .await;
    let rows: Vec<Vec<KeyValue>> = items
        .iter()
        .map(|i| {
            vec![
                KeyValue::Integer(i.id),
                KeyValue::Integer(i.grp),
                KeyValue::Text(format!("item-{:05}", i.id)),
                KeyValue::Integer(i.flag),
                KeyValue::Real(i.id as f64 / 4.0),
            ]
        })
        .collect();
    insert(db, "items", &["id", "grp", "name", "flag", "score"], &rows).await;
}

/// The rows' ids with their cursors.
pub fn ids<H: SqlHarness>(
    keyset: &Keyset<H::Dialect>,
    db: &H,
    cursor: Option<KeysetCursor>,
) -> impl Enumerator<i64, KeysetCursor> + use<H> {
    keyset
        .rows(db.pool(), cursor)
        .map_ok(|(row, cursor)| (int::<H>(&row, "id"), cursor))
}

/// The first item's error as (fatal, message).
async fn first_error<S, T>(stream: S) -> (bool, String)
where
    S: futures::Stream<Item = Result<(T, KeysetCursor), JobError>>,
{
    let mut stream = std::pin::pin!(stream);
    match stream.next().await {
        Some(Err(err)) => (err.is_fatal(), err.to_string()),
        Some(Ok(_)) => panic!("expected an error, got a row"),
        None => panic!("expected an error, got the end"),
    }
}

/// Walks to the end or the first error: the ids seen, and the error.
async fn walk_until_error<H: SqlHarness>(
    keyset: &Keyset<H::Dialect>,
    db: &H,
    cursor: Option<KeysetCursor>,
) -> (Vec<i64>, Option<JobError>) {
    let mut walk = std::pin::pin!(ids(keyset, db, cursor));
    let mut seen = Vec::new();
    while let Some(step) = walk.next().await {
        match step {
            Ok((id, _)) => seen.push(id),
            Err(err) => return (seen, Some(err)),
        }
    }
    (seen, None)
}

/// `ORDER BY` over `keys`, each ascending or descending.
fn order_by<H: SqlHarness>(keys: &[&str], descending: bool) -> String {
    let direction = if descending { " DESC" } else { " ASC" };
    keys.iter()
        .map(|k| format!("{}{direction}", q::<H>(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A single key resumes exactly at every cursor position.
pub fn single_key_resumes_exactly<H: SqlHarness>() {
    let strategy = (
        items_strategy(40),
        1usize..8,
        prop::collection::vec(0usize..10, 0..6),
    );
    proptest_db::<H, _>(CASES, strategy, async |db, (items, batch, stretches)| {
        items_table(db, &items).await;
        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .batch_size(batch);
        let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
        assert_eq!(collect_all(ids(&keyset, db, None)).await, expected);
        assert_resume_exact(|c| ids(&keyset, db, c), &stretches).await;
    });
}

/// Composite keys with ties on the leading column, either direction.
pub fn composite_keys_with_ties_resume_exactly<H: SqlHarness>() {
    let strategy = (
        items_strategy(40),
        1usize..8,
        any::<bool>(),
        prop::collection::vec(0usize..10, 0..6),
    );
    proptest_db::<H, _>(
        CASES,
        strategy,
        async |db, (items, batch, descending, stretches)| {
            items_table(db, &items).await;
            let mut keyset = Keyset::<H::Dialect>::table("items")
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
            assert_eq!(collect_all(ids(&keyset, db, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, db, c), &stretches).await;
        },
    );
}

/// A filter leaves rows out and resumes exactly.
pub fn filter_resumes_exactly<H: SqlHarness>() {
    let strategy = (
        items_strategy(40),
        1usize..8,
        prop::collection::vec(0usize..10, 0..6),
    );
    proptest_db::<H, _>(CASES, strategy, async |db, (items, batch, stretches)| {
        items_table(db, &items).await;
        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .filter("flag = 0")
            .batch_size(batch);
        let expected: Vec<i64> = items.iter().filter(|i| i.flag == 0).map(|i| i.id).collect();
        assert_eq!(collect_all(ids(&keyset, db, None)).await, expected);
        assert_resume_exact(|c| ids(&keyset, db, c), &stretches).await;
    });
}

/// `after` and `until`/`until_exclusive`, either direction, keys in the table or not.
pub fn bounded_range_resumes_exactly<H: SqlHarness>() {
    let strategy = (
        items_strategy(40),
        1usize..8,
        (-1100i64..1100, -1100i64..1100),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(0usize..10, 0..6),
    );
    proptest_db::<H, _>(
        CASES,
        strategy,
        async |db, (items, batch, (a, b), inclusive, descending, stretches)| {
            items_table(db, &items).await;
            let (lo, hi) = (a.min(b), a.max(b));
            let mut keyset = Keyset::<H::Dialect>::table("items")
                .key("id")
                .batch_size(batch);
            let (start, end) = if descending { (hi, lo) } else { (lo, hi) };
            keyset = keyset.after(start);
            keyset = if inclusive {
                keyset.until(end)
            } else {
                keyset.until_exclusive(end)
            };
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
            assert_eq!(collect_all(ids(&keyset, db, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, db, c), &stretches).await;
        },
    );
}

/// `batches` resumes exactly when each run uses another batch size.
pub fn batches_resume_exactly_when_the_batch_size_changes<H: SqlHarness>() {
    let strategy = (
        items_strategy(60),
        prop::collection::vec(1usize..9, 1..8),
        prop::collection::vec(0usize..5, 0..6),
    );
    proptest_db::<H, _>(CASES, strategy, async |db, (items, sizes, stretches)| {
        items_table(db, &items).await;
        let run = Cell::new(0usize);
        let make = |cursor| {
            let size = sizes[run.get() % sizes.len()];
            run.set(run.get() + 1);
            Keyset::<H::Dialect>::table("items")
                .key("id")
                .batch_size(size)
                .batches(db.pool(), cursor)
                .map_ok(move |(rows, cursor)| {
                    assert!(
                        !rows.is_empty() && rows.len() <= size,
                        "a page has 1..=batch rows"
                    );
                    let ids: Vec<i64> = rows.iter().map(|r| int::<H>(r, "id")).collect();
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

/// `rows` resumes exactly when each run uses another batch size.
pub fn rows_resume_exactly_when_the_batch_size_changes<H: SqlHarness>() {
    let strategy = (
        items_strategy(40),
        prop::collection::vec(1usize..9, 1..8),
        prop::collection::vec(0usize..10, 0..6),
    );
    proptest_db::<H, _>(CASES, strategy, async |db, (items, sizes, stretches)| {
        items_table(db, &items).await;
        let run = Cell::new(0usize);
        let make = |cursor| {
            let size = sizes[run.get() % sizes.len()];
            run.set(run.get() + 1);
            ids(
                &Keyset::<H::Dialect>::table("items")
                    .key("id")
                    .batch_size(size),
                db,
                cursor,
            )
        };
        let walked = walk_with_interruptions(make, &stretches).await;
        let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
        assert_eq!(walked, expected);
    });
}

/// Text and real keys, compared as the database compares them.
pub fn text_and_real_keys_resume_exactly<H: SqlHarness>() {
    let strategy = (
        items_strategy(30),
        1usize..6,
        prop::collection::vec(0usize..10, 0..6),
    );
    proptest_db::<H, _>(CASES, strategy, async |db, (items, batch, stretches)| {
        items_table(db, &items).await;
        let by_name = Keyset::<H::Dialect>::table("items")
            .key("name")
            .batch_size(batch);
        let names: Vec<String> = fetch(
            db,
            &format!("SELECT name FROM items ORDER BY {}", q::<H>("name")),
            &[],
        )
        .await
        .iter()
        .map(|row| text::<H>(row, "name"))
        .collect();
        let walk = |c| {
            by_name
                .rows(db.pool(), c)
                .map_ok(|(row, c)| (text::<H>(&row, "name"), c))
        };
        assert_eq!(collect_all(walk(None)).await, names);
        assert_resume_exact(walk, &stretches).await;

        let by_score = Keyset::<H::Dialect>::table("items")
            .keys(["score", "id"])
            .batch_size(batch);
        assert_resume_exact(|c| ids(&by_score, db, c), &stretches).await;
    });
}

/// `quantile_ranges` and `midpoint`, counted by the database, cut where the generic
/// walks of `iterjob::partition` cut; the ranges, split again at midpoints from
/// random cursors, walk every row exactly once.
pub fn quantile_ranges_and_midpoints_match_the_walks<H: SqlHarness>() {
    let strategy = (
        items_strategy(60),
        1u32..7,
        any::<bool>(),
        any::<bool>(),
        0usize..60,
    );
    proptest_db::<H, _>(
        CASES,
        strategy,
        async |db, (items, n, descending, filtered, cursor_at)| {
            items_table(db, &items).await;
            let mut keyset = Keyset::<H::Dialect>::table("items")
                .keys(["grp", "id"])
                .batch_size(4);
            if descending {
                keyset = keyset.descending();
            }
            if filtered {
                keyset = keyset.filter("flag = 0");
            }
            let fast = keyset
                .quantile_ranges(db.pool(), n)
                .await
                .expect("quantiles");
            let slow = iterjob::partition::quantile_ranges(|c| keyset.rows(db.pool(), c), n)
                .await
                .expect("walked quantiles");
            assert_eq!(fast, slow);
            let all = collect_all(ids(&keyset, db, None)).await;
            let seen = walk_ranges_split_at_midpoints(db, &keyset, &fast, cursor_at, true).await;
            let mut expected = all.clone();
            expected.sort_unstable();
            assert_eq!(seen, expected, "every row exactly once across the parts");
        },
    );
}

/// Walks each range, first splitting it at the midpoint of what is left after a
/// cursor picked by `cursor_at` (as a running partition would be split); returns the
/// ids seen, sorted. With `compare`, checks the database's midpoint against the
/// generic walk's.
async fn walk_ranges_split_at_midpoints<H: SqlHarness>(
    db: &H,
    keyset: &Keyset<H::Dialect>,
    ranges: &[KeyRange<KeysetCursor>],
    cursor_at: usize,
    compare: bool,
) -> Vec<i64> {
    let mut seen = Vec::new();
    for range in ranges {
        let part = keyset.clone().range(range);
        let rows: Vec<(i64, KeysetCursor)> =
            ids(&part, db, None).try_collect().await.expect("part");
        let cursor = (!rows.is_empty() && cursor_at % 2 == 1)
            .then(|| rows[cursor_at % rows.len()].1.clone());
        let mid = part
            .midpoint(db.pool(), cursor.as_ref())
            .await
            .expect("midpoint");
        if compare {
            let walked = iterjob::partition::midpoint(|c| part.rows(db.pool(), c), cursor.clone())
                .await
                .expect("walked midpoint");
            assert_eq!(mid, walked);
        }
        match mid {
            None => seen.extend(rows.iter().map(|(id, _)| *id)),
            Some(mid) => {
                let (keep, give) = range.split_at(mid);
                for half in [keep, give] {
                    let ids: Vec<i64> = ids(&keyset.clone().range(&half), db, None)
                        .map_ok(|(id, _)| id)
                        .try_collect()
                        .await
                        .expect("half");
                    assert!(!ids.is_empty(), "both halves hold rows");
                    seen.extend(ids);
                }
            }
        }
    }
    seen.sort_unstable();
    seen
}

/// One row of the `nulls` table: two nullable key columns with few values, and a
/// unique id.
type NullRow = (i64, Option<i64>, Option<i64>);

fn null_rows(max: usize) -> impl Strategy<Value = Vec<NullRow>> {
    let value = prop_oneof![Just(None), (0i64..3).prop_map(Some)];
    prop::collection::btree_map(0i64..200, (value.clone(), value), 0..max).prop_map(|m| {
        m.into_iter()
            .map(|(id, (a, b))| (id, a, b))
            .collect::<Vec<_>>()
    })
}

/// (Re)creates `nulls (id NOT NULL UNIQUE, a NULL, b NULL)`, indexed on `(a, b, id)`.
async fn nulls_table<H: SqlHarness>(db: &H, rows: &[NullRow]) {
    use ColumnType::Int;
    create_table(
        db,
        "nulls",
        &[("id", Int, true), ("a", Int, false), ("b", Int, false)],
        &["id"],
        &[&["a", "b", "id"], &["b", "a", "id"]],
    )
    .await;
    let values: Vec<Vec<KeyValue>> = rows
        .iter()
        .map(|(id, a, b)| vec![KeyValue::Integer(*id), (*a).into(), (*b).into()])
        .collect();
    insert(db, "nulls", &["id", "a", "b"], &values).await;
}

/// The key orders the NULL scenarios walk: NULLs in the leading, middle and last
/// positions (the last with the id before it, so the key stays unique).
const NULL_KEYS: [&[&str]; 4] = [
    &["a", "id"],
    &["a", "b", "id"],
    &["b", "a", "id"],
    &["id", "a"],
];

/// Nullable key columns in any position, either direction, resumed at every cursor
/// position through JSON: each row exactly once, in the database's own order.
pub fn nullable_keys_resume_exactly<H: SqlHarness>() {
    let strategy = (
        null_rows(30),
        0usize..NULL_KEYS.len(),
        any::<bool>(),
        1usize..6,
        any::<bool>(),
        prop::collection::vec(0usize..8, 0..5),
    );
    proptest_db::<H, _>(
        CASES,
        strategy,
        async |db, (rows, keys, descending, batch, as_query, stretches)| {
            nulls_table(db, &rows).await;
            let keys = NULL_KEYS[keys];
            let expected = ids_of(
                db,
                &format!(
                    "SELECT id FROM nulls ORDER BY {}",
                    order_by::<H>(keys, descending)
                ),
            )
            .await;
            assert_eq!(expected.len(), rows.len());
            let mut keyset = if as_query {
                Keyset::<H::Dialect>::query("SELECT id, a, b FROM nulls")
            } else {
                Keyset::<H::Dialect>::table("nulls")
            }
            .keys(keys.iter().copied())
            .batch_size(batch);
            if descending {
                keyset = keyset.descending();
            }
            assert_eq!(
                collect_all(ids(&keyset, db, None)).await,
                expected,
                "keys {keys:?}, descending {descending}"
            );
            assert_resume_exact(|c| ids(&keyset, db, c), &stretches).await;
            // batches too
            let batches = |c| {
                keyset.batches(db.pool(), c).map_ok(|(rows, c)| {
                    let ids: Vec<i64> = rows.iter().map(|r| int::<H>(r, "id")).collect();
                    (ids, c)
                })
            };
            let walked: Vec<i64> = walk_with_interruptions(batches, &stretches)
                .await
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(walked, expected);
        },
    );
}

/// Quantile ranges, bounded walks and midpoint splits over nullable keys cover every
/// row exactly once.
pub fn nullable_ranges_and_splits_cover_every_row_once<H: SqlHarness>() {
    let strategy = (
        null_rows(40),
        0usize..NULL_KEYS.len(),
        any::<bool>(),
        1u32..6,
        0usize..40,
    );
    proptest_db::<H, _>(
        CASES,
        strategy,
        async |db, (rows, keys, descending, n, cursor_at)| {
            nulls_table(db, &rows).await;
            let mut keyset = Keyset::<H::Dialect>::table("nulls")
                .keys(NULL_KEYS[keys].iter().copied())
                .batch_size(3);
            if descending {
                keyset = keyset.descending();
            }
            let ranges = keyset
                .quantile_ranges(db.pool(), n)
                .await
                .expect("quantiles");
            let slow = iterjob::partition::quantile_ranges(|c| keyset.rows(db.pool(), c), n)
                .await
                .expect("walked quantiles");
            assert_eq!(ranges, slow);
            // every range walked on its own, in order, is the whole walk
            let mut in_order = Vec::new();
            for range in &ranges {
                in_order.extend(collect_all(ids(&keyset.clone().range(range), db, None)).await);
            }
            assert_eq!(in_order, collect_all(ids(&keyset, db, None)).await);
            let seen = walk_ranges_split_at_midpoints(db, &keyset, &ranges, cursor_at, true).await;
            let mut expected: Vec<i64> = rows.iter().map(|r| r.0).collect();
            expected.sort_unstable();
            assert_eq!(seen, expected, "every row exactly once across the parts");
        },
    );
}

/// The issue's first case: 5,000 events, 20 with a NULL `created_at`, walked by
/// `(created_at, id)` in both directions and as 4 partitions: all 5,000, once.
pub fn null_keys_are_walked_exactly<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        use ColumnType::Int;
        create_table(
            db,
            "events",
            &[("created_at", Int, false), ("id", Int, true)],
            &["id"],
            &[&["created_at", "id"]],
        )
        .await;
        let rows: Vec<Vec<KeyValue>> = (0..5000i64)
            .map(|id| {
                let at = if id % 250 == 7 {
                    KeyValue::Null
                } else {
                    KeyValue::Integer(1_700_000_000 + (id * 7919) % 4000)
                };
                vec![at, KeyValue::Integer(id)]
            })
            .collect();
        insert(db, "events", &["created_at", "id"], &rows).await;
        for descending in [false, true] {
            let mut keyset = Keyset::<H::Dialect>::table("events")
                .keys(["created_at", "id"])
                .batch_size(100);
            if descending {
                keyset = keyset.descending();
            }
            let expected = ids_of(
                db,
                &format!(
                    "SELECT id FROM events ORDER BY {}",
                    order_by::<H>(&["created_at", "id"], descending)
                ),
            )
            .await;
            let walked = collect_all(ids(&keyset, db, None)).await;
            assert_eq!(walked.len(), 5000, "descending {descending}");
            assert_eq!(walked, expected);
            let batches: Vec<i64> = collect_all(keyset.batches(db.pool(), None))
                .await
                .iter()
                .flatten()
                .map(|row| int::<H>(row, "id"))
                .collect();
            assert_eq!(batches, expected);
            let ranges = keyset
                .quantile_ranges(db.pool(), 4)
                .await
                .expect("quantiles");
            let mut parts = Vec::new();
            for range in &ranges {
                parts.extend(collect_all(ids(&keyset.clone().range(range), db, None)).await);
            }
            assert_eq!(parts, expected, "the partitions cover every row once");
        }
    });
}

/// The issue's second case: a key that does not identify a row (`created_at` alone,
/// about 50 rows per value) ends the walk with an error naming the key and a fix,
/// before any row is skipped — on a table and on a query source.
pub fn a_key_that_is_not_unique_is_refused_before_it_skips<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        use ColumnType::Int;
        create_table(
            db,
            "events",
            &[("created_at", Int, true), ("id", Int, true)],
            &["id"],
            &[&["created_at"]],
        )
        .await;
        let rows: Vec<Vec<KeyValue>> = (0..5000i64)
            .map(|id| vec![KeyValue::Integer(id / 50), KeyValue::Integer(id)])
            .collect();
        insert(db, "events", &["created_at", "id"], &rows).await;
        for keyset in [
            Keyset::<H::Dialect>::table("events").key("created_at"),
            Keyset::<H::Dialect>::query("SELECT created_at, id FROM events").key("created_at"),
        ] {
            for batch in [1, 7, 100] {
                let keyset = keyset.clone().batch_size(batch);
                let (seen, err) = walk_until_error(&keyset, db, None).await;
                let err = err.expect("a tie ends the walk");
                assert!(err.is_fatal(), "{err}");
                let message = err.to_string();
                assert!(
                    message.contains("does not identify a row")
                        && message.contains("created_at")
                        && message.contains(".keys("),
                    "{message}"
                );
                // nothing skipped: the rows seen are the first ones in key order
                let expected = ids_of(
                    db,
                    &format!(
                        "SELECT id FROM events WHERE created_at = 0 ORDER BY {}",
                        q::<H>("id")
                    ),
                )
                .await;
                let seen: BTreeSet<i64> = seen.into_iter().collect();
                assert!(
                    seen.iter().all(|id| expected.contains(id)),
                    "only rows of the first key were walked: {seen:?}"
                );
            }
        }
        // with a unique tiebreaker it walks every row
        let keyset = Keyset::<H::Dialect>::table("events").keys(["created_at", "id"]);
        assert_eq!(collect_all(ids(&keyset, db, None)).await.len(), 5000);
    });
}

/// A tie that only a page boundary (or a cursor saved by an earlier run) cuts is
/// caught there: the walk ends before reading past the key.
pub fn ties_at_a_page_boundary_or_a_saved_cursor_are_caught<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        use ColumnType::Int;
        create_table(
            db,
            "ties",
            &[("k", Int, true), ("id", Int, true)],
            &["id"],
            &[],
        )
        .await;
        // k: 1, 2, 2, 3 — the page of 2 ends inside the tie
        let rows: Vec<Vec<KeyValue>> = [(1, 1), (2, 2), (2, 3), (3, 4)]
            .iter()
            .map(|(k, id)| vec![KeyValue::Integer(*k), KeyValue::Integer(*id)])
            .collect();
        insert(db, "ties", &["k", "id"], &rows).await;
        let keyset = Keyset::<H::Dialect>::table("ties").key("k").batch_size(2);
        // batches: the first page [1, 2] ends at the tie; the check before the next
        // page finds it
        let mut batches = std::pin::pin!(keyset.batches(db.pool(), None));
        let first = batches.next().await.expect("a page");
        let err = match first {
            Ok((rows, _)) => {
                assert_eq!(rows.len(), 2);
                match batches.next().await {
                    Some(Err(err)) => err,
                    other => panic!(
                        "the tie at the page boundary is an error: {:?}",
                        other.map(|r| r.map(|(rows, c)| (rows.len(), c)))
                    ),
                }
            }
            Err(err) => err,
        };
        assert!(err.to_string().contains("does not identify a row"), "{err}");
        // a cursor saved at the tied key: the resumed walk says so, naming the key
        let (seen, err) = walk_until_error(&keyset, db, Some(KeysetCursor::from(2))).await;
        assert!(seen.is_empty(), "{seen:?}");
        let message = err.expect("a tie at the saved cursor").to_string();
        assert!(
            message.contains("does not identify a row") && message.contains("earlier run"),
            "{message}"
        );
    });
}

/// A query source whose key comes from an outer join has NULL keys by construction:
/// each of its rows is walked once.
pub fn outer_join_query_walks_its_null_keys<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        use ColumnType::Int;
        create_table(
            db,
            "orders",
            &[("id", Int, true), ("customer", Int, true)],
            &["id"],
            &[],
        )
        .await;
        create_table(
            db,
            "customers",
            &[("cid", Int, true), ("region", Int, true)],
            &["cid"],
            &[],
        )
        .await;
        let orders: Vec<Vec<KeyValue>> = (1..=60i64)
            .map(|id| vec![KeyValue::Integer(id), KeyValue::Integer(id % 9)])
            .collect();
        insert(db, "orders", &["id", "customer"], &orders).await;
        let customers: Vec<Vec<KeyValue>> = (0..6i64)
            .map(|cid| vec![KeyValue::Integer(cid), KeyValue::Integer(cid % 3)])
            .collect();
        insert(db, "customers", &["cid", "region"], &customers).await;
        let query = "SELECT o.id AS id, c.region AS region FROM orders o \
                     LEFT JOIN customers c ON c.cid = o.customer";
        for descending in [false, true] {
            let mut keyset = Keyset::<H::Dialect>::query(query)
                .keys(["region", "id"])
                .batch_size(4);
            if descending {
                keyset = keyset.descending();
            }
            let expected = ids_of(
                db,
                &format!(
                    "SELECT id FROM ({query}) AS j ORDER BY {}",
                    order_by::<H>(&["region", "id"], descending)
                ),
            )
            .await;
            assert_eq!(expected.len(), 60);
            assert_eq!(collect_all(ids(&keyset, db, None)).await, expected);
            assert_resume_exact(|c| ids(&keyset, db, c), &[5, 17]).await;
        }
    });
}

/// `assume_not_null` and `assume_unique` are the user's promises: a NULL key that
/// arrives is an error naming the call to remove; with `assume_unique` the tie
/// checks are off.
pub fn assumptions_are_the_users_promise<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        nulls_table(
            db,
            &[
                (1, None, Some(1)),
                (2, Some(1), None),
                (3, Some(1), Some(2)),
            ],
        )
        .await;
        // the first page holds every row, the NULL one too: it is an error either way
        for descending in [false, true] {
            let mut keyset = Keyset::<H::Dialect>::table("nulls")
                .keys(["a", "id"])
                .assume_not_null();
            if descending {
                keyset = keyset.descending();
            }
            let (_, err) = walk_until_error(&keyset, db, None).await;
            let message = err
                .expect("a NULL key that arrives is an error")
                .to_string();
            assert!(
                message.contains("key column `a` is NULL") && message.contains("assume_not_null"),
                "{message}"
            );
        }
        // ties with assume_unique: walked without complaint (the user's risk)
        let keyset = Keyset::<H::Dialect>::table("nulls")
            .key("a")
            .assume_unique();
        let (_, err) = walk_until_error(&keyset, db, None).await;
        assert!(err.is_none(), "{err:?}");
        // without it, the same walk is refused
        let (_, err) =
            walk_until_error(&Keyset::<H::Dialect>::table("nulls").key("a"), db, None).await;
        assert!(err.is_some());
        // a NULL bound on a NOT NULL key column compares with no row: refused
        let keyset = Keyset::<H::Dialect>::table("nulls")
            .key("id")
            .after(KeyValue::Null);
        let (seen, err) = walk_until_error(&keyset, db, None).await;
        assert!(seen.is_empty());
        let message = err.expect("a NULL bound on a NOT NULL key").to_string();
        assert!(
            message.contains("holds NULL for key column `id`"),
            "{message}"
        );
    });
}

/// An empty table yields nothing, in rows and batches.
pub fn empty_table_yields_nothing<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &[]).await;
        let keyset = Keyset::<H::Dialect>::table("items").key("id");
        assert!(collect_all(ids(&keyset, db, None)).await.is_empty());
        assert!(
            collect_all(keyset.batches(db.pool(), None))
                .await
                .is_empty()
        );
        assert_resume_exact(|c| ids(&keyset, db, c), &[0, 1]).await;
    });
}

/// Integer, real and text keys come back as themselves, in the cursor and its JSON.
pub fn cursor_keeps_types<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &[item(7), item(9)]).await;
        let keyset = Keyset::<H::Dialect>::table("items").keys(["name", "grp", "score", "id"]);
        let mut rows = std::pin::pin!(keyset.rows(db.pool(), None));
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
        // resuming from the JSON form yields the next row
        let next = collect_all(ids(&keyset, db, Some(back))).await;
        assert_eq!(next, vec![9]);
    });
}

/// A row type for `rows_as`, decoded with the dialect's column readers.
#[derive(Debug, PartialEq)]
struct Named {
    id: i64,
    name: String,
}

/// `columns` selects (the key is added), `rows_as` decodes, keywords are quoted.
pub fn columns_and_rows_as<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &[item(1), item(2), item(3)]).await;
        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .columns(["name"])
            .batch_size(2);
        let rows: Vec<RowOf<H::Dialect>> = collect_all(keyset.rows(db.pool(), None)).await;
        assert_eq!(sqlx::Row::len(&rows[0]), 2, "the key column is added");
        let named: Vec<Named> = collect_all(keyset.rows(db.pool(), Some(KeysetCursor::from(1))))
            .await
            .iter()
            .map(|row| Named {
                id: int::<H>(row, "id"),
                name: text::<H>(row, "name"),
            })
            .collect();
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
        // keywords as table and column names are quoted
        use ColumnType::{Int, Text};
        create_table(
            db,
            "order",
            &[("group", Int, true), ("select", Text, false)],
            &["group"],
            &[],
        )
        .await;
        insert(
            db,
            "order",
            &["group", "select"],
            &[
                vec![KeyValue::Integer(1), KeyValue::Text("a".into())],
                vec![KeyValue::Integer(2), KeyValue::Text("b".into())],
            ],
        )
        .await;
        let keyset = Keyset::<H::Dialect>::table("order")
            .key("group")
            .columns(["select"]);
        assert_eq!(collect_all(keyset.rows(db.pool(), None)).await.len(), 2);
        execute(db, &[&format!("DROP TABLE {}", q::<H>("order"))]).await;
    });
}

/// A query source is walked like a table.
pub fn query_source<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &(1..=10).map(item).collect::<Vec<_>>()).await;
        let keyset = Keyset::<H::Dialect>::query("SELECT id, name FROM items WHERE grp = 1")
            .key("id")
            .batch_size(2);
        assert_eq!(
            collect_all(ids(&keyset, db, None)).await,
            vec![1, 3, 5, 7, 9]
        );
        assert_resume_exact(|c| ids(&keyset, db, c), &[1, 2]).await;
        // and as a unique query, vouched for by the user
        let keyset = keyset.assume_unique().assume_not_null();
        assert_eq!(
            collect_all(ids(&keyset, db, None)).await,
            vec![1, 3, 5, 7, 9]
        );
    });
}

/// A page shorter than the batch size ends the walk without another query.
pub fn short_page_ends_the_walk_without_another_query<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &(1..=25).map(item).collect::<Vec<_>>()).await;
        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .batch_size(10);
        let mut batches = std::pin::pin!(keyset.batches(db.pool(), None));
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let (rows, _) = batches.try_next().await.unwrap().unwrap();
            sizes.push(rows.len());
        }
        assert_eq!(sizes, vec![10, 10, 5]);
        // another query would now fail: the walk must end without one
        execute(db, &["DROP TABLE items"]).await;
        assert!(batches.next().await.is_none());
    });
}

/// The page query is a keyset seek, never `OFFSET`.
pub fn pages_use_keyset_sql_without_offset<H: SqlHarness>() {
    let sql = Keyset::<H::Dialect>::table("items")
        .keys(["grp", "id"])
        .filter("flag = 0")
        .until(KeysetCursor::new([2, 100]))
        .sql()
        .unwrap();
    assert!(!sql.contains("OFFSET"), "{sql}");
    assert!(sql.contains("(flag = 0)"), "{sql}");
    assert!(sql.contains("ORDER BY"), "{sql}");
    assert!(sql.contains("LIMIT"), "{sql}");
    let quoted = format!("{}.{}", q::<H>("items"), q::<H>("grp"));
    assert!(sql.contains(&quoted), "{sql}");
}

/// Names that are not plain identifiers are refused, naming them.
pub fn invalid_identifiers_are_rejected_with_the_name<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &[item(1)]).await;
        let cases = [
            (
                Keyset::<H::Dialect>::table("items; DROP TABLE items").key("id"),
                "table name `items; DROP TABLE items`",
            ),
            (
                Keyset::<H::Dialect>::table("items").key("id\" OR 1"),
                "key column name `id\" OR 1`",
            ),
            (
                Keyset::<H::Dialect>::table("items")
                    .key("id")
                    .columns(["name", "1st"]),
                "column name `1st`",
            ),
            (
                Keyset::<H::Dialect>::table("a.b.c").key("id"),
                "table name `a.b.c`",
            ),
        ];
        for (keyset, expected) in cases {
            let err = keyset.check().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            let (fatal, message) = first_error(keyset.rows(db.pool(), None)).await;
            assert!(fatal, "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("plain SQL identifier"), "{message}");
        }
        let err = Keyset::<H::Dialect>::table("items")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no key column") && err.contains(".key("),
            "{err}"
        );
        let err = Keyset::<H::Dialect>::table("items")
            .key("id")
            .batch_size(0)
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch size"), "{err}");
        assert_eq!(
            ids_of(db, "SELECT id FROM items").await,
            vec![1],
            "nothing was dropped"
        );
    });
}

/// A missing table, key, selected or filtered column is named; a filter with a
/// syntax error is fatal.
pub fn missing_table_and_columns_are_named<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &[item(1), item(2)]).await;
        let (fatal, message) = first_error(
            Keyset::<H::Dialect>::table("products")
                .key("id")
                .rows(db.pool(), None),
        )
        .await;
        assert!(fatal, "{message}");
        assert!(
            message.contains("products") && message.contains("does not exist"),
            "{message}"
        );

        let (fatal, message) = first_error(
            Keyset::<H::Dialect>::table("items")
                .key("sku")
                .rows(db.pool(), None),
        )
        .await;
        assert!(fatal, "{message}");
        assert!(message.contains("column `sku` does not exist"), "{message}");

        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .columns(["name", "price"]);
        let (_, message) = first_error(keyset.rows(db.pool(), None)).await;
        assert!(
            message.contains("column `price` does not exist"),
            "{message}"
        );

        let keyset = Keyset::<H::Dialect>::table("items").keys(["grp", "missing"]);
        let (_, message) = first_error(keyset.rows(db.pool(), None)).await;
        assert!(
            message.contains("column `missing` does not exist"),
            "{message}"
        );

        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .filter("flg = 0");
        let (fatal, message) = first_error(keyset.rows(db.pool(), None)).await;
        assert!(
            fatal && message.contains("column `flg` does not exist"),
            "{message}"
        );

        let keyset = Keyset::<H::Dialect>::table("items")
            .key("id")
            .filter("flag = = 0");
        let (fatal, message) = first_error(keyset.rows(db.pool(), None)).await;
        assert!(fatal && message.contains("syntax"), "{message}");
    });
}

/// A cursor with the wrong number of values is refused, naming the key columns.
pub fn cursor_of_the_wrong_shape_is_rejected<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        items_table(db, &[item(1)]).await;
        let keyset = Keyset::<H::Dialect>::table("items").keys(["grp", "id"]);
        let (fatal, message) =
            first_error(keyset.rows(db.pool(), Some(KeysetCursor::from(5)))).await;
        assert!(fatal, "{message}");
        assert!(
            message.contains("cursor has 1 key value(s)") && message.contains("grp, id"),
            "{message}"
        );
    });
}

/// Ranges `(a, b]`, `(b, c]`, … cover a table exactly once.
pub fn ranges_split_a_table_exactly<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        let items: Vec<Item> = (1..=50).map(|i| item(i * 3)).collect();
        items_table(db, &items).await;
        let splits = [0i64, 20, 21, 75, 100, 1000];
        let mut seen = Vec::new();
        for pair in splits.windows(2) {
            let keyset = Keyset::<H::Dialect>::table("items")
                .key("id")
                .after(pair[0])
                .until(pair[1])
                .batch_size(4);
            seen.extend(collect_all(ids(&keyset, db, None)).await);
        }
        let expected: Vec<i64> = items.iter().map(|i| i.id).collect();
        assert_eq!(seen, expected);
        let unique: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len());
    });
}
