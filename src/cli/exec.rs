//! `exec`: runs a command with a metadata server of its own.
//!
//! Like `aws-vault exec`, but the child's credentials never run out: the
//! server (`crate::metadata`) listens on `127.0.0.1:0`, serves only the
//! user running it, and keeps the token fresh for as long as the child
//! runs. The child inherits the environment with the variables every Google
//! library and gcloud read ([`crate::metadata::client_env`]), plus
//! `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE` naming a 0600 file that always holds a
//! fresh access token, and without `GOOGLE_APPLICATION_CREDENTIALS` (which
//! would win over the metadata server in every library). Standard streams
//! are inherited; SIGINT, SIGTERM and SIGHUP are forwarded to the child,
//! except a SIGINT typed at the terminal (Ctrl-C), which the terminal sends
//! to the child itself (a second one makes many programs, Terraform among
//! them, stop at once instead of cleanly); wif-helper exits with the child's status (128 + N when signal N ended
//! it) and removes the token file.

use super::metadata_server::{self, ProjectArgs};
use super::print::{AccessArgs, ServiceArgs};
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::logging::Sink;
use crate::metadata::{self, IDENTITY_RECHECK, Kind, Limits, Policy, Tokens};
use crate::output;
use crate::token::IssuedToken;
use clap::Args;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub(super) struct ExecArgs {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    project: ProjectArgs,
    /// The command to run and its arguments, after `--`
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Runs the command; the exit code is the child's.
pub(super) fn run(a: &ExecArgs, env: &Env) -> Result<ExitCode> {
    // stderr belongs to the child: diagnostics only when asked.
    let sink = if a.service.verbose {
        Sink::Stderr
    } else {
        Sink::None
    };
    metadata_server::init_logging(&a.service, sink)?;
    let app = metadata_server::app(&a.service, &a.access, &a.project, env)?;
    let rt = metadata_server::runtime()?;
    let result = rt.block_on(async {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let bound = metadata::bind(listen, Policy::default(), Limits::default()).await?;
        let local = bound.local_addr();
        let tokens = Arc::clone(app.tokens());
        // No child without a token: the first one says what is wrong.
        let first = tokens.get(&Kind::Access(Vec::new())).await?;
        let dir = private_dir(env)?;
        let file = dir.path().join("access-token");
        write_token(&file, &first)?;
        let project = metadata_server::app_project(&app);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let grace = metadata_server::grace(&a.service);
        let server = tokio::spawn(bound.serve(
            Arc::clone(&app),
            async {
                let _ = stopped.await;
            },
            grace,
        ));
        let keeper = tokio::spawn(keep_fresh(tokens, file.clone(), first));
        let status = run_child(&a.command, local, project.as_deref(), &file).await;
        keeper.abort();
        let _ = stop.send(());
        if tokio::time::timeout(grace, server).await.is_err() {
            tracing::warn!("the metadata server did not stop in time");
        }
        drop(dir);
        status
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Spawns the child, forwards signals, and returns its exit code.
async fn run_child(
    command: &[OsString],
    local: SocketAddr,
    project: Option<&str>,
    token_file: &Path,
) -> Result<ExitCode> {
    use metadata_server::listen;
    use tokio::signal::unix::SignalKind;
    let Some((program, args)) = command.split_first() else {
        return Err(Error::invalid("exec: no command given after `--`"));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .envs(metadata::client_env(local, project))
        .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", token_file);
    // Installed before the child starts: no signal may fall between.
    let (mut term, mut int, mut hup) = (
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
        listen(SignalKind::hangup())?,
    );
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // What a shell answers: 127 not found, 126 not executable.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            output::stderr(&format!(
                "wif-helper: cannot run `{}`: {e}",
                Path::new(program).display()
            ));
            return Ok(ExitCode::from(code));
        }
    };
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status,
            _ = term.recv() => rustix::process::Signal::TERM,
            _ = int.recv() => rustix::process::Signal::INT,
            _ = hup.recv() => rustix::process::Signal::HUP,
        };
        if forward == rustix::process::Signal::INT && terminal_sent_it() {
            tracing::debug!(
                "SIGINT from the terminal: the child has it already; not forwarding it"
            );
            continue;
        }
        if let Some(pid) = pid {
            tracing::debug!(signal = ?forward, "forwarding a signal to the child");
            let _ = rustix::process::kill_process(pid, forward);
        }
    };
    let status = status.map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot wait for the child: {e}"),
        )
    })?;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Whether a SIGINT came from the terminal: this process group (the
/// child's too) is the foreground group of the terminal on a standard
/// stream, and the terminal signals the whole group.
fn terminal_sent_it() -> bool {
    use std::os::fd::AsFd;
    let ours = rustix::process::getpgrp();
    let foreground = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::termios::tcgetpgrp(fd).is_ok_and(|group| group == ours)
    };
    foreground(std::io::stdin().as_fd())
        || foreground(std::io::stdout().as_fd())
        || foreground(std::io::stderr().as_fd())
}

/// Rewrites `file` with each new access token the background refresh
/// ([`crate::metadata::Tokens::follow`]) brings, and, like the server's
/// tokens, within a second of a change of AWS identity. Should a refresh
/// keep failing until the written token is stale, a foreground fetch
/// starts it again (waiting out a failing upstream five seconds at a time).
async fn keep_fresh(tokens: Arc<Tokens>, file: PathBuf, mut written: Arc<IssuedToken>) {
    let kind = Kind::Access(Vec::new());
    loop {
        let mut news = match tokens.follow(&kind) {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the access token");
                return;
            }
        };
        // Each new token, until the slot is dropped with its identity (or
        // gone), or a quiet second finds the identity changed or the
        // written token stale because the refresher gave up.
        loop {
            let heard = match tokio::time::timeout(IDENTITY_RECHECK, news.changed()).await {
                Ok(Ok(())) => news.borrow_and_update().clone(),
                Ok(Err(_)) => None,
                Err(_) if !tokens.follow_identity() && written.is_fresh(tokens.now()) => continue,
                Err(_) => None,
            };
            let Some(t) = heard else { break };
            rewrite(&file, &mut written, t);
        }
        // Fetch in the foreground (which starts a refresher again), then
        // follow the slot anew.
        match tokens.get(&kind).await {
            Ok(t) => rewrite(&file, &mut written, t),
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the access-token file");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Writes `t` to `file` unless it is the token `written` there already.
fn rewrite(file: &Path, written: &mut Arc<IssuedToken>, t: Arc<IssuedToken>) {
    if t.token == written.token {
        return;
    }
    match write_token(file, &t) {
        Ok(()) => *written = t,
        Err(e) => tracing::warn!(error = %e, "could not rewrite the access-token file"),
    }
}

fn write_token(file: &Path, t: &IssuedToken) -> Result<()> {
    crate::fsutil::write_atomic(file, t.token.expose().as_bytes())
}

/// Makes a fresh 0700 directory (removed on drop) under `$XDG_RUNTIME_DIR`,
/// `$TMPDIR` or `/tmp`.
fn private_dir(env: &Env) -> Result<tempfile::TempDir> {
    let base = ["XDG_RUNTIME_DIR", "TMPDIR"]
        .iter()
        .filter_map(|v| env.get(v))
        .map(PathBuf::from)
        .find(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    tempfile::Builder::new()
        .prefix("wif-helper-exec-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(|e| {
            Error::new(
                ErrorCode::CacheError,
                format!(
                    "cannot create a private directory for the access-token file under {}: {e}; set TMPDIR",
                    base.display()
                ),
            )
        })
}
