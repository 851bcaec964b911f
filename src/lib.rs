//! wif-helper: Google Cloud credentials from an AWS identity through
//! Workload Identity Federation.
//!
//! The library's API is [`TokenService`]: service-account access tokens and
//! ID tokens for the AWS identity the process already has, cached on disk
//! and shared with every wif-helper process of the user.
//!
//! ```toml
//! wif-helper = { version = "0.1", default-features = false }  # the API without the CLI's clap and tracing-subscriber
//! ```
//!
//! See `docs/architecture.md` for the components and data flow.
#![deny(unreachable_pub)]
// Without the `cli` feature the executable path (its protocol JSON, generated
// configs) has no caller; it stays compiled so the crate has one shape.
#![cfg_attr(not(feature = "cli"), allow(dead_code))]

pub mod clock;
pub mod env;
pub mod error;
pub mod provider;
pub mod secret;
pub mod service;
pub mod settings;
pub mod subject;

pub(crate) mod aws;
pub(crate) mod cache;
pub(crate) mod credential_config;
pub(crate) mod deadline;
// Compiled for the unit tests too, so `cargo test` covers it in either build.
#[cfg(any(feature = "static-dns", test))]
#[cfg_attr(not(feature = "static-dns"), allow(dead_code))]
pub(crate) mod dns;
pub(crate) mod fsutil;
pub(crate) mod google;
pub(crate) mod hints;
pub(crate) mod http;
pub(crate) mod jwt;
pub(crate) mod pluggable;
pub(crate) mod text;
pub(crate) mod token;

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod logging;
#[cfg(feature = "cli")]
mod metadata;
#[cfg(feature = "cli")]
mod output;

#[cfg(test)]
mod fuzz;

// A static glibc binary would resolve host names through the host's NSS
// modules, built for another glibc (see `dns.rs`).
#[cfg(all(
    target_env = "gnu",
    target_feature = "crt-static",
    not(feature = "static-dns")
))]
compile_error!("a statically linked glibc build needs the `static-dns` feature (scripts/release)");

pub use aws::AwsSettings;
pub use env::Env;
pub use error::{Error, ErrorCode, Result};
pub use provider::Provider;
pub use secret::Secret;
pub use service::{Token, TokenService};
pub use settings::{CacheSettings, ServiceSettings};
pub use subject::ProviderType;

/// The `wif-helper` command line; the binary's `main` is this call.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub fn cli_main() -> std::process::ExitCode {
    cli::main()
}
