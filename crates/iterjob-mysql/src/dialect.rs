//! [`MySqlDialect`]: what is MySQL's (and MariaDB's) own in the shared SQL layer —
//! `?` parameters, backtick quoting, composite keys written out (MariaDB scans the
//! whole index for a row-value comparison), NULL first in ascending order, typed keys
//! decoded from the binary protocol, the schema read from `information_schema`.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, TryStreamExt};
use iterjob_sql::dialect::{Query, RowOf};
use iterjob_sql::{Dialect, ErrorClass, KeyFacts, KeyValue, TableName};
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySqlRow, MySqlTypeInfo, MySqlValueRef};
use sqlx::{Decode, MySql, MySqlConnection, Row, TypeInfo, ValueRef};
use time::{Date, Month, PrimitiveDateTime, Time};

use crate::error::mysql_code;

/// The largest page `Keyset::rows` grows to on MySQL unless the keyset says
/// otherwise. Rows are read off the connection as the job takes them; pages grow
/// only while each ends within half of the page time.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 100_000;

/// MySQL's (and MariaDB's) [`Dialect`].
///
/// | column type | cursor value |
/// |---|---|
/// | `TINYINT` … `BIGINT`, `YEAR` | [`KeyValue::Integer`] |
/// | `BIGINT UNSIGNED` | [`KeyValue::Integer`], or [`KeyValue::Unsigned`] above `i64::MAX` |
/// | `FLOAT`, `DOUBLE` | [`KeyValue::Real`] |
/// | `DECIMAL` | [`KeyValue::Decimal`] (exact text, compared as `DECIMAL(65, 30)`) |
/// | `CHAR`, `VARCHAR`, `TEXT` | [`KeyValue::Text`], compared in the column's collation |
/// | `BINARY`, `VARBINARY`, `BLOB` (a `BINARY(16)` uuid too) | [`KeyValue::Bytes`], or [`KeyValue::Text`] when the value is valid UTF-8 |
/// | `DATE` | [`KeyValue::Date`] |
/// | `DATETIME` | [`KeyValue::Timestamp`] (microseconds kept) |
/// | `TIMESTAMP` | [`KeyValue::Timestamptz`], in the session's time zone: sqlx sets UTC |
///
/// MySQL's protocol marks text of a binary collation (`utf8mb4_bin`) the way it marks
/// binary columns, so a value of either is text when it is valid UTF-8 and bytes
/// otherwise; both bind back so that the next page compares as the column does (a
/// binary string against text compares byte for byte).
///
/// `ENUM`, `SET`, `TIME`, `BIT`, `JSON` and spatial columns cannot be keys: an
/// `ENUM` sorts by its position while a comparison with text compares text, so a
/// walk could not resume exactly (walk a query that selects `CAST(col AS CHAR)`).
///
/// **Collations.** A text key compares in its column's collation, in the page query
/// as in the `ORDER BY`, so a walk is exact whatever the collation. With a
/// case-insensitive (`_ci`) or accent-insensitive collation, `'a'` and `'A'` are the
/// same key: a column that is unique under its collation identifies a row, one that
/// is not has ties — which the walk finds and refuses (see the keyset docs), unless
/// the key ends with a unique column.
#[derive(Clone, Copy, Debug, Default)]
pub struct MySqlDialect;

/// The MySQL types a key can have, each with its decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MySqlKeyKind {
    /// Signed integers of any width, `YEAR`, `BOOLEAN`.
    Int,
    /// Unsigned integers.
    UInt,
    /// `FLOAT`, `DOUBLE`.
    Float,
    /// `DECIMAL`.
    Decimal,
    /// Text types.
    Text,
    /// Binary types.
    Bytes,
    /// `DATE`.
    Date,
    /// `DATETIME`.
    DateTime,
    /// `TIMESTAMP`.
    Timestamp,
}

impl MySqlKeyKind {
    fn of(type_name: &str) -> Option<MySqlKeyKind> {
        Some(match type_name {
            "BOOLEAN" | "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
                MySqlKeyKind::Int
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
            | "BIGINT UNSIGNED" => MySqlKeyKind::UInt,
            "FLOAT" | "DOUBLE" => MySqlKeyKind::Float,
            "DECIMAL" => MySqlKeyKind::Decimal,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" => {
                MySqlKeyKind::Text
            }
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                MySqlKeyKind::Bytes
            }
            "DATE" => MySqlKeyKind::Date,
            "DATETIME" => MySqlKeyKind::DateTime,
            "TIMESTAMP" => MySqlKeyKind::Timestamp,
            _ => return None,
        })
    }
}

/// Microseconds since the epoch of a date and time (no time zone).
fn micros_of(datetime: PrimitiveDateTime) -> i64 {
    let seconds = datetime.assume_utc().unix_timestamp();
    seconds * 1_000_000 + i64::from(datetime.microsecond())
}

/// The date and time of microseconds since the epoch.
fn datetime_of(micros: i64) -> Option<PrimitiveDateTime> {
    let days = micros.div_euclid(86_400_000_000);
    let of_day = micros.rem_euclid(86_400_000_000);
    let date = date_of(i32::try_from(days).ok()?)?;
    let seconds = of_day / 1_000_000;
    let time = Time::from_hms_micro(
        u8::try_from(seconds / 3600).ok()?,
        u8::try_from(seconds / 60 % 60).ok()?,
        u8::try_from(seconds % 60).ok()?,
        u32::try_from(of_day % 1_000_000).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

/// The date of days since 1970-01-01.
fn date_of(days: i32) -> Option<Date> {
    let (year, month, day) = iterjob_sql::keyset::civil_from_days(days.into());
    Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()
}

/// Days since 1970-01-01 of a date.
fn days_of(date: Date) -> i32 {
    let days = iterjob_sql::keyset::days_from_civil(
        date.year().into(),
        u8::from(date.month()).into(),
        date.day().into(),
    );
    i32::try_from(days).unwrap_or(i32::MAX)
}

impl Dialect for MySqlDialect {
    type Database = MySql;
    type KeyKind = MySqlKeyKind;

    const NAME: &'static str = "MySQL";
    const ROW_VALUES: bool = false;
    const NULLS_FIRST: bool = true;
    const DEFAULT_MAX_PAGE_SIZE: usize = DEFAULT_MAX_PAGE_SIZE;
    const SUPPORTED_KEY_TYPES: &'static str = "an integer, FLOAT, DOUBLE, DECIMAL, CHAR, \
        VARCHAR, TEXT, BINARY, VARBINARY, BLOB, DATE, DATETIME or TIMESTAMP";

    fn quote(name: &str) -> String {
        format!("`{name}`")
    }

    fn param(_n: usize, value: &KeyValue) -> String {
        match value {
            // compared as an exact decimal, not as the double a string would become
            KeyValue::Decimal(_) | KeyValue::Unsigned(_) => "CAST(? AS DECIMAL(65, 30))".into(),
            _ => "?".into(),
        }
    }

    fn int_param(_n: usize) -> String {
        "?".to_string()
    }

    fn nulls_clause(_descending: bool) -> &'static str {
        // MySQL has no NULLS FIRST/LAST: NULL sorts first ascending and last
        // descending, as its indexes store it (NULLS_FIRST)
        ""
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
            KeyValue::Uuid(v) => query.bind(v.to_vec()),
            KeyValue::Date(v) => match date_of(*v) {
                Some(date) => query.bind(date),
                None => query.bind(KeyValue::date_text(*v)),
            },
            KeyValue::Timestamp(v) | KeyValue::Timestamptz(v) => match datetime_of(*v) {
                Some(datetime) => query.bind(datetime),
                None => query.bind(KeyValue::timestamp_text(*v, false)),
            },
        }
    }

    fn bind_int<'q>(query: Query<'q, Self>, value: i64) -> Query<'q, Self> {
        query.bind(value)
    }

    fn key_kind(type_info: &MySqlTypeInfo) -> Option<MySqlKeyKind> {
        MySqlKeyKind::of(type_info.name())
    }

    #[inline]
    fn decode_key(kind: MySqlKeyKind, raw: MySqlValueRef<'_>) -> Result<KeyValue, BoxDynError> {
        Ok(match kind {
            MySqlKeyKind::Int => KeyValue::Integer(<i64 as Decode<MySql>>::decode(raw)?),
            MySqlKeyKind::UInt => KeyValue::from(<u64 as Decode<MySql>>::decode(raw)?),
            MySqlKeyKind::Float => KeyValue::Real(<f64 as Decode<MySql>>::decode(raw)?),
            MySqlKeyKind::Decimal => {
                KeyValue::Decimal(<&str as Decode<MySql>>::decode(raw)?.into())
            }
            MySqlKeyKind::Text => KeyValue::Text(<String as Decode<MySql>>::decode(raw)?),
            // MySQL's protocol marks text of a binary collation (`utf8mb4_bin`) as it
            // marks binary columns: text that is valid UTF-8 stays text
            MySqlKeyKind::Bytes => {
                let bytes = <Vec<u8> as Decode<MySql>>::decode(raw)?;
                match String::from_utf8(bytes) {
                    Ok(text) => KeyValue::Text(text),
                    Err(err) => KeyValue::Bytes(err.into_bytes()),
                }
            }
            MySqlKeyKind::Date => KeyValue::Date(days_of(<Date as Decode<MySql>>::decode(raw)?)),
            MySqlKeyKind::DateTime => KeyValue::Timestamp(micros_of(
                <PrimitiveDateTime as Decode<MySql>>::decode(raw)?,
            )),
            MySqlKeyKind::Timestamp => KeyValue::Timestamptz(micros_of(
                <PrimitiveDateTime as Decode<MySql>>::decode(raw)?,
            )),
        })
    }

    fn classify(err: &sqlx::Error) -> ErrorClass {
        match err {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
                return ErrorClass::ConnectionLost;
            }
            sqlx::Error::Database(_) => {}
            _ => return ErrorClass::Transient,
        }
        let message = match err {
            sqlx::Error::Database(db) => db.message().to_string(),
            _ => String::new(),
        };
        match mysql_code(err) {
            // Table 'test.products' doesn't exist
            Some(1146) => ErrorClass::MissingTable(
                quoted_name(&message)
                    .map(|name| name.rsplit('.').next().unwrap_or(&name).to_string())
                    .unwrap_or(message),
            ),
            // Unknown column 'sku' in 'field list' / Unknown column 't.sku' in 'where clause'
            Some(1054) => ErrorClass::MissingColumn(
                quoted_name(&message)
                    .map(|name| name.rsplit('.').next().unwrap_or(&name).to_string())
                    .unwrap_or(message),
            ),
            // server gone away, lost connection, shutdown in progress, killed
            Some(2006 | 2013 | 1053 | 1927 | 4031) => ErrorClass::ConnectionLost,
            // lock wait timeout, deadlock, too many connections, out of memory or disk,
            // read-only (a failover), query interrupted
            Some(1205 | 1213 | 1040 | 1041 | 1021 | 1114 | 1290 | 1317 | 3024 | 1969) => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Permanent,
        }
    }

    fn fetch<'e, 'q: 'e>(
        conn: &'e mut MySqlConnection,
        query: Query<'q, Self>,
    ) -> BoxStream<'e, Result<MySqlRow, sqlx::Error>> {
        iterjob_sql::dialect::rows_only(sqlx::Executor::fetch_many(conn, query))
    }

    fn key_facts<'c>(
        conn: &'c mut MySqlConnection,
        table: &'c TableName,
        keys: &'c [String],
    ) -> BoxFuture<'c, Result<Option<KeyFacts>, sqlx::Error>> {
        key_facts(conn, table, keys).boxed()
    }

    #[inline]
    fn value_at(row: &MySqlRow, index: usize) -> Result<MySqlValueRef<'_>, sqlx::Error> {
        row.try_get_raw(index)
    }

    fn row_int(row: &RowOf<Self>, column: &str) -> Result<Option<i64>, sqlx::Error> {
        let raw = row.try_get_raw(column)?;
        if raw.is_null() {
            return Ok(None);
        }
        let kind = {
            let type_info = raw.type_info();
            MySqlKeyKind::of(type_info.name())
        };
        let value = match kind {
            Some(kind) => Self::decode_key(kind, raw).map_err(sqlx::Error::Decode)?,
            None => return Err(sqlx::Error::Decode("not an integer column".into())),
        };
        match value {
            KeyValue::Integer(n) => Ok(Some(n)),
            KeyValue::Unsigned(n) => Ok(Some(i64::try_from(n).unwrap_or(i64::MAX))),
            KeyValue::Decimal(text) => text
                .split('.')
                .next()
                .and_then(|whole| whole.parse().ok())
                .map(Some)
                .ok_or_else(|| sqlx::Error::Decode(format!("`{text}` is not an integer").into())),
            other => Err(sqlx::Error::Decode(
                format!("a {} where an integer was expected", other.type_name()).into(),
            )),
        }
    }

    fn row_text(row: &RowOf<Self>, column: &str) -> Result<Option<String>, sqlx::Error> {
        let raw = row.try_get_raw(column)?;
        if raw.is_null() {
            return Ok(None);
        }
        // text of any collation, binary ones included (reported as BLOB/VARBINARY)
        let bytes: Vec<u8> =
            <Vec<u8> as Decode<MySql>>::decode(raw).map_err(sqlx::Error::Decode)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }

    fn row_flag(row: &RowOf<Self>, column: &str) -> Result<bool, sqlx::Error> {
        Ok(Self::row_int(row, column)?.unwrap_or(0) != 0)
    }

    fn row_json(row: &RowOf<Self>, column: &str) -> Result<Option<Value>, sqlx::Error> {
        Self::row_text(row, column)?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

/// The first single-quoted name in a message.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    Some(message[start..start + len].to_string())
}

/// Reads `table`'s columns and unique indexes from `information_schema`.
async fn key_facts(
    conn: &mut MySqlConnection,
    table: &TableName,
    keys: &[String],
) -> Result<Option<KeyFacts>, sqlx::Error> {
    let schema_filter = match &table.schema {
        Some(_) => "TABLE_SCHEMA = ?",
        None => "TABLE_SCHEMA = DATABASE()",
    };
    let sql = format!(
        "SELECT COLUMN_NAME, IS_NULLABLE FROM information_schema.COLUMNS \
         WHERE {schema_filter} AND TABLE_NAME = ?"
    );
    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
    if let Some(schema) = &table.schema {
        query = query.bind(schema);
    }
    let columns: Vec<(String, bool)> = query
        .bind(&table.name)
        .fetch(&mut *conn)
        .map_ok(|(name, nullable)| (name, nullable.eq_ignore_ascii_case("YES")))
        .try_collect()
        .await?;
    if columns.is_empty() {
        return Ok(None);
    }
    let not_null = |key: &str| {
        columns
            .iter()
            .any(|(c, nullable)| c.eq_ignore_ascii_case(key) && !nullable)
    };
    let nullable = keys.iter().map(|key| !not_null(key)).collect();
    // unique indexes on whole columns (SUB_PART: a prefix of the column vouches for
    // nothing; EXPRESSION indexes have no COLUMN_NAME)
    let sql = format!(
        "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
         WHERE {schema_filter} AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
         ORDER BY INDEX_NAME, SEQ_IN_INDEX"
    );
    let mut query = sqlx::query_as::<_, (String, Option<String>, Option<i64>)>(&sql);
    if let Some(schema) = &table.schema {
        query = query.bind(schema);
    }
    let rows: Vec<(String, Option<String>, Option<i64>)> = query
        .bind(&table.name)
        .fetch(&mut *conn)
        .try_collect()
        .await?;
    let mut indexes: Vec<(String, Vec<Option<String>>, bool)> = Vec::new();
    for (index, column, sub_part) in rows {
        match indexes.last_mut() {
            Some((name, columns, prefix)) if *name == index => {
                columns.push(column);
                *prefix |= sub_part.is_some();
            }
            _ => indexes.push((index, vec![column], sub_part.is_some())),
        }
    }
    let in_keys = |name: &str| keys.iter().any(|k| k.eq_ignore_ascii_case(name));
    let unique = indexes.iter().any(|(_, columns, prefix)| {
        !prefix
            && columns
                .iter()
                .all(|column| column.as_deref().is_some_and(|c| in_keys(c) && not_null(c)))
    });
    let primary_key = indexes
        .into_iter()
        .find(|(name, _, _)| name == "PRIMARY")
        .map(|(_, columns, _)| columns.into_iter().flatten().collect())
        .unwrap_or_default();
    Ok(Some(KeyFacts {
        nullable,
        unique,
        primary_key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for micros in [
            0i64,
            -1,
            1_714_566_896_123_456,
            -86_400_000_000,
            253_402_300_799_999_999,
        ] {
            let datetime = datetime_of(micros).expect("in range");
            assert_eq!(micros_of(datetime), micros);
        }
        for days in [0i32, -1, 19_844, -719_162] {
            assert_eq!(days_of(date_of(days).expect("in range")), days);
        }
    }
}
