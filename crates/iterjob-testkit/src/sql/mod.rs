//! Suites every SQL store runs: the keyset enumerator ([`keyset`]) and
//! transactional iteration ([`transactional`]), written once against a
//! [`SqlHarness`] and run on SQLite, PostgreSQL and MySQL with one macro call each.
//!
//! ```ignore
//! // crates/my-sql-store/tests/suites.rs
//! struct Db { /* a fresh database and a store on it */ }
//! impl iterjob_testkit::sql::SqlHarness for Db { /* … */ }
//! iterjob_testkit::keyset_suite!(Db);
//! iterjob_testkit::transactional_suite!(Db);
//! ```
//!
//! Each scenario is a plain `#[test]` that opens a fresh database through the
//! harness, creates its tables with portable DDL ([`ColumnType`] per dialect), fills
//! them through the dialect's own parameters, and checks walks against the
//! database's own `ORDER BY` — so a dialect that orders NULLs or text differently is
//! checked against itself. A harness that cannot reach its server returns `None`
//! from [`SqlHarness::open`] and the scenario passes without running; under CI
//! (`CI` set) a harness must panic instead, so nothing is skipped there.

pub mod keyset;
pub mod transactional;

use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt;
use iterjob::Store;
use iterjob_sql::dialect::{ConnectionOf, Dialect, Query, RowOf};
use iterjob_sql::{KeyValue, TransactionalStore};
use sqlx::Pool;

/// The sqlx database of a harness.
pub type DbOf<H> = <<H as SqlHarness>::Dialect as Dialect>::Database;

/// A column type of the suites' tables, written per database by
/// [`SqlHarness::column_type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// A 64-bit integer (`INTEGER` on SQLite, so an integer primary key is the rowid).
    Int,
    /// Text short enough to index (`VARCHAR(100)` where `TEXT` cannot be indexed).
    Text,
    /// A double-precision float.
    Real,
}

/// A fresh database for one scenario, with a store on it.
///
/// The suites create their tables unqualified in the database (or schema) the
/// store's pool uses by default, so a PostgreSQL harness sets the pool's
/// `search_path` to its test schema.
pub trait SqlHarness: Send + Sync + Sized + 'static {
    /// The database's dialect.
    type Dialect: Dialect;
    /// The store on it.
    type Store: Store + TransactionalStore<Database = DbOf<Self>> + Clone;

    /// A fresh, empty, migrated store on a database (or schema) of its own, dropped
    /// with the harness; `None` when the server is unreachable outside CI.
    fn open() -> impl Future<Output = Option<Self>> + Send;

    /// The store.
    fn store(&self) -> &Self::Store;

    /// The store's jobs table, as SQL text (qualified where needed), for the checks
    /// that read a job's row in the same statement as the job's own data.
    fn jobs_table(&self) -> String;

    /// The SQL type of a column of `ty`.
    fn column_type(ty: ColumnType) -> &'static str;

    /// The store's pool: the suites' tables live there.
    fn pool(&self) -> &Pool<DbOf<Self>> {
        TransactionalStore::pool(self.store())
    }
}

/// Runs `future` to the end on a runtime of its own (two worker threads), failing if
/// it takes longer than `limit`.
///
/// # Panics
/// When the runtime cannot be built or the future takes too long.
pub fn block_on<F: Future>(limit: Duration, future: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| panic!("the scenario took longer than {limit:?}"))
    })
}

/// A runtime with two worker threads, as the suites run on.
///
/// # Panics
/// When it cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Opens a harness and runs `test` on it; nothing when the harness has no server
/// (outside CI).
pub fn with_db<H: SqlHarness>(limit: Duration, test: impl AsyncFnOnce(&H)) {
    block_on(limit, async {
        if let Some(db) = H::open().await {
            test(&db).await;
        }
    });
}

/// Runs a property test: `cases` values of `strategy`, each given to `test` with one
/// harness opened for all of them (tables are recreated per case). Shrinks and
/// panics with the smallest failing value, as `proptest!` does.
pub fn proptest_db<H, S>(cases: u32, strategy: S, test: impl AsyncFn(&H, S::Value))
where
    H: SqlHarness,
    S: proptest::strategy::Strategy,
    S::Value: std::fmt::Debug,
{
    use proptest::test_runner::{Config, TestRunner};
    let rt = runtime();
    let Some(db) = rt.block_on(H::open()) else {
        return;
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |value| {
        rt.block_on(test(&db, value));
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// Quotes an identifier for `H`'s database.
pub fn q<H: SqlHarness>(name: &str) -> String {
    <H::Dialect as Dialect>::quote(name)
}

/// Runs one statement with key values bound to its parameters (written with
/// [`params`]); returns its rows.
///
/// # Panics
/// When the statement fails: the message names it.
pub async fn fetch<H: SqlHarness>(
    db: &H,
    sql: &str,
    values: &[KeyValue],
) -> Vec<RowOf<H::Dialect>> {
    let mut conn = db.pool().acquire().await.expect("a connection");
    fetch_on::<H>(&mut conn, sql, values).await
}

/// [`fetch`] on a given connection.
///
/// # Panics
/// When the statement fails: the message names it.
pub async fn fetch_on<H: SqlHarness>(
    conn: &mut ConnectionOf<H::Dialect>,
    sql: &str,
    values: &[KeyValue],
) -> Vec<RowOf<H::Dialect>> {
    // not kept prepared: test statements run once
    let mut query: Query<'_, H::Dialect> = sqlx::query::<DbOf<H>>(sql).persistent(false);
    for value in values {
        query = <H::Dialect as Dialect>::bind_key(query, value);
    }
    <H::Dialect as Dialect>::fetch(conn, query)
        .try_collect()
        .await
        .unwrap_or_else(|err| panic!("`{sql}` failed: {err}"))
}

/// Runs statements without parameters, one at a time.
///
/// # Panics
/// When one fails.
pub async fn execute<H: SqlHarness>(db: &H, statements: &[&str]) {
    for sql in statements {
        fetch(db, sql, &[]).await;
    }
}

/// The parameters `first..first + n` as `?, ?` or `$1, $2` for `values`.
pub fn params<H: SqlHarness>(first: usize, values: &[KeyValue]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| <H::Dialect as Dialect>::param(first + i, value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column of a test table: name, type, NOT NULL.
pub type Column<'a> = (&'a str, ColumnType, bool);

/// Drops (if present) and creates `table` with `columns`, a primary key, and plain
/// indexes — all on one connection: SQLite checks whether an index exists against
/// the connection's cached schema when it prepares `CREATE INDEX`, so on another
/// pooled connection a just-dropped index may still seem to exist.
pub async fn create_table<H: SqlHarness>(
    db: &H,
    table: &str,
    columns: &[Column<'_>],
    primary_key: &[&str],
    indexes: &[&[&str]],
) {
    let mut conn = db.pool().acquire().await.expect("a connection");
    let conn = &mut *conn;
    fetch_on::<H>(
        conn,
        &format!("DROP TABLE IF EXISTS {}", q::<H>(table)),
        &[],
    )
    .await;
    let mut defs: Vec<String> = columns
        .iter()
        .map(|(name, ty, not_null)| {
            format!(
                "{} {}{}",
                q::<H>(name),
                H::column_type(*ty),
                if *not_null { " NOT NULL" } else { "" }
            )
        })
        .collect();
    if !primary_key.is_empty() {
        let pk: Vec<String> = primary_key.iter().map(|c| q::<H>(c)).collect();
        defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    }
    fetch_on::<H>(
        conn,
        &format!("CREATE TABLE {} ({})", q::<H>(table), defs.join(", ")),
        &[],
    )
    .await;
    for (i, index) in indexes.iter().enumerate() {
        let cols: Vec<String> = index.iter().map(|c| q::<H>(c)).collect();
        fetch_on::<H>(
            conn,
            &format!(
                "CREATE INDEX {} ON {} ({})",
                q::<H>(&format!("{table}_i{i}")),
                q::<H>(table),
                cols.join(", ")
            ),
            &[],
        )
        .await;
    }
}

/// Inserts rows (values in `columns` order), a hundred per statement.
pub async fn insert<H: SqlHarness>(db: &H, table: &str, columns: &[&str], rows: &[Vec<KeyValue>]) {
    let cols: Vec<String> = columns.iter().map(|c| q::<H>(c)).collect();
    for chunk in rows.chunks(100) {
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            q::<H>(table),
            cols.join(", ")
        );
        let mut values = Vec::new();
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            // NULLs are written inline: a dialect binds no NULL parameter
            let mut parts = Vec::new();
            for value in row {
                if value.is_null() {
                    parts.push("NULL".to_string());
                } else {
                    values.push(value.clone());
                    parts.push(<H::Dialect as Dialect>::param(values.len(), value));
                }
            }
            sql.push_str(&format!("({})", parts.join(", ")));
        }
        fetch(db, &sql, &values).await;
    }
}

/// Reads an integer column of a row.
///
/// # Panics
/// When the column is missing, NULL or not an integer.
pub fn int<H: SqlHarness>(row: &RowOf<H::Dialect>, column: &str) -> i64 {
    <H::Dialect as Dialect>::row_int(row, column)
        .unwrap_or_else(|err| panic!("column `{column}`: {err}"))
        .unwrap_or_else(|| panic!("column `{column}` is NULL"))
}

/// Reads an integer column that may be NULL.
///
/// # Panics
/// When the column is missing or not an integer.
pub fn opt_int<H: SqlHarness>(row: &RowOf<H::Dialect>, column: &str) -> Option<i64> {
    <H::Dialect as Dialect>::row_int(row, column)
        .unwrap_or_else(|err| panic!("column `{column}`: {err}"))
}

/// Reads a text column.
///
/// # Panics
/// When the column is missing, NULL or not text.
pub fn text<H: SqlHarness>(row: &RowOf<H::Dialect>, column: &str) -> String {
    <H::Dialect as Dialect>::row_text(row, column)
        .unwrap_or_else(|err| panic!("column `{column}`: {err}"))
        .unwrap_or_else(|| panic!("column `{column}` is NULL"))
}

/// The `id` column of every row a query returns.
pub async fn ids_of<H: SqlHarness>(db: &H, sql: &str) -> Vec<i64> {
    fetch(db, sql, &[])
        .await
        .iter()
        .map(|row| int::<H>(row, "id"))
        .collect()
}

/// True when `CI` is set: tests that need a server fail instead of skipping.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}
