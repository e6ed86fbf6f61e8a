//! The runtime scenarios on the in-memory store.

use std::sync::Arc;

use iterjob::MemoryStore;

iterjob_testkit::runtime_scenarios!(async {
    Arc::new(MemoryStore::new()) as Arc<dyn iterjob::Store>
});
