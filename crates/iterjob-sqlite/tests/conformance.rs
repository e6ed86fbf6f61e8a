//! The store conformance suite on SQLite: every scenario on a fresh temporary file.

mod common;

iterjob_testkit::store_conformance!(async { common::TempStore::new().await });
