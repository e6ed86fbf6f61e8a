//! [`KeyValue`] and [`KeysetCursor`]: a row's key, typed as the database typed it,
//! and its JSON form in a checkpoint.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use super::text::{
    format_date, format_timestamp, format_uuid, hex, is_decimal, parse_date, parse_timestamp,
    parse_uuid, unhex,
};

/// One key value of a row, typed as the database typed it.
///
/// Each store decodes its own column types into these (see its crate docs for the
/// table: a PostgreSQL `timestamptz` is a [`KeyValue::Timestamptz`], a MySQL
/// `DECIMAL` a [`KeyValue::Decimal`], an SQLite `INTEGER` a [`KeyValue::Integer`]),
/// and binds them back as the same type, so the next page's comparison is the one
/// `ORDER BY` made.
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
/// | `Bool` | `true` |
/// | `Integer` | `42` |
/// | `Unsigned` (above `i64::MAX` only) | `18446744073709551615` |
/// | `Real` | `1.5`, always with a fraction or exponent (`3.0`); NaN and infinities as `{"float8": "NaN"}`, `{"float8": "Infinity"}`, `{"float8": "-Infinity"}` |
/// | `Decimal` | `{"decimal": "12.30"}` (the database's text, scale kept) |
/// | `Text` | `"abc"` |
/// | `Bytes` | `{"bytea": "00ff"}` (hex; a JSON array of bytes, `[0, 255]`, reads too) |
/// | `Uuid` | `{"uuid": "67e55044-10b1-426f-9247-bb680e5fe0c8"}` |
/// | `Date` | `{"date": "2024-05-01"}` |
/// | `Timestamp` | `{"timestamp": "2024-05-01T12:34:56.123456"}` |
/// | `Timestamptz` | `{"timestamptz": "2024-05-01T12:34:56.123456Z"}` (always UTC) |
///
/// Times keep microsecond precision; `infinity` and `-infinity` are written as such,
/// and years before 1 AD get a ` BC` suffix as in PostgreSQL. To give a bound by
/// hand, write the JSON form:
/// `serde_json::from_value::<KeyValue>(json!({"timestamptz": "2024-01-01T00:00:00Z"}))`.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    /// SQL NULL: a nullable key column's value in a row with no value there.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer of any width.
    Integer(i64),
    /// An unsigned integer above `i64::MAX` (MySQL `BIGINT UNSIGNED`); smaller ones
    /// are [`KeyValue::Integer`].
    Unsigned(u64),
    /// A floating-point number.
    Real(f64),
    /// An exact decimal (MySQL `DECIMAL`), in the database's text form.
    Decimal(String),
    /// Text (`text`, `varchar`, `char`, …).
    Text(String),
    /// Bytes (`bytea`, `BLOB`, `BINARY(16)`, …).
    Bytes(Vec<u8>),
    /// A uuid, as its 16 bytes.
    Uuid([u8; 16]),
    /// A date: days since 1970-01-01 (`i32::MAX` / `i32::MIN` for `infinity` /
    /// `-infinity`).
    Date(i32),
    /// A timestamp without time zone: microseconds since 1970-01-01 00:00:00
    /// (`i64::MAX` / `i64::MIN` for `infinity` / `-infinity`).
    Timestamp(i64),
    /// A timestamp with time zone: microseconds since 1970-01-01 00:00:00 UTC
    /// (`i64::MAX` / `i64::MIN` for `infinity` / `-infinity`).
    Timestamptz(i64),
}

impl KeyValue {
    /// True for [`KeyValue::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, KeyValue::Null)
    }

    /// A small tag per variant: the SQL a dialect writes for a parameter may depend
    /// on the value's type (a cast) and on whether it is NULL, never on the value.
    pub fn type_tag(&self) -> u8 {
        match self {
            KeyValue::Null => 0,
            KeyValue::Bool(_) => 1,
            KeyValue::Integer(_) => 2,
            KeyValue::Unsigned(_) => 3,
            KeyValue::Real(_) => 4,
            KeyValue::Decimal(_) => 5,
            KeyValue::Text(_) => 6,
            KeyValue::Bytes(_) => 7,
            KeyValue::Uuid(_) => 8,
            KeyValue::Date(_) => 9,
            KeyValue::Timestamp(_) => 10,
            KeyValue::Timestamptz(_) => 11,
        }
    }

    /// The name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyValue::Null => "null",
            KeyValue::Bool(_) => "bool",
            KeyValue::Integer(_) => "integer",
            KeyValue::Unsigned(_) => "unsigned integer",
            KeyValue::Real(_) => "real",
            KeyValue::Decimal(_) => "decimal",
            KeyValue::Text(_) => "text",
            KeyValue::Bytes(_) => "bytes",
            KeyValue::Uuid(_) => "uuid",
            KeyValue::Date(_) => "date",
            KeyValue::Timestamp(_) => "timestamp",
            KeyValue::Timestamptz(_) => "timestamptz",
        }
    }

    /// The date as `YYYY-MM-DD` (see [`KeyValue::Date`]); for binding to a database
    /// without a date type.
    pub fn date_text(days: i32) -> String {
        format_date(days)
    }

    /// The timestamp as `YYYY-MM-DD HH:MM:SS[.ffffff]`, with `+00` when `utc`; for
    /// binding as text.
    pub fn timestamp_text(micros: i64, utc: bool) -> String {
        format_timestamp(micros, utc, ' ')
    }

    /// The uuid in its hyphenated text form.
    pub fn uuid_text(bytes: &[u8; 16]) -> String {
        format_uuid(bytes)
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Null => f.write_str("NULL"),
            KeyValue::Bool(v) => write!(f, "{v}"),
            KeyValue::Integer(v) => write!(f, "{v}"),
            KeyValue::Unsigned(v) => write!(f, "{v}"),
            KeyValue::Real(v) => write!(f, "{v:?}"),
            KeyValue::Decimal(v) => f.write_str(v),
            KeyValue::Text(v) => write!(f, "{v:?}"),
            KeyValue::Bytes(v) => write!(f, "0x{}", hex(&v[..v.len().min(32)])),
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
    Unsigned(u64),
    Real(f64),
    Text(String),
    /// Bytes as written by iterjob-sqlite before 0.2: a JSON array.
    Array(Vec<u8>),
    Tagged(Tagged),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Tagged {
    Float8(String),
    Decimal(String),
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
            KeyValue::Unsigned(v) => match i64::try_from(*v) {
                Ok(v) => Repr::Integer(v),
                Err(_) => Repr::Unsigned(*v),
            },
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
            KeyValue::Decimal(v) => Repr::Tagged(Tagged::Decimal(v.clone())),
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
            Repr::Unsigned(v) => KeyValue::Unsigned(v),
            Repr::Real(v) => KeyValue::Real(v),
            Repr::Text(v) => KeyValue::Text(v),
            Repr::Array(v) => KeyValue::Bytes(v),
            Repr::Tagged(Tagged::Float8(t)) => KeyValue::Real(match t.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => t.parse().map_err(|_| bad("float8", &t))?,
            }),
            Repr::Tagged(Tagged::Decimal(t)) => {
                if !is_decimal(&t) {
                    return Err(bad("decimal", &t));
                }
                KeyValue::Decimal(t)
            }
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

impl From<u64> for KeyValue {
    fn from(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(v) => KeyValue::Integer(v),
            Err(_) => KeyValue::Unsigned(v),
        }
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

impl<T: Into<KeyValue>> From<Option<T>> for KeyValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(KeyValue::Null, Into::into)
    }
}

/// The cursor of a keyset walk: the key values of the last row done, one per key
/// column, in key order. Serializes as a JSON array, e.g.
/// `[{"timestamptz": "2024-05-01T00:00:00Z"}, 1041]`.
///
/// A walk makes one per row, so a one-column key is kept inline, without an
/// allocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeysetCursor(pub(crate) KeyValues);

/// A cursor's values: inline for a one-column key.
pub(crate) type KeyValues = SmallVec<[KeyValue; 1]>;

impl KeysetCursor {
    /// A cursor (or bound) from key values, in key order.
    pub fn new(values: impl IntoIterator<Item = impl Into<KeyValue>>) -> Self {
        KeysetCursor(values.into_iter().map(Into::into).collect())
    }

    /// The key values, in key order.
    pub fn values(&self) -> &[KeyValue] {
        &self.0
    }

    /// The key values, in key order, owned.
    pub fn into_values(self) -> Vec<KeyValue> {
        self.0.into_vec()
    }
}

impl<T: Into<KeyValue>> From<T> for KeysetCursor {
    /// A one-column key.
    fn from(value: T) -> Self {
        KeysetCursor(smallvec::smallvec![value.into()])
    }
}

impl fmt::Display for KeysetCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{value}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let values = vec![
            KeyValue::Null,
            KeyValue::Bool(true),
            KeyValue::Integer(-3),
            KeyValue::Unsigned(u64::MAX),
            KeyValue::Real(2.0),
            KeyValue::Real(f64::INFINITY),
            KeyValue::Decimal("12.30".into()),
            KeyValue::Text("2024-05-01".into()),
            KeyValue::Bytes(vec![0, 255]),
            KeyValue::Uuid([0x67; 16]),
            KeyValue::Date(19_844),
            KeyValue::Timestamp(1_714_566_896_000_000),
            KeyValue::Timestamptz(1_714_566_896_123_456),
        ];
        let json = serde_json::to_value(KeysetCursor::new(values.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                null,
                true,
                -3,
                u64::MAX,
                2.0,
                {"float8": "Infinity"},
                {"decimal": "12.30"},
                "2024-05-01",
                {"bytea": "00ff"},
                {"uuid": "67676767-6767-6767-6767-676767676767"},
                {"date": "2024-05-01"},
                {"timestamp": "2024-05-01T12:34:56"},
                {"timestamptz": "2024-05-01T12:34:56.123456Z"},
            ])
        );
        let back: KeysetCursor = serde_json::from_value(json).unwrap();
        assert_eq!(back.values(), values.as_slice());
        let nan: KeyValue = serde_json::from_str(r#"{"float8": "NaN"}"#).unwrap();
        assert!(matches!(nan, KeyValue::Real(v) if v.is_nan()));
        assert!(serde_json::from_str::<KeyValue>(r#"{"timestamptz": "yesterday"}"#).is_err());
        assert!(serde_json::from_str::<KeyValue>(r#"{"decimal": "1e5"}"#).is_err());
        assert!(serde_json::from_str::<KeyValue>(r#"{"money": "1"}"#).is_err());
    }

    #[test]
    fn older_forms_still_read() {
        // iterjob-sqlite wrote blobs as arrays of bytes
        let old: KeyValue = serde_json::from_str("[1, 2, 255]").unwrap();
        assert_eq!(old, KeyValue::Bytes(vec![1, 2, 255]));
        // a small unsigned value is an integer, in JSON and back
        assert_eq!(KeyValue::from(7u64), KeyValue::Integer(7));
        assert_eq!(serde_json::to_string(&KeyValue::Unsigned(7)).unwrap(), "7");
    }
}
