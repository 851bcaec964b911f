//! `wif-helper executable`: the command Google client libraries run.
//!
//! Whatever happens (bad flags, upstream errors, a panic) it prints exactly one
//! protocol JSON object on stdout, nothing on stderr, and exits 0
//! (`docs/executable-protocol.md` says why 0).

use super::{AwsArgs, CacheArgs, Cli, Command, JwtDurationArg, LogArgs, TimeoutArg};
use crate::aws::AwsSession;
use crate::cache::{AwsIdentity, CacheKey};
use crate::clock::{Clock, SystemClock};
use crate::deadline::Deadline;
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::logging::{self, Sink};
use crate::output;
use crate::pluggable;
use crate::provider::Provider;
use crate::settings::{EXECUTABLE_TIMEOUT_RANGE, JwtSettings, validate};
use crate::subject::{self, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, JwtRequest};
use clap::{Args, Parser};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(super) struct ExecutableArgs {
    /// Workload identity pool provider: projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROV
    /// (default: GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE, set by most client libraries)
    #[arg(long, env = "WIF_HELPER_PROVIDER", value_name = "RESOURCE")]
    pub(super) provider: Option<String>,
    /// Also write the response here, atomically (default: GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE)
    #[arg(long, env = "GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", value_name = "PATH")]
    output_file: Option<PathBuf>,
    #[command(flatten)]
    pub(super) aws: AwsArgs,
    #[command(flatten)]
    pub(super) cache: CacheArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    timeout: TimeoutArg,
    #[command(flatten)]
    pub(super) duration: JwtDurationArg,
}

/// Executable mode: one JSON object on stdout, nothing on stderr, exit 0.
pub(super) fn main_executable(argv: &[OsString], env: &Env) -> ExitCode {
    install_protocol_panic_hook();
    let json = match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Executable(args),
        }) => match run_executable(&args, env) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(code = %e.code(), message = e.message(), "executable mode failed");
                pluggable::failure_json(&e)
            }
        },
        Ok(_) => pluggable::failure_json(&Error::new(ErrorCode::Internal, "unexpected command")),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                output::stdout(e.render().to_string().trim_end());
                return ExitCode::SUCCESS;
            }
            _ => pluggable::failure_json(&Error::invalid(first_line(&e.render().to_string()))),
        },
    };
    output::stdout(&json);
    ExitCode::SUCCESS
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned()
}

/// In executable mode a panic must still produce protocol JSON on stdout and
/// nothing on stderr.
fn install_protocol_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        output::stdout(&pluggable::failure_json_parts(
            ErrorCode::Internal.as_str(),
            &format!("wif-helper crashed{place}; please report this bug"),
        ));
        std::process::exit(0);
    }));
}

fn run_executable(a: &ExecutableArgs, env: &Env) -> Result<String> {
    logging::init(
        a.log.log_file.as_deref(),
        a.log.log_level.as_deref(),
        Sink::None,
    )?;
    #[cfg(debug_assertions)]
    if env.get("WIF_HELPER_TEST_PANIC").is_some() {
        panic!("forced by WIF_HELPER_TEST_PANIC");
    }
    let started = Instant::now();
    let provider: Provider = a
        .provider
        .as_deref()
        .or_else(|| env.get("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE"))
        .ok_or_else(|| {
            Error::invalid("--provider is required (or GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE)")
        })?
        .parse()?;
    if let Some(t) = env.get("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE")
        && t != JWT_TOKEN_TYPE
        && t != ID_TOKEN_TYPE
    {
        return Err(Error::invalid(format!(
            "the credential configuration asks for subject_token_type `{t}`, but wif-helper \
                 answers with an OIDC JWT: regenerate it with `wif-helper generate-config` \
                 (subject_token_type {JWT_TOKEN_TYPE})"
        )));
    }
    let timeout = Duration::from_millis(u64::from(a.timeout.timeout_millis));
    validate::timeout("--timeout-millis", timeout, &EXECUTABLE_TIMEOUT_RANGE)?;
    // Leave room to print the answer before the library kills us.
    let deadline = Deadline::after(
        timeout
            .saturating_sub(Duration::from_millis(500))
            .saturating_sub(started.elapsed()),
    );
    let settings = JwtSettings {
        provider,
        aws: a.aws.settings()?,
        duration: a.duration.seconds,
    };
    settings.validate()?;
    if let Some(path) = &a.output_file {
        pluggable::check_output_file(path)?;
    }
    let cache = a.cache.settings().open(env)?;
    let identity = AwsIdentity::new(&settings.aws, env);
    let audience = settings.provider.audience();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let req = JwtRequest {
        audience: &audience,
        duration: settings.duration,
        identity: &identity,
        cache: cache.as_ref(),
    };
    // A hit is one file read: no runtime, TLS or AWS configuration.
    let hit = match &cache {
        Some(c) => c.get_fresh(
            &CacheKey::jwt(&identity, &audience, settings.duration),
            clock.now_unix(),
        )?,
        None => None,
    };
    let token = match hit {
        Some(t) => t,
        None => deadline.block_on(async {
            let aws = AwsSession::new(&settings.aws, env, deadline);
            subject::web_identity_jwt(&req, &aws, &clock, deadline).await
        })?,
    };
    let json = pluggable::success_json(&token);
    if let Some(path) = &a.output_file {
        // A stale or forged file left in place would be read next time
        // instead of running wif-helper: a failed write is a failure.
        pluggable::write_output_file(path, &json)?;
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "executable mode answered"
    );
    Ok(json)
}
