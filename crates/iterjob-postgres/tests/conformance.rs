//! The store conformance suite on PostgreSQL: every scenario in a fresh schema of
//! its own (dropped afterwards).

mod common;

iterjob_testkit::store_conformance!(async { common::TempStore::new().await });
