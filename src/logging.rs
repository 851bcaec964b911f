//! Diagnostic logs: to a file when asked, never to stderr in executable mode.
//!
//! `--log-file PATH` (`WIF_HELPER_LOG_FILE`) appends structured lines to a
//! file created with mode 0600; `--log-level` (`WIF_HELPER_LOG`, default
//! `debug` when a file is given) sets wif-helper's own level. Other crates log
//! at `warn` at most, and `aws_sigv4` not at all, because its debug output
//! contains canonical requests with session tokens. wif-helper's own events
//! carry identifiers (key ids, ARNs, URLs, timings), never secret values;
//! and every line, whatever crate it comes from, passes through
//! [`crate::secret::redact`] before it is written.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A writer that redacts each formatted event before writing it.
///
/// The fmt layer formats one event into a buffer and writes it through a
/// fresh writer, so [`Line`] sees whole events and redacts them on drop.
struct Redacting<W: Write>(Mutex<W>);

/// One event on its way to a [`Redacting`] writer.
struct Line<'a, W: Write> {
    sink: &'a Mutex<W>,
    buf: Vec<u8>,
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Redacting<W> {
    type Writer = Line<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            sink: &self.0,
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Line<'_, W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = crate::secret::redact(&String::from_utf8_lossy(&self.buf));
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = sink.write_all(text.as_bytes());
        let _ = sink.flush();
    }
}

/// Where diagnostics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
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
pub(crate) fn init(file: Option<&Path>, level: Option<&str>, sink: Sink) -> Result<()> {
    // A bad level is an error even when nothing is logged.
    let level = level.unwrap_or("debug");
    filter(level)?;
    if let Some(path) = file {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::invalid(format!("--log-file {}: {e}", path.display())))?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter(level)?)
            .with_ansi(false)
            .with_writer(Redacting(Mutex::new(f)))
            .try_init();
    } else if sink == Sink::Stderr {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter(level)?)
            .with_writer(Redacting(Mutex::new(std::io::stderr())))
            .try_init();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_redacted_before_they_are_written() {
        crate::secret::remember("log-secret-only-this-test-knows");
        let sink = Redacting(Mutex::new(Vec::<u8>::new()));
        {
            let mut w = sink.make_writer();
            let _ = w.write_all(b"key=log-secret-only-this-test-knows ");
            let _ = w.write_all(b"jwt=eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ.c2ln\n");
        }
        let written = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&written),
            "key=[redacted] jwt=[redacted]\n"
        );
    }

    #[test]
    fn unknown_levels_name_the_flag() {
        let e = filter("loud").err().map(|e| e.message().to_owned());
        assert!(e.is_some_and(|m| m.contains("--log-level")));
    }
}
