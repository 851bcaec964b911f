//! The emulator's integration tests, as modules of one test crate: each file
//! directly under `tests/` would be its own binary linking the whole crate
//! again, which dominated the test build on a 2-core machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod aws_sts;
mod binary;
mod golden_vector;
mod google;
mod metadata;
mod observability;
