//! Diagnostic logs: to a file when asked, never to stderr in executable mode.
//!
//! `--log-file PATH` (`WIF_HELPER_LOG_FILE`) appends structured lines to a
//! file created with mode 0600; `--log-level` (`WIF_HELPER_LOG`, default
//! `debug` when a file is given) sets wif-helper's own level. Other crates log
//! at `warn` at most, and `aws_sigv4` not at all, because its debug output
//! contains canonical requests with session tokens. wif-helper's own events
//! carry identifiers (key ids, ARNs, URLs, timings), never secret values.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;

/// Where diagnostics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Nowhere (the default).
    None,
    /// Standard error (print commands with `--verbose`).
    Stderr,
}

fn filter(level: &str) -> Result<EnvFilter> {
    let level = level.trim().to_ascii_lowercase();
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        return Err(Error::invalid(format!(
            "--log-level `{level}`: expected error, warn, info, debug or trace"
        )));
    }
    EnvFilter::try_new(format!("warn,wif_helper={level},aws_sigv4=off"))
        .map_err(|e| Error::invalid(format!("--log-level: {e}")))
}

/// Installs the subscriber: a file when `file` is given, else `sink`.
pub fn init(file: Option<&Path>, level: Option<&str>, sink: Sink) -> Result<()> {
    if let Some(path) = file {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::invalid(format!("--log-file {}: {e}", path.display())))?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter(level.unwrap_or("debug"))?)
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .try_init();
    } else if sink == Sink::Stderr {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter(level.unwrap_or("debug"))?)
            .with_writer(std::io::stderr)
            .try_init();
    }
    Ok(())
}
