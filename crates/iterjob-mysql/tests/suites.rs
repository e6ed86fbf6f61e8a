//! The shared SQL suites on MySQL/MariaDB: the keyset enumerator and transactional
//! iteration, each scenario in a fresh database.

mod common;

use iterjob_mysql::{MySqlDialect, MySqlStore};
use iterjob_testkit::sql::{ColumnType, SqlHarness};

/// A fresh database with a store in it; dropped with the harness.
struct Db {
    store: MySqlStore,
    _db: common::TempDb,
}

impl SqlHarness for Db {
    type Dialect = MySqlDialect;
    type Store = MySqlStore;

    async fn open() -> Option<Self> {
        let (store, db) = common::temp_store(|o| o).await?;
        Some(Db { store, _db: db })
    }

    fn store(&self) -> &MySqlStore {
        &self.store
    }

    fn jobs_table(&self) -> String {
        "iterjob_jobs".to_string()
    }

    fn column_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Int => "BIGINT",
            ColumnType::Text => "VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            ColumnType::Real => "DOUBLE",
        }
    }
}

iterjob_testkit::keyset_suite!(Db);
iterjob_testkit::transactional_suite!(Db);
