//! [`Keyset`]: an enumerator over the rows of a table or query, in key order,
//! resumable from the key of the last row done — one implementation for every SQL
//! database, through its [`Dialect`].
//!
//! Each store crate names it for its database (`iterjob_sqlite::Keyset`,
//! `iterjob_postgres::Keyset`, `iterjob_mysql::Keyset`): the same builder, the same
//! guarantees, the dialect's SQL.

mod error;
mod plan;
mod text;
mod value;
mod walker;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use futures::StreamExt;
use iterjob::JobError;
use iterjob::enumerator::Enumerator;
use iterjob::partition::KeyRange;
use sqlx::Pool;

pub use error::KeysetError;
pub use text::{
    civil_from_days, days_from_civil, format_date, format_timestamp, format_uuid, parse_date,
    parse_timestamp, parse_uuid,
};
pub use value::{KeyValue, KeysetCursor};

use crate::dialect::{Dialect, RowOf, TableName};
use plan::Shape;
use walker::{Batches, Rows, Walker, plan_for, query_error};

/// How long one page query of [`Keyset::rows`] may stay open, from sending it to its
/// last row, unless [`Keyset::max_page_time`] says otherwise. The next page doubles
/// only while pages end in under half of this, and halves after a page that took
/// longer: a slow job reads small pages of fresh rows, a fast one few large ones.
pub const DEFAULT_MAX_PAGE_TIME: Duration = Duration::from_secs(1);

/// Rows per page unless [`Keyset::batch_size`] says otherwise.
///
/// Each page costs a query (a round trip, plus a pool checkout with
/// [`Keyset::hold_connection`] off). [`Keyset::rows`] grows its pages from this by
/// itself; for [`Keyset::batches`] it is the size of every batch, so bulk scans run
/// faster with bigger batches (500–5 000 rows), while small ones hold fewer rows in
/// memory and see fresher data when the job's work is slow.
pub const DEFAULT_BATCH_SIZE: usize = 100;

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

/// A keyset enumerator over a table or query: rows in key order, resumable from the
/// last row's key. `D` is the database's [`Dialect`]; each store crate exports this
/// type under its own name with its dialect filled in.
///
/// Each page is one query,
///
/// ```sql
/// SELECT … FROM products
/// WHERE (created_at, id) > (?, ?)      -- the cursor: the last row's key
///   AND (archived = 0)                 -- the filter, if any
///   AND (created_at, id) <= (?, ?)     -- the upper bound, if any
/// ORDER BY created_at, id
/// LIMIT ?                              -- the page size
/// ```
///
/// never `OFFSET`: every page is an index seek, however deep into the table, and rows
/// inserted or deleted behind the cursor cannot shift the walk. A page shorter than
/// the page size ends the walk without another query. The walk keeps one pooled
/// connection from page to page ([`hold_connection`](Keyset::hold_connection)) but no
/// transaction, snapshot or lock, so the job's own work can use the same pool while
/// it walks.
///
/// # Keys that cannot skip a row
///
/// Before the first page of a table, the walk reads what the schema says about the
/// key columns (one catalog query):
///
/// * **NULLs.** A nullable key column is walked exactly: NULL sorts where the
///   database's indexes keep it (first on SQLite and MySQL, last on PostgreSQL, in an
///   ascending walk; the other end descending), a cursor can hold NULL in any
///   position, and "after the cursor" includes the NULL rows that come after it.
///   Columns declared `NOT NULL` get the short row-value comparison; with a nullable
///   one, a page is the union of a few index seeks (see `BENCHMARKS.md` for the cost).
/// * **Ties.** The key must identify a row. When the primary key or a unique index on
///   NOT NULL columns lies within the key columns, the schema vouches for it and the
///   walk costs nothing more. Otherwise (a key such as `updated_at` alone, or any
///   [`query`](Keyset::query) source) the walk checks: two neighbouring rows with the
///   same key, or a second row with the key a page (or a resumed run) starts after,
///   end the walk with [`KeysetError::KeyNotUnique`], naming the key and a key that
///   would work, before a row can be skipped. That check is one small query per page.
///
/// [`assume_not_null`](Keyset::assume_not_null) and
/// [`assume_unique`](Keyset::assume_unique) skip the schema and the checks for a
/// query source you know better.
///
/// The cursor ([`KeysetCursor`]) holds the last row's key values with their types —
/// integers stay integers, times stay times (see [`KeyValue`]) — and each is bound
/// back as its type, so the next page's comparison is the one `ORDER BY` made.
///
/// Table, key and column names are checked to be plain identifiers and are quoted.
/// The [`filter`](Keyset::filter) and [`query`](Keyset::query) are SQL text inserted
/// as given: they must come from the job's code, **never from user input**.
pub struct Keyset<D> {
    source: Source,
    keys: Vec<String>,
    columns: Option<Vec<String>>,
    filter: Option<String>,
    descending: bool,
    batch_size: usize,
    max_page_size: Option<usize>,
    max_page_time: Duration,
    start: Option<KeysetCursor>,
    end: Option<Bound>,
    hold_connection: bool,
    assume_not_null: bool,
    assume_unique: bool,
    _dialect: PhantomData<fn() -> D>,
}

impl<D> Clone for Keyset<D> {
    fn clone(&self) -> Self {
        Keyset {
            source: self.source.clone(),
            keys: self.keys.clone(),
            columns: self.columns.clone(),
            filter: self.filter.clone(),
            descending: self.descending,
            batch_size: self.batch_size,
            max_page_size: self.max_page_size,
            max_page_time: self.max_page_time,
            start: self.start.clone(),
            end: self.end.clone(),
            hold_connection: self.hold_connection,
            assume_not_null: self.assume_not_null,
            assume_unique: self.assume_unique,
            _dialect: PhantomData,
        }
    }
}

impl<D> fmt::Debug for Keyset<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyset")
            .field("source", &self.source)
            .field("keys", &self.keys)
            .field("columns", &self.columns)
            .field("filter", &self.filter)
            .field("descending", &self.descending)
            .field("batch_size", &self.batch_size)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("assume_not_null", &self.assume_not_null)
            .field("assume_unique", &self.assume_unique)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> Keyset<D> {
    /// Walks the table `name` (`table` or `schema.table`).
    pub fn table(name: impl Into<String>) -> Self {
        Self::new(Source::Table(name.into()))
    }

    /// Walks the result of a `SELECT` (for example a join), which must return the key
    /// columns by name. It is used as a subquery (`SELECT … FROM (query) AS
    /// iterjob_keyset WHERE …`), into which the database pushes the key conditions.
    /// Trusted SQL from the job's code: never build it from user input. It must not
    /// contain bind parameters.
    ///
    /// The schema cannot vouch for a query's keys: they are taken as nullable and
    /// checked for ties (see [`assume_not_null`](Keyset::assume_not_null) and
    /// [`assume_unique`](Keyset::assume_unique)).
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
            max_page_size: None,
            max_page_time: DEFAULT_MAX_PAGE_TIME,
            start: None,
            end: None,
            hold_connection: true,
            assume_not_null: false,
            assume_unique: false,
            _dialect: PhantomData,
        }
    }

    /// Whether the walk keeps one pooled connection from page to page (default on),
    /// instead of acquiring one for every page: with small pages the acquire costs as
    /// much as the query. No transaction stays open between pages, so writers are
    /// never blocked; but a job that writes through the same pool needs a pool of
    /// at least two connections, and each running walk takes one connection of the
    /// pool for as long as it runs: count them when sizing the pool. A held
    /// connection that was lost while the job worked on a page (a server restart, a
    /// network cut) is replaced by a fresh one for that page's query, once. The
    /// connection goes back to the pool when the walk ends, fails or is dropped. Turn
    /// it off for a pool of one, or to give connections back between pages when the
    /// work on a page is long.
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
    /// together they must identify a row: end with a unique column such as the
    /// primary key (`.keys(["created_at", "id"])`).
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

    /// The largest page [`rows`](Keyset::rows) fetches (default: the dialect's,
    /// [`Dialect::DEFAULT_MAX_PAGE_SIZE`]). `rows` yields one row at a time and
    /// streams each page (rows are read as the job takes them, so memory holds a
    /// chunk of rows, not a page), so the page is only a fetch size: it starts at the
    /// batch size and doubles after every full page that ended within half of
    /// [`max_page_time`](Keyset::max_page_time), up to this.
    pub fn max_page_size(mut self, rows: usize) -> Self {
        self.max_page_size = Some(rows);
        self
    }

    /// How long one page query of [`rows`](Keyset::rows) may stay open (default
    /// [`DEFAULT_MAX_PAGE_TIME`]), timed from sending its query to reading its last
    /// row. Rows are read as the job takes them, so with slow work a big page keeps
    /// its query open for long (a connection busy, a snapshot held, rows as of the
    /// query's start). Pages grow only while they end within half of this, and a
    /// page that took longer halves the next one (never below the batch size).
    pub fn max_page_time(mut self, time: Duration) -> Self {
        self.max_page_time = time;
        self
    }

    /// Starts just after this key (exclusive): the walk covers keys after `start` in
    /// its order. A resume cursor given to [`rows`](Keyset::rows) or
    /// [`batches`](Keyset::batches) takes its place.
    pub fn after(mut self, start: impl Into<KeysetCursor>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Stops after this key (inclusive): the walk covers keys up to `end` in its
    /// order. With [`after`](Keyset::after), splits a table into ranges `(a, b]`,
    /// `(b, c]`, … that together cover it exactly once — one job per range walks a
    /// big table in parallel.
    pub fn until(mut self, end: impl Into<KeysetCursor>) -> Self {
        self.end = Some(Bound {
            key: end.into(),
            inclusive: true,
        });
        self
    }

    /// Stops before this key (exclusive).
    pub fn until_exclusive(mut self, end: impl Into<KeysetCursor>) -> Self {
        self.end = Some(Bound {
            key: end.into(),
            inclusive: false,
        });
        self
    }

    /// Takes the key columns as never NULL without asking the schema: every page is
    /// the short row-value comparison. For a [`query`](Keyset::query) source whose
    /// keys you know are never NULL. A NULL key then ends the walk with
    /// [`KeysetError::NullKey`] when it arrives — but one that sorts after the
    /// cursor may never arrive: this is your promise, not a check.
    pub fn assume_not_null(mut self) -> Self {
        self.assume_not_null = true;
        self
    }

    /// Takes the key as identifying a row without asking the schema, and skips the
    /// tie checks (one small query per page). For a [`query`](Keyset::query) source
    /// whose key you know is unique: if two rows share a key after all, a walk that
    /// resumes between them skips the second.
    pub fn assume_unique(mut self) -> Self {
        self.assume_unique = true;
        self
    }

    /// Checks the definition without touching the database: identifiers, key count,
    /// batch size and bounds. [`rows`](Keyset::rows) and [`batches`](Keyset::batches)
    /// yield the same error as their first item.
    ///
    /// # Errors
    /// The first mistake found.
    pub fn check(&self) -> Result<(), KeysetError> {
        self.shape(None).map(|_| ())
    }

    /// The query for pages after a cursor (the one that runs for every page but the
    /// first), for logging or `EXPLAIN`, with the key columns taken as NOT NULL (a
    /// walk of a nullable key reads several index ranges; see the type's docs).
    /// Its parameters are the cursor's key values, the end bound's, then the page
    /// size, each written where the dialect needs it (a dialect without row values
    /// repeats some: read the text). The cursor's parameters are typed as the
    /// [`after`](Keyset::after) bound's values when one is given, and left untyped
    /// otherwise (a walk types them as the row it resumes after).
    ///
    /// # Errors
    /// As [`Keyset::check`].
    pub fn sql(&self) -> Result<String, KeysetError> {
        let shape = self.shape(None)?;
        let lower = match &self.start {
            Some(start) => start.0.to_vec(),
            None => vec![KeyValue::Null; self.keys.len()],
        };
        let plan = walker::resolve::<D>(shape, None, true, true);
        Ok(plan.page(Some(&lower)).text)
    }

    /// Divides the walk into at most `n` key ranges holding about the same number of
    /// rows, cut at quantiles of the key: the database counts the rows, then finds the
    /// key at each cut with `LIMIT 1 OFFSET` over the keys (an index-only scan when
    /// the keys are indexed); no row leaves the database. For
    /// [`Job::partition`](iterjob::Job::partition); apply a range with
    /// [`Keyset::range`]. Same result as
    /// [`partition::quantile_ranges`](iterjob::partition::quantile_ranges) over
    /// [`rows`](Keyset::rows), NULL keys included; rows that share a key (with a key
    /// that is not unique) always fall in the same range.
    ///
    /// # Errors
    /// As the walk's first page would fail: a bad definition, a missing table or column.
    pub async fn quantile_ranges(
        &self,
        pool: &Pool<D::Database>,
        n: u32,
    ) -> Result<Vec<KeyRange<KeysetCursor>>, JobError> {
        if n <= 1 {
            return Ok(if n == 1 {
                vec![KeyRange::all()]
            } else {
                Vec::new()
            });
        }
        self.quantiles(pool, n)
            .await
            .map_err(KeysetError::into_job_error)
    }

    async fn quantiles(
        &self,
        pool: &Pool<D::Database>,
        n: u32,
    ) -> Result<Vec<KeyRange<KeysetCursor>>, KeysetError> {
        let relation = self.relation();
        let mut conn = pool
            .acquire()
            .await
            .map_err(|err| query_error::<D>(&relation, err))?;
        let plan = plan_for(self, &mut conn, None).await?;
        let lower = self.start.as_ref();
        let total = plan.count_rows(&mut conn, lower).await?;
        if total == 0 {
            return Ok(Vec::new());
        }
        let parts = u64::from(n).min(total);
        let mut bounds: Vec<KeysetCursor> = Vec::new();
        for i in 1..parts {
            // the row closing part i is the (total * i / parts)-th, 1-based
            let offset = total * i / parts - 1;
            if let Some(key) = plan.nth_key(&mut conn, lower, offset).await?
                && bounds.last() != Some(&key)
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
    /// `None` when fewer than 2 rows are left. Counted and found by the database, as
    /// [`Keyset::quantile_ranges`].
    ///
    /// # Errors
    /// As [`Keyset::quantile_ranges`].
    pub async fn midpoint(
        &self,
        pool: &Pool<D::Database>,
        cursor: Option<&KeysetCursor>,
    ) -> Result<Option<KeysetCursor>, JobError> {
        self.middle(pool, cursor)
            .await
            .map_err(KeysetError::into_job_error)
    }

    async fn middle(
        &self,
        pool: &Pool<D::Database>,
        cursor: Option<&KeysetCursor>,
    ) -> Result<Option<KeysetCursor>, KeysetError> {
        let relation = self.relation();
        let mut conn = pool
            .acquire()
            .await
            .map_err(|err| query_error::<D>(&relation, err))?;
        let plan = plan_for(self, &mut conn, cursor).await?;
        let lower = cursor.or(self.start.as_ref());
        let left = plan.count_rows(&mut conn, lower).await?;
        if left < 2 {
            return Ok(None);
        }
        let mid = plan.nth_key(&mut conn, lower, left / 2 - 1).await?;
        // a middle key equal to the range's end leaves nothing to give away
        match (&mid, &self.end) {
            (Some(mid), Some(end)) if *mid == end.key => Ok(None),
            _ => Ok(mid),
        }
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
        pool: &Pool<D::Database>,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<RowOf<D>, KeysetCursor> + use<D> {
        let max = self
            .max_page_size
            .unwrap_or(D::DEFAULT_MAX_PAGE_SIZE)
            .max(self.batch_size);
        Rows::new(Walker::new(self, pool, cursor, max))
    }

    /// The rows decoded into `T` (any [`sqlx::FromRow`], e.g. `#[derive(sqlx::FromRow)]`),
    /// one at a time, each with the cursor just past it. A row that does not decode
    /// is a fatal error naming the column.
    pub fn rows_as<T>(
        &self,
        pool: &Pool<D::Database>,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<T, KeysetCursor> + use<D, T>
    where
        T: for<'r> sqlx::FromRow<'r, RowOf<D>> + Send + 'static,
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
        pool: &Pool<D::Database>,
        cursor: Option<KeysetCursor>,
    ) -> impl Enumerator<Vec<RowOf<D>>, KeysetCursor> + use<D> {
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

    /// Checks the definition and prepares the pieces of its SQL.
    fn shape(&self, cursor: Option<&KeysetCursor>) -> Result<Shape, KeysetError> {
        let relation = self.relation();
        let invalid = |what: &'static str, name: &str, schema_hint: &'static str| {
            KeysetError::InvalidIdentifier {
                what,
                name: name.to_string(),
                schema_hint,
            }
        };
        let (from, qualifier, table) = match &self.source {
            Source::Table(name) => {
                let parts: Vec<&str> = name.split('.').collect();
                if parts.len() > 2 || !parts.iter().all(|p| is_identifier(p)) {
                    return Err(invalid("table", name, "; `schema.table` is allowed"));
                }
                let quoted = parts
                    .iter()
                    .map(|p| D::quote(p))
                    .collect::<Vec<_>>()
                    .join(".");
                let table = match parts.as_slice() {
                    [schema, name] => TableName {
                        schema: Some(schema.to_string()),
                        name: name.to_string(),
                    },
                    _ => TableName {
                        schema: None,
                        name: name.clone(),
                    },
                };
                (quoted.clone(), quoted, Some(table))
            }
            Source::Query(sql) => (
                format!("({sql}) AS iterjob_keyset"),
                "iterjob_keyset".to_string(),
                None,
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

        let column = |name: &str| format!("{qualifier}.{}", D::quote(name));
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
        Ok(Shape {
            relation,
            table,
            from,
            select,
            key_columns: self.keys.iter().map(|k| column(k)).collect(),
            key_names: self.keys.iter().map(|k| D::quote(k)).collect(),
            keys: self.keys.clone(),
            descending: self.descending,
            filter: self.filter.clone(),
            end: self.end.as_ref().map(|e| (e.key.0.to_vec(), e.inclusive)),
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
