//! Runs the store conformance suite against the in-memory store.

use iterjob::store::MemoryStore;

iterjob_testkit::store_conformance!(async { MemoryStore::new() });
