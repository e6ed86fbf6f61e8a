//! The runtime scenarios (worker and run loop) on MySQL/MariaDB, each in a fresh
//! database.

mod common;

use std::sync::Arc;

use iterjob::Store;

/// A fresh store in its own database, dropped when the store is dropped.
async fn fresh() -> Arc<dyn Store> {
    Arc::new(common::guarded_store().await)
}

iterjob_testkit::runtime_scenarios!(fresh());

mod pacing {
    iterjob_testkit::pacing_scenarios!(super::fresh());
}
