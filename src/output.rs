//! The only module that writes to stdout or stderr.
//!
//! Executable mode calls [`stdout`] exactly once and never [`stderr`].
//! Write errors (a closed pipe) are ignored: there is no one left to tell.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Writes `text` and a newline to stdout and flushes.
pub(crate) fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Writes `text` and a newline to stderr (print commands only).
pub(crate) fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}
