//! A statement written piece by piece with its arguments, numbered in the order
//! they are bound, for the small tables every SQL store shares (throttle switches,
//! worker presence).

use futures::TryStreamExt;

use crate::dialect::{Dialect, RowOf};
use crate::keyset::KeyValue;

/// A statement being written: its text and its arguments, numbered in the order
/// they are bound.
pub(crate) struct Statement {
    sql: String,
    args: Vec<Arg>,
}

enum Arg {
    Key(KeyValue),
    Int(i64),
}

impl Statement {
    pub(crate) fn new(sql: &str) -> Self {
        Statement {
            sql: sql.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends literal SQL.
    pub(crate) fn push(mut self, sql: &str) -> Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a text parameter.
    pub(crate) fn text<D: Dialect>(mut self, value: &str) -> Self {
        let value = KeyValue::Text(value.to_string());
        self.sql.push_str(&D::param(self.args.len() + 1, &value));
        self.args.push(Arg::Key(value));
        self
    }

    /// Appends an integer parameter.
    pub(crate) fn int<D: Dialect>(mut self, value: i64) -> Self {
        self.sql.push_str(&D::int_param(self.args.len() + 1));
        self.args.push(Arg::Int(value));
        self
    }

    /// Runs it on `conn`, returning its rows.
    pub(crate) async fn run<D: Dialect>(
        &self,
        conn: &mut crate::dialect::ConnectionOf<D>,
    ) -> Result<Vec<RowOf<D>>, sqlx::Error> {
        let mut query = sqlx::query(&self.sql);
        for arg in &self.args {
            query = match arg {
                Arg::Key(value) => D::bind_key(query, value),
                Arg::Int(value) => D::bind_int(query, *value),
            };
        }
        D::fetch(conn, query).try_collect().await
    }
}
