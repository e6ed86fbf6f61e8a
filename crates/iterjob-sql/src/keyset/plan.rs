//! The SQL of a keyset walk: the page query after a cursor, the tie check at a page
//! boundary, counts and quantile keys, written once for every dialect.
//!
//! # The order and the predicate
//!
//! Rows are walked in `ORDER BY k1, k2, …` (all `DESC` for a descending walk), with
//! NULL where the database's indexes keep it ([`Dialect::NULLS_FIRST`]), stated in
//! the SQL where the database has the syntax. "After the cursor `(v1, v2, …)`" in
//! that order is the union, over each key position `i`, of the rows equal to the
//! cursor on `k1 … k(i-1)` and after it on `ki`; on one column, "after `v`" is `k > v`
//! (`<` descending), plus `k IS NULL` when NULLs come last, and "after NULL" is
//! `k IS NOT NULL` when NULLs come first (nothing when they come last). Equality to a
//! NULL is `IS NULL`. Every part is an equality prefix plus one range (or `IS NULL`)
//! on the next column: an index seek.
//!
//! * Key columns the schema declares NOT NULL (or the keyset assumes are) take the
//!   short form: one row-value comparison `(k1, k2) > (?, ?)` where the dialect
//!   turns it into an index range scan ([`Dialect::ROW_VALUES`]), otherwise the
//!   written-out `k1 >= ? AND (k1 > ? OR (k1 = ? AND k2 > ?))`.
//! * With a nullable key column, each part is a query of its own with the page's
//!   `ORDER BY … LIMIT`, and the page is the first rows of their `UNION ALL` in the
//!   same order: a few index seeks instead of one.
//!
//! An end bound ("not after `e`") is a condition on every part, plus a sargable
//! bound on the first key column where it narrows the part's range, and parts that
//! lie wholly after it are left out, so the last page of a range never scans past it.

use std::marker::PhantomData;

use super::error::KeysetError;
use super::value::{KeyValue, KeysetCursor};
use crate::dialect::{Dialect, Query};

/// Where a bound parameter's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// The lower cursor's value at this key position.
    Lower(usize),
    /// The end bound's value at this key position.
    End(usize),
    /// The page size (or the `OFFSET` plus one, for a quantile's parts).
    Limit,
    /// The `OFFSET` of a quantile key.
    Offset,
}

/// A statement and where its parameters come from, in binding order.
#[derive(Clone, Debug)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<Param>,
}

/// Which key tuple an atom compares a column with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    Lower,
    End,
}

/// One condition on one key column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    IsNull(usize),
    IsNotNull(usize),
    /// `column op value`.
    Cmp(usize, &'static str, Src),
}

impl Atom {
    fn column(self) -> usize {
        match self {
            Atom::IsNull(i) | Atom::IsNotNull(i) | Atom::Cmp(i, _, _) => i,
        }
    }
}

/// A conjunction of atoms.
type Branch = Vec<Atom>;

/// Where a query's tail goes: after a single query, after each part of a union, or
/// after the union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    Single,
    Part,
    Outer,
}

/// The checked definition of a walk, before the schema is known.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    /// How errors name the walk: ``table `products` `` or `query`.
    pub(crate) relation: String,
    /// The table, when the source is one (for the schema).
    pub(crate) table: Option<crate::dialect::TableName>,
    /// `FROM` text: a quoted table or `(query) AS iterjob_keyset`.
    pub(crate) from: String,
    /// The select list.
    pub(crate) select: String,
    /// The key columns as written in the `FROM`'s scope: `"t"."k"`.
    pub(crate) key_columns: Vec<String>,
    /// The key columns unqualified, quoted: `"k"`, for the order of a union.
    pub(crate) key_names: Vec<String>,
    /// The key columns as given.
    pub(crate) keys: Vec<String>,
    pub(crate) descending: bool,
    pub(crate) filter: Option<String>,
    /// The end bound's key and whether it is inclusive.
    pub(crate) end: Option<(Vec<KeyValue>, bool)>,
}

/// What the walk knows about its key columns, from the schema or the keyset's
/// assumptions.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    /// Per key column: may hold NULL.
    pub(crate) nullable: Vec<bool>,
    /// No two rows can share a key: no tie checks.
    pub(crate) unique: bool,
    /// A NULL in a key column is an error (the keyset assumed there are none).
    pub(crate) nulls_are_errors: bool,
    /// Suggested key for a tie's message.
    pub(crate) suggestion: String,
}

/// A walk's SQL builder for dialect `D`.
#[derive(Debug)]
pub(crate) struct Plan<D> {
    pub(crate) shape: Shape,
    pub(crate) facts: Facts,
    _dialect: PhantomData<fn() -> D>,
}

/// Writes a statement left to right, numbering its parameters in order.
struct Writer<'a, D> {
    text: String,
    params: Vec<Param>,
    lower: Option<&'a [KeyValue]>,
    end: Option<&'a [KeyValue]>,
    _dialect: PhantomData<fn() -> D>,
}

impl<D: Dialect> Plan<D> {
    pub(crate) fn new(shape: Shape, facts: Facts) -> Self {
        Plan {
            shape,
            facts,
            _dialect: PhantomData,
        }
    }

    fn nullable(&self, i: usize) -> bool {
        self.facts.nullable.get(i).copied().unwrap_or(true)
    }

    fn all_not_null(&self) -> bool {
        (0..self.shape.keys.len()).all(|i| !self.nullable(i))
    }

    /// NULL comes before every value in the walk's direction.
    fn nulls_first_in_walk(&self) -> bool {
        D::NULLS_FIRST != self.shape.descending
    }

    fn op_after(&self) -> &'static str {
        if self.shape.descending { "<" } else { ">" }
    }

    fn op_before(&self) -> &'static str {
        if self.shape.descending { ">" } else { "<" }
    }

    fn op_at_or_before(&self) -> &'static str {
        if self.shape.descending { ">=" } else { "<=" }
    }

    fn op_at_or_after(&self) -> &'static str {
        if self.shape.descending { "<=" } else { ">=" }
    }

    /// `k1 ASC, k2 ASC` over `columns` (qualified or not).
    fn order_by(&self, columns: &[String]) -> String {
        let direction = if self.shape.descending {
            " DESC"
        } else {
            " ASC"
        };
        columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let nulls = if self.nullable(i) {
                    D::nulls_clause(self.shape.descending)
                } else {
                    ""
                };
                format!("{column}{direction}{nulls}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The alternatives for "column `i` after `value`" in walk order.
    fn after_column(&self, i: usize, value: &KeyValue, src: Src) -> Vec<Atom> {
        let nulls_first = self.nulls_first_in_walk();
        match (value.is_null(), nulls_first) {
            (true, true) => vec![Atom::IsNotNull(i)],
            (true, false) => Vec::new(),
            (false, true) => vec![Atom::Cmp(i, self.op_after(), src)],
            (false, false) if self.nullable(i) => {
                vec![Atom::Cmp(i, self.op_after(), src), Atom::IsNull(i)]
            }
            (false, false) => vec![Atom::Cmp(i, self.op_after(), src)],
        }
    }

    /// The alternatives for "column `i` before `value`" in walk order.
    fn before_column(&self, i: usize, value: &KeyValue, src: Src) -> Vec<Atom> {
        let nulls_first = self.nulls_first_in_walk();
        match (value.is_null(), nulls_first) {
            (true, true) => Vec::new(),
            (true, false) => vec![Atom::IsNotNull(i)],
            (false, true) if self.nullable(i) => {
                vec![Atom::Cmp(i, self.op_before(), src), Atom::IsNull(i)]
            }
            (false, _) => vec![Atom::Cmp(i, self.op_before(), src)],
        }
    }

    fn eq_column(i: usize, value: &KeyValue, src: Src) -> Atom {
        if value.is_null() {
            Atom::IsNull(i)
        } else {
            Atom::Cmp(i, "=", src)
        }
    }

    /// The rows after `key` in walk order, as a union of branches, the deepest key
    /// position first.
    fn after_branches(&self, key: &[KeyValue], src: Src) -> Vec<Branch> {
        let mut branches = Vec::new();
        for i in (0..key.len()).rev() {
            let prefix: Branch = (0..i).map(|j| Self::eq_column(j, &key[j], src)).collect();
            for alt in self.after_column(i, &key[i], src) {
                let mut branch = prefix.clone();
                branch.push(alt);
                branches.push(branch);
            }
        }
        branches
    }

    /// The rows before `key`, and also those equal to it when `inclusive`.
    fn before_branches(&self, key: &[KeyValue], src: Src, inclusive: bool) -> Vec<Branch> {
        let mut branches = Vec::new();
        if inclusive {
            branches.push(
                (0..key.len())
                    .map(|j| Self::eq_column(j, &key[j], src))
                    .collect(),
            );
        }
        for i in (0..key.len()).rev() {
            let prefix: Branch = (0..i).map(|j| Self::eq_column(j, &key[j], src)).collect();
            for alt in self.before_column(i, &key[i], src) {
                let mut branch = prefix.clone();
                branch.push(alt);
                branches.push(branch);
            }
        }
        branches
    }

    /// Narrows a branch by the end bound's first value: `None` when the branch lies
    /// wholly after the end, else the branch with a sargable bound on the first key
    /// column added where it narrows the range.
    fn bound_branch(&self, mut branch: Branch) -> Option<Branch> {
        let Some((end, _)) = &self.shape.end else {
            return Some(branch);
        };
        let first = branch.iter().find(|a| a.column() == 0).copied();
        let null_branch = match first {
            Some(Atom::IsNull(_)) => true,
            Some(_) => false,
            None => false,
        };
        let unconstrained = first.is_none() && self.nullable(0);
        if unconstrained {
            // callers split a nullable first column before bounding
            return Some(branch);
        }
        let nulls_first = self.nulls_first_in_walk();
        match (null_branch, end[0].is_null()) {
            (false, false) => {
                branch.push(Atom::Cmp(0, self.op_at_or_before(), Src::End));
                Some(branch)
            }
            (false, true) => (!nulls_first).then_some(branch),
            (true, false) => nulls_first.then_some(branch),
            (true, true) => Some(branch),
        }
    }

    /// The branches of a query over the walk's rows after `lower` (from the start
    /// without one), bounded by the end.
    fn branches(&self, lower: Option<&[KeyValue]>) -> Vec<Branch> {
        let raw = match lower {
            Some(lower) => self.after_branches(lower, Src::Lower),
            None if self.shape.end.is_some() && self.nullable(0) => {
                vec![vec![Atom::IsNotNull(0)], vec![Atom::IsNull(0)]]
            }
            None => vec![Vec::new()],
        };
        raw.into_iter()
            .filter_map(|branch| self.bound_branch(branch))
            .collect()
    }

    /// Uses the short form: all key columns NOT NULL.
    fn short_form(&self) -> bool {
        self.all_not_null()
    }

    /// Writes the conditions of one query part: the lower bound (a branch, or the
    /// short form), the filter, the end bound.
    fn write_conditions(&self, w: &mut Writer<'_, D>, branch: Option<&Branch>, lower: bool) {
        let mut parts: Vec<String> = Vec::new();
        if lower {
            match branch {
                Some(branch) => {
                    if !branch.is_empty() {
                        parts.push(self.write_branch(w, branch));
                    }
                }
                None => parts.push(self.write_short(w, Src::Lower)),
            }
        } else if let Some(branch) = branch
            && !branch.is_empty()
        {
            parts.push(self.write_branch(w, branch));
        }
        if let Some(filter) = &self.shape.filter {
            parts.push(format!("({filter})"));
        }
        if self.shape.end.is_some() {
            parts.push(self.write_end(w));
        }
        if !parts.is_empty() {
            w.text.push_str(" WHERE ");
            w.text.push_str(&parts.join(" AND "));
        }
    }

    /// A branch's atoms, `a AND b`.
    fn write_branch(&self, w: &mut Writer<'_, D>, branch: &Branch) -> String {
        branch
            .iter()
            .map(|atom| self.write_atom(w, *atom))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn write_atom(&self, w: &mut Writer<'_, D>, atom: Atom) -> String {
        let column = &self.shape.key_columns[atom.column()];
        match atom {
            Atom::IsNull(_) => format!("{column} IS NULL"),
            Atom::IsNotNull(_) => format!("{column} IS NOT NULL"),
            Atom::Cmp(i, op, src) => {
                let param = w.param(src, i);
                format!("{column} {op} {param}")
            }
        }
    }

    /// The short form of "after the lower key" (all key columns NOT NULL).
    fn write_short(&self, w: &mut Writer<'_, D>, src: Src) -> String {
        let n = self.shape.keys.len();
        let after = self.op_after();
        if n == 1 {
            let param = w.param(src, 0);
            return format!("{} {after} {param}", self.shape.key_columns[0]);
        }
        if D::ROW_VALUES {
            let params: Vec<String> = (0..n).map(|i| w.param(src, i)).collect();
            return format!(
                "({}) {after} ({})",
                self.shape.key_columns.join(", "),
                params.join(", ")
            );
        }
        let lead = w.param(src, 0);
        let mut text = format!(
            "{} {} {lead} AND (",
            self.shape.key_columns[0],
            self.op_at_or_after()
        );
        let ors: Vec<String> = (0..n)
            .rev()
            .map(|i| {
                let mut branch: Branch = (0..i).map(|j| Atom::Cmp(j, "=", src)).collect();
                branch.push(Atom::Cmp(i, after, src));
                format!("({})", self.write_branch(w, &branch))
            })
            .collect();
        text.push_str(&ors.join(" OR "));
        text.push(')');
        text
    }

    /// The end bound: "not after the end" (inclusive) or "before the end".
    fn write_end(&self, w: &mut Writer<'_, D>) -> String {
        let Some((end, inclusive)) = &self.shape.end else {
            return "1 = 1".to_string();
        };
        let n = self.shape.keys.len();
        if self.short_form() {
            let op = if *inclusive {
                self.op_at_or_before()
            } else {
                self.op_before()
            };
            if n == 1 {
                let param = w.param(Src::End, 0);
                return format!("{} {op} {param}", self.shape.key_columns[0]);
            }
            if D::ROW_VALUES {
                let params: Vec<String> = (0..n).map(|i| w.param(Src::End, i)).collect();
                return format!(
                    "({}) {op} ({})",
                    self.shape.key_columns.join(", "),
                    params.join(", ")
                );
            }
            let lead = w.param(Src::End, 0);
            let mut text = format!(
                "{} {} {lead} AND (",
                self.shape.key_columns[0],
                self.op_at_or_before()
            );
            let mut branches: Vec<Branch> = Vec::new();
            if *inclusive {
                branches.push((0..n).map(|j| Atom::Cmp(j, "=", Src::End)).collect());
            }
            for i in (0..n).rev() {
                let mut branch: Branch = (0..i).map(|j| Atom::Cmp(j, "=", Src::End)).collect();
                branch.push(Atom::Cmp(i, self.op_before(), Src::End));
                branches.push(branch);
            }
            let ors: Vec<String> = branches
                .iter()
                .map(|branch| format!("({})", self.write_branch(w, branch)))
                .collect();
            text.push_str(&ors.join(" OR "));
            text.push(')');
            return text;
        }
        let branches = self.before_branches(end, Src::End, *inclusive);
        if branches.is_empty() {
            return "1 = 0".to_string();
        }
        let ors: Vec<String> = branches
            .iter()
            .map(|branch| format!("({})", self.write_branch(w, branch)))
            .collect();
        format!("({})", ors.join(" OR "))
    }

    /// A query over the walk's rows after `lower`: `select`, the conditions, then
    /// `tail` (`ORDER BY … LIMIT …` with its parameters) — once for a single query,
    /// or for each part of a union and once more over the union.
    fn query_with(
        &self,
        lower: Option<&[KeyValue]>,
        end: Option<&[KeyValue]>,
        select: &str,
        tail: &dyn Fn(&mut Writer<'_, D>, Position),
    ) -> Sql {
        let mut w = Writer {
            text: String::new(),
            params: Vec::new(),
            lower,
            end,
            _dialect: PhantomData,
        };
        if self.short_form() {
            w.text = format!("SELECT {select} FROM {}", self.shape.from);
            self.write_conditions(&mut w, None, lower.is_some());
            tail(&mut w, Position::Single);
            return w.finish();
        }
        let branches = self.branches(lower);
        if branches.len() == 1 {
            w.text = format!("SELECT {select} FROM {}", self.shape.from);
            self.write_conditions(&mut w, Some(&branches[0]), lower.is_some());
            tail(&mut w, Position::Single);
            return w.finish();
        }
        if branches.is_empty() {
            // nothing after the cursor within the end bound: a query that returns no
            // row but has the page's columns
            w.text = format!("SELECT {select} FROM {} WHERE 1 = 0", self.shape.from);
            tail(&mut w, Position::Single);
            return w.finish();
        }
        w.text.push_str("SELECT * FROM (");
        for (n, branch) in branches.iter().enumerate() {
            if n > 0 {
                w.text.push_str(" UNION ALL ");
            }
            w.text.push_str(&format!(
                "SELECT * FROM (SELECT {select} FROM {}",
                self.shape.from
            ));
            self.write_conditions(&mut w, Some(branch), lower.is_some());
            tail(&mut w, Position::Part);
            w.text.push_str(&format!(") AS iterjob_part{n}"));
        }
        w.text.push_str(") AS iterjob_page");
        tail(&mut w, Position::Outer);
        w.finish()
    }

    /// A page: up to `Limit` rows after `lower` (from the start without one).
    pub(crate) fn page(&self, lower: Option<&[KeyValue]>) -> Sql {
        let end = self.shape.end.as_ref().map(|(e, _)| e.as_slice());
        self.query_with(lower, end, &self.shape.select, &|w, position| {
            let order = match position {
                Position::Outer => self.order_by(&self.shape.key_names),
                Position::Single | Position::Part => self.order_by(&self.shape.key_columns),
            };
            let limit = w.int(Param::Limit);
            w.text.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
        })
    }

    /// `COUNT(*)` of the rows after `lower` (from the start without one).
    pub(crate) fn count(&self, lower: Option<&[KeyValue]>) -> Sql {
        let end = self.shape.end.as_ref().map(|(e, _)| e.as_slice());
        let inner = self.query_with(lower, end, "1 AS iterjob_one", &|_, _| {});
        Sql {
            text: format!("SELECT COUNT(*) FROM ({}) AS iterjob_count", inner.text),
            params: inner.params,
        }
    }

    /// The key of the row `Offset` rows after the first one after `lower`; the parts
    /// of a union take their first `Limit` (= `Offset` + 1) rows.
    pub(crate) fn nth(&self, lower: Option<&[KeyValue]>) -> Sql {
        let end = self.shape.end.as_ref().map(|(e, _)| e.as_slice());
        let keys = self.shape.key_columns.join(", ");
        self.query_with(lower, end, &keys, &|w, position| match position {
            Position::Part => {
                let order = self.order_by(&self.shape.key_columns);
                let limit = w.int(Param::Limit);
                w.text.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
            }
            Position::Single | Position::Outer => {
                let order = if position == Position::Outer {
                    self.order_by(&self.shape.key_names)
                } else {
                    self.order_by(&self.shape.key_columns)
                };
                let offset = w.int(Param::Offset);
                w.text
                    .push_str(&format!(" ORDER BY {order} LIMIT 1 OFFSET {offset}"));
            }
        })
    }

    /// Counts the rows whose key equals `at` (stopping at 2): more than one means the
    /// key does not identify a row.
    pub(crate) fn tie_check(&self, at: &[KeyValue]) -> Sql {
        let mut w = Writer {
            text: format!("SELECT 1 AS iterjob_one FROM {}", self.shape.from),
            params: Vec::new(),
            lower: Some(at),
            end: None,
            _dialect: PhantomData,
        };
        let branch: Branch = (0..at.len())
            .map(|i| Self::eq_column(i, &at[i], Src::Lower))
            .collect();
        let mut parts = vec![self.write_branch(&mut w, &branch)];
        if let Some(filter) = &self.shape.filter {
            parts.push(format!("({filter})"));
        }
        w.text.push_str(" WHERE ");
        w.text.push_str(&parts.join(" AND "));
        let limit = w.int(Param::Limit);
        w.text.push_str(&format!(" LIMIT {limit}"));
        Sql {
            text: format!("SELECT COUNT(*) FROM ({}) AS iterjob_ties", w.text),
            params: w.params,
        }
    }

    /// Refuses NULL in a cursor or bound when the key columns are taken as NOT NULL
    /// (the short form compares with `=`/`>`, which NULL never satisfies).
    pub(crate) fn check_values(
        &self,
        values: &[KeyValue],
        what: &'static str,
    ) -> Result<(), KeysetError> {
        if !self.short_form() {
            return Ok(());
        }
        match values.iter().position(KeyValue::is_null) {
            Some(i) => Err(KeysetError::NullBound {
                relation: self.shape.relation.clone(),
                what,
                column: self.shape.keys[i].clone(),
            }),
            None => Ok(()),
        }
    }

    /// Checks the walk's starting point and end bound (see [`Plan::check_values`]).
    pub(crate) fn check_bounds(
        &self,
        lower: Option<&KeysetCursor>,
        lower_is_cursor: bool,
    ) -> Result<(), KeysetError> {
        if let Some(lower) = lower {
            let what = if lower_is_cursor {
                "cursor"
            } else {
                "start bound"
            };
            self.check_values(&lower.0, what)?;
        }
        if let Some((end, _)) = &self.shape.end {
            self.check_values(end, "end bound")?;
        }
        Ok(())
    }

    /// The error for two rows with key `key`.
    pub(crate) fn tie_error(&self, key: &KeysetCursor, late: bool) -> KeysetError {
        KeysetError::KeyNotUnique {
            relation: self.shape.relation.clone(),
            columns: self.shape.keys.join(", "),
            key: Box::new(key.clone()),
            suggestion: self.facts.suggestion.clone(),
            late: if late {
                format!(
                    "; the tie is at the cursor an earlier run saved, so of the rows with key {key} \
                     some may have been processed and some not: check them after fixing the key"
                )
            } else {
                String::new()
            },
        }
    }

    /// Binds `sql`'s parameters.
    pub(crate) fn bind<'q>(
        &self,
        sql: &'q str,
        params: &[Param],
        lower: Option<&KeysetCursor>,
        limit: i64,
        offset: i64,
    ) -> Query<'q, D> {
        let mut query = sqlx::query::<D::Database>(sql);
        let end = self.shape.end.as_ref().map(|(e, _)| e.as_slice());
        for param in params {
            query = match *param {
                Param::Lower(i) => match lower.and_then(|c| c.0.get(i)) {
                    Some(value) => D::bind_key(query, value),
                    None => D::bind_key(query, &KeyValue::Null),
                },
                Param::End(i) => match end.and_then(|e| e.get(i)) {
                    Some(value) => D::bind_key(query, value),
                    None => D::bind_key(query, &KeyValue::Null),
                },
                Param::Limit => D::bind_int(query, limit),
                Param::Offset => D::bind_int(query, offset),
            };
        }
        query
    }
}

impl<D: Dialect> Writer<'_, D> {
    /// Writes a parameter for the key value at position `i` of `src`.
    fn param(&mut self, src: Src, i: usize) -> String {
        let param = match src {
            Src::Lower => Param::Lower(i),
            Src::End => Param::End(i),
        };
        self.params.push(param);
        let value = match src {
            Src::Lower => self.lower.and_then(|k| k.get(i)),
            Src::End => self.end.and_then(|k| k.get(i)),
        };
        D::param(self.params.len(), value.unwrap_or(&KeyValue::Null))
    }

    /// Writes an integer parameter.
    fn int(&mut self, param: Param) -> String {
        self.params.push(param);
        D::int_param(self.params.len())
    }

    fn finish(self) -> Sql {
        Sql {
            text: self.text,
            params: self.params,
        }
    }
}
