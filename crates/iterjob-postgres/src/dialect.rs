//! [`PgDialect`]: what is PostgreSQL's own in the shared SQL layer — `$n`
//! parameters cast to the key's type, typed keys decoded from the binary protocol,
//! NULL last in ascending order, the schema read from `pg_attribute` and `pg_index`.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, TryStreamExt};
use iterjob_sql::dialect::{Query, RowOf};
use iterjob_sql::{Dialect, ErrorClass, KeyFacts, KeyValue, TableName};
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, PgConnection, Postgres, Row, TypeInfo, ValueRef};

use crate::error::sqlstate;

/// The largest page `Keyset::rows` grows to on PostgreSQL unless the keyset says
/// otherwise. Pages reach it only while the walk keeps up (see
/// [`DEFAULT_MAX_PAGE_TIME`](iterjob_sql::DEFAULT_MAX_PAGE_TIME)): a bulk scan then
/// makes a handful of queries for a million rows, close to one streaming `SELECT`.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 250_000;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's epoch.
const PG_EPOCH_DAYS: i32 = 10_957;

/// PostgreSQL's [`Dialect`].
///
/// Key columns of type `smallint`, `integer`, `bigint` ([`KeyValue::Integer`]),
/// `real`, `double precision` ([`KeyValue::Real`]), `boolean`, `text`, `varchar`,
/// `char`, `name` ([`KeyValue::Text`]), `bytea` ([`KeyValue::Bytes`]), `uuid`,
/// `date`, `timestamp` and `timestamptz` keep their type in the cursor, and each
/// parameter is cast to it (`$1::timestamptz`), so the next page compares as
/// `ORDER BY` did. NULL sorts last in ascending order (PostgreSQL's default, which
/// its B-tree indexes store), written `NULLS LAST`/`NULLS FIRST` in the page queries
/// of a nullable key.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgDialect;

/// The PostgreSQL types a key can have, each with its decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgKeyKind {
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `boolean`.
    Bool,
    /// `text`, `varchar`, `name`, `"char"`.
    Text,
    /// `char(n)`: blank-padded, compared without its trailing blanks.
    Bpchar,
    /// `bytea`.
    Bytea,
    /// `uuid`.
    Uuid,
    /// `date`.
    Date,
    /// `timestamp`.
    Timestamp,
    /// `timestamptz`.
    Timestamptz,
}

impl PgKeyKind {
    /// The kind for a type as sqlx names it (`INT8`, `TIMESTAMPTZ`, …); `None` for a
    /// type a cursor cannot hold.
    fn of(type_name: &str) -> Option<PgKeyKind> {
        Some(match type_name {
            "INT2" => PgKeyKind::Int2,
            "INT4" => PgKeyKind::Int4,
            "INT8" => PgKeyKind::Int8,
            "FLOAT4" => PgKeyKind::Float4,
            "FLOAT8" => PgKeyKind::Float8,
            "BOOL" => PgKeyKind::Bool,
            "TEXT" | "VARCHAR" | "NAME" | "CHAR" => PgKeyKind::Text,
            "BPCHAR" => PgKeyKind::Bpchar,
            "BYTEA" => PgKeyKind::Bytea,
            "UUID" => PgKeyKind::Uuid,
            "DATE" => PgKeyKind::Date,
            "TIMESTAMP" => PgKeyKind::Timestamp,
            "TIMESTAMPTZ" => PgKeyKind::Timestamptz,
            _ => return None,
        })
    }
}

impl Dialect for PgDialect {
    type Database = Postgres;
    type KeyKind = PgKeyKind;

    const NAME: &'static str = "PostgreSQL";
    const ROW_VALUES: bool = true;
    const NULLS_FIRST: bool = false;
    const DEFAULT_MAX_PAGE_SIZE: usize = DEFAULT_MAX_PAGE_SIZE;
    const SUPPORTED_KEY_TYPES: &'static str = "smallint, integer, bigint, real, double \
        precision, text, varchar, char, boolean, bytea, uuid, date, timestamp or timestamptz";

    fn quote(name: &str) -> String {
        format!("\"{name}\"")
    }

    fn param(n: usize, value: &KeyValue) -> String {
        let cast = match value {
            KeyValue::Null => return format!("${n}"),
            KeyValue::Bool(_) => "boolean",
            KeyValue::Integer(_) => "int8",
            KeyValue::Unsigned(_) | KeyValue::Decimal(_) => "numeric",
            KeyValue::Real(_) => "float8",
            KeyValue::Text(_) => "text",
            KeyValue::Bytes(_) => "bytea",
            KeyValue::Uuid(_) => "uuid",
            KeyValue::Date(_) => "date",
            KeyValue::Timestamp(_) => "timestamp",
            KeyValue::Timestamptz(_) => "timestamptz",
        };
        format!("${n}::{cast}")
    }

    fn int_param(n: usize) -> String {
        format!("${n}")
    }

    fn nulls_clause(descending: bool) -> &'static str {
        if descending {
            " NULLS FIRST"
        } else {
            " NULLS LAST"
        }
    }

    fn bind_key<'q>(query: Query<'q, Self>, value: &KeyValue) -> Query<'q, Self> {
        match value {
            KeyValue::Null => query.bind(None::<i64>),
            KeyValue::Bool(v) => query.bind(*v),
            KeyValue::Integer(v) => query.bind(*v),
            KeyValue::Unsigned(v) => query.bind(v.to_string()),
            KeyValue::Real(v) => query.bind(*v),
            KeyValue::Decimal(v) => query.bind(v.clone()),
            KeyValue::Text(v) => query.bind(v.clone()),
            KeyValue::Bytes(v) => query.bind(v.clone()),
            KeyValue::Uuid(v) => query.bind(KeyValue::uuid_text(v)),
            KeyValue::Date(v) => query.bind(KeyValue::date_text(*v)),
            KeyValue::Timestamp(v) => query.bind(KeyValue::timestamp_text(*v, false)),
            KeyValue::Timestamptz(v) => query.bind(KeyValue::timestamp_text(*v, true)),
        }
    }

    fn bind_int<'q>(query: Query<'q, Self>, value: i64) -> Query<'q, Self> {
        query.bind(value)
    }

    fn key_kind(type_info: &PgTypeInfo) -> Option<PgKeyKind> {
        PgKeyKind::of(type_info.name())
    }

    #[inline]
    fn decode_key(kind: PgKeyKind, raw: PgValueRef<'_>) -> Result<KeyValue, BoxDynError> {
        /// The raw bytes of a fixed-size binary value.
        fn binary<const N: usize>(
            raw: &PgValueRef<'_>,
            what: &str,
        ) -> Result<[u8; N], BoxDynError> {
            if raw.format() != PgValueFormat::Binary {
                return Err(format!("{what} key in text format").into());
            }
            <[u8; N]>::try_from(raw.as_bytes()?)
                .map_err(|_| format!("malformed {what} value").into())
        }
        Ok(match kind {
            PgKeyKind::Int2 => KeyValue::Integer(<i16 as Decode<Postgres>>::decode(raw)?.into()),
            PgKeyKind::Int4 => KeyValue::Integer(<i32 as Decode<Postgres>>::decode(raw)?.into()),
            PgKeyKind::Int8 => KeyValue::Integer(<i64 as Decode<Postgres>>::decode(raw)?),
            PgKeyKind::Float4 => KeyValue::Real(<f32 as Decode<Postgres>>::decode(raw)?.into()),
            PgKeyKind::Float8 => KeyValue::Real(<f64 as Decode<Postgres>>::decode(raw)?),
            PgKeyKind::Bool => KeyValue::Bool(<bool as Decode<Postgres>>::decode(raw)?),
            PgKeyKind::Text => KeyValue::Text(<String as Decode<Postgres>>::decode(raw)?),
            // PostgreSQL compares `char(n)` without its padding (and casts it to text
            // without it): a cursor with the padding would compare after the value
            PgKeyKind::Bpchar => {
                let padded = <String as Decode<Postgres>>::decode(raw)?;
                KeyValue::Text(padded.trim_end_matches(' ').to_string())
            }
            PgKeyKind::Bytea => KeyValue::Bytes(<Vec<u8> as Decode<Postgres>>::decode(raw)?),
            PgKeyKind::Uuid => KeyValue::Uuid(binary::<16>(&raw, "uuid")?),
            PgKeyKind::Date => {
                let days = i32::from_be_bytes(binary::<4>(&raw, "date")?);
                KeyValue::Date(match days {
                    i32::MAX | i32::MIN => days,
                    _ => days.saturating_add(PG_EPOCH_DAYS),
                })
            }
            PgKeyKind::Timestamp | PgKeyKind::Timestamptz => {
                let what = if kind == PgKeyKind::Timestamp {
                    "timestamp"
                } else {
                    "timestamptz"
                };
                let micros = i64::from_be_bytes(binary::<8>(&raw, what)?);
                let micros = match micros {
                    i64::MAX | i64::MIN => micros,
                    _ => micros.saturating_add(PG_EPOCH_MICROS),
                };
                if kind == PgKeyKind::Timestamp {
                    KeyValue::Timestamp(micros)
                } else {
                    KeyValue::Timestamptz(micros)
                }
            }
        })
    }

    fn classify(err: &sqlx::Error) -> ErrorClass {
        let message = match err {
            sqlx::Error::Database(db) => db.message().to_string(),
            _ => String::new(),
        };
        match err {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
                return ErrorClass::ConnectionLost;
            }
            sqlx::Error::Database(_) => {}
            // TLS, pool timeout, …: not the query's fault
            _ => return ErrorClass::Transient,
        }
        let Some(code) = sqlstate(err) else {
            return ErrorClass::Permanent;
        };
        match code.as_str() {
            // relation "products" does not exist
            "42P01" => ErrorClass::MissingTable(quoted_name(&message).unwrap_or(message)),
            // column "sku" does not exist / column items.sku does not exist
            "42703" => ErrorClass::MissingColumn(
                message
                    .strip_prefix("column ")
                    .and_then(|rest| rest.strip_suffix(" does not exist"))
                    .map(|name| {
                        let name = name.rsplit('.').next().unwrap_or(name);
                        name.trim_matches('"').to_string()
                    })
                    .unwrap_or(message),
            ),
            // terminated by an administrator, a crash or `idle_session_timeout`
            "57P01" | "57P02" | "57P05" => ErrorClass::ConnectionLost,
            code if code.starts_with("08") => ErrorClass::ConnectionLost,
            // transaction rollbacks (serialization failure, deadlock), insufficient
            // resources, lock not available, operator intervention, system errors
            code if ["40", "53", "55", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class)) =>
            {
                ErrorClass::Transient
            }
            _ => ErrorClass::Permanent,
        }
    }

    fn fetch<'e, 'q: 'e>(
        conn: &'e mut PgConnection,
        query: Query<'q, Self>,
    ) -> BoxStream<'e, Result<PgRow, sqlx::Error>> {
        iterjob_sql::dialect::rows_only(sqlx::Executor::fetch_many(conn, query))
    }

    fn key_facts<'c>(
        conn: &'c mut PgConnection,
        table: &'c TableName,
        keys: &'c [String],
    ) -> BoxFuture<'c, Result<Option<KeyFacts>, sqlx::Error>> {
        key_facts(conn, table, keys).boxed()
    }

    #[inline]
    fn int_key(row: &PgRow, index: usize, kind: PgKeyKind) -> Option<i64> {
        let raw = row.try_get_raw(index).ok()?;
        if raw.format() != PgValueFormat::Binary {
            return None;
        }
        // NULL has no bytes: `as_bytes` fails and the general path says why
        let bytes = raw.as_bytes().ok()?;
        match kind {
            PgKeyKind::Int8 => Some(i64::from_be_bytes(bytes.try_into().ok()?)),
            PgKeyKind::Int4 => Some(i32::from_be_bytes(bytes.try_into().ok()?).into()),
            PgKeyKind::Int2 => Some(i16::from_be_bytes(bytes.try_into().ok()?).into()),
            _ => None,
        }
    }

    #[inline]
    fn value_at(row: &PgRow, index: usize) -> Result<PgValueRef<'_>, sqlx::Error> {
        row.try_get_raw(index)
    }

    fn row_int(row: &RowOf<Self>, column: &str) -> Result<Option<i64>, sqlx::Error> {
        let raw = row.try_get_raw(column)?;
        if raw.is_null() {
            return Ok(None);
        }
        match raw.type_info().name() {
            "INT4" => Ok(row.try_get::<Option<i32>, _>(column)?.map(i64::from)),
            "INT2" => Ok(row.try_get::<Option<i16>, _>(column)?.map(i64::from)),
            _ => row.try_get(column),
        }
    }

    fn row_text(row: &RowOf<Self>, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }

    fn row_flag(row: &RowOf<Self>, column: &str) -> Result<bool, sqlx::Error> {
        row.try_get(column)
    }

    fn row_json(row: &RowOf<Self>, column: &str) -> Result<Option<Value>, sqlx::Error> {
        row.try_get(column)
    }
}

/// The first double-quoted name in a message.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    Some(message[start..start + len].to_string())
}

/// Reads `table`'s columns and unique indexes from the catalog.
async fn key_facts(
    conn: &mut PgConnection,
    table: &TableName,
    keys: &[String],
) -> Result<Option<KeyFacts>, sqlx::Error> {
    // quoted as the walk's own query quotes it, so both resolve the same relation
    let name = match &table.schema {
        Some(schema) => format!("\"{schema}\".\"{}\"", table.name),
        None => format!("\"{}\"", table.name),
    };
    let columns: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.attname::text, a.attnotnull FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(&name)
    .fetch(&mut *conn)
    .try_collect()
    .await?;
    if columns.is_empty() {
        return Ok(None);
    }
    let not_null = |key: &str| columns.iter().any(|(c, nn)| c == key && *nn);
    let nullable = keys.iter().map(|key| !not_null(key)).collect();
    // unique, valid, not partial, not on expressions; key columns only (not INCLUDE)
    let indexes: Vec<(bool, Vec<String>)> = sqlx::query_as(
        "SELECT i.indisprimary, ARRAY(\
             SELECT a.attname::text \
             FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE k.n <= i.indnkeyatts ORDER BY k.n) \
         FROM pg_index i \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid \
           AND i.indpred IS NULL AND i.indexprs IS NULL",
    )
    .bind(&name)
    .fetch(&mut *conn)
    .try_collect()
    .await?;
    let unique = indexes.iter().any(|(_, columns)| {
        !columns.is_empty()
            && columns
                .iter()
                .all(|column| keys.contains(column) && not_null(column))
    });
    let primary_key = indexes
        .into_iter()
        .find(|(primary, _)| *primary)
        .map(|(_, columns)| columns)
        .unwrap_or_default();
    Ok(Some(KeyFacts {
        nullable,
        unique,
        primary_key,
    }))
}
