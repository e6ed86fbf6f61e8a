//! [`Keyset`]: an enumerator over the rows of a PostgreSQL table or query, in key
//! order, resumable from the key of the last row done.
//!
//! See [`Keyset`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use iterjob::JobError;
use iterjob::enumerator::Enumerator;
use iterjob::partition::KeyRange;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgRow, PgValueFormat, PgValueRef};
use sqlx::{Column, Decode, Postgres, Row, TypeInfo, ValueRef};

use crate::error::sqlstate;

/// The largest page [`Keyset::rows`] grows to unless [`Keyset::max_page_size`] says
/// otherwise. Pages reach it only while the walk keeps up (see
/// [`DEFAULT_MAX_PAGE_TIME`]): a bulk scan then makes a handful of queries for a
/// million rows, close to one streaming `SELECT`.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 250_000;

/// How long one page query of [`Keyset::rows`] may stay open, from sending it to its
/// last row, unless [`Keyset::max_page_time`] says otherwise. The next page doubles
/// only while pages end in under half of this, and halves after a page that took
/// longer: a slow job reads small pages of fresh rows, a fast one few large ones.
pub const DEFAULT_MAX_PAGE_TIME: Duration = Duration::from_secs(1);

/// Rows per page unless [`Keyset::batch_size`] says otherwise.
///
/// Each page costs a query (a network round trip, plus a pool checkout with
/// [`Keyset::hold_connection`] off). [`Keyset::rows`] grows its pages from this by
/// itself; for [`Keyset::batches`] it is the size of every batch, so bulk scans run
/// faster with bigger batches (500–5 000 rows), while small ones hold fewer rows in
/// memory and see fresher data when the job's work is slow.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's epoch.
const PG_EPOCH_DAYS: i32 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One key value of a row, typed as PostgreSQL typed it.
///
/// # JSON form
///
/// A [`KeysetCursor`] is stored as JSON in the job's checkpoint, so every value must
/// read back as the same type. The plain JSON types stand for themselves; the others
/// are an object with one member naming the type, so a time never comes back as an
/// ambiguous string:
///
/// | value | JSON |
/// |---|---|
/// | `Null` | `null` |
/// | `Bool` (`boolean`) | `true` |
/// | `Integer` (`smallint`, `integer`, `bigint`) | `42` |
/// | `Real` (`real`, `double precision`) | `1.5`, always with a fraction or exponent (`3.0`); NaN and infinities as `{"float8": "NaN"}`, `{"float8": "Infinity"}`, `{"float8": "-Infinity"}` |
/// | `Text` (`text`, `varchar`, `char`, `name`) | `"abc"` |
/// | `Bytes` (`bytea`) | `{"bytea": "00ff"}` (hex) |
/// | `Uuid` (`uuid`) | `{"uuid": "67e55044-10b1-426f-9247-bb680e5fe0c8"}` |
/// | `Date` (`date`) | `{"date": "2024-05-01"}` |
/// | `Timestamp` (`timestamp`) | `{"timestamp": "2024-05-01T12:34:56.123456"}` |
/// | `Timestamptz` (`timestamptz`) | `{"timestamptz": "2024-05-01T12:34:56.123456Z"}` (always UTC) |
///
/// Times keep PostgreSQL's full microsecond precision; `infinity` and `-infinity`
/// are written as such, and years before 1 AD get a ` BC` suffix as in PostgreSQL.
/// To give a bound by hand, write the JSON form:
/// `serde_json::from_value::<KeyValue>(json!({"timestamptz": "2024-01-01T00:00:00Z"}))`.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    /// SQL NULL (never the key of a row; allowed in bounds for completeness).
    Null,
    /// A `boolean`.
    Bool(bool),
    /// A `smallint`, `integer` or `bigint`.
    Integer(i64),
    /// A `real` or `double precision`.
    Real(f64),
    /// A `text`, `varchar`, `char(n)` or `name`.
    Text(String),
    /// A `bytea`.
    Bytes(Vec<u8>),
    /// A `uuid`, as its 16 bytes.
    Uuid([u8; 16]),
    /// A `date`: days since 1970-01-01 (`i32::MAX` / `i32::MIN` for `infinity` /
    /// `-infinity`).
    Date(i32),
    /// A `timestamp` (without time zone): microseconds since 1970-01-01 00:00:00
    /// (`i64::MAX` / `i64::MIN` for `infinity` / `-infinity`).
    Timestamp(i64),
    /// A `timestamptz`: microseconds since 1970-01-01 00:00:00 UTC (`i64::MAX` /
    /// `i64::MIN` for `infinity` / `-infinity`).
    Timestamptz(i64),
}

impl KeyValue {
    /// The SQL cast a parameter of this value gets, so that the comparison is typed as
    /// the column is (`None` for NULL).
    fn cast(&self) -> Option<&'static str> {
        Some(match self {
            KeyValue::Null => return None,
            KeyValue::Bool(_) => "boolean",
            KeyValue::Integer(_) => "int8",
            KeyValue::Real(_) => "float8",
            KeyValue::Text(_) => "text",
            KeyValue::Bytes(_) => "bytea",
            KeyValue::Uuid(_) => "uuid",
            KeyValue::Date(_) => "date",
            KeyValue::Timestamp(_) => "timestamp",
            KeyValue::Timestamptz(_) => "timestamptz",
        })
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Null => f.write_str("NULL"),
            KeyValue::Bool(v) => write!(f, "{v}"),
            KeyValue::Integer(v) => write!(f, "{v}"),
            KeyValue::Real(v) => write!(f, "{v:?}"),
            KeyValue::Text(v) => write!(f, "{v:?}"),
            KeyValue::Bytes(v) => write!(f, "bytea of {} bytes", v.len()),
            KeyValue::Uuid(v) => f.write_str(&format_uuid(v)),
            KeyValue::Date(v) => f.write_str(&format_date(*v)),
            KeyValue::Timestamp(v) => f.write_str(&format_timestamp(*v, false, 'T')),
            KeyValue::Timestamptz(v) => f.write_str(&format_timestamp(*v, true, 'T')),
        }
    }
}

/// The JSON form of a [`KeyValue`]: plain JSON for the JSON types, a one-member
/// object for the others.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Null,
    Bool(bool),
    Integer(i64),
    Real(f64),
    Text(String),
    Tagged(Tagged),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Tagged {
    Float8(String),
    Bytea(String),
    Uuid(String),
    Date(String),
    Timestamp(String),
    Timestamptz(String),
}

impl Serialize for KeyValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let repr = match self {
            KeyValue::Null => Repr::Null,
            KeyValue::Bool(v) => Repr::Bool(*v),
            KeyValue::Integer(v) => Repr::Integer(*v),
            KeyValue::Real(v) if v.is_finite() => Repr::Real(*v),
            KeyValue::Real(v) => Repr::Tagged(Tagged::Float8(
                if v.is_nan() {
                    "NaN"
                } else if *v > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_string(),
            )),
            KeyValue::Text(v) => Repr::Text(v.clone()),
            KeyValue::Bytes(v) => Repr::Tagged(Tagged::Bytea(hex(v))),
            KeyValue::Uuid(v) => Repr::Tagged(Tagged::Uuid(format_uuid(v))),
            KeyValue::Date(v) => Repr::Tagged(Tagged::Date(format_date(*v))),
            KeyValue::Timestamp(v) => {
                Repr::Tagged(Tagged::Timestamp(format_timestamp(*v, false, 'T')))
            }
            KeyValue::Timestamptz(v) => {
                Repr::Tagged(Tagged::Timestamptz(format_timestamp(*v, true, 'T')))
            }
        };
        repr.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KeyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let bad = |what: &str, text: &str| D::Error::custom(format!("invalid {what} `{text}`"));
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Null => KeyValue::Null,
            Repr::Bool(v) => KeyValue::Bool(v),
            Repr::Integer(v) => KeyValue::Integer(v),
            Repr::Real(v) => KeyValue::Real(v),
            Repr::Text(v) => KeyValue::Text(v),
            Repr::Tagged(Tagged::Float8(t)) => KeyValue::Real(match t.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => t.parse().map_err(|_| bad("float8", &t))?,
            }),
            Repr::Tagged(Tagged::Bytea(t)) => {
                KeyValue::Bytes(unhex(&t).ok_or_else(|| bad("bytea hex", &t))?)
            }
            Repr::Tagged(Tagged::Uuid(t)) => {
                KeyValue::Uuid(parse_uuid(&t).ok_or_else(|| bad("uuid", &t))?)
            }
            Repr::Tagged(Tagged::Date(t)) => {
                KeyValue::Date(parse_date(&t).ok_or_else(|| bad("date", &t))?)
            }
            Repr::Tagged(Tagged::Timestamp(t)) => {
                KeyValue::Timestamp(parse_timestamp(&t, false).ok_or_else(|| bad("timestamp", &t))?)
            }
            Repr::Tagged(Tagged::Timestamptz(t)) => KeyValue::Timestamptz(
                parse_timestamp(&t, true).ok_or_else(|| bad("timestamptz", &t))?,
            ),
        })
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

impl From<bool> for KeyValue {
    fn from(v: bool) -> Self {
        KeyValue::Bool(v)
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
        KeyValue::Bytes(v)
    }
}

/// The cursor of a [`Keyset`] walk: the key values of the last row done, one per key
/// column, in key order. Serializes as a JSON array, e.g.
/// `[{"timestamptz": "2024-05-01T08:00:00Z"}, 1041]` (see [`KeyValue`] for each
/// type's form).
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
/// job as [`JobError::Fatal`] (a retry would fail the same way); an unreachable,
/// overloaded or restarting database as [`JobError::Retryable`].
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
        /// The missing table, as PostgreSQL named it.
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
        /// The missing column, as PostgreSQL named it.
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

    /// A key column has a type the cursor cannot hold.
    #[error(
        "keyset enumerator over {relation}: key column `{column}` has type {type_name}, which a \
         keyset cursor cannot hold; use a key of type smallint, integer, bigint, real, double \
         precision, text, varchar, char, boolean, bytea, uuid, date, timestamp or timestamptz \
         (for example a query source that selects `{column}::bigint`)"
    )]
    UnsupportedKeyType {
        /// The table or query.
        relation: String,
        /// The key column.
        column: String,
        /// The column's type as PostgreSQL names it.
        type_name: String,
    },

    /// A row could not be decoded (by [`Keyset::rows_as`] or a malformed key value).
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
    /// True when retrying later may help (the database was unreachable, overloaded,
    /// restarting, or a transaction conflicted), false for mistakes in the keyset's
    /// definition or the data.
    pub fn is_retryable(&self) -> bool {
        match self {
            KeysetError::Database { source, .. } => match sqlstate(source) {
                // connection exceptions, transaction rollbacks (serialization failure,
                // deadlock), insufficient resources, lock not available, operator
                // intervention (shutdown, cancel), system errors
                Some(code) => ["08", "40", "53", "55", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class)),
                // not a database error: I/O, TLS, pool timeout
                None => true,
            },
            _ => false,
        }
    }

    /// True when the query failed because its connection was gone (closed by the
    /// server, a network cut): the query never ran, and may run on another one.
    fn is_connection_lost(&self) -> bool {
        let KeysetError::Database { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            // connection exception; terminated by an administrator, a crash or
            // `idle_session_timeout`
            _ => sqlstate(source).is_some_and(|code| {
                code.starts_with("08") || matches!(code.as_str(), "57P01" | "57P02" | "57P05")
            }),
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

/// A keyset enumerator over a PostgreSQL table or query: rows in key order,
/// resumable from the last row's key.
///
/// Each page is one query,
///
/// ```sql
/// SELECT … FROM "products"
/// WHERE ("products"."created_at", "products"."id") > ($1::timestamptz, $2::int8)  -- the cursor
///   AND (archived = false)                                                         -- the filter
///   AND ("products"."created_at", "products"."id") <= ($3::timestamptz, $4::int8)  -- the upper bound
/// ORDER BY "products"."created_at", "products"."id"
/// LIMIT $5                                                                         -- the batch size
/// ```
///
/// never `OFFSET`: a row-value comparison on the columns of a B-tree index is an index
/// range scan, so every page is a seek however deep into the table, and rows inserted
/// or deleted behind the cursor cannot shift the walk. A page shorter than the batch
/// size ends the walk without another query. The walk keeps one pooled connection
/// from page to page ([`hold_connection`](Keyset::hold_connection)) but no
/// transaction, snapshot or lock: the job's own work can use the same pool while it
/// walks, and writers and `VACUUM` are never held up by it.
///
/// [`rows`](Keyset::rows) streams each page: the job works on a page's first rows
/// while the rest are still arriving, so a walk runs about as fast as one streaming
/// `SELECT` (see `BENCHMARKS.md`). A page's query ends once the server has sent the
/// page: a small page fits in the socket buffers, so its query ends at once; a
/// bigger one waits for the job to take its rows, which is why pages grow only
/// while they end within [`max_page_time`](Keyset::max_page_time) (a fast walk
/// reads few large pages, a slow job small ones). With a held connection the next
/// page's query is sent as soon as a page has arrived, so the server reads it while
/// the job works. [`batches`](Keyset::batches) reads each page whole.
///
/// The key columns must identify a row (end with a unique column such as the primary
/// key, as in `.keys(["created_at", "id"])`) and must not be NULL: a row with a NULL
/// key ends the walk with an error rather than silently skipping rows after it. An
/// index on the key columns, in that order, makes each page a seek. All keys go the
/// same way ([`descending`](Keyset::descending) reverses them all).
///
/// The cursor ([`KeysetCursor`]) holds the last row's key values with their types —
/// integers stay integers, times stay times (see [`KeyValue`] for the JSON form) — and
/// each parameter is cast to its type, so the next page's comparison is the one
/// `ORDER BY` made.
///
/// ```no_run
/// use futures::TryStreamExt;
/// use iterjob_postgres::{Keyset, KeysetCursor};
/// use sqlx::Row;
///
/// # async fn demo(pool: sqlx::PgPool, saved: Option<KeysetCursor>) -> Result<(), iterjob::JobError> {
/// let products = Keyset::table("shop.products")
///     .keys(["created_at", "id"])
///     .columns(["id", "name", "price"])
///     .filter("archived = false")
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
/// Table, key and column names are checked to be plain identifiers and are quoted.
/// The [`filter`](Keyset::filter) and [`query`](Keyset::query) are SQL text inserted
/// as given: they must come from the job's code, **never from user input**.
#[derive(Clone, Debug)]
pub struct Keyset {
    source: Source,
    keys: Vec<String>,
    columns: Option<Vec<String>>,
    filter: Option<String>,
    descending: bool,
    batch_size: usize,
    max_page_size: usize,
    max_page_time: Duration,
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
    /// iterjob_keyset WHERE …`), and PostgreSQL pushes the key conditions into it.
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
            max_page_time: DEFAULT_MAX_PAGE_TIME,
            start: None,
            end: None,
            hold_connection: true,
        }
    }

    /// Whether the walk keeps one pooled connection from page to page (default on),
    /// instead of acquiring one for every page: with small pages the acquire (a
    /// liveness check on PostgreSQL, unless the pool turned
    /// `test_before_acquire` off) costs as much as the query. No transaction stays
    /// open between pages, so writers are never blocked; but a job that writes
    /// through the same pool needs a pool of at least two connections (the stores'
    /// pools have more), and each running walk takes one connection of the pool for
    /// as long as it runs: count them when sizing
    /// [`PgOptions::max_connections`](crate::PgOptions::max_connections). A held
    /// connection that was lost while the job worked on a page (a server restart,
    /// `idle_session_timeout`, a network cut) is replaced by a fresh one for that
    /// page's query, once. The connection goes back to the pool when the walk ends,
    /// fails or is dropped. Turn it off for a pool of one, or to give connections
    /// back between pages when the work on a page is long.
    pub fn hold_connection(mut self, on: bool) -> Self {
        self.hold_connection = on;
        self
    }

    /// Orders and resumes by this one column (usually the primary key).
    pub fn key(mut self, column: impl Into<String>) -> Self {
        self.keys = vec![column.into()];
        self
    }

    /// Orders and resumes by these columns, compared as a row value `(a, b) > ($1, $2)`;
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

    /// Walks only the rows matching this SQL condition, e.g. `"archived = false"`.
    /// Trusted SQL from the job's code, inserted as given: never build it from user
    /// input. It must not contain bind parameters, and should name columns without a
    /// table qualifier.
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
    /// [`DEFAULT_MAX_PAGE_SIZE`]). `rows` yields one row at a time and streams each
    /// page (rows are read off the connection as the job takes them, so memory holds
    /// a chunk of rows, not a page), so the page is only a fetch size: it starts at
    /// the batch size and doubles after every full page that ended within half of
    /// [`max_page_time`](Keyset::max_page_time), up to this; a long, fast walk makes
    /// few round trips while a short one reads little.
    pub fn max_page_size(mut self, rows: usize) -> Self {
        self.max_page_size = rows;
        self
    }

    /// How long one page query of [`rows`](Keyset::rows) may stay open (default
    /// [`DEFAULT_MAX_PAGE_TIME`]), timed from sending its query to reading its last
    /// row. Rows are read as the job takes them, so with slow work a big page keeps
    /// its query open for long: a connection busy, and, once the rows no longer fit in
    /// the socket buffers, a snapshot on the server (vacuum cannot remove rows deleted
    /// since) and rows as of the query's start. Pages grow only while they end within
    /// half of this, and a page that took longer halves the next one (never below the
    /// batch size).
    pub fn max_page_time(mut self, time: Duration) -> Self {
        self.max_page_time = time;
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
    /// `(a, b]`, `(b, c]`, … that together cover it exactly once — one job per range
    /// walks a big table in parallel.
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
    /// first), for logging or `EXPLAIN`. Parameters: the cursor's key values, the end
    /// bound's key values (if any), then the batch size. The cursor's parameters are
    /// cast to the types of the [`after`](Keyset::after) bound's values when one is
    /// given, and left untyped otherwise (a walk casts them to the types of the row
    /// it resumes after).
    ///
    /// # Errors
    /// As [`Keyset::check`].
    pub fn sql(&self) -> Result<String, KeysetError> {
        let plan = self.plan(None)?;
        let casts = match &self.start {
            Some(start) => start.0.iter().map(KeyValue::cast).collect(),
            None => vec![None; self.keys.len()],
        };
        Ok(plan.build(Some(&casts)))
    }

    /// Divides the walk into at most `n` key ranges holding about the same number of
    /// rows, cut at quantiles of the key: the server counts the rows, then finds the
    /// key at each cut with `LIMIT 1 OFFSET` over the keys (an index-only scan when the
    /// keys are indexed); no row leaves the database. For
    /// [`Job::partition`](iterjob::Job::partition); apply a range with
    /// [`Keyset::range`]. Same result as
    /// [`partition::quantile_ranges`](iterjob::partition::quantile_ranges) over
    /// [`rows`](Keyset::rows).
    ///
    /// # Errors
    /// As the walk's first page would fail: a bad definition, a missing table or column.
    pub async fn quantile_ranges(
        &self,
        pool: &PgPool,
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
    /// `None` when fewer than 2 rows are left. Counted and found by the server, as
    /// [`Keyset::quantile_ranges`].
    ///
    /// # Errors
    /// As [`Keyset::quantile_ranges`].
    pub async fn midpoint(
        &self,
        pool: &PgPool,
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
        pool: &PgPool,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<PgRow, KeysetCursor> + use<> {
        Rows {
            walker: Walker::new(self, pool, cursor, self.max_page_size.max(self.batch_size)),
            page: None,
            inbox: Inbox::default(),
            buffer: VecDeque::new(),
        }
    }

    /// The rows decoded into `T` (any [`sqlx::FromRow`], e.g. `#[derive(sqlx::FromRow)]`),
    /// one at a time, each with the cursor just past it. A row that does not decode
    /// is a fatal error naming the column.
    pub fn rows_as<T>(
        &self,
        pool: &PgPool,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<T, KeysetCursor> + use<T>
    where
        T: for<'r> sqlx::FromRow<'r, PgRow> + Send + 'static,
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
        pool: &PgPool,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<Vec<PgRow>, KeysetCursor> + use<> {
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

    /// Checks the definition and prepares the SQL.
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
            if self.keys[..i].iter().any(|k| k == key) {
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
                let missing_keys = self.keys.iter().filter(|k| !columns.contains(k));
                columns
                    .iter()
                    .chain(missing_keys)
                    .map(|c| column(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let key_list = self.keys.iter().map(|k| column(k)).collect::<Vec<_>>();
        let key_expr = if key_list.len() == 1 {
            key_list[0].clone()
        } else {
            format!("({})", key_list.join(", "))
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
        let end = self.end.as_ref().map(|e| e.key.0.clone());
        Ok(Plan {
            select,
            from,
            key_expr,
            after_op,
            end_op,
            order,
            filter: self.filter.clone(),
            end_casts: end
                .as_ref()
                .map(|values| values.iter().map(KeyValue::cast).collect()),
            end,
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
/// Quoting keeps the case: `Keyset::table("Orders")` is the table `"Orders"`.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// A checked keyset: the pieces of its SQL. The page query is assembled per cursor
/// type signature (the casts of the cursor's values), which the walker caches.
#[derive(Debug)]
struct Plan {
    select: String,
    from: String,
    /// `"t"."k"` or `("t"."a", "t"."b")`.
    key_expr: String,
    after_op: &'static str,
    end_op: &'static str,
    order: String,
    filter: Option<String>,
    end: Option<Vec<KeyValue>>,
    end_casts: Option<Vec<Option<&'static str>>>,
    keys: Vec<String>,
    relation: String,
}

/// `($1::int8, $2::text)` for parameters from `first` with these casts.
fn params(first: usize, casts: &[Option<&'static str>]) -> String {
    let list = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| match cast {
            Some(cast) => format!("${}::{cast}", first + i),
            None => format!("${}", first + i),
        })
        .collect::<Vec<_>>();
    if list.len() == 1 {
        list.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", list.join(", "))
    }
}

impl Plan {
    /// The page query: after a cursor with these casts, or from the start.
    fn build(&self, lower: Option<&[Option<&'static str>]>) -> String {
        self.build_with(lower, &self.select, |next| {
            format!(" ORDER BY {} LIMIT ${next}", self.order)
        })
    }

    /// The key columns alone, as a select list.
    fn key_list(&self) -> &str {
        self.key_expr
            .strip_prefix('(')
            .and_then(|k| k.strip_suffix(')'))
            .unwrap_or(&self.key_expr)
    }

    /// `COUNT(*)` of the rows after a cursor (or from the start), up to the bound
    /// last parameter (given `i64::MAX`: all of them).
    fn count_sql(&self, lower: Option<&[Option<&'static str>]>) -> String {
        let inner = self.build_with(lower, "1", |next| format!(" LIMIT ${next}"));
        format!("SELECT COUNT(*) FROM ({inner}) AS iterjob_count")
    }

    /// The key of the row at the `OFFSET` given as the last parameter.
    fn nth_sql(&self, lower: Option<&[Option<&'static str>]>) -> String {
        self.build_with(lower, self.key_list(), |next| {
            format!(" ORDER BY {} LIMIT 1 OFFSET ${next}", self.order)
        })
    }

    /// Rows after `lower` (within the end bound and filter), counted by the server.
    async fn count(&self, pool: &PgPool, lower: Option<&KeysetCursor>) -> Result<u64, KeysetError> {
        let casts = lower.map(|c| c.0.iter().map(KeyValue::cast).collect::<Vec<_>>());
        let sql = self.count_sql(casts.as_deref());
        let row = self
            .bind(&sql, lower, usize::MAX)
            .fetch_one(pool)
            .await
            .map_err(|err| self.query_error(err))?;
        let n: i64 = row.try_get(0).map_err(|err| self.query_error(err))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The key of the row `offset` rows after the first one after `lower`.
    async fn nth(
        &self,
        pool: &PgPool,
        lower: Option<&KeysetCursor>,
        offset: u64,
    ) -> Result<Option<KeysetCursor>, KeysetError> {
        let casts = lower.map(|c| c.0.iter().map(KeyValue::cast).collect::<Vec<_>>());
        let sql = self.nth_sql(casts.as_deref());
        let row = self
            .bind(&sql, lower, usize::try_from(offset).unwrap_or(usize::MAX))
            .fetch_optional(pool)
            .await
            .map_err(|err| self.query_error(err))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let columns = self.key_columns(&row)?;
                self.key_of(&row, &columns).map(Some)
            }
        }
    }

    /// A query over the walk's rows: `select`, the conditions, then `tail(next)`
    /// (`next`: the number of the parameter after the key values).
    fn build_with(
        &self,
        lower: Option<&[Option<&'static str>]>,
        select: &str,
        tail: impl FnOnce(usize) -> String,
    ) -> String {
        let mut next = 1;
        let mut conditions = Vec::new();
        if let Some(casts) = lower {
            conditions.push(format!(
                "{} {} {}",
                self.key_expr,
                self.after_op,
                params(next, casts)
            ));
            next += casts.len();
        }
        if let Some(filter) = &self.filter {
            conditions.push(format!("({filter})"));
        }
        if let Some(casts) = &self.end_casts {
            conditions.push(format!(
                "{} {} {}",
                self.key_expr,
                self.end_op,
                params(next, casts)
            ));
            next += casts.len();
        }
        let mut sql = format!("SELECT {select} FROM {}", self.from);
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&tail(next));
        sql
    }

    /// The page query with its parameters bound: the cursor's key values, the end
    /// bound's, the limit.
    fn bind<'q>(
        &self,
        sql: &'q str,
        lower: Option<&KeysetCursor>,
        limit: usize,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        let mut query = sqlx::query(sql);
        for value in lower
            .into_iter()
            .flat_map(|c| &c.0)
            .chain(self.end.iter().flatten())
        {
            query = match value {
                KeyValue::Null => query.bind(None::<i64>),
                KeyValue::Bool(v) => query.bind(*v),
                KeyValue::Integer(v) => query.bind(*v),
                KeyValue::Real(v) => query.bind(*v),
                KeyValue::Text(v) => query.bind(v.clone()),
                KeyValue::Bytes(v) => query.bind(v.clone()),
                KeyValue::Uuid(v) => query.bind(format_uuid(v)),
                KeyValue::Date(v) => query.bind(format_date(*v)),
                KeyValue::Timestamp(v) => query.bind(format_timestamp(*v, false, ' ')),
                KeyValue::Timestamptz(v) => query.bind(format_timestamp(*v, true, ' ')),
            };
        }
        query.bind(i64::try_from(limit).unwrap_or(i64::MAX))
    }

    async fn fetch(
        &self,
        conn: &mut PgConnection,
        sql: &str,
        lower: Option<&KeysetCursor>,
        limit: usize,
    ) -> Result<Vec<PgRow>, KeysetError> {
        self.bind(sql, lower, limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(|err| self.query_error(err))
    }

    /// Runs a page query and hands its rows to `inbox` as they arrive, in chunks of at
    /// most [`STREAM_CHUNK`] rows, so the walk works on the first rows while the rest
    /// are still on the wire. Returns the number of rows and the key of the last one
    /// (the next page starts after it); on an error, also whether any row had been
    /// handed over already (then the page cannot simply run again).
    async fn stream(
        &self,
        conn: &mut PgConnection,
        sql: &str,
        lower: Option<&KeysetCursor>,
        limit: usize,
        inbox: &Inbox,
    ) -> Result<(usize, Option<KeysetCursor>), (KeysetError, bool)> {
        let mut rows = self.bind(sql, lower, limit).fetch(&mut *conn);
        let mut chunk: VecDeque<PgRow> = VecDeque::new();
        // the last row is held back until the query ends, to read the page's key
        let mut last: Option<PgRow> = None;
        let mut count = 0usize;
        let hand_over = |chunk: &mut VecDeque<PgRow>| {
            inbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(chunk);
        };
        let ended = std::future::poll_fn(|cx| {
            loop {
                match rows.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(row))) => {
                        count += 1;
                        if let Some(previous) = last.replace(row) {
                            chunk.push_back(previous);
                        }
                        if chunk.len() >= STREAM_CHUNK {
                            hand_over(&mut chunk);
                            // let the walk take the chunk; it polls again once done
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                    Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => {
                        if !chunk.is_empty() {
                            hand_over(&mut chunk);
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await;
        drop(rows);
        if let Err(err) = ended {
            return Err((self.query_error(err), count > 0));
        }
        let key = match &last {
            Some(row) => {
                let columns = self.key_columns(row).map_err(|err| (err, true))?;
                Some(self.key_of(row, &columns).map_err(|err| (err, true))?)
            }
            None => None,
        };
        chunk.extend(last);
        hand_over(&mut chunk);
        Ok((count, key))
    }

    fn query_error(&self, err: sqlx::Error) -> KeysetError {
        let relation = self.relation.clone();
        let message = match &err {
            sqlx::Error::Database(db) => db.message().to_string(),
            _ => String::new(),
        };
        match sqlstate(&err).as_deref() {
            // relation "products" does not exist
            Some("42P01") => KeysetError::MissingTable {
                relation,
                table: quoted_name(&message).unwrap_or(message),
                source: err,
            },
            // column "sku" does not exist / column items.sku does not exist
            Some("42703") => {
                let column = message
                    .strip_prefix("column ")
                    .and_then(|rest| rest.strip_suffix(" does not exist"))
                    .map(|name| {
                        let name = name.rsplit('.').next().unwrap_or(name);
                        name.trim_matches('"').to_string()
                    })
                    .unwrap_or(message);
                KeysetError::MissingColumn {
                    relation,
                    column,
                    source: err,
                }
            }
            _ => KeysetError::Database {
                relation,
                source: err,
            },
        }
    }

    /// Where each key column is in the rows, by name, and how to decode it: resolved
    /// once, on the first row, so each row's key costs only its decoding.
    fn key_columns(&self, row: &PgRow) -> Result<Vec<KeyColumn>, KeysetError> {
        self.keys
            .iter()
            .map(|key| {
                let columns = row.columns();
                let index = columns
                    .iter()
                    .position(|c| c.name() == key)
                    .or_else(|| {
                        columns
                            .iter()
                            .position(|c| c.name().eq_ignore_ascii_case(key))
                    })
                    .ok_or_else(|| KeysetError::MissingColumn {
                        relation: self.relation.clone(),
                        column: key.clone(),
                        source: sqlx::Error::ColumnNotFound(key.clone()),
                    })?;
                let type_name = columns[index].type_info().name();
                let kind =
                    KeyKind::of(type_name).ok_or_else(|| KeysetError::UnsupportedKeyType {
                        relation: self.relation.clone(),
                        column: key.clone(),
                        type_name: type_name.to_string(),
                    })?;
                Ok(KeyColumn { index, kind })
            })
            .collect()
    }

    /// A row's key, as a cursor.
    fn key_of(&self, row: &PgRow, columns: &[KeyColumn]) -> Result<KeysetCursor, KeysetError> {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let decode_error = |source| KeysetError::Decode {
                relation: self.relation.clone(),
                source,
            };
            let raw = row.try_get_raw(column.index).map_err(decode_error)?;
            if raw.is_null() {
                return Err(KeysetError::NullKey {
                    relation: self.relation.clone(),
                    column: self.keys[i].clone(),
                });
            }
            let value = column.kind.decode(raw).map_err(|source| {
                decode_error(sqlx::Error::ColumnDecode {
                    index: self.keys[i].clone(),
                    source,
                })
            })?;
            values.push(value);
        }
        Ok(KeysetCursor(values))
    }
}

/// A key column of the rows: where it is and how its values decode.
#[derive(Clone, Copy, Debug)]
struct KeyColumn {
    index: usize,
    kind: KeyKind,
}

/// The PostgreSQL types a key can have, each with its decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text,
    Bytea,
    Uuid,
    Date,
    Timestamp,
    Timestamptz,
}

impl KeyKind {
    /// The kind for a type as sqlx names it (`INT8`, `TIMESTAMPTZ`, …); `None` for a
    /// type a cursor cannot hold.
    fn of(type_name: &str) -> Option<KeyKind> {
        Some(match type_name {
            "INT2" => KeyKind::Int2,
            "INT4" => KeyKind::Int4,
            "INT8" => KeyKind::Int8,
            "FLOAT4" => KeyKind::Float4,
            "FLOAT8" => KeyKind::Float8,
            "BOOL" => KeyKind::Bool,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => KeyKind::Text,
            "BYTEA" => KeyKind::Bytea,
            "UUID" => KeyKind::Uuid,
            "DATE" => KeyKind::Date,
            "TIMESTAMP" => KeyKind::Timestamp,
            "TIMESTAMPTZ" => KeyKind::Timestamptz,
            _ => return None,
        })
    }

    /// Decodes a (non-NULL) value of this kind.
    fn decode(self, raw: PgValueRef<'_>) -> Result<KeyValue, sqlx::error::BoxDynError> {
        /// The raw bytes of a fixed-size binary value.
        fn binary<const N: usize>(
            raw: &PgValueRef<'_>,
            what: &str,
        ) -> Result<[u8; N], sqlx::error::BoxDynError> {
            if raw.format() != PgValueFormat::Binary {
                return Err(format!("{what} key in text format").into());
            }
            <[u8; N]>::try_from(raw.as_bytes()?)
                .map_err(|_| format!("malformed {what} value").into())
        }
        Ok(match self {
            KeyKind::Int2 => KeyValue::Integer(<i16 as Decode<Postgres>>::decode(raw)?.into()),
            KeyKind::Int4 => KeyValue::Integer(<i32 as Decode<Postgres>>::decode(raw)?.into()),
            KeyKind::Int8 => KeyValue::Integer(<i64 as Decode<Postgres>>::decode(raw)?),
            KeyKind::Float4 => KeyValue::Real(<f32 as Decode<Postgres>>::decode(raw)?.into()),
            KeyKind::Float8 => KeyValue::Real(<f64 as Decode<Postgres>>::decode(raw)?),
            KeyKind::Bool => KeyValue::Bool(<bool as Decode<Postgres>>::decode(raw)?),
            KeyKind::Text => KeyValue::Text(<String as Decode<Postgres>>::decode(raw)?),
            KeyKind::Bytea => KeyValue::Bytes(<Vec<u8> as Decode<Postgres>>::decode(raw)?),
            KeyKind::Uuid => KeyValue::Uuid(binary::<16>(&raw, "uuid")?),
            KeyKind::Date => {
                let days = i32::from_be_bytes(binary::<4>(&raw, "date")?);
                KeyValue::Date(match days {
                    i32::MAX | i32::MIN => days,
                    _ => days.saturating_add(PG_EPOCH_DAYS),
                })
            }
            KeyKind::Timestamp | KeyKind::Timestamptz => {
                let what = if self == KeyKind::Timestamp {
                    "timestamp"
                } else {
                    "timestamptz"
                };
                let micros = i64::from_be_bytes(binary::<8>(&raw, what)?);
                let micros = match micros {
                    i64::MAX | i64::MIN => micros,
                    _ => micros.saturating_add(PG_EPOCH_MICROS),
                };
                if self == KeyKind::Timestamp {
                    KeyValue::Timestamp(micros)
                } else {
                    KeyValue::Timestamptz(micros)
                }
            }
        })
    }
}

/// The first double-quoted name in a message.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    Some(message[start..start + len].to_string())
}

// ---------------------------------------------------------------------------------
// text forms of the typed values

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_prefix("\\x").unwrap_or(text);
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn format_uuid(bytes: &[u8; 16]) -> String {
    let h = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 {
        return None;
    }
    unhex(&digits)?.try_into().ok()
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD`, with ` BC` for years before 1 AD (as PostgreSQL writes them).
fn format_ymd(days: i64) -> (String, bool) {
    let (year, month, day) = civil_from_days(days);
    if year <= 0 {
        (format!("{:04}-{month:02}-{day:02}", 1 - year), true)
    } else {
        (format!("{year:04}-{month:02}-{day:02}"), false)
    }
}

fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_string(),
        i32::MIN => "-infinity".to_string(),
        _ => {
            let (ymd, bc) = format_ymd(days.into());
            if bc { format!("{ymd} BC") } else { ymd }
        }
    }
}

/// `YYYY-MM-DD{sep}HH:MM:SS[.ffffff][Z]` (` BC` appended before 1 AD).
fn format_timestamp(micros: i64, utc: bool, sep: char) -> String {
    match micros {
        i64::MAX => return "infinity".to_string(),
        i64::MIN => return "-infinity".to_string(),
        _ => {}
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (ymd, bc) = format_ymd(days);
    let secs = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    let mut out = format!(
        "{ymd}{sep}{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if fraction != 0 {
        out.push_str(&format!(".{fraction:06}"));
    }
    if utc {
        out.push_str(if sep == 'T' { "Z" } else { "+00" });
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Parses `YYYY-MM-DD` (optionally ` BC`) into (days since 1970-01-01).
fn parse_ymd(text: &str, bc: bool) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 0 || (bc && year == 0) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    let days = days_from_civil(year, month, day);
    // reject 2024-02-31 and the like
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

fn parse_date(text: &str) -> Option<i32> {
    match text {
        "infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    i32::try_from(parse_ymd(text, bc)?).ok()
}

/// Parses the JSON form of a timestamp: `YYYY-MM-DDTHH:MM:SS[.f…]`, plus `Z` or an
/// offset `±HH:MM` when `utc` (a `timestamptz`), optionally ` BC`.
fn parse_timestamp(text: &str, utc: bool) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let split = text.find(['T', ' '])?;
    let (date, rest) = (&text[..split], &text[split + 1..]);
    let days = parse_ymd(date, bc)?;
    let (time, offset_secs) = if utc {
        if let Some(time) = rest.strip_suffix('Z') {
            (time, 0)
        } else {
            let at = rest.rfind(['+', '-'])?;
            let (time, offset) = (&rest[..at], &rest[at..]);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let mut hm = offset[1..].splitn(2, ':');
            let hours: i64 = hm.next()?.parse().ok()?;
            let minutes: i64 = hm.next().map_or(Some(0), |m| m.parse().ok())?;
            if hours > 15 || minutes > 59 {
                return None;
            }
            (time, sign * (hours * 3600 + minutes * 60))
        }
    } else {
        (rest, 0)
    };
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (time, ""),
    };
    let mut parts = hms.splitn(3, ':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: i64 = parts.next()?.parse().ok()?;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros_fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    let secs = days * 86_400 + hours * 3600 + minutes * 60 + seconds - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros_fraction)
}

// ---------------------------------------------------------------------------------
// the walk

/// The casts of a cursor's parameters, one per key value (`None`: untyped).
type Casts = Vec<Option<&'static str>>;

/// A page query in flight; gives back the connection to keep for the next page.
type PageFuture = Pin<
    Box<
        dyn Future<
                Output = (
                    Option<PoolConnection<Postgres>>,
                    Result<Vec<PgRow>, KeysetError>,
                ),
            > + Send,
    >,
>;

/// Rows a streamed page query has received and the walk has not taken yet.
type Inbox = Arc<Mutex<VecDeque<PgRow>>>;

/// Rows a streamed page hands over at a time, at most.
const STREAM_CHUNK: usize = 1024;

/// A streamed page query in flight (see [`Plan::stream`]); gives back the
/// connection to keep for the next page.
type StreamFuture = Pin<
    Box<
        dyn Future<
                Output = (
                    Option<PoolConnection<Postgres>>,
                    Result<(usize, Option<KeysetCursor>), KeysetError>,
                ),
            > + Send,
    >,
>;

/// The state of one walk, shared by [`Keyset::rows`] and [`Keyset::batches`].
///
/// A hand-written state machine rather than `try_unfold`: the page future is boxed
/// once per page, and yielding a row moves nothing but the row and its cursor.
struct Walker {
    pool: PgPool,
    /// The plan; `None` when the definition has a mistake (in `error`).
    plan: Option<Arc<Plan>>,
    /// The definition's mistake, yielded as the first item.
    error: Option<KeysetError>,
    /// The key of the last row fetched: the next page starts after it.
    lower: Option<KeysetCursor>,
    /// The page query for the cursor's type signature, built once per walk.
    sql: Option<(Option<Casts>, Arc<str>)>,
    /// Where the key columns are in a row and how they decode; resolved on the first
    /// page.
    key_columns: Vec<KeyColumn>,
    /// The query for the next page, while it runs.
    fetch: Option<PageFuture>,
    /// The last page was short: the walk is over without another query.
    exhausted: bool,
    /// The walk ended (at the end or with an error): yield nothing more.
    done: bool,
    /// Rows asked for by the next query.
    page_size: usize,
    /// The page size doubles up to this after every full page that ended quickly.
    max_page_size: usize,
    /// The page size never shrinks below this (the batch size).
    min_page_size: usize,
    /// A page that took longer than this halves the next one; one that took under
    /// half of it lets the next one double.
    max_page_time: Duration,
    /// When the page query in flight was started.
    page_started: Option<Instant>,
    /// Keep the connection between pages.
    hold_connection: bool,
    /// The connection kept from the last page.
    conn: Option<PoolConnection<Postgres>>,
}

impl Walker {
    fn new(
        keyset: &Keyset,
        pool: &PgPool,
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
            sql: None,
            key_columns: Vec::new(),
            fetch: None,
            exhausted: false,
            done: false,
            page_size: keyset.batch_size,
            max_page_size,
            min_page_size: keyset.batch_size,
            max_page_time: keyset.max_page_time,
            page_started: None,
            hold_connection: keyset.hold_connection,
            conn: None,
        }
    }

    /// The page query after the current cursor (or from the start).
    fn page_sql(&mut self, plan: &Plan) -> Arc<str> {
        let casts: Option<Casts> = self
            .lower
            .as_ref()
            .map(|c| c.0.iter().map(KeyValue::cast).collect());
        match &self.sql {
            Some((cached, sql)) if *cached == casts => Arc::clone(sql),
            _ => {
                let sql: Arc<str> = plan.build(casts.as_deref()).into();
                self.sql = Some((casts, Arc::clone(&sql)));
                sql
            }
        }
    }

    /// Starts the next page as a streamed query handing its rows to `inbox`; `None`
    /// when the walk is over.
    fn start_stream(&mut self, inbox: &Inbox) -> Result<Option<StreamFuture>, KeysetError> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        if self.done || self.exhausted {
            self.done = true;
            return Ok(None);
        }
        let Some(plan) = self.plan.clone() else {
            self.done = true;
            return Ok(None);
        };
        let sql = self.page_sql(&plan);
        let (pool, lower, inbox) = (self.pool.clone(), self.lower.clone(), Arc::clone(inbox));
        let held = if self.hold_connection {
            self.conn.take()
        } else {
            None
        };
        let hold = self.hold_connection;
        let limit = self.page_size;
        self.page_started = Some(Instant::now());
        Ok(Some(Box::pin(async move {
            if let Some(mut conn) = held {
                match plan
                    .stream(&mut conn, &sql, lower.as_ref(), limit, &inbox)
                    .await
                {
                    Ok(page) => return (hold.then_some(conn), Ok(page)),
                    // the held connection was lost between pages, before any row
                    // came: the query is a read, so it runs again on a fresh one
                    Err((err, false)) if err.is_connection_lost() => drop(conn),
                    // a failed query may have left the connection unusable: drop it
                    Err((err, _)) => return (None, Err(err)),
                }
            }
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(err) => return (None, Err(plan.query_error(err))),
            };
            match plan
                .stream(&mut conn, &sql, lower.as_ref(), limit, &inbox)
                .await
            {
                Ok(page) => (hold.then_some(conn), Ok(page)),
                Err((err, _)) => (None, Err(err)),
            }
        })))
    }

    /// Takes in the outcome of a streamed page: the connection to keep, the next
    /// page's size and start.
    fn finish_stream(
        &mut self,
        conn: Option<PoolConnection<Postgres>>,
        result: Result<(usize, Option<KeysetCursor>), KeysetError>,
    ) -> Result<(), KeysetError> {
        self.conn = conn;
        let took = self.page_started.take().map(|started| started.elapsed());
        let (count, key) = result?;
        if count < self.page_size {
            self.exhausted = true;
            self.conn = None; // the walk is over: give the connection back now
        } else {
            self.page_size = next_page_size(
                self.page_size,
                took,
                self.max_page_time,
                self.min_page_size,
                self.max_page_size,
            );
        }
        if let Some(key) = key {
            self.lower = Some(key);
        }
        Ok(())
    }

    /// Ends the walk with `err`.
    fn fail(&mut self, err: KeysetError) -> Poll<Option<Result<Vec<PgRow>, JobError>>> {
        self.done = true;
        self.fetch = None;
        self.conn = None;
        Poll::Ready(Some(Err(err.into_job_error())))
    }

    /// Polls for the next page (never empty); `None` when the walk is over.
    fn poll_page(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<PgRow>, JobError>>> {
        if let Some(err) = self.error.take() {
            return self.fail(err);
        }
        if self.done {
            return Poll::Ready(None);
        }
        let Some(plan) = self.plan.clone() else {
            self.done = true;
            return Poll::Ready(None);
        };
        if self.fetch.is_none() {
            if self.exhausted {
                self.done = true;
                return Poll::Ready(None);
            }
            let sql = self.page_sql(&plan);
            let (pool, lower) = (self.pool.clone(), self.lower.clone());
            let plan = Arc::clone(&plan);
            let held = if self.hold_connection {
                self.conn.take()
            } else {
                None
            };
            let hold = self.hold_connection;
            let limit = self.page_size;
            self.fetch = Some(Box::pin(async move {
                let mut result = None;
                if let Some(mut conn) = held {
                    match plan.fetch(&mut conn, &sql, lower.as_ref(), limit).await {
                        // the held connection was lost between pages: the query is a
                        // read, so it runs again on a fresh one
                        Err(err) if err.is_connection_lost() => drop(conn),
                        Ok(rows) => return (hold.then_some(conn), Ok(rows)),
                        // a failed query may have left the connection unusable: drop it
                        Err(err) => result = Some(Err(err)),
                    }
                }
                if let Some(result) = result {
                    return (None, result);
                }
                let mut conn = match pool.acquire().await {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(plan.query_error(err))),
                };
                let result = plan.fetch(&mut conn, &sql, lower.as_ref(), limit).await;
                let keep = (hold && result.is_ok()).then_some(conn);
                (keep, result)
            }));
        }
        let Some(fetch) = self.fetch.as_mut() else {
            return Poll::Ready(None);
        };
        let (conn, result) = ready!(fetch.as_mut().poll(cx));
        self.fetch = None;
        self.conn = conn;
        let rows = match result {
            Ok(rows) => rows,
            Err(err) => return self.fail(err),
        };
        if rows.len() < self.page_size {
            self.exhausted = true;
        } else {
            self.page_size = self.page_size.saturating_mul(2).min(self.max_page_size);
        }
        let Some(last) = rows.last() else {
            self.done = true;
            return Poll::Ready(None);
        };
        if self.key_columns.is_empty() {
            match plan.key_columns(last) {
                Ok(columns) => self.key_columns = columns,
                Err(err) => return self.fail(err),
            }
        }
        match plan.key_of(last, &self.key_columns) {
            Ok(cursor) => self.lower = Some(cursor),
            Err(err) => return self.fail(err),
        }
        if self.exhausted {
            self.conn = None; // the walk is over: give the connection back now
        }
        Poll::Ready(Some(Ok(rows)))
    }
}

/// The size of the page after a full one of `size` rows that stayed open for `took`:
/// double (up to `max`) when it took under half of `max_time`, half (down to `min`)
/// when it took longer than `max_time`, the same otherwise.
fn next_page_size(
    size: usize,
    took: Option<Duration>,
    max_time: Duration,
    min: usize,
    max: usize,
) -> usize {
    let min = min.min(max);
    match took {
        Some(took) if took > max_time => (size / 2).max(min),
        Some(took) if took > max_time / 2 => size.clamp(min, max),
        _ => size.saturating_mul(2).min(max),
    }
}

/// The stream behind [`Keyset::rows`]: each page is streamed ([`Plan::stream`]), so
/// the first rows of a page are worked on while the rest arrive, as in one streaming
/// `SELECT`.
struct Rows {
    walker: Walker,
    /// The page query in flight.
    page: Option<StreamFuture>,
    /// Rows the page query has received and not handed to `buffer` yet.
    inbox: Inbox,
    /// Rows taken from the inbox, not yet yielded.
    buffer: VecDeque<PgRow>,
}

impl Rows {
    /// Ends the walk with `err`.
    fn fail(&mut self, err: KeysetError) -> Poll<Option<Step<PgRow>>> {
        self.page = None;
        self.buffer.clear();
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.walker.done = true;
        self.walker.conn = None;
        Poll::Ready(Some(Err(err.into_job_error())))
    }
}

/// One item of [`Rows`].
type Step<T> = Result<(T, KeysetCursor), JobError>;

impl Stream for Rows {
    type Item = Step<PgRow>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(row) = this.buffer.pop_front() {
                let walker = &mut this.walker;
                let Some(plan) = walker.plan.as_deref() else {
                    return Poll::Ready(None);
                };
                if walker.key_columns.is_empty() {
                    match plan.key_columns(&row) {
                        Ok(columns) => walker.key_columns = columns,
                        Err(err) => return this.fail(err),
                    }
                }
                return match plan.key_of(&row, &walker.key_columns) {
                    Ok(cursor) => Poll::Ready(Some(Ok((row, cursor)))),
                    Err(err) => this.fail(err),
                };
            }
            if let Some(page) = this.page.as_mut() {
                let polled = page.as_mut().poll(cx);
                std::mem::swap(
                    &mut *this.inbox.lock().unwrap_or_else(PoisonError::into_inner),
                    &mut this.buffer,
                );
                match polled {
                    Poll::Ready((conn, result)) => {
                        this.page = None;
                        if let Err(err) = this.walker.finish_stream(conn, result) {
                            return this.fail(err);
                        }
                        // send the next page's query now, on the held connection, so
                        // the server works on it while the job goes through the rest
                        // of this page (without a held connection, none is taken
                        // before this page is done)
                        if this.walker.hold_connection && !this.buffer.is_empty() {
                            match this.walker.start_stream(&this.inbox) {
                                Ok(Some(mut page)) => {
                                    if let Poll::Ready((conn, result)) = page.as_mut().poll(cx) {
                                        // a page this quick is done: take its rows
                                        // once the buffer is empty (kept in order)
                                        this.page =
                                            Some(Box::pin(std::future::ready((conn, result))));
                                    } else {
                                        this.page = Some(page);
                                    }
                                }
                                Ok(None) => {}
                                Err(err) => return this.fail(err),
                            }
                        }
                    }
                    Poll::Pending if this.buffer.is_empty() => return Poll::Pending,
                    Poll::Pending => {}
                }
                continue;
            }
            match this.walker.start_stream(&this.inbox) {
                Ok(Some(page)) => this.page = Some(page),
                Ok(None) => return Poll::Ready(None),
                Err(err) => return this.fail(err),
            }
        }
    }
}

/// The stream behind [`Keyset::batches`].
struct Batches {
    walker: Walker,
}

impl Stream for Batches {
    type Item = Result<(Vec<PgRow>, KeysetCursor), JobError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Poll::Ready(match ready!(this.walker.poll_page(cx)) {
            Some(Ok(rows)) => match &this.walker.lower {
                Some(cursor) => Some(Ok((rows, cursor.clone()))),
                None => Some(Err(JobError::fatal(
                    "keyset walker lost the cursor of a page (a bug in iterjob-postgres)",
                ))),
            },
            Some(Err(err)) => Some(Err(err)),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_grow_while_quick_and_shrink_when_slow() {
        let second = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // quick pages double, up to the largest
        assert_eq!(next_page_size(100, Some(ms(10)), second, 100, 5000), 200);
        assert_eq!(next_page_size(4000, Some(ms(10)), second, 100, 5000), 5000);
        assert_eq!(next_page_size(100, None, second, 100, 5000), 200);
        // between half the time and the time: stay
        assert_eq!(next_page_size(800, Some(ms(700)), second, 100, 5000), 800);
        // too slow: halve, never below the batch size
        assert_eq!(next_page_size(800, Some(ms(1500)), second, 100, 5000), 400);
        assert_eq!(next_page_size(150, Some(ms(1500)), second, 100, 5000), 100);
        // a batch size above the largest page: the batch size wins
        assert_eq!(next_page_size(100, Some(ms(1)), second, 100, 50), 50);
    }

    #[test]
    fn dates_round_trip() {
        for days in [-800_000i64, -719_528, -1, 0, 1, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_844), "2024-05-01");
        assert_eq!(parse_date("2024-05-01"), Some(19_844));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("infinity"), Some(i32::MAX));
        let bc = days_from_civil(-43, 3, 15) as i32;
        assert_eq!(format_date(bc), "0044-03-15 BC");
        assert_eq!(parse_date("0044-03-15 BC"), Some(bc));
    }

    #[test]
    fn timestamps_round_trip() {
        let t = 1_714_566_896_123_456i64; // 2024-05-01T12:34:56.123456Z
        assert_eq!(
            format_timestamp(t, true, 'T'),
            "2024-05-01T12:34:56.123456Z"
        );
        assert_eq!(
            format_timestamp(t, true, ' '),
            "2024-05-01 12:34:56.123456+00"
        );
        assert_eq!(
            format_timestamp(t, false, 'T'),
            "2024-05-01T12:34:56.123456"
        );
        for micros in [
            t,
            0,
            -1,
            -86_400_000_000,
            1,
            i64::MAX,
            i64::MIN,
            t - t % 1_000_000,
        ] {
            assert_eq!(
                parse_timestamp(&format_timestamp(micros, true, 'T'), true),
                Some(micros)
            );
            assert_eq!(
                parse_timestamp(&format_timestamp(micros, false, 'T'), false),
                Some(micros)
            );
        }
        assert_eq!(
            parse_timestamp("2024-05-01T14:34:56.123456+02:00", true),
            Some(t)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:34:56.1Z", true),
            Some(t - 23_456)
        );
        assert_eq!(parse_timestamp("2024-05-01", true), None);
        assert_eq!(parse_timestamp("2024-05-01T25:00:00Z", true), None);
    }

    #[test]
    fn json_forms() {
        let values = vec![
            KeyValue::Null,
            KeyValue::Bool(true),
            KeyValue::Integer(-3),
            KeyValue::Real(2.0),
            KeyValue::Real(f64::INFINITY),
            KeyValue::Text("2024-05-01".into()),
            KeyValue::Bytes(vec![0, 255]),
            KeyValue::Uuid([0x67; 16]),
            KeyValue::Date(19_844),
            KeyValue::Timestamp(1_714_566_896_000_000),
            KeyValue::Timestamptz(1_714_566_896_123_456),
        ];
        let json = serde_json::to_value(KeysetCursor(values.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                null,
                true,
                -3,
                2.0,
                {"float8": "Infinity"},
                "2024-05-01",
                {"bytea": "00ff"},
                {"uuid": "67676767-6767-6767-6767-676767676767"},
                {"date": "2024-05-01"},
                {"timestamp": "2024-05-01T12:34:56"},
                {"timestamptz": "2024-05-01T12:34:56.123456Z"},
            ])
        );
        let back: KeysetCursor = serde_json::from_value(json).unwrap();
        assert_eq!(back.0, values);
        let nan: KeyValue = serde_json::from_str(r#"{"float8": "NaN"}"#).unwrap();
        assert!(matches!(nan, KeyValue::Real(v) if v.is_nan()));
        assert!(serde_json::from_str::<KeyValue>(r#"{"timestamptz": "yesterday"}"#).is_err());
        assert!(serde_json::from_str::<KeyValue>(r#"{"money": "1"}"#).is_err());
    }
}
