//! The runtime scenarios (worker and run loop) on a real SQLite file.

mod common;

use std::sync::Arc;

use iterjob::Store;

/// A fresh store in its own temporary directory, removed when the store is dropped.
async fn fresh() -> Arc<dyn Store> {
    Arc::new(common::TempStore::new().await)
}

iterjob_testkit::runtime_scenarios!(fresh());

mod pacing {
    iterjob_testkit::pacing_scenarios!(super::fresh());
}
