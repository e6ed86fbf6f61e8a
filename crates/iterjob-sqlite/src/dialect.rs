//! [`SqliteDialect`]: what is SQLite's own in the shared SQL layer — `?` parameters,
//! values typed by their storage class, NULL first in ascending order, the schema
//! read through `pragma_table_info` and `pragma_index_list`.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use iterjob_sql::dialect::{ConnectionOf, Query, RowOf};
use iterjob_sql::{Dialect, ErrorClass, KeyFacts, KeyValue, TableName};
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteRow, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Row, Sqlite, SqliteConnection, TypeInfo, ValueRef};

use crate::error::primary_code;

/// The largest page `Keyset::rows` grows to on SQLite unless the keyset says
/// otherwise.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 5000;

/// SQLite's [`Dialect`].
///
/// Key values keep their storage class: an `INTEGER` is a [`KeyValue::Integer`], a
/// `REAL` a [`KeyValue::Real`], `TEXT` a [`KeyValue::Text`], a `BLOB` a
/// [`KeyValue::Bytes`] — per value, as SQLite types values, not columns. Values SQLite
/// never yields but a bound may hold are bound as SQLite stores them by convention:
/// booleans as 0 and 1, uuids as 16-byte blobs, dates and times as ISO-8601 text
/// (`2024-05-01`, `2024-05-01 12:34:56.123456`), decimals as text.
///
/// NULL sorts first in ascending order (SQLite's own order, written
/// `NULLS FIRST`/`NULLS LAST` in the page queries of a nullable key).
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Database = Sqlite;
    /// SQLite types values, not columns: each value decodes by its storage class.
    type KeyKind = ();

    const NAME: &'static str = "SQLite";
    const ROW_VALUES: bool = true;
    const NULLS_FIRST: bool = true;
    const DEFAULT_MAX_PAGE_SIZE: usize = DEFAULT_MAX_PAGE_SIZE;
    // the query runs on sqlx's worker thread in this process: started early, it
    // competes with the job for the two cores (medians of alternating runs, 1M rows:
    // the walk ran at 1.06x the raw loop's speed with it, 1.17x without; BENCHMARKS.md)
    const PIPELINE_PAGES: bool = false;
    const SUPPORTED_KEY_TYPES: &'static str = "INTEGER, REAL, TEXT or BLOB";

    fn quote(name: &str) -> String {
        format!("\"{name}\"")
    }

    fn param(_n: usize, _value: &KeyValue) -> String {
        "?".to_string()
    }

    fn int_param(_n: usize) -> String {
        "?".to_string()
    }

    fn nulls_clause(descending: bool) -> &'static str {
        if descending {
            " NULLS LAST"
        } else {
            " NULLS FIRST"
        }
    }

    fn bind_key<'q>(query: Query<'q, Self>, value: &KeyValue) -> Query<'q, Self> {
        match value {
            KeyValue::Null => query.bind(None::<i64>),
            KeyValue::Bool(v) => query.bind(i64::from(*v)),
            KeyValue::Integer(v) => query.bind(*v),
            // above i64::MAX: SQLite holds it as a REAL
            KeyValue::Unsigned(v) => query.bind(*v as f64),
            KeyValue::Real(v) => query.bind(*v),
            KeyValue::Decimal(v) => query.bind(v.clone()),
            KeyValue::Text(v) => query.bind(v.clone()),
            KeyValue::Bytes(v) => query.bind(v.clone()),
            KeyValue::Uuid(v) => query.bind(v.to_vec()),
            KeyValue::Date(v) => query.bind(KeyValue::date_text(*v)),
            KeyValue::Timestamp(v) => query.bind(KeyValue::timestamp_text(*v, false)),
            KeyValue::Timestamptz(v) => query.bind(KeyValue::timestamp_text(*v, true)),
        }
    }

    fn bind_int<'q>(query: Query<'q, Self>, value: i64) -> Query<'q, Self> {
        query.bind(value)
    }

    fn key_kind(_type_info: &SqliteTypeInfo) -> Option<()> {
        Some(())
    }

    #[inline]
    fn decode_key(_kind: (), value: SqliteValueRef<'_>) -> Result<KeyValue, BoxDynError> {
        // the value's own storage class (SQLite types values, not columns), read
        // without copying its name: this runs for every row of a walk
        enum Storage {
            Integer,
            Real,
            Text,
            Blob,
        }
        let storage = match value.type_info().name() {
            "REAL" => Storage::Real,
            "TEXT" => Storage::Text,
            "BLOB" => Storage::Blob,
            _ => Storage::Integer,
        };
        Ok(match storage {
            Storage::Real => KeyValue::Real(<f64 as Decode<Sqlite>>::decode(value)?),
            Storage::Text => KeyValue::Text(<String as Decode<Sqlite>>::decode(value)?),
            Storage::Blob => KeyValue::Bytes(<Vec<u8> as Decode<Sqlite>>::decode(value)?),
            Storage::Integer => KeyValue::Integer(<i64 as Decode<Sqlite>>::decode(value)?),
        })
    }

    fn classify(err: &sqlx::Error) -> ErrorClass {
        let named = |prefix: &str| match err {
            sqlx::Error::Database(db) => db
                .message()
                .strip_prefix(prefix)
                .map(|name| name.trim().to_string()),
            _ => None,
        };
        if let Some(table) = named("no such table:") {
            return ErrorClass::MissingTable(table);
        }
        if let Some(column) = named("no such column:") {
            // SQLite names qualified columns `table.column`; the column is what matters
            let column = column.rsplit('.').next().unwrap_or(&column).to_string();
            return ErrorClass::MissingColumn(column);
        }
        match (err, primary_code(err)) {
            (sqlx::Error::WorkerCrashed, _) => ErrorClass::ConnectionLost,
            // SQLITE_ERROR: an SQL mistake, e.g. a syntax error in the filter
            (_, Some(1)) => ErrorClass::Permanent,
            // busy, locked, I/O, full, and everything that is not a database error
            // (a pool timeout): worth a retry
            _ => ErrorClass::Transient,
        }
    }

    /// Collects the whole result before handing out its rows. A statement of
    /// SQLite's stays active until it has run to its end, and while it is, its
    /// connection holds a read transaction: a walk dropped mid-page (an interrupted
    /// job) would give the pool back a connection whose next statements, whoever
    /// runs them, still read the old snapshot (and cannot write). Pages are bounded
    /// ([`DEFAULT_MAX_PAGE_SIZE`]), so collecting costs little memory.
    fn fetch<'e, 'q: 'e>(
        conn: &'e mut SqliteConnection,
        query: Query<'q, Self>,
    ) -> BoxStream<'e, Result<SqliteRow, sqlx::Error>> {
        futures::stream::once(query.fetch_all(conn))
            .flat_map(|result| match result {
                Ok(rows) => futures::stream::iter(rows.into_iter().map(Ok)).left_stream(),
                Err(err) => futures::stream::iter([Err(err)]).right_stream(),
            })
            .boxed()
    }

    fn key_facts<'c>(
        conn: &'c mut ConnectionOf<Self>,
        table: &'c TableName,
        keys: &'c [String],
    ) -> BoxFuture<'c, Result<Option<KeyFacts>, sqlx::Error>> {
        key_facts(conn, table, keys).boxed()
    }

    #[inline]
    fn int_key(row: &SqliteRow, index: usize, _kind: ()) -> Option<i64> {
        let value = row.try_get_raw(index).ok()?;
        if value.is_null() || value.type_info().name() != "INTEGER" {
            return None;
        }
        <i64 as Decode<Sqlite>>::decode(value).ok()
    }

    #[inline]
    fn value_at(row: &SqliteRow, index: usize) -> Result<SqliteValueRef<'_>, sqlx::Error> {
        row.try_get_raw(index)
    }

    fn row_int(row: &RowOf<Self>, column: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }

    fn row_text(row: &RowOf<Self>, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }

    fn row_flag(row: &RowOf<Self>, column: &str) -> Result<bool, sqlx::Error> {
        Ok(row.try_get::<i64, _>(column)? != 0)
    }

    fn row_json(row: &RowOf<Self>, column: &str) -> Result<Option<Value>, sqlx::Error> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

/// Reads `table`'s columns and unique indexes from SQLite's pragmas.
async fn key_facts(
    conn: &mut SqliteConnection,
    table: &TableName,
    keys: &[String],
) -> Result<Option<KeyFacts>, sqlx::Error> {
    let schema = table.schema.as_deref().unwrap_or("main");
    // (name, notnull, pk position, declared type)
    let columns: Vec<(String, i64, i64, String)> =
        sqlx::query_as(r#"SELECT name, "notnull", pk, type FROM pragma_table_info(?1, ?2)"#)
            .bind(&table.name)
            .bind(schema)
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
    if columns.is_empty() {
        return Ok(None);
    }
    let column = |key: &str| columns.iter().find(|c| c.0.eq_ignore_ascii_case(key));
    let mut primary_key: Vec<(i64, String)> = columns
        .iter()
        .filter(|c| c.2 > 0)
        .map(|c| (c.2, c.0.clone()))
        .collect();
    primary_key.sort();
    let primary_key: Vec<String> = primary_key.into_iter().map(|(_, name)| name).collect();
    // An INTEGER PRIMARY KEY is the rowid: never NULL, unique, and in no index list.
    let rowid_alias = match primary_key.as_slice() {
        [only] => column(only)
            .filter(|c| c.3.eq_ignore_ascii_case("INTEGER"))
            .map(|c| c.0.clone()),
        _ => None,
    };
    let not_null = |name: &str| {
        column(name).is_some_and(|c| c.1 != 0)
            || rowid_alias
                .as_deref()
                .is_some_and(|alias| alias.eq_ignore_ascii_case(name))
    };
    let nullable = keys.iter().map(|key| !not_null(key)).collect();
    let in_keys = |name: &str| keys.iter().any(|k| k.eq_ignore_ascii_case(name));

    let mut unique = rowid_alias.as_deref().is_some_and(in_keys);
    // (index name, unique, partial)
    let indexes: Vec<(String, i64, i64)> =
        sqlx::query_as(r#"SELECT name, "unique", partial FROM pragma_index_list(?1, ?2)"#)
            .bind(&table.name)
            .bind(schema)
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
    for (index, is_unique, partial) in indexes {
        if unique || is_unique == 0 || partial != 0 {
            continue;
        }
        // a NULL name is an expression: such an index vouches for nothing
        let index_columns: Vec<(Option<String>,)> =
            sqlx::query_as("SELECT name FROM pragma_index_info(?1, ?2)")
                .bind(&index)
                .bind(schema)
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
        unique = !index_columns.is_empty()
            && index_columns.iter().all(|(name,)| {
                name.as_deref()
                    .is_some_and(|name| in_keys(name) && not_null(name))
            });
    }
    Ok(Some(KeyFacts {
        nullable,
        unique,
        primary_key,
    }))
}
