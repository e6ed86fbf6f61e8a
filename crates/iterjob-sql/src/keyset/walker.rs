//! The walk: pages fetched one after another on a held connection, the schema read
//! once at the start, ties checked at page boundaries, rows streamed as they arrive.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::{Stream, TryStreamExt};
use iterjob::JobError;
use sqlx::pool::PoolConnection;
use sqlx::{Column, Pool, Row, ValueRef};

use super::Keyset;
use super::error::KeysetError;
use super::plan::{Facts, Plan, Shape, Sql};
use super::value::{KeyValue, KeyValues, KeysetCursor};
use crate::dialect::{ConnectionOf, Dialect, ErrorClass, KeyFacts, RowOf};

/// Rows a streamed page hands over at a time, at most.
const STREAM_CHUNK: usize = 32;

/// A pooled connection of the dialect's database.
type Conn<D> = PoolConnection<<D as Dialect>::Database>;

/// The outcome of a page query: the connection to keep, and the rows (or, streamed,
/// their number and the last row's key).
type PageOutput<D, T> = (Option<Conn<D>>, Result<T, KeysetError>);

/// A page query in flight.
type PageFuture<D, T> = Pin<Box<dyn Future<Output = PageOutput<D, T>> + Send>>;

/// Rows a streamed page query has received and the walk has not taken yet.
type Inbox<D> = Arc<Mutex<VecDeque<RowOf<D>>>>;

/// A streamed page's outcome: rows received, and the key of the last one.
type Streamed = (usize, Option<KeysetCursor>);

/// Reading the schema at the start: gives back the connection and the plan.
type ResolveFuture<D> =
    Pin<Box<dyn Future<Output = (Option<Conn<D>>, Result<Plan<D>, KeysetError>)> + Send>>;

/// A pooled connection lent to a page query. If the query's future is dropped before
/// it ends (a walk dropped mid-page: an interrupted job), the connection is in a state
/// nobody knows — SQLite still holds the statement's read snapshot, another database
/// a half-read result — so it is closed instead of going back to the pool, where the
/// next user of it would read stale rows. A query that ended gives it back.
struct Lent<D: Dialect>(Option<Conn<D>>);

impl<D: Dialect> Lent<D> {
    fn conn(&mut self) -> &mut Conn<D> {
        match self.0.as_mut() {
            Some(conn) => conn,
            None => unreachable!("a lent connection is taken back only by `give_back`"),
        }
    }

    /// The connection, its query over.
    fn give_back(mut self) -> Option<Conn<D>> {
        self.0.take()
    }
}

impl<D: Dialect> Drop for Lent<D> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// A key column of the rows: where it is and how its values decode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyColumn<K> {
    index: usize,
    kind: K,
}

/// Classifies a driver error met by the walk over `relation`.
pub(crate) fn query_error<D: Dialect>(relation: &str, err: sqlx::Error) -> KeysetError {
    let relation = relation.to_string();
    match D::classify(&err) {
        ErrorClass::MissingTable(table) => KeysetError::MissingTable {
            relation,
            table,
            source: err,
        },
        ErrorClass::MissingColumn(column) => KeysetError::MissingColumn {
            relation,
            column,
            source: err,
        },
        class => KeysetError::Database {
            relation,
            transient: class.is_transient(),
            source: err,
        },
    }
}

/// True when the error says the connection was gone before the statement ran.
fn connection_lost<D: Dialect>(err: &KeysetError) -> bool {
    match err {
        KeysetError::Database { source, .. } => D::classify(source) == ErrorClass::ConnectionLost,
        _ => false,
    }
}

impl<D: Dialect> Plan<D> {
    /// Where each key column is in the rows, by name, and how it decodes: resolved
    /// once, on the first row, so each row's key costs only its decoding.
    pub(crate) fn key_columns(
        &self,
        row: &RowOf<D>,
    ) -> Result<Vec<KeyColumn<D::KeyKind>>, KeysetError> {
        let columns = row.columns();
        self.shape
            .keys
            .iter()
            .map(|key| {
                let index = columns
                    .iter()
                    .position(|c| c.name() == key)
                    .or_else(|| {
                        columns
                            .iter()
                            .position(|c| c.name().eq_ignore_ascii_case(key))
                    })
                    .ok_or_else(|| KeysetError::MissingColumn {
                        relation: self.shape.relation.clone(),
                        column: key.clone(),
                        source: sqlx::Error::ColumnNotFound(key.clone()),
                    })?;
                let type_info = columns[index].type_info();
                let kind = D::key_kind(type_info).ok_or_else(|| {
                    use sqlx::TypeInfo as _;
                    KeysetError::UnsupportedKeyType {
                        relation: self.shape.relation.clone(),
                        column: key.clone(),
                        type_name: type_info.name().to_string(),
                        supported: D::SUPPORTED_KEY_TYPES,
                    }
                })?;
                Ok(KeyColumn { index, kind })
            })
            .collect()
    }

    /// A row's key, as a cursor.
    #[inline]
    pub(crate) fn key_of(
        &self,
        row: &RowOf<D>,
        columns: &[KeyColumn<D::KeyKind>],
    ) -> Result<KeysetCursor, KeysetError> {
        // a walk reads one per row: the one-column key is built without a loop
        if let [column] = columns {
            return Ok(KeysetCursor(smallvec::smallvec![
                self.key_value(row, 0, column)?
            ]));
        }
        let mut values = KeyValues::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            values.push(self.key_value(row, i, column)?);
        }
        Ok(KeysetCursor(values))
    }

    /// The value of key column `i` in a row.
    #[inline]
    fn key_value(
        &self,
        row: &RowOf<D>,
        i: usize,
        column: &KeyColumn<D::KeyKind>,
    ) -> Result<KeyValue, KeysetError> {
        let raw = match D::value_at(row, column.index) {
            Ok(raw) => raw,
            Err(source) => return Err(self.decode_error(source)),
        };
        if raw.is_null() {
            return self.null_key(i);
        }
        match D::decode_key(column.kind, raw) {
            Ok(value) => Ok(value),
            Err(source) => Err(self.decode_error(sqlx::Error::ColumnDecode {
                index: self.shape.keys[i].clone(),
                source,
            })),
        }
    }

    /// A key column that does not decode.
    #[cold]
    fn decode_error(&self, source: sqlx::Error) -> KeysetError {
        KeysetError::Decode {
            relation: self.shape.relation.clone(),
            source,
        }
    }

    /// A NULL in key column `i`: a value of its own, or an error when the keyset
    /// assumed the column is never NULL.
    #[cold]
    fn null_key(&self, i: usize) -> Result<KeyValue, KeysetError> {
        if self.facts.nulls_are_errors {
            return Err(KeysetError::NullKey {
                relation: self.shape.relation.clone(),
                column: self.shape.keys[i].clone(),
            });
        }
        Ok(KeyValue::Null)
    }

    /// Counts the rows after `lower` (within the end bound and filter).
    pub(crate) async fn count_rows(
        &self,
        conn: &mut ConnectionOf<D>,
        lower: Option<&KeysetCursor>,
    ) -> Result<u64, KeysetError> {
        let sql = self.count(lower.map(|c| c.0.as_slice()));
        let row = self.first_row(conn, &sql, lower, 0, 0).await?;
        let n = row
            .as_ref()
            .map(|row| decode_count::<D>(row))
            .transpose()
            .map_err(|err| self.error(err))?;
        Ok(n.unwrap_or(0))
    }

    /// The key of the row `offset` rows after the first one after `lower`.
    pub(crate) async fn nth_key(
        &self,
        conn: &mut ConnectionOf<D>,
        lower: Option<&KeysetCursor>,
        offset: u64,
    ) -> Result<Option<KeysetCursor>, KeysetError> {
        let sql = self.nth(lower.map(|c| c.0.as_slice()));
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let row = self
            .first_row(conn, &sql, lower, offset.saturating_add(1), offset)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let columns = self.key_columns(&row)?;
                self.key_of(&row, &columns).map(Some)
            }
        }
    }

    /// True when more than one row has the key `at`.
    async fn is_tied(
        &self,
        conn: &mut ConnectionOf<D>,
        at: &KeysetCursor,
    ) -> Result<bool, KeysetError> {
        let sql = self.tie_check(&at.0);
        let row = self.first_row(conn, &sql, Some(at), 2, 0).await?;
        let n = row
            .as_ref()
            .map(|row| decode_count::<D>(row))
            .transpose()
            .map_err(|err| self.error(err))?;
        Ok(n.unwrap_or(0) > 1)
    }

    async fn first_row(
        &self,
        conn: &mut ConnectionOf<D>,
        sql: &Sql,
        lower: Option<&KeysetCursor>,
        limit: i64,
        offset: i64,
    ) -> Result<Option<RowOf<D>>, KeysetError> {
        let query = self.bind(&sql.text, &sql.params, lower, limit, offset);
        let mut rows = D::fetch(conn, query);
        let first = rows.try_next().await.map_err(|err| self.error(err))?;
        drop(rows);
        Ok(first)
    }

    fn error(&self, err: sqlx::Error) -> KeysetError {
        query_error::<D>(&self.shape.relation, err)
    }

    /// Fetches a whole page.
    async fn fetch_page(
        &self,
        conn: &mut ConnectionOf<D>,
        sql: &Sql,
        lower: Option<&KeysetCursor>,
        limit: usize,
    ) -> Result<Vec<RowOf<D>>, KeysetError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = self.bind(&sql.text, &sql.params, lower, limit, 0);
        D::fetch(conn, query)
            .try_collect()
            .await
            .map_err(|err| self.error(err))
    }

    /// Runs a page query and hands its rows to `inbox` as they arrive, in chunks of at
    /// most [`STREAM_CHUNK`] rows, so the walk works on the first rows while the rest
    /// are still on the wire. Returns the number of rows and the key of the last one
    /// (the next page starts after it); on an error, also whether any row had been
    /// handed over already (then the page cannot simply run again).
    async fn stream_page(
        &self,
        conn: &mut ConnectionOf<D>,
        sql: &Sql,
        lower: Option<&KeysetCursor>,
        limit: usize,
        inbox: &Inbox<D>,
    ) -> Result<Streamed, (KeysetError, bool)> {
        let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = self.bind(&sql.text, &sql.params, lower, limit_param, 0);
        let mut rows = D::fetch(conn, query);
        let mut chunk: VecDeque<RowOf<D>> = VecDeque::new();
        let mut count = 0usize;
        // the key of the last row handed over: the next page starts after it (read
        // once per chunk, from its last row, not from every row)
        let mut last_key: Option<KeysetCursor> = None;
        let mut columns: Vec<KeyColumn<D::KeyKind>> = Vec::new();
        let mut key_of_last = |chunk: &VecDeque<RowOf<D>>| -> Result<(), KeysetError> {
            if let Some(row) = chunk.back() {
                if columns.is_empty() {
                    columns = self.key_columns(row)?;
                }
                last_key = Some(self.key_of(row, &columns)?);
            }
            Ok(())
        };
        let hand_over = |chunk: &mut VecDeque<RowOf<D>>| {
            let mut inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
            if inbox.is_empty() {
                // the walk took everything: the chunk's rows need not move
                std::mem::swap(&mut *inbox, chunk);
            } else {
                inbox.append(chunk);
            }
        };
        let mut key_failed = None;
        let ended = std::future::poll_fn(|cx| {
            loop {
                match rows.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(row))) => {
                        count += 1;
                        chunk.push_back(row);
                        if chunk.len() >= STREAM_CHUNK {
                            if let Err(err) = key_of_last(&chunk) {
                                key_failed = Some(err);
                                return Poll::Ready(Ok(()));
                            }
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
                            if let Err(err) = key_of_last(&chunk) {
                                key_failed = Some(err);
                                return Poll::Ready(Ok(()));
                            }
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
            return Err((self.error(err), count > 0));
        }
        if let Some(err) = key_failed {
            return Err((err, true));
        }
        key_of_last(&chunk).map_err(|err| (err, true))?;
        hand_over(&mut chunk);
        Ok((count, last_key))
    }
}

/// Reads a `COUNT(*)` (an integer of any width the database gives it).
fn decode_count<D: Dialect>(row: &RowOf<D>) -> Result<u64, sqlx::Error> {
    let raw = D::value_at(row, 0)?;
    if raw.is_null() {
        return Ok(0);
    }
    let kind = {
        let type_info = raw.type_info();
        D::key_kind(&type_info)
            .ok_or_else(|| sqlx::Error::Decode("COUNT(*) of an unexpected type".into()))?
    };
    match D::decode_key(kind, raw).map_err(sqlx::Error::Decode)? {
        KeyValue::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        KeyValue::Unsigned(n) => Ok(n),
        KeyValue::Decimal(text) => text
            .parse()
            .map_err(|_| sqlx::Error::Decode(format!("COUNT(*) is `{text}`").into())),
        other => Err(sqlx::Error::Decode(
            format!("COUNT(*) decoded as a {}", other.type_name()).into(),
        )),
    }
}

/// The plan for `shape` given what the schema says.
pub(crate) fn resolve<D: Dialect>(
    shape: Shape,
    schema: Option<KeyFacts>,
    assume_not_null: bool,
    assume_unique: bool,
) -> Plan<D> {
    let n = shape.keys.len();
    let nullable = if assume_not_null {
        vec![false; n]
    } else {
        match &schema {
            Some(facts) if facts.nullable.len() == n => facts.nullable.clone(),
            _ => vec![true; n],
        }
    };
    let unique = assume_unique || schema.as_ref().is_some_and(|f| f.unique);
    let quote_list = |columns: &[String]| {
        columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let suggestion = match &schema {
        Some(facts)
            if !facts.primary_key.is_empty()
                && !facts.primary_key.iter().all(|pk| shape.keys.contains(pk)) =>
        {
            let mut keys = shape.keys.clone();
            keys.extend(
                facts
                    .primary_key
                    .iter()
                    .filter(|pk| !shape.keys.contains(pk))
                    .cloned(),
            );
            format!("its primary key: `.keys([{}])`", quote_list(&keys))
        }
        _ => {
            let mut keys = shape.keys.clone();
            keys.push("id".to_string());
            format!(
                "the primary key: `.keys([{}])` (or, if you know better, `.assume_unique()`)",
                quote_list(&keys)
            )
        }
    };
    Plan::new(
        shape,
        Facts {
            nullable,
            unique,
            nulls_are_errors: assume_not_null,
            suggestion,
        },
    )
}

/// How the walk learns its plan.
enum PlanState<D: Dialect> {
    /// The definition has a mistake, yielded as the first item.
    Invalid(Option<KeysetError>),
    /// The schema has to be read first (or it is known already: resolved at once).
    Unresolved(Shape),
    /// Reading the schema.
    Resolving(ResolveFuture<D>),
    /// Ready.
    Ready(Arc<Plan<D>>),
}

/// The state of one walk, shared by [`Keyset::rows`] and [`Keyset::batches`].
///
/// A hand-written state machine rather than `try_unfold`: the page future is boxed
/// once per page, and yielding a row moves nothing but the row and its cursor.
pub(crate) struct Walker<D: Dialect> {
    pool: Pool<D::Database>,
    plan: PlanState<D>,
    assume_not_null: bool,
    assume_unique: bool,
    /// The key of the last row fetched: the next page starts after it.
    lower: Option<KeysetCursor>,
    /// `lower` is the cursor a run resumed from, not a page boundary of this walk.
    lower_is_resume: bool,
    /// The page query for the cursor's type signature, built once per walk.
    sql: Option<(Option<Vec<u8>>, Arc<Sql>)>,
    /// Where the key columns are in a row and how they decode; resolved on the first
    /// page.
    key_columns: Vec<KeyColumn<D::KeyKind>>,
    /// The whole-page query in flight (for `batches`).
    fetch: Option<PageFuture<D, Vec<RowOf<D>>>>,
    /// The last page was short: the walk is over without another query.
    exhausted: bool,
    /// The walk ended (at the end or with an error): yield nothing more.
    pub(crate) done: bool,
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
    pub(crate) hold_connection: bool,
    /// The connection kept from the last page.
    pub(crate) conn: Option<Conn<D>>,
    /// The key of the last row yielded, to find two neighbours with the same key.
    last_key: Option<KeysetCursor>,
}

// Nothing of a walk is ever pinned in place: its futures are boxed, and the pooled
// connection it holds is only moved into them.
impl<D: Dialect> Unpin for Walker<D> {}

impl<D: Dialect> Walker<D> {
    pub(crate) fn new(
        keyset: &Keyset<D>,
        pool: &Pool<D::Database>,
        cursor: Option<KeysetCursor>,
        max_page_size: usize,
    ) -> Self {
        let plan = match keyset.shape(cursor.as_ref()) {
            Ok(shape) => PlanState::Unresolved(shape),
            Err(err) => PlanState::Invalid(Some(err)),
        };
        let lower_is_resume = cursor.is_some();
        Walker {
            pool: pool.clone(),
            plan,
            assume_not_null: keyset.assume_not_null,
            assume_unique: keyset.assume_unique,
            lower: cursor.or_else(|| keyset.start.clone()),
            lower_is_resume,
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
            last_key: None,
        }
    }

    /// Resolves the plan: reads the schema for a table whose keys the keyset did not
    /// vouch for. `Ready(Err)` ends the walk.
    fn poll_plan(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<Plan<D>>, KeysetError>> {
        loop {
            match &mut self.plan {
                PlanState::Ready(plan) => return Poll::Ready(Ok(Arc::clone(plan))),
                PlanState::Invalid(err) => {
                    let err = err.take().unwrap_or_else(|| KeysetError::NoKey {
                        relation: "an invalid keyset".to_string(),
                    });
                    return Poll::Ready(Err(err));
                }
                PlanState::Unresolved(shape) => {
                    let shape = shape.clone();
                    let (not_null, unique) = (self.assume_not_null, self.assume_unique);
                    let table = shape.table.clone();
                    match table {
                        Some(table) if !(not_null && unique) => {
                            let pool = self.pool.clone();
                            let held = if self.hold_connection {
                                self.conn.take()
                            } else {
                                None
                            };
                            let hold = self.hold_connection;
                            self.plan = PlanState::Resolving(Box::pin(async move {
                                let conn = match held {
                                    Some(conn) => conn,
                                    None => match pool.acquire().await {
                                        Ok(conn) => conn,
                                        Err(err) => {
                                            return (
                                                None,
                                                Err(query_error::<D>(&shape.relation, err)),
                                            );
                                        }
                                    },
                                };
                                let mut lent = Lent::<D>(Some(conn));
                                let facts = D::key_facts(lent.conn(), &table, &shape.keys).await;
                                let conn = lent.give_back();
                                match facts {
                                    Ok(facts) => (
                                        conn.filter(|_| hold),
                                        Ok(resolve(shape, facts, not_null, unique)),
                                    ),
                                    Err(err) => (None, Err(query_error::<D>(&shape.relation, err))),
                                }
                            }));
                        }
                        _ => {
                            let plan = resolve::<D>(shape, None, not_null, unique);
                            if let Err(err) =
                                plan.check_bounds(self.lower.as_ref(), self.lower_is_resume)
                            {
                                self.plan = PlanState::Invalid(None);
                                return Poll::Ready(Err(err));
                            }
                            self.plan = PlanState::Ready(Arc::new(plan));
                        }
                    }
                }
                PlanState::Resolving(future) => {
                    let (conn, result) = ready!(future.as_mut().poll(cx));
                    if conn.is_some() {
                        self.conn = conn;
                    }
                    let result = result.and_then(|plan| {
                        plan.check_bounds(self.lower.as_ref(), self.lower_is_resume)?;
                        Ok(plan)
                    });
                    match result {
                        Ok(plan) => self.plan = PlanState::Ready(Arc::new(plan)),
                        Err(err) => {
                            self.plan = PlanState::Invalid(None);
                            return Poll::Ready(Err(err));
                        }
                    }
                }
            }
        }
    }

    /// The page query after the current cursor (or from the start).
    fn page_sql(&mut self, plan: &Plan<D>) -> Arc<Sql> {
        let signature: Option<Vec<u8>> = self
            .lower
            .as_ref()
            .map(|c| c.0.iter().map(KeyValue::type_tag).collect());
        match &self.sql {
            Some((cached, sql)) if *cached == signature => Arc::clone(sql),
            _ => {
                let sql = Arc::new(plan.page(self.lower.as_ref().map(|c| c.0.as_slice())));
                self.sql = Some((signature, Arc::clone(&sql)));
                sql
            }
        }
    }

    /// The tie check to run before the next page, if any: the page starts after a
    /// key that other rows might share.
    fn tie_check(&self, plan: &Plan<D>) -> Option<(KeysetCursor, bool)> {
        if plan.facts.unique {
            return None;
        }
        self.lower
            .as_ref()
            .map(|lower| (lower.clone(), self.lower_is_resume))
    }

    /// Compares a yielded row's key with the one before it: two neighbours with the
    /// same key mean the key does not identify a row.
    pub(crate) fn check_neighbour(
        &mut self,
        plan: &Plan<D>,
        key: &KeysetCursor,
    ) -> Result<(), KeysetError> {
        if plan.facts.unique {
            return Ok(());
        }
        if self.last_key.as_ref() == Some(key) {
            return Err(plan.tie_error(key, false));
        }
        match &mut self.last_key {
            Some(last) => last.clone_from(key),
            None => self.last_key = Some(key.clone()),
        }
        Ok(())
    }

    /// Starts the next page as a streamed query handing its rows to `inbox`; `None`
    /// when the walk is over.
    pub(crate) fn start_stream(
        &mut self,
        plan: &Arc<Plan<D>>,
        inbox: &Inbox<D>,
    ) -> Option<PageFuture<D, Streamed>> {
        if self.done || self.exhausted {
            self.done = true;
            return None;
        }
        let sql = self.page_sql(plan);
        let tie = self.tie_check(plan);
        let (pool, lower, inbox) = (self.pool.clone(), self.lower.clone(), Arc::clone(inbox));
        let plan = Arc::clone(plan);
        let held = if self.hold_connection {
            self.conn.take()
        } else {
            None
        };
        let hold = self.hold_connection;
        let limit = self.page_size;
        self.page_started = Some(Instant::now());
        Some(Box::pin(async move {
            let run = async |conn: &mut Conn<D>| -> Result<Streamed, (KeysetError, bool)> {
                if let Some((at, late)) = &tie
                    && plan.is_tied(conn, at).await.map_err(|err| (err, false))?
                {
                    return Err((plan.tie_error(at, *late), true));
                }
                plan.stream_page(conn, &sql, lower.as_ref(), limit, &inbox)
                    .await
            };
            if let Some(conn) = held {
                let mut lent = Lent::<D>(Some(conn));
                match run(lent.conn()).await {
                    Ok(page) => {
                        let conn = lent.give_back();
                        return (conn.filter(|_| hold), Ok(page));
                    }
                    // the held connection was lost between pages, before any row
                    // came: the query is a read, so it runs again on a fresh one
                    Err((err, false)) if connection_lost::<D>(&err) => drop(lent),
                    // a failed query may have left the connection unusable: closed
                    Err((err, _)) => return (None, Err(err)),
                }
            }
            let conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(err) => return (None, Err(plan.error(err))),
            };
            let mut lent = Lent::<D>(Some(conn));
            match run(lent.conn()).await {
                Ok(page) => {
                    let conn = lent.give_back();
                    (conn.filter(|_| hold), Ok(page))
                }
                Err((err, _)) => (None, Err(err)),
            }
        }))
    }

    /// Takes in the outcome of a streamed page: the connection to keep, the next
    /// page's size and start.
    pub(crate) fn finish_stream(
        &mut self,
        conn: Option<Conn<D>>,
        result: Result<Streamed, KeysetError>,
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
            self.lower_is_resume = false;
        }
        Ok(())
    }

    /// Ends the walk with `err`.
    pub(crate) fn fail(&mut self, err: KeysetError) -> JobError {
        self.done = true;
        self.fetch = None;
        self.conn = None;
        self.plan = PlanState::Invalid(None);
        err.into_job_error()
    }

    /// Polls for the plan, for `rows`: `Ready(None)` once ready.
    pub(crate) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<Plan<D>>, JobError>> {
        match ready!(self.poll_plan(cx)) {
            Ok(plan) => Poll::Ready(Ok(plan)),
            Err(err) => Poll::Ready(Err(self.fail(err))),
        }
    }

    /// Polls for the next whole page (never empty) with the cursor of its last row;
    /// `None` when the walk is over.
    pub(crate) fn poll_page(&mut self, cx: &mut Context<'_>) -> Poll<Option<Step<Vec<RowOf<D>>>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let plan = match ready!(self.poll_ready(cx)) {
            Ok(plan) => plan,
            Err(err) => return Poll::Ready(Some(Err(err))),
        };
        if self.fetch.is_none() {
            if self.exhausted {
                self.done = true;
                return Poll::Ready(None);
            }
            let sql = self.page_sql(&plan);
            let tie = self.tie_check(&plan);
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
                let run = async |conn: &mut Conn<D>| -> Result<Vec<RowOf<D>>, KeysetError> {
                    if let Some((at, late)) = &tie
                        && plan.is_tied(conn, at).await?
                    {
                        return Err(plan.tie_error(at, *late));
                    }
                    plan.fetch_page(conn, &sql, lower.as_ref(), limit).await
                };
                if let Some(conn) = held {
                    let mut lent = Lent::<D>(Some(conn));
                    match run(lent.conn()).await {
                        // the held connection was lost between pages: the query is a
                        // read, so it runs again on a fresh one
                        Err(err) if connection_lost::<D>(&err) => drop(lent),
                        Ok(rows) => return (lent.give_back().filter(|_| hold), Ok(rows)),
                        // a failed query may have left the connection unusable
                        Err(err) => return (None, Err(err)),
                    }
                }
                let conn = match pool.acquire().await {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(plan.error(err))),
                };
                let mut lent = Lent::<D>(Some(conn));
                let result = run(lent.conn()).await;
                let keep = lent.give_back().filter(|_| hold && result.is_ok());
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
            Err(err) => return Poll::Ready(Some(Err(self.fail(err)))),
        };
        if rows.len() < self.page_size {
            self.exhausted = true;
        }
        let Some(last) = rows.last() else {
            self.done = true;
            self.conn = None;
            return Poll::Ready(None);
        };
        if self.key_columns.is_empty() {
            match plan.key_columns(last) {
                Ok(columns) => self.key_columns = columns,
                Err(err) => return Poll::Ready(Some(Err(self.fail(err)))),
            }
        }
        if !plan.facts.unique || plan.facts.nulls_are_errors {
            // every row's key: for neighbours with the same key, and NULLs
            for row in &rows {
                let checked = plan
                    .key_of(row, &self.key_columns)
                    .and_then(|key| self.check_neighbour(&plan, &key));
                if let Err(err) = checked {
                    return Poll::Ready(Some(Err(self.fail(err))));
                }
            }
        }
        let cursor = match plan.key_of(last, &self.key_columns) {
            Ok(cursor) => cursor,
            Err(err) => return Poll::Ready(Some(Err(self.fail(err)))),
        };
        self.lower = Some(cursor.clone());
        self.lower_is_resume = false;
        if self.exhausted {
            self.conn = None; // the walk is over: give the connection back now
        }
        Poll::Ready(Some(Ok((rows, cursor))))
    }

    /// Decodes a streamed row's key, checks it against its neighbour, and remembers
    /// where the key columns are.
    #[inline]
    pub(crate) fn row_key(
        &mut self,
        plan: &Plan<D>,
        row: &RowOf<D>,
    ) -> Result<KeysetCursor, Box<KeysetError>> {
        // one unique integer key column: no neighbour to check, nothing to fail
        if plan.facts.unique
            && let [column] = self.key_columns.as_slice()
            && let Some(value) = D::int_key(row, column.index, column.kind)
        {
            return Ok(KeysetCursor(smallvec::smallvec![KeyValue::Integer(value)]));
        }
        self.row_key_general(plan, row).map_err(Box::new)
    }

    /// [`Walker::row_key`] for any key: every kind, NULLs and ties.
    #[inline(never)]
    fn row_key_general(
        &mut self,
        plan: &Plan<D>,
        row: &RowOf<D>,
    ) -> Result<KeysetCursor, KeysetError> {
        if self.key_columns.is_empty() {
            self.key_columns = plan.key_columns(row)?;
        }
        let key = plan.key_of(row, &self.key_columns)?;
        if !plan.facts.unique {
            self.check_neighbour(plan, &key)?;
        }
        Ok(key)
    }
}

/// The size of the page after a full one of `size` rows that stayed open for `took`:
/// double (up to `max`) when it took under half of `max_time`, half (down to `min`)
/// when it took longer than `max_time`, the same otherwise.
pub(crate) fn next_page_size(
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

/// The stream behind [`Keyset::rows`]: each page is streamed, so the first rows of a
/// page are worked on while the rest arrive, as in one streaming `SELECT`.
pub(crate) struct Rows<D: Dialect> {
    pub(crate) walker: Walker<D>,
    /// The page query in flight.
    pub(crate) page: Option<PageFuture<D, Streamed>>,
    /// Rows the page query has received and not handed to `buffer` yet.
    pub(crate) inbox: Inbox<D>,
    /// Rows taken from the inbox, not yet yielded.
    pub(crate) buffer: VecDeque<RowOf<D>>,
    /// The walk's plan, once ready: a row is yielded without asking the walker for
    /// it again.
    plan: Option<Arc<Plan<D>>>,
}

impl<D: Dialect> Rows<D> {
    pub(crate) fn new(walker: Walker<D>) -> Self {
        Rows {
            walker,
            page: None,
            inbox: Arc::default(),
            buffer: VecDeque::new(),
            plan: None,
        }
    }

    /// Ends the walk with `err`.
    fn fail(&mut self, err: KeysetError) -> Poll<Option<Step<RowOf<D>>>> {
        self.page = None;
        self.buffer.clear();
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Poll::Ready(Some(Err(self.walker.fail(err))))
    }
}

/// One item of a walk.
type Step<T> = Result<(T, KeysetCursor), JobError>;

impl<D: Dialect> Stream for Rows<D> {
    type Item = Step<RowOf<D>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // the common case, a row at hand: nothing but its key to read
        if let Some(plan) = &this.plan
            && let Some(row) = this.buffer.pop_front()
        {
            return match this.walker.row_key(plan, &row) {
                Ok(cursor) => Poll::Ready(Some(Ok((row, cursor)))),
                Err(err) => this.fail(*err),
            };
        }
        if this.walker.done && this.buffer.is_empty() && this.page.is_none() {
            return Poll::Ready(None);
        }
        let plan = match ready!(this.walker.poll_ready(cx)) {
            Ok(plan) => plan,
            Err(err) => {
                this.page = None;
                this.buffer.clear();
                return Poll::Ready(Some(Err(err)));
            }
        };
        this.plan = Some(Arc::clone(&plan));
        loop {
            if let Some(row) = this.buffer.pop_front() {
                return match this.walker.row_key(&plan, &row) {
                    Ok(cursor) => Poll::Ready(Some(Ok((row, cursor)))),
                    Err(err) => this.fail(*err),
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
                        if D::PIPELINE_PAGES
                            && this.walker.hold_connection
                            && !this.buffer.is_empty()
                            && let Some(mut page) = this.walker.start_stream(&plan, &this.inbox)
                        {
                            if let Poll::Ready((conn, result)) = page.as_mut().poll(cx) {
                                // a page this quick is done: take its rows once the
                                // buffer is empty (kept in order)
                                this.page = Some(Box::pin(std::future::ready((conn, result))));
                            } else {
                                this.page = Some(page);
                            }
                        }
                    }
                    Poll::Pending if this.buffer.is_empty() => return Poll::Pending,
                    Poll::Pending => {}
                }
                continue;
            }
            match this.walker.start_stream(&plan, &this.inbox) {
                Some(page) => this.page = Some(page),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// The stream behind [`Keyset::batches`].
pub(crate) struct Batches<D: Dialect> {
    pub(crate) walker: Walker<D>,
}

impl<D: Dialect> Stream for Batches<D> {
    type Item = Step<Vec<RowOf<D>>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().walker.poll_page(cx)
    }
}

/// Reads what the schema says, for the walks that count and find quantile keys.
pub(crate) async fn plan_for<D: Dialect>(
    keyset: &Keyset<D>,
    conn: &mut ConnectionOf<D>,
    cursor: Option<&KeysetCursor>,
) -> Result<Plan<D>, KeysetError> {
    let shape = keyset.shape(cursor)?;
    let facts = match &shape.table {
        Some(table) if !(keyset.assume_not_null && keyset.assume_unique) => {
            D::key_facts(conn, table, &shape.keys)
                .await
                .map_err(|err| query_error::<D>(&shape.relation, err))?
        }
        _ => None,
    };
    let plan = resolve(shape, facts, keyset.assume_not_null, keyset.assume_unique);
    match cursor {
        Some(cursor) => plan.check_bounds(Some(cursor), true)?,
        None => plan.check_bounds(keyset.start.as_ref(), false)?,
    }
    Ok(plan)
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
}
