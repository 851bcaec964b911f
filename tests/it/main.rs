//! The integration tests, as modules of one test crate (one binary).
//!
//! Each file directly under `tests/` is its own test binary, and each of those
//! links the whole crate and its dependencies again: on a 2-core CI machine
//! that linking was most of the test build time. One binary links once.
//! Test names carry their module (`faults::aws_403_and_400_are_not_retried`);
//! run one file's tests with `cargo test --test it faults::`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    // Tests read the process environment and the wall clock freely; the
    // rule (clippy.toml) is for the library.
    clippy::disallowed_methods
)]

mod common;

mod cache_safety;
mod client_libraries;
mod config_examples;
mod doctor;
mod executable;
mod faults;
mod first_contact;
mod generate_config;
mod hardening;
mod identity_binding;
mod layout;
mod metadata_clients;
mod metadata_exec;
mod metadata_server;
mod print_tokens;
mod proxies;
mod release;
mod same_rules;
mod secret_hygiene;
mod service_api;
mod setup_guides;
mod soak;
