//! The runtime scenarios (worker and run loop) on a real SQLite file.

use std::sync::Arc;

use iterjob::Store;
use iterjob_sqlite::SqliteStore;

async fn fresh() -> Arc<dyn Store> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.keep().join("jobs.db");
    let store = SqliteStore::connect(path.to_str().expect("utf-8 path"))
        .await
        .expect("open store");
    Arc::new(store)
}

iterjob_testkit::runtime_scenarios!(fresh());
