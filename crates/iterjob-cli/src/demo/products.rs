//! The demo's table, `demo_products`, on whichever database the store is: created,
//! filled, counted and updated through the database's dialect, so one piece of code
//! serves SQLite, PostgreSQL and MySQL.

use anyhow::{Context, Result};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use iterjob::partition::KeyRange;
use iterjob_sql::dialect::{ConnectionOf, Dialect, Query, RowOf};
use iterjob_sql::{KeyValue, Keyset, KeysetCursor};
use sqlx::Pool;

/// One product, as the demo's work sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its price.
    pub price_cents: i64,
}

/// Runs one statement with key values bound to its parameters; returns its rows.
pub(crate) async fn run<D: Dialect>(
    conn: &mut ConnectionOf<D>,
    sql: &str,
    values: &[KeyValue],
) -> Result<Vec<RowOf<D>>, sqlx::Error> {
    let mut query: Query<'_, D> = sqlx::query::<D::Database>(sql);
    for value in values {
        query = D::bind_key(query, value);
    }
    D::fetch(conn, query).try_collect().await
}

/// `p1, p2, …` for `values`, numbered from `first`.
fn params<D: Dialect>(first: usize, values: &[KeyValue]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| D::param(first + i, value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The demo's collection: the products of `range`, in id order.
pub(crate) fn keyset<D: Dialect>(batch_size: u32, range: &KeyRange<KeysetCursor>) -> Keyset<D> {
    Keyset::<D>::table("demo_products")
        .key("id")
        .columns(["id", "name", "price_cents"])
        .batch_size(batch_size as usize)
        .range(range)
}

/// A row of [`keyset`] as a product.
pub(crate) fn product<D: Dialect>(row: &RowOf<D>) -> Result<Product, sqlx::Error> {
    let missing = |column: &str| sqlx::Error::ColumnNotFound(column.to_string());
    Ok(Product {
        id: D::row_int(row, "id")?.ok_or_else(|| missing("id"))?,
        name: D::row_text(row, "name")?.ok_or_else(|| missing("name"))?,
        price_cents: D::row_int(row, "price_cents")?.ok_or_else(|| missing("price_cents"))?,
    })
}

/// Creates `demo_products` unless it exists.
pub(crate) async fn ensure_table<D: Dialect>(pool: &Pool<D::Database>) -> Result<()> {
    let (id, text) = match D::NAME {
        "SQLite" => ("INTEGER", "TEXT"),
        "MySQL" => ("BIGINT", "VARCHAR(64)"),
        _ => ("BIGINT", "TEXT"),
    };
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS demo_products (
            id {id} NOT NULL PRIMARY KEY,
            name {text} NOT NULL,
            price_cents BIGINT NOT NULL,
            synced_at BIGINT,
            checksum {text},
            sync_count BIGINT NOT NULL DEFAULT 0
        )"
    );
    let mut conn = pool.acquire().await?;
    run::<D>(&mut conn, &sql, &[])
        .await
        .context("creating the demo_products table")?;
    Ok(())
}

/// Empties `demo_products` and fills it with products `1..=n`, a thousand per
/// statement, with a progress bar.
pub(crate) async fn create<D: Dialect>(pool: &Pool<D::Database>, n: u64) -> Result<()> {
    let bar = ProgressBar::new(n).with_style(
        ProgressStyle::with_template("creating products {wide_bar} {pos}/{len} ({per_sec})")
            .expect("valid template"),
    );
    let mut conn = pool.acquire().await?;
    run::<D>(&mut conn, "DELETE FROM demo_products", &[]).await?;
    let mut next = 1u64;
    while next <= n {
        let end = (next + 999).min(n);
        let mut values = Vec::new();
        let mut tuples = Vec::new();
        for id in next..=end {
            let row = [
                KeyValue::Integer(id as i64),
                KeyValue::Text(format!("Product {id}")),
                KeyValue::Integer(((id * 7919) % 100_000) as i64),
            ];
            tuples.push(format!("({})", params::<D>(values.len() + 1, &row)));
            values.extend(row);
        }
        let sql = format!(
            "INSERT INTO demo_products (id, name, price_cents) VALUES {}",
            tuples.join(", ")
        );
        run::<D>(&mut conn, &sql, &values)
            .await
            .context("creating demo products")?;
        bar.set_position(end);
        next = end + 1;
    }
    bar.finish_and_clear();
    Ok(())
}

/// The products in `range`.
pub(crate) async fn count<D: Dialect>(
    conn: &mut ConnectionOf<D>,
    range: &KeyRange<KeysetCursor>,
) -> Result<u64, sqlx::Error> {
    let bound = |c: &Option<KeysetCursor>| match c.as_ref().map(|c| c.values()) {
        Some([KeyValue::Integer(id)]) => Ok(Some(*id)),
        None => Ok(None),
        Some(other) => Err(sqlx::Error::Decode(
            format!("product range bound {other:?} is not one integer id").into(),
        )),
    };
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(after) = bound(&range.after)? {
        values.push(KeyValue::Integer(after));
        conditions.push(format!(
            "id > {}",
            D::param(values.len(), &values[values.len() - 1])
        ));
    }
    if let Some(until) = bound(&range.until)? {
        values.push(KeyValue::Integer(until));
        conditions.push(format!(
            "id <= {}",
            D::param(values.len(), &values[values.len() - 1])
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let rows = run::<D>(
        conn,
        &format!("SELECT COUNT(*) AS n FROM demo_products{filter}"),
        &values,
    )
    .await?;
    let n = rows
        .first()
        .map(|row| D::row_int(row, "n"))
        .transpose()?
        .flatten()
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Syncs one product: the "refresh" written back, in the caller's transaction.
pub(crate) async fn update<D: Dialect>(
    conn: &mut ConnectionOf<D>,
    product: &Product,
    now: i64,
) -> Result<(), sqlx::Error> {
    let values = [
        KeyValue::Integer(now),
        KeyValue::Text(format!(
            "{:016x}",
            checksum(&product.name, product.price_cents)
        )),
        KeyValue::Integer(product.id),
    ];
    let sql = format!(
        "UPDATE demo_products SET synced_at = {}, checksum = {}, sync_count = sync_count + 1 \
         WHERE id = {}",
        D::param(1, &values[0]),
        D::param(2, &values[1]),
        D::param(3, &values[2]),
    );
    run::<D>(conn, &sql, &values).await.map(drop)
}

/// (products synced, synced more than once).
pub(crate) async fn sync_counts<D: Dialect>(pool: &Pool<D::Database>) -> Result<(i64, i64)> {
    let mut conn = pool.acquire().await?;
    let rows = run::<D>(
        &mut conn,
        "SELECT COUNT(CASE WHEN sync_count > 0 THEN 1 END) AS synced, \
                COUNT(CASE WHEN sync_count > 1 THEN 1 END) AS repeated \
         FROM demo_products",
        &[],
    )
    .await?;
    let row = rows.first().context("counting synced products")?;
    Ok((
        D::row_int(row, "synced")?.unwrap_or(0),
        D::row_int(row, "repeated")?.unwrap_or(0),
    ))
}

/// FNV-1a over the product's fields.
fn checksum(name: &str, price: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(price.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
