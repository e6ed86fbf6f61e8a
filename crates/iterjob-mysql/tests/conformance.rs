//! The store conformance suite on MySQL/MariaDB: every scenario in a fresh database
//! of its own (dropped afterwards).

mod common;

iterjob_testkit::store_conformance!(async { common::guarded_store().await });
