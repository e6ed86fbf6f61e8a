//! The shared SQL suites on PostgreSQL: the keyset enumerator and transactional
//! iteration, each scenario in a fresh schema (the store's, and its pool's
//! `search_path`, so the scenarios' tables land there too).

mod common;

use iterjob::Store;
use iterjob_postgres::{PgConnectOptions, PgDialect, PgPoolOptions, PgStore};
use iterjob_testkit::sql::{ColumnType, SqlHarness};
use sqlx::{Connection, PgConnection};

/// A fresh schema with a store in it; dropped with the harness.
struct Db {
    name: String,
    store: PgStore,
}

impl Drop for Db {
    fn drop(&mut self) {
        common::drop_schema(&self.name);
    }
}

impl SqlHarness for Db {
    type Dialect = PgDialect;
    type Store = PgStore;

    async fn open() -> Option<Self> {
        if !common::require_pg().await {
            return None;
        }
        let name = common::schema_name();
        let mut conn = PgConnection::connect(&common::pg_url())
            .await
            .expect("connect");
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create the test schema");
        let _ = conn.close().await;
        let options: PgConnectOptions = common::pg_url().parse().expect("test URL");
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options.options([("search_path", name.as_str())]))
            .await
            .expect("connect the test pool");
        let store = PgStore::from_pool_with(pool, &name, true).expect("store");
        store.migrate().await.expect("migrate");
        Some(Db { name, store })
    }

    fn store(&self) -> &PgStore {
        &self.store
    }

    fn jobs_table(&self) -> String {
        format!("\"{}\".jobs", self.name)
    }

    fn column_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Int => "BIGINT",
            ColumnType::Text => "TEXT COLLATE \"C\"",
            ColumnType::Real => "DOUBLE PRECISION",
        }
    }
}

iterjob_testkit::keyset_suite!(Db);
iterjob_testkit::transactional_suite!(Db);
