//! The shared SQL suites on SQLite: the keyset enumerator and transactional
//! iteration, each scenario in a fresh temporary database file.

mod common;

use iterjob_sqlite::{SqliteDialect, SqliteStore};
use iterjob_testkit::sql::{ColumnType, SqlHarness};

/// A fresh SQLite store in a temporary directory.
struct Db(common::TempStore);

impl SqlHarness for Db {
    type Dialect = SqliteDialect;
    type Store = SqliteStore;

    async fn open() -> Option<Self> {
        Some(Db(common::TempStore::new().await))
    }

    fn store(&self) -> &SqliteStore {
        &self.0.store
    }

    fn jobs_table(&self) -> String {
        "iterjob_jobs".to_string()
    }

    fn column_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Int => "INTEGER",
            ColumnType::Text => "TEXT",
            ColumnType::Real => "REAL",
        }
    }
}

iterjob_testkit::keyset_suite!(Db);
iterjob_testkit::transactional_suite!(Db);
