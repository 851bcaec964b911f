//! Diagnostic logs: to a file when asked, never to stderr in executable mode.
//!
//! `--log-file PATH` (`WIF_HELPER_LOG_FILE`) appends structured lines to a
//! file created with mode 0600; `--log-level` (`WIF_HELPER_LOG`, default
//! `debug` when a file is given) sets wif-helper's own level. Other crates log
//! at `warn` at most, and `aws_sigv4` not at all, because its debug output
//! contains canonical requests with session tokens; aws-config's warnings
//! about a failed credential provider are dropped too, as they quote what a
//! `credential_process` printed. wif-helper's own events
//! carry identifiers (key ids, ARNs, URLs, timings), never secret values;
//! and every line, whatever crate it comes from, passes through
//! [`crate::secret::redact`] before it is written.
//!
//! The log file is often in a shared place (`/tmp`), where another user may
//! have put something first. It is opened without following a symlink and
//! without blocking (a FIFO would otherwise hang the process until a reader
//! came), and used only if the opened file is a regular file with one link,
//! owned by the effective user and writable by no one else. Otherwise
//! logging is skipped, never the token: the answer matters more than the
//! log, and a file someone else planted must not be able to stop it. Where
//! diagnostics may go to stderr (`--verbose`), a warning says why and the
//! log goes there instead; in executable mode (and print commands without
//! `--verbose`) nothing is said, as stderr is not ours.

use crate::error::{Error, Result};
use std::fs::File;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    // aws-config warns with the full error of a credential provider that
    // failed, which for a `credential_process` is everything the process
    // printed (a key it read, a password): no redaction can know what is
    // secret there. wif-helper reports the same failure without it.
    EnvFilter::try_new(format!(
        "warn,wif_helper={level},aws_sigv4=off,\
         aws_config::profile::credentials=error,aws_config::meta::credentials::chain=error"
    ))
    .map_err(|e| Error::invalid(format!("--log-level: {e}")))
}

/// Opens the log file for appending (creating it 0600) if it is safe to
/// write: see the module documentation. The error says why not.
fn open_log_file(path: &Path) -> std::result::Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "it is a symbolic link".to_owned(),
            // O_NONBLOCK on a FIFO no one reads.
            Some(libc::ENXIO) => "it is not a regular file".to_owned(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() {
        Err("it is not a regular file".to_owned())
    } else if meta.uid() != me {
        Err(format!(
            "it is owned by uid {}, not by the current user (uid {me})",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Err(format!(
            "other users can write it (mode {:o})",
            meta.mode() & 0o7777
        ))
    } else if meta.nlink() != 1 {
        Err("it has other hard links".to_owned())
    } else {
        Ok(file)
    }
}

/// Installs the subscriber: a file when `file` is given and safe to write
/// (else, with a warning, stderr when `sink` is [`Sink::Stderr`], or
/// nothing), else `sink`. Only a bad level is an error.
pub(crate) fn init(file: Option<&Path>, level: Option<&str>, sink: Sink) -> Result<()> {
    // A bad level is an error even when nothing is logged.
    let filter = filter(level.unwrap_or("debug"))?;
    let refused = match file.map(|path| (path, open_log_file(path))) {
        Some((_, Ok(f))) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(Redacting(Mutex::new(f)))
                .try_init();
            return Ok(());
        }
        Some((path, Err(why))) => Some((path, why)),
        None => None,
    };
    if sink == Sink::Stderr {
        use std::io::IsTerminal;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Colours for people; none for journald, files and pipes.
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(Redacting(Mutex::new(std::io::stderr())))
            .try_init();
        if let Some((path, why)) = refused {
            tracing::warn!(
                "not logging to --log-file {}: {why}; logging to stderr instead \
                 (use a file only you can write, e.g. under ~/.cache)",
                path.display()
            );
        }
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

    fn io<T>(r: std::io::Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_new_log_file_is_created_0600_and_a_private_one_is_appended_to() {
        use std::os::unix::fs::PermissionsExt;
        let dir = io(tempfile::tempdir());
        let path = dir.path().join("new.log");
        let r = open_log_file(&path);
        assert!(r.is_ok(), "{r:?}");
        let mode = io(std::fs::metadata(&path)).permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        // Created by the user with `touch` (0644 under the usual umask): fine.
        let path = dir.path().join("mine.log");
        io(std::fs::write(&path, "before\n"));
        io(std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(0o644),
        ));
        let mut f = open_log_file(&path).unwrap_or_else(|e| panic!("{e}"));
        io(f.write_all(b"after\n"));
        assert_eq!(io(std::fs::read_to_string(&path)), "before\nafter\n");
    }

    #[test]
    fn unsafe_log_files_are_refused_without_blocking_or_following() {
        use std::os::unix::fs::PermissionsExt;
        let dir = io(tempfile::tempdir());
        let d = dir.path();
        // A symlink, to a file of the user and to one that does not exist.
        io(std::fs::write(d.join("target"), "untouched"));
        io(std::os::unix::fs::symlink(
            d.join("target"),
            d.join("link.log"),
        ));
        io(std::os::unix::fs::symlink(
            d.join("absent"),
            d.join("dangling.log"),
        ));
        // A FIFO no one reads (a blocking open would wait for a reader forever).
        let fifo = d.join("fifo.log");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        // Writable by others, and a second link to a file of the user.
        io(std::fs::write(d.join("shared.log"), ""));
        io(std::fs::set_permissions(
            d.join("shared.log"),
            std::fs::Permissions::from_mode(0o666),
        ));
        io(std::fs::hard_link(d.join("target"), d.join("hardlink.log")));
        for (name, why) in [
            ("link.log", "symbolic link"),
            ("dangling.log", "symbolic link"),
            ("fifo.log", "not a regular file"),
            ("shared.log", "other users can write it"),
            ("hardlink.log", "hard links"),
            // A directory.
            ("", "Is a directory"),
        ] {
            let err = open_log_file(&d.join(name)).err().unwrap_or_default();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert_eq!(io(std::fs::read_to_string(d.join("target"))), "untouched");
        assert!(!d.join("absent").exists());
    }

    #[test]
    fn a_log_file_owned_by_another_user_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        if rustix::process::geteuid().as_raw() != 0 {
            // Giving a file away needs root; tests/it/hardening.rs covers it as root too.
            return;
        }
        let dir = io(tempfile::tempdir());
        let path = dir.path().join("theirs.log");
        io(std::fs::write(&path, ""));
        io(std::os::unix::fs::chown(&path, Some(65534), Some(65534)));
        io(std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(0o600),
        ));
        let err = open_log_file(&path).err().unwrap_or_default();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn unknown_levels_name_the_flag() {
        let e = filter("loud").err().map(|e| e.message().to_owned());
        assert!(e.is_some_and(|m| m.contains("--log-level")));
    }
}
