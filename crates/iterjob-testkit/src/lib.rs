//! Test helpers for iterjob: resume-exactness checks for enumerators, the store
//! conformance suite every store runs, and helpers for testing your own jobs.

pub mod conformance;
pub mod resume;
pub mod scenarios;

pub use resume::{assert_resume_exact, collect_all, walk_with_interruptions};
