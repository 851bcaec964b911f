//! wif-helper: Google Cloud credentials from an AWS identity through
//! Workload Identity Federation.
//!
//! See `docs/architecture.md` for the components and data flow.

pub mod aws;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod env;
pub mod error;
pub mod executable;
pub mod flow;
pub mod fsutil;
pub mod generate_config;
pub mod google;
pub mod http;
pub mod logging;
pub mod output;
pub mod provider;
pub mod secret;
pub mod service;
