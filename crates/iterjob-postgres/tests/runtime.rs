//! The runtime scenarios (worker and run loop) on PostgreSQL, each in a fresh schema.

mod common;

use std::sync::Arc;

use iterjob::Store;

/// A fresh store in its own schema, dropped when the store is dropped.
async fn fresh() -> Arc<dyn Store> {
    Arc::new(common::TempStore::new().await)
}

iterjob_testkit::runtime_scenarios!(fresh());

mod pacing {
    iterjob_testkit::pacing_scenarios!(super::fresh());
}
