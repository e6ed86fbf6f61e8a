//! [`Dialect`]: what really differs between the SQL databases under iterjob, as a
//! small trait each store crate implements for its database.
//!
//! Everything else — the keyset plan, the walk, transactional iteration, decoding job
//! rows — is written once in this crate, generic over a dialect. A dialect says how
//! to write a parameter and quote a name, whether composite keys compare as one row
//! value, where NULL sorts, how key columns decode into [`KeyValue`]s and bind back,
//! what the schema says about a table's keys, which errors are worth a retry, and it
//! runs queries (so generic code needs no executor bounds).

use std::fmt;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::Database;
use sqlx::error::BoxDynError;

use crate::keyset::KeyValue;

/// A query on the dialect's database with its arguments.
pub type Query<'q, D> = sqlx::query::Query<
    'q,
    <D as Dialect>::Database,
    <<D as Dialect>::Database as Database>::Arguments<'q>,
>;

/// A row of the dialect's database.
pub type RowOf<D> = <<D as Dialect>::Database as Database>::Row;

/// A connection of the dialect's database.
pub type ConnectionOf<D> = <<D as Dialect>::Database as Database>::Connection;

/// The rows of a statement's results, from sqlx's `Executor::fetch_many` stream
/// (each result's rows, then its summary): what `Executor::fetch` gives, without the
/// future that `fetch` makes and polls for every row to drop the summaries. In a
/// profile of a PostgreSQL keyset walk, `fetch`'s filter took 6 % of the client's
/// samples and this adapter takes half as many. For [`Dialect::fetch`].
pub fn rows_only<'e, R: Send + 'e, S: Send + 'e>(
    results: BoxStream<'e, Result<sqlx::Either<S, R>, sqlx::Error>>,
) -> BoxStream<'e, Result<R, sqlx::Error>> {
    Box::pin(RowsOnly(results))
}

/// See [`rows_only`].
struct RowsOnly<'e, S, R>(BoxStream<'e, Result<sqlx::Either<S, R>, sqlx::Error>>);

impl<S, R> futures::Stream for RowsOnly<'_, S, R> {
    type Item = Result<R, sqlx::Error>;

    #[inline]
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            match std::task::ready!(self.0.as_mut().poll_next(cx)) {
                // a statement's summary: its rows came before it
                Some(Ok(sqlx::Either::Left(_))) => {}
                Some(Ok(sqlx::Either::Right(row))) => return Poll::Ready(Some(Ok(row))),
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// What an error means for whoever met it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The connection was gone (closed by the server, a network cut, a restart): the
    /// statement did not run, and may run again on another connection.
    ConnectionLost,
    /// Retrying later may help: busy, locked, overloaded, a conflict, disk full.
    Transient,
    /// A table (or view) the statement names does not exist (its name as the
    /// database wrote it).
    MissingTable(String),
    /// A column the statement names does not exist.
    MissingColumn(String),
    /// Anything else: a mistake in the SQL or the data; a retry fails the same way.
    Permanent,
}

impl ErrorClass {
    /// True for [`ErrorClass::ConnectionLost`] and [`ErrorClass::Transient`].
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorClass::ConnectionLost | ErrorClass::Transient)
    }
}

/// What the schema says about a keyset's key columns on a table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFacts {
    /// Per key column, in key order: true when the column may hold NULL.
    pub nullable: Vec<bool>,
    /// True when the primary key or a unique index (not partial, not on expressions,
    /// not on prefixes of the columns) has all its columns among the key columns,
    /// each NOT NULL: then no two rows can have the same key.
    pub unique: bool,
    /// The table's primary key columns, for a suggestion when the key turns out not
    /// to be unique (empty when it has none).
    pub primary_key: Vec<String>,
}

/// A table a keyset walks, as given: an optional schema and the table's name (both
/// plain identifiers, already checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    /// The schema (PostgreSQL), database (MySQL) or attached database (SQLite), if
    /// given.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What differs between SQL databases, for the shared SQL layer. Implemented by each
/// store crate on a marker type (`Sqlite`, `Pg`, `MySql` dialects).
///
/// Not a stable API for outsiders: it changes as the stores need.
pub trait Dialect: Send + Sync + Sized + 'static {
    /// The sqlx database.
    type Database: Database + sqlx::database::HasStatementCache;

    /// How one key column's values decode, resolved once per walk from the columns of
    /// the first row.
    type KeyKind: Copy + fmt::Debug + Send + Sync + Unpin + 'static;

    /// The database's name for messages: `SQLite`, `PostgreSQL`, `MySQL`.
    const NAME: &'static str;

    /// Composite keys are compared as one row value, `(a, b) > (?, ?)`, which this
    /// database turns into an index range scan. When false, the comparison is
    /// written out, `a >= ? AND (a > ? OR (a = ? AND b > ?))` (MariaDB scans the
    /// whole index for a row-value comparison).
    const ROW_VALUES: bool;

    /// In an ascending `ORDER BY`, NULL sorts before every value (SQLite, MySQL);
    /// false when it sorts after them (PostgreSQL). Walks keep the database's own
    /// order, which its indexes store, so a nullable key still walks an index.
    const NULLS_FIRST: bool;

    /// The largest page `rows` grows to unless the keyset says otherwise.
    const DEFAULT_MAX_PAGE_SIZE: usize;

    /// Whether `rows` sends the next page's query as soon as the current page has
    /// arrived, on the held connection, so the server works on it while the job goes
    /// through the rest of the page. Right for a server in another process; an
    /// embedded database (SQLite) runs the query on a thread of this process that
    /// would compete with the job for the same cores, so it waits.
    const PIPELINE_PAGES: bool = true;

    /// The key column types a cursor can hold, for the message of an unsupported one.
    const SUPPORTED_KEY_TYPES: &'static str;

    /// Quotes a (validated) identifier: `"name"` or `` `name` ``.
    fn quote(name: &str) -> String;

    /// The text of parameter `n` (1-based, in the order parameters are bound) that
    /// will be bound to `value` (never NULL: NULLs are written as `IS NULL`), with a
    /// cast where the database needs one to compare as the column's type.
    fn param(n: usize, value: &KeyValue) -> String;

    /// The text of an integer parameter `n` (a `LIMIT` or `OFFSET`).
    fn int_param(n: usize) -> String;

    /// What follows `ASC`/`DESC` in an `ORDER BY` on a nullable key to state where
    /// NULL goes (`" NULLS FIRST"`), or `""` where the syntax does not exist and
    /// [`Dialect::NULLS_FIRST`] is the database's own, documented, order.
    fn nulls_clause(descending: bool) -> &'static str;

    /// Binds a key value (never NULL).
    fn bind_key<'q>(query: Query<'q, Self>, value: &KeyValue) -> Query<'q, Self>;

    /// Binds an integer.
    fn bind_int<'q>(query: Query<'q, Self>, value: i64) -> Query<'q, Self>;

    /// How values of a column of this type decode into a cursor; `None` for a type
    /// a cursor cannot hold.
    fn key_kind(type_info: &<Self::Database as Database>::TypeInfo) -> Option<Self::KeyKind>;

    /// Decodes a (non-NULL) key value.
    fn decode_key(
        kind: Self::KeyKind,
        value: <Self::Database as Database>::ValueRef<'_>,
    ) -> Result<KeyValue, BoxDynError>;

    /// What an error from this database means.
    fn classify(err: &sqlx::Error) -> ErrorClass;

    /// Runs a query on a connection, streaming its rows.
    fn fetch<'e, 'q: 'e>(
        conn: &'e mut ConnectionOf<Self>,
        query: Query<'q, Self>,
    ) -> BoxStream<'e, Result<RowOf<Self>, sqlx::Error>>;

    /// What the schema says about `keys` on `table`; `None` when the table is not
    /// found (the walk's own query then names it) or the database cannot tell.
    fn key_facts<'c>(
        conn: &'c mut ConnectionOf<Self>,
        table: &'c TableName,
        keys: &'c [String],
    ) -> BoxFuture<'c, Result<Option<KeyFacts>, sqlx::Error>>;

    /// The fast path of a walk's most common key, one integer column: its value in
    /// column `index` of a row when the column is of an integer `kind`, not NULL,
    /// and in a form read without any check that can fail; `None` sends the row's
    /// key through [`Dialect::value_at`] and [`Dialect::decode_key`], which decode
    /// every kind and say what is wrong. Measured on PostgreSQL, the general path
    /// was 13 % of a keyset walk's client time.
    #[inline]
    fn int_key(row: &RowOf<Self>, index: usize, kind: Self::KeyKind) -> Option<i64> {
        let _ = (row, index, kind);
        None
    }

    /// The raw value in column `index` of a row.
    fn value_at(
        row: &RowOf<Self>,
        index: usize,
    ) -> Result<<Self::Database as Database>::ValueRef<'_>, sqlx::Error>;

    /// Reads an integer column (of any width) of a store's row.
    fn row_int(row: &RowOf<Self>, column: &str) -> Result<Option<i64>, sqlx::Error>;

    /// Reads a text column of a store's row.
    fn row_text(row: &RowOf<Self>, column: &str) -> Result<Option<String>, sqlx::Error>;

    /// Reads a boolean column (however the database stores it) of a store's row.
    fn row_flag(row: &RowOf<Self>, column: &str) -> Result<bool, sqlx::Error>;

    /// Reads a JSON column (however the database stores it) of a store's row.
    fn row_json(row: &RowOf<Self>, column: &str) -> Result<Option<serde_json::Value>, sqlx::Error>;
}
