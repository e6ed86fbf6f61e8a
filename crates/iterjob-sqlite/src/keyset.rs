//! [`Keyset`]: an enumerator over the rows of an SQLite table or query, in key order,
//! resumable from the key of the last row done.
//!
//! See [`Keyset`].

use std::fmt;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{Stream, StreamExt};
use iterjob::JobError;
use iterjob::enumerator::Enumerator;
use iterjob::partition::KeyRange;
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Column, Decode, Row, Sqlite, TypeInfo, ValueRef};

use crate::error::primary_code;

/// The largest page [`Keyset::rows`] grows to unless [`Keyset::max_page_size`] says
/// otherwise.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 5000;

/// Rows per page unless [`Keyset::batch_size`] says otherwise.
///
/// Each page costs a query (a pool checkout and a round trip to the connection's
/// thread), so bulk scans run faster with bigger pages: from 1 000 rows a page, a walk
/// keeps up with a single streaming `SELECT … ORDER BY key`. Small pages hold fewer
/// rows in memory and see fresher data when the job's work is slow. A pool built with
/// `test_before_acquire(false)` (as [`SqliteStore::connect`](crate::SqliteStore::connect)'s
/// is) saves a ping per page.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// One key value of a row, with its SQLite storage class.
///
/// Serialized as plain JSON (`42`, `1.5`, `"2024-05-01"`, `null`, `[1, 2]` for a
/// blob); a real always carries a fraction or exponent (`3.0`), so it reads back as a
/// real, and an integer as an integer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyValue {
    /// SQL NULL (never the key of a row; allowed in bounds for completeness).
    Null,
    /// An INTEGER.
    Integer(i64),
    /// A REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// A BLOB.
    Blob(Vec<u8>),
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Null => f.write_str("NULL"),
            KeyValue::Integer(v) => write!(f, "{v}"),
            KeyValue::Real(v) => write!(f, "{v:?}"),
            KeyValue::Text(v) => write!(f, "{v:?}"),
            KeyValue::Blob(v) => write!(f, "blob of {} bytes", v.len()),
        }
    }
}

impl From<i64> for KeyValue {
    fn from(v: i64) -> Self {
        KeyValue::Integer(v)
    }
}

impl From<i32> for KeyValue {
    fn from(v: i32) -> Self {
        KeyValue::Integer(v.into())
    }
}

impl From<f64> for KeyValue {
    fn from(v: f64) -> Self {
        KeyValue::Real(v)
    }
}

impl From<String> for KeyValue {
    fn from(v: String) -> Self {
        KeyValue::Text(v)
    }
}

impl From<&str> for KeyValue {
    fn from(v: &str) -> Self {
        KeyValue::Text(v.to_string())
    }
}

impl From<Vec<u8>> for KeyValue {
    fn from(v: Vec<u8>) -> Self {
        KeyValue::Blob(v)
    }
}

/// The cursor of a [`Keyset`] walk: the key values of the last row done, one per key
/// column, in key order. Serializes as a JSON array, e.g. `["2024-05-01", 1041]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeysetCursor(pub Vec<KeyValue>);

impl KeysetCursor {
    /// A cursor (or bound) from key values, in key order.
    pub fn new(values: impl IntoIterator<Item = impl Into<KeyValue>>) -> Self {
        KeysetCursor(values.into_iter().map(Into::into).collect())
    }

    /// The key values, in key order.
    pub fn values(&self) -> &[KeyValue] {
        &self.0
    }
}

impl<T: Into<KeyValue>> From<T> for KeysetCursor {
    /// A one-column key.
    fn from(value: T) -> Self {
        KeysetCursor(vec![value.into()])
    }
}

/// Why a [`Keyset`] walk cannot go on. Configuration mistakes and SQL errors reach the
/// job as [`JobError::Fatal`] (a retry would fail the same way); a busy or failing
/// database as [`JobError::Retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysetError {
    /// A table or column name is not a plain SQL identifier.
    #[error(
        "invalid {what} name `{name}` for a keyset enumerator: use a plain SQL identifier \
         (ASCII letters, digits and `_`, not starting with a digit{schema_hint})"
    )]
    InvalidIdentifier {
        /// `table`, `key column` or `column`.
        what: &'static str,
        /// The name given.
        name: String,
        /// Extra help for tables.
        schema_hint: &'static str,
    },

    /// No key column was given.
    #[error(
        "keyset enumerator over {relation} has no key column; call `.key(\"id\")` or `.keys([...])`"
    )]
    NoKey {
        /// The table or query.
        relation: String,
    },

    /// A key column was given twice.
    #[error("keyset enumerator over {relation}: key column `{column}` is given twice")]
    DuplicateKey {
        /// The table or query.
        relation: String,
        /// The repeated column.
        column: String,
    },

    /// The batch size is 0.
    #[error("keyset enumerator over {relation}: batch size must be at least 1")]
    ZeroBatchSize {
        /// The table or query.
        relation: String,
    },

    /// A cursor or bound has a different number of values than there are key columns.
    #[error(
        "keyset enumerator over {relation}: the {what} has {got} key value(s) but the keyset has \
         {expected} key column(s) ({keys}); was it saved by a job with other key columns?"
    )]
    CursorMismatch {
        /// The table or query.
        relation: String,
        /// `cursor`, `start bound` or `end bound`.
        what: &'static str,
        /// Key columns.
        expected: usize,
        /// Values in the cursor.
        got: usize,
        /// The key columns, comma separated.
        keys: String,
    },

    /// The table does not exist.
    #[error("keyset enumerator over {relation}: table `{table}` does not exist in the database")]
    MissingTable {
        /// The table or query.
        relation: String,
        /// The missing table, as SQLite named it.
        table: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A key, selected or filtered column does not exist.
    #[error(
        "keyset enumerator over {relation}: column `{column}` does not exist (check the key \
         columns, `.columns(...)` and the filter)"
    )]
    MissingColumn {
        /// The table or query.
        relation: String,
        /// The missing column, as SQLite named it.
        column: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A row's key is NULL: keyset keys must be NOT NULL.
    #[error(
        "keyset enumerator over {relation}: key column `{column}` is NULL in a row; keyset keys \
         must be NOT NULL (a NULL key cannot be compared, so rows after it would be skipped)"
    )]
    NullKey {
        /// The table or query.
        relation: String,
        /// The key column.
        column: String,
    },

    /// A row could not be decoded (by [`Keyset::rows_as`] or a key of an odd type).
    #[error("keyset enumerator over {relation}: cannot decode a row: {source}")]
    Decode {
        /// The table or query.
        relation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The query failed.
    #[error("keyset enumerator over {relation}: query failed: {source}")]
    Database {
        /// The table or query.
        relation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl KeysetError {
    /// True when retrying later may help (the database was busy or failed), false for
    /// mistakes in the keyset's definition or the data.
    pub fn is_retryable(&self) -> bool {
        match self {
            KeysetError::Database { source, .. } => !matches!(
                primary_code(source),
                Some(1) // SQLITE_ERROR: SQL logic error, e.g. a syntax error in the filter
            ),
            _ => false,
        }
    }

    fn into_job_error(self) -> JobError {
        if self.is_retryable() {
            JobError::retryable(self)
        } else {
            JobError::fatal(self)
        }
    }
}

#[derive(Clone, Debug)]
enum Source {
    Table(String),
    Query(String),
}

#[derive(Clone, Debug)]
struct Bound {
    key: KeysetCursor,
    inclusive: bool,
}

/// A keyset enumerator over an SQLite table or query: rows in key order, resumable
/// from the last row's key.
///
/// Each page is one query,
///
/// ```sql
/// SELECT … FROM products
/// WHERE (created_at, id) > (?, ?)      -- the cursor: the last row's key
///   AND (archived = 0)                 -- the filter, if any
///   AND (created_at, id) <= (?, ?)     -- the upper bound, if any
/// ORDER BY created_at, id
/// LIMIT ?                              -- the batch size
/// ```
///
/// never `OFFSET`: every page is an index seek, however deep into the table, and rows
/// inserted or deleted behind the cursor cannot shift the walk. A page shorter than the
/// batch size ends the walk without another query. The walk keeps one pooled
/// connection from page to page (see [`Keyset::hold_connection`]) but no
/// transaction, so the job's own work can write through the same pool (and the same
/// database file) while it walks, given a pool of two connections or more.
///
/// The key columns must identify a row (end with a unique column such as the primary
/// key, as in `.keys(["created_at", "id"])`) and must not be NULL: a row with a NULL
/// key ends the walk with an error rather than silently skipping rows after it. An
/// index on the key columns, in that order, makes each page a seek.
///
/// The cursor ([`KeysetCursor`]) holds the last row's key values with their SQLite
/// storage class — integers stay integers, text stays text — so the next page's
/// comparison is the same one `ORDER BY` made.
///
/// ```no_run
/// use futures::TryStreamExt;
/// use iterjob_sqlite::{Keyset, KeysetCursor};
/// use sqlx::Row;
///
/// # async fn demo(pool: sqlx::SqlitePool, saved: Option<KeysetCursor>) -> Result<(), iterjob::JobError> {
/// let products = Keyset::table("products")
///     .keys(["created_at", "id"])
///     .columns(["id", "name", "price"])
///     .filter("archived = 0")
///     .batch_size(500);
/// let mut rows = std::pin::pin!(products.rows(&pool, saved));
/// while let Some((row, cursor)) = rows.try_next().await? {
///     let name: String = row.get("name");
///     // … work on the row, then checkpoint `cursor` now and then
/// #   let _ = (name, cursor);
/// }
/// # Ok(())
/// # }
/// ```
///
/// Table, key and column names are checked to be plain identifiers. The
/// [`filter`](Keyset::filter) and [`query`](Keyset::query) are SQL text inserted as
/// given: they must come from the job's code, **never from user input**.
#[derive(Clone, Debug)]
pub struct Keyset {
    source: Source,
    keys: Vec<String>,
    columns: Option<Vec<String>>,
    filter: Option<String>,
    descending: bool,
    batch_size: usize,
    max_page_size: usize,
    start: Option<KeysetCursor>,
    end: Option<Bound>,
    hold_connection: bool,
}

impl Keyset {
    /// Walks the table `name` (`table` or `schema.table`).
    pub fn table(name: impl Into<String>) -> Self {
        Self::new(Source::Table(name.into()))
    }

    /// Walks the result of a `SELECT` (for example a join), which must return the key
    /// columns by name. It is used as a subquery (`SELECT … FROM (query) AS
    /// iterjob_keyset WHERE …`), and SQLite pushes the key conditions into it.
    /// Trusted SQL from the job's code: never build it from user input. It must not
    /// contain bind parameters.
    pub fn query(sql: impl Into<String>) -> Self {
        Self::new(Source::Query(sql.into()))
    }

    fn new(source: Source) -> Self {
        Keyset {
            source,
            keys: Vec::new(),
            columns: None,
            filter: None,
            descending: false,
            batch_size: DEFAULT_BATCH_SIZE,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            start: None,
            end: None,
            hold_connection: true,
        }
    }

    /// Whether the walk keeps one pooled connection from page to page (default on),
    /// instead of acquiring one for every page: with small pages the acquire costs as
    /// much as the query. No transaction stays open between pages, so writers are
    /// never blocked; but a job that writes through the same pool needs a pool of at
    /// least two connections (the stores' pools have more). Turn it off for a pool of
    /// one.
    pub fn hold_connection(mut self, on: bool) -> Self {
        self.hold_connection = on;
        self
    }

    /// Orders and resumes by this one column (usually the primary key).
    pub fn key(mut self, column: impl Into<String>) -> Self {
        self.keys = vec![column.into()];
        self
    }

    /// Orders and resumes by these columns, compared as a row value `(a, b) > (?, ?)`;
    /// the last should be unique (ties on the leading columns are then walked exactly).
    pub fn keys<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.keys = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Selects these columns (the key columns are added at the end when missing);
    /// without it, every column (`*`).
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Walks only the rows matching this SQL condition, e.g. `"archived = 0"`. Trusted
    /// SQL from the job's code, inserted as given: never build it from user input. It
    /// must not contain bind parameters, and should name columns without a table
    /// qualifier.
    pub fn filter(mut self, condition: impl Into<String>) -> Self {
        self.filter = Some(condition.into());
        self
    }

    /// Walks from the highest key down.
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Rows per query (default [`DEFAULT_BATCH_SIZE`]): exactly the size of each
    /// page [`batches`](Keyset::batches) yields, and the first page of
    /// [`rows`](Keyset::rows). Changing it between runs is safe: the cursor is a
    /// row's key, not a page number.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// The largest page [`rows`](Keyset::rows) fetches (default
    /// [`DEFAULT_MAX_PAGE_SIZE`]). `rows` yields one row at a time, so the page is only
    /// a fetch size: it starts at the batch size and doubles with every full page up
    /// to this, so a long walk makes few round trips while a short one reads little.
    /// It bounds the rows held in memory and how far ahead of the work the walk reads.
    pub fn max_page_size(mut self, rows: usize) -> Self {
        self.max_page_size = rows;
        self
    }

    /// Starts just after this key (exclusive): the walk covers keys `> start` (`<`
    /// when descending). A resume cursor given to [`rows`](Keyset::rows) or
    /// [`batches`](Keyset::batches) takes its place.
    pub fn after(mut self, start: impl Into<KeysetCursor>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Stops after this key (inclusive): the walk covers keys `<= end` (`>=` when
    /// descending). With [`after`](Keyset::after), splits a table into ranges
    /// `(a, b]`, `(b, c]`, … that together cover it exactly once.
    pub fn until(mut self, end: impl Into<KeysetCursor>) -> Self {
        self.end = Some(Bound {
            key: end.into(),
            inclusive: true,
        });
        self
    }

    /// Stops before this key (exclusive): the walk covers keys `< end` (`>` when
    /// descending).
    pub fn until_exclusive(mut self, end: impl Into<KeysetCursor>) -> Self {
        self.end = Some(Bound {
            key: end.into(),
            inclusive: false,
        });
        self
    }

    /// Checks the definition without touching the database: identifiers, key count,
    /// batch size and bounds. [`rows`](Keyset::rows) and [`batches`](Keyset::batches)
    /// yield the same error as their first item.
    ///
    /// # Errors
    /// The first mistake found.
    pub fn check(&self) -> Result<(), KeysetError> {
        self.plan(None).map(|_| ())
    }

    /// The query for pages after a cursor (the one that runs for every page but the
    /// first), for logging or `EXPLAIN QUERY PLAN`. Parameters: the cursor's key
    /// values, the end bound's key values (if any), then the batch size.
    ///
    /// # Errors
    /// As [`Keyset::check`].
    pub fn sql(&self) -> Result<String, KeysetError> {
        Ok(self.plan(None)?.next_sql.clone())
    }

    /// Divides the walk into at most `n` key ranges holding about the same number of
    /// rows, cut at quantiles of the key: SQLite counts the rows, then finds the key at
    /// each cut with `LIMIT 1 OFFSET` over the key's index (no row leaves the
    /// database). For [`Job::partition`](iterjob::Job::partition); apply a range with
    /// [`Keyset::range`]. Same result as
    /// [`partition::quantile_ranges`](iterjob::partition::quantile_ranges) over
    /// [`rows`](Keyset::rows), many times faster on a big table.
    ///
    /// # Errors
    /// As the walk's first page would fail: a bad definition, a missing table or column.
    pub async fn quantile_ranges(
        &self,
        pool: &SqlitePool,
        n: u32,
    ) -> Result<Vec<KeyRange<KeysetCursor>>, JobError> {
        if n <= 1 {
            return Ok(if n == 1 {
                vec![KeyRange::all()]
            } else {
                Vec::new()
            });
        }
        let plan = self.plan(None).map_err(KeysetError::into_job_error)?;
        let lower = self.start.as_ref();
        let total = plan
            .count(pool, lower)
            .await
            .map_err(KeysetError::into_job_error)?;
        if total == 0 {
            return Ok(Vec::new());
        }
        let parts = u64::from(n).min(total);
        let mut bounds = Vec::new();
        for i in 1..parts {
            // the row closing part i is the (total * i / parts)-th, 1-based
            let offset = total * i / parts - 1;
            if let Some(key) = plan
                .nth(pool, lower, offset)
                .await
                .map_err(KeysetError::into_job_error)?
            {
                bounds.push(key);
            }
        }
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut after = None;
        for bound in bounds {
            ranges.push(KeyRange {
                after: after.take(),
                until: Some(bound.clone()),
            });
            after = Some(bound);
        }
        ranges.push(KeyRange { after, until: None });
        Ok(ranges)
    }

    /// The key in the middle of the rows left after `cursor` (within the walk's
    /// bounds), for [`Job::split`](iterjob::Job::split) with [`KeyRange::split_at`];
    /// `None` when fewer than 2 rows are left. Counted and found by SQLite, as
    /// [`Keyset::quantile_ranges`].
    ///
    /// # Errors
    /// As [`Keyset::quantile_ranges`].
    pub async fn midpoint(
        &self,
        pool: &SqlitePool,
        cursor: Option<&KeysetCursor>,
    ) -> Result<Option<KeysetCursor>, JobError> {
        let plan = self.plan(cursor).map_err(KeysetError::into_job_error)?;
        let lower = cursor.or(self.start.as_ref());
        let left = plan
            .count(pool, lower)
            .await
            .map_err(KeysetError::into_job_error)?;
        if left < 2 {
            return Ok(None);
        }
        plan.nth(pool, lower, left / 2 - 1)
            .await
            .map_err(KeysetError::into_job_error)
    }

    /// Narrows the walk to `range`: keys after `range.after` (when set) up to and
    /// including `range.until` (when set); bounds it leaves unset stay as they are.
    pub fn range(mut self, range: &KeyRange<KeysetCursor>) -> Self {
        if let Some(after) = &range.after {
            self = self.after(after.clone());
        }
        if let Some(until) = &range.until {
            self = self.until(until.clone());
        }
        self
    }

    /// The rows, one at a time, each with the cursor just past it, from `cursor` (a
    /// saved cursor; `None` starts at the beginning, or [`after`](Keyset::after)).
    pub fn rows(
        &self,
        pool: &SqlitePool,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<SqliteRow, KeysetCursor> + use<> {
        Rows {
            walker: Walker::new(self, pool, cursor, self.max_page_size.max(self.batch_size)),
            page: Vec::new().into_iter(),
        }
    }

    /// The rows decoded into `T` (any [`sqlx::FromRow`], e.g. `#[derive(sqlx::FromRow)]`),
    /// one at a time, each with the cursor just past it. A row that does not decode
    /// is a fatal error naming the column.
    pub fn rows_as<T>(
        &self,
        pool: &SqlitePool,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<T, KeysetCursor> + use<T>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + 'static,
    {
        let relation = self.relation();
        self.rows(pool, cursor).map(move |step| {
            let (row, cursor) = step?;
            let item = T::from_row(&row).map_err(|source| {
                JobError::fatal(KeysetError::Decode {
                    relation: relation.clone(),
                    source,
                })
            })?;
            Ok((item, cursor))
        })
    }

    /// The rows a page at a time (up to the batch size each), each page with the
    /// cursor of its last row.
    pub fn batches(
        &self,
        pool: &SqlitePool,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<Vec<SqliteRow>, KeysetCursor> + use<> {
        Batches {
            walker: Walker::new(self, pool, cursor, self.batch_size),
        }
    }

    /// How errors name this keyset: ``table `products` `` or `query`.
    fn relation(&self) -> String {
        match &self.source {
            Source::Table(name) => format!("table `{name}`"),
            Source::Query(_) => "query".to_string(),
        }
    }

    /// Checks the definition and builds the SQL.
    fn plan(&self, cursor: Option<&KeysetCursor>) -> Result<Plan, KeysetError> {
        let relation = self.relation();
        let invalid = |what: &'static str, name: &str, schema_hint: &'static str| {
            KeysetError::InvalidIdentifier {
                what,
                name: name.to_string(),
                schema_hint,
            }
        };
        let (from, qualifier) = match &self.source {
            Source::Table(name) => {
                let parts: Vec<&str> = name.split('.').collect();
                if parts.len() > 2 || !parts.iter().all(|p| is_identifier(p)) {
                    return Err(invalid("table", name, "; `schema.table` is allowed"));
                }
                let quoted = parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(".");
                (quoted.clone(), quoted)
            }
            Source::Query(sql) => (
                format!("({sql}) AS iterjob_keyset"),
                "iterjob_keyset".to_string(),
            ),
        };
        if self.keys.is_empty() {
            return Err(KeysetError::NoKey { relation });
        }
        for (i, key) in self.keys.iter().enumerate() {
            if !is_identifier(key) {
                return Err(invalid("key column", key, ""));
            }
            if self.keys[..i].iter().any(|k| k.eq_ignore_ascii_case(key)) {
                return Err(KeysetError::DuplicateKey {
                    relation,
                    column: key.clone(),
                });
            }
        }
        if let Some(columns) = &self.columns
            && let Some(bad) = columns.iter().find(|c| !is_identifier(c))
        {
            return Err(invalid("column", bad, ""));
        }
        if self.batch_size == 0 {
            return Err(KeysetError::ZeroBatchSize { relation });
        }
        let check_len = |what: &'static str, key: &KeysetCursor| {
            if key.0.len() == self.keys.len() {
                Ok(())
            } else {
                Err(KeysetError::CursorMismatch {
                    relation: relation.clone(),
                    what,
                    expected: self.keys.len(),
                    got: key.0.len(),
                    keys: self.keys.join(", "),
                })
            }
        };
        if let Some(cursor) = cursor {
            check_len("cursor", cursor)?;
        }
        if let Some(start) = &self.start {
            check_len("start bound", start)?;
        }
        if let Some(end) = &self.end {
            check_len("end bound", &end.key)?;
        }

        let column = |name: &str| format!("{qualifier}.{}", quote(name));
        let select = match &self.columns {
            None => "*".to_string(),
            Some(columns) => {
                let missing_keys = self
                    .keys
                    .iter()
                    .filter(|k| !columns.iter().any(|c| c.eq_ignore_ascii_case(k)));
                columns
                    .iter()
                    .chain(missing_keys)
                    .map(|c| column(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let key_list = self.keys.iter().map(|k| column(k)).collect::<Vec<_>>();
        let (key_expr, params) = if key_list.len() == 1 {
            (key_list[0].clone(), "?".to_string())
        } else {
            (
                format!("({})", key_list.join(", ")),
                format!("({})", vec!["?"; key_list.len()].join(", ")),
            )
        };
        let (after_op, end_op) = match (self.descending, self.end.as_ref().map(|e| e.inclusive)) {
            (false, inclusive) => (">", if inclusive == Some(true) { "<=" } else { "<" }),
            (true, inclusive) => ("<", if inclusive == Some(true) { ">=" } else { ">" }),
        };
        let direction = if self.descending { " DESC" } else { "" };
        let order = key_list
            .iter()
            .map(|k| format!("{k}{direction}"))
            .collect::<Vec<_>>()
            .join(", ");

        let build_with = |with_lower: bool, select: &str, tail: &str| {
            let mut conditions = Vec::new();
            if with_lower {
                conditions.push(format!("{key_expr} {after_op} {params}"));
            }
            if let Some(filter) = &self.filter {
                conditions.push(format!("({filter})"));
            }
            if self.end.is_some() {
                conditions.push(format!("{key_expr} {end_op} {params}"));
            }
            let mut sql = format!("SELECT {select} FROM {from}");
            if !conditions.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conditions.join(" AND "));
            }
            sql.push_str(tail);
            sql
        };
        let page_tail = format!(" ORDER BY {order} LIMIT ?");
        let build = |with_lower: bool| build_with(with_lower, &select, &page_tail);
        let keys_only = key_list.join(", ");
        let nth_tail = format!(" ORDER BY {order} LIMIT 1 OFFSET ?");

        Ok(Plan {
            count_sql: [
                build_with(false, "COUNT(*)", ""),
                build_with(true, "COUNT(*)", ""),
            ],
            nth_sql: [
                build_with(false, &keys_only, &nth_tail),
                build_with(true, &keys_only, &nth_tail),
            ],
            first_sql: build(false),
            next_sql: build(true),
            end: self.end.as_ref().map(|e| e.key.0.clone()),
            keys: self.keys.clone(),
            relation,
        })
    }
}

/// True for a plain SQL identifier: ASCII letters, digits and `_`, not starting with
/// a digit.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Double-quotes a (validated) identifier, so keywords such as `order` work as names.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// A checked keyset: its SQL, built once per walk and reused for every page (sqlx
/// keeps the prepared statement per connection).
#[derive(Debug)]
struct Plan {
    /// `COUNT(*)` of the rows, without and with a lower bound.
    count_sql: [String; 2],
    /// The key of the row at an `OFFSET`, without and with a lower bound.
    nth_sql: [String; 2],
    /// The first page's query, without a lower bound.
    first_sql: String,
    /// Every later page's query, after the last row's key.
    next_sql: String,
    end: Option<Vec<KeyValue>>,
    keys: Vec<String>,
    relation: String,
}

impl Plan {
    /// `sql` with the lower bound's and the end bound's key values bound.
    fn bound<'q>(
        &'q self,
        sql: &'q str,
        lower: Option<&'q KeysetCursor>,
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        let mut query = sqlx::query(sql);
        for value in lower
            .into_iter()
            .flat_map(|c| &c.0)
            .chain(self.end.iter().flatten())
        {
            query = match value {
                KeyValue::Null => query.bind(None::<i64>),
                KeyValue::Integer(v) => query.bind(*v),
                KeyValue::Real(v) => query.bind(*v),
                KeyValue::Text(v) => query.bind(v.as_str()),
                KeyValue::Blob(v) => query.bind(v.as_slice()),
            };
        }
        query
    }

    /// The rows after `lower` (within the end bound and filter), counted by SQLite.
    async fn count(
        &self,
        pool: &SqlitePool,
        lower: Option<&KeysetCursor>,
    ) -> Result<u64, KeysetError> {
        let sql = &self.count_sql[usize::from(lower.is_some())];
        let row = self
            .bound(sql, lower)
            .fetch_one(pool)
            .await
            .map_err(|err| self.query_error(err))?;
        let n: i64 = row.try_get(0).map_err(|err| self.query_error(err))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The key of the row `offset` rows after the first one after `lower`.
    async fn nth(
        &self,
        pool: &SqlitePool,
        lower: Option<&KeysetCursor>,
        offset: u64,
    ) -> Result<Option<KeysetCursor>, KeysetError> {
        let sql = &self.nth_sql[usize::from(lower.is_some())];
        let row = self
            .bound(sql, lower)
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_optional(pool)
            .await
            .map_err(|err| self.query_error(err))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let indices: Vec<usize> = (0..self.keys.len()).collect();
                self.key_of(&row, &indices).map(Some)
            }
        }
    }

    async fn fetch(
        &self,
        conn: &mut SqliteConnection,
        lower: Option<&KeysetCursor>,
        limit: usize,
    ) -> Result<Vec<SqliteRow>, KeysetError> {
        let sql = if lower.is_some() {
            &self.next_sql
        } else {
            &self.first_sql
        };
        self.bound(sql, lower)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(|err| self.query_error(err))
    }

    fn query_error(&self, err: sqlx::Error) -> KeysetError {
        let relation = self.relation.clone();
        let named = |prefix: &str| match &err {
            sqlx::Error::Database(db) => db
                .message()
                .strip_prefix(prefix)
                .map(|name| name.trim().to_string()),
            _ => None,
        };
        if let Some(table) = named("no such table:") {
            return KeysetError::MissingTable {
                relation,
                table,
                source: err,
            };
        }
        if let Some(column) = named("no such column:") {
            // SQLite names qualified columns `table.column`; the column is what matters
            let column = column.rsplit('.').next().unwrap_or(&column).to_string();
            return KeysetError::MissingColumn {
                relation,
                column,
                source: err,
            };
        }
        KeysetError::Database {
            relation,
            source: err,
        }
    }

    /// Where each key column is in the rows: by name, on the first row.
    fn key_indices(&self, row: &SqliteRow) -> Result<Vec<usize>, KeysetError> {
        self.keys
            .iter()
            .map(|key| {
                row.columns()
                    .iter()
                    .position(|c| c.name().eq_ignore_ascii_case(key))
                    .ok_or_else(|| KeysetError::MissingColumn {
                        relation: self.relation.clone(),
                        column: key.clone(),
                        source: sqlx::Error::ColumnNotFound(key.clone()),
                    })
            })
            .collect()
    }

    /// A row's key, as a cursor.
    fn key_of(&self, row: &SqliteRow, indices: &[usize]) -> Result<KeysetCursor, KeysetError> {
        let mut values = Vec::with_capacity(indices.len());
        for (i, &index) in indices.iter().enumerate() {
            let decode_error = |source| KeysetError::Decode {
                relation: self.relation.clone(),
                source,
            };
            let raw = row.try_get_raw(index).map_err(decode_error)?;
            if raw.is_null() {
                return Err(KeysetError::NullKey {
                    relation: self.relation.clone(),
                    column: self.keys[i].clone(),
                });
            }
            let decode = |e| {
                decode_error(sqlx::Error::ColumnDecode {
                    index: self.keys[i].clone(),
                    source: e,
                })
            };
            let type_info = raw.type_info();
            let value = match type_info.name() {
                "REAL" => KeyValue::Real(<f64 as Decode<Sqlite>>::decode(raw).map_err(decode)?),
                "TEXT" => KeyValue::Text(<String as Decode<Sqlite>>::decode(raw).map_err(decode)?),
                "BLOB" => KeyValue::Blob(<Vec<u8> as Decode<Sqlite>>::decode(raw).map_err(decode)?),
                _ => KeyValue::Integer(<i64 as Decode<Sqlite>>::decode(raw).map_err(decode)?),
            };
            values.push(value);
        }
        Ok(KeysetCursor(values))
    }
}

/// A page being fetched.
/// A page query in flight; gives back the connection to keep for the next page.
type PageFuture = Pin<
    Box<
        dyn Future<
                Output = (
                    Option<PoolConnection<Sqlite>>,
                    Result<Vec<SqliteRow>, KeysetError>,
                ),
            > + Send,
    >,
>;

/// The state of one walk, shared by [`Keyset::rows`] and [`Keyset::batches`].
///
/// A hand-written state machine rather than `try_unfold`: the page future is boxed
/// once per page, and yielding a row moves nothing but the row and its cursor.
struct Walker {
    pool: SqlitePool,
    /// The plan; `None` when the definition has a mistake (in `error`).
    plan: Option<Arc<Plan>>,
    /// The definition's mistake, yielded as the first item.
    error: Option<KeysetError>,
    /// The key of the last row fetched: the next page starts after it.
    lower: Option<KeysetCursor>,
    /// Where the key columns are in a row; resolved on the first page.
    key_idx: Vec<usize>,
    /// The query for the next page, while it runs.
    fetch: Option<PageFuture>,
    /// The last page was short: the walk is over without another query.
    exhausted: bool,
    /// The walk ended (at the end or with an error): yield nothing more.
    done: bool,
    /// Rows asked for by the next query.
    page_size: usize,
    /// The page size doubles up to this after every full page.
    max_page_size: usize,
    /// Keep the connection between pages.
    hold_connection: bool,
    /// The connection kept from the last page.
    conn: Option<PoolConnection<Sqlite>>,
}

impl Walker {
    fn new(
        keyset: &Keyset,
        pool: &SqlitePool,
        cursor: Option<KeysetCursor>,
        max_page_size: usize,
    ) -> Self {
        let (plan, error) = match keyset.plan(cursor.as_ref()) {
            Ok(plan) => (Some(Arc::new(plan)), None),
            Err(err) => (None, Some(err)),
        };
        Walker {
            pool: pool.clone(),
            plan,
            error,
            lower: cursor.or_else(|| keyset.start.clone()),
            key_idx: Vec::new(),
            fetch: None,
            exhausted: false,
            done: false,
            page_size: keyset.batch_size,
            max_page_size,
            hold_connection: keyset.hold_connection,
            conn: None,
        }
    }

    /// Ends the walk with `err`.
    fn fail(&mut self, err: KeysetError) -> Poll<Option<Result<Vec<SqliteRow>, JobError>>> {
        self.done = true;
        self.fetch = None;
        self.conn = None;
        Poll::Ready(Some(Err(err.into_job_error())))
    }

    /// Polls for the next page (never empty); `None` when the walk is over.
    fn poll_page(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Vec<SqliteRow>, JobError>>> {
        if let Some(err) = self.error.take() {
            return self.fail(err);
        }
        if self.done {
            return Poll::Ready(None);
        }
        let Some(plan) = &self.plan else {
            self.done = true;
            return Poll::Ready(None);
        };
        let fetch = match &mut self.fetch {
            Some(fetch) => fetch,
            None => {
                if self.exhausted {
                    self.done = true;
                    return Poll::Ready(None);
                }
                let (plan, pool, lower) = (Arc::clone(plan), self.pool.clone(), self.lower.clone());
                let held = if self.hold_connection {
                    self.conn.take()
                } else {
                    None
                };
                let hold = self.hold_connection;
                let limit = self.page_size;
                self.fetch.insert(Box::pin(async move {
                    let mut conn = match held {
                        Some(conn) => conn,
                        None => match pool.acquire().await {
                            Ok(conn) => conn,
                            Err(err) => return (None, Err(plan.query_error(err))),
                        },
                    };
                    let result = plan.fetch(&mut conn, lower.as_ref(), limit).await;
                    // a failed query may have left the connection unusable: drop it
                    let keep = (hold && result.is_ok()).then_some(conn);
                    (keep, result)
                }))
            }
        };
        let (conn, result) = ready!(fetch.as_mut().poll(cx));
        self.fetch = None;
        self.conn = conn;
        let rows = match result {
            Ok(rows) => rows,
            Err(err) => return self.fail(err),
        };
        let Some(plan) = &self.plan else {
            return Poll::Ready(None);
        };
        if rows.len() < self.page_size {
            self.exhausted = true;
        } else {
            self.page_size = (self.page_size.saturating_mul(2)).min(self.max_page_size);
        }
        let Some(last) = rows.last() else {
            self.done = true;
            return Poll::Ready(None);
        };
        if self.key_idx.is_empty() {
            match plan.key_indices(last) {
                Ok(indices) => self.key_idx = indices,
                Err(err) => return self.fail(err),
            }
        }
        match plan.key_of(last, &self.key_idx) {
            Ok(cursor) => self.lower = Some(cursor),
            Err(err) => return self.fail(err),
        }
        if self.exhausted {
            self.conn = None; // the walk is over: give the connection back now
        }
        Poll::Ready(Some(Ok(rows)))
    }
}

/// The stream behind [`Keyset::rows`].
struct Rows {
    walker: Walker,
    /// Rows of the current page not yet yielded.
    page: std::vec::IntoIter<SqliteRow>,
}

impl Stream for Rows {
    type Item = Result<(SqliteRow, KeysetCursor), JobError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(row) = this.page.next()
                && let Some(plan) = &this.walker.plan
            {
                return Poll::Ready(Some(match plan.key_of(&row, &this.walker.key_idx) {
                    Ok(cursor) => Ok((row, cursor)),
                    Err(err) => {
                        this.page = Vec::new().into_iter();
                        this.walker.done = true;
                        Err(err.into_job_error())
                    }
                }));
            }
            match ready!(this.walker.poll_page(cx)) {
                Some(Ok(rows)) => this.page = rows.into_iter(),
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// The stream behind [`Keyset::batches`].
struct Batches {
    walker: Walker,
}

impl Stream for Batches {
    type Item = Result<(Vec<SqliteRow>, KeysetCursor), JobError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Poll::Ready(match ready!(this.walker.poll_page(cx)) {
            Some(Ok(rows)) => match &this.walker.lower {
                Some(cursor) => Some(Ok((rows, cursor.clone()))),
                None => Some(Err(JobError::fatal(
                    "keyset walker lost the cursor of a page (a bug in iterjob-sqlite)",
                ))),
            },
            Some(Err(err)) => Some(Err(err)),
            None => None,
        })
    }
}
