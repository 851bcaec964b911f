//! The walk of a credential configuration: what a Google client library
//! does with it, step by step.

use super::steps::{AWS_CREDENTIALS, AWS_REGION, FEDERATION, IMPERSONATION, STS, Target, Walk};
use super::{DoctorArgs, Report};
use crate::cli::executable::ExecutableArgs;
use crate::cli::{Cli, Command};
use crate::credential_config::{self, LoadedConfig};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::google::iam_credentials;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::settings::validate;
use crate::subject::{ID_TOKEN_TYPE, JWT_TOKEN_TYPE, ProviderType};
use clap::Parser;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

const CONFIG_FILE: &str = "config_file";
const CONFIG_COMMAND: &str = "config_command";
const ALLOW: &str = "allow_executables";
const CONFIG_PROVIDER: &str = "config_provider";
const CONFIG_SA: &str = "config_service_account";
const ANSWER: &str = "command_answer";

/// The largest configuration file read, and the most output kept of the command.
const MAX_BYTES: u64 = 1024 * 1024;

/// The walk of the configuration at `path`.
pub(super) fn walk(r: &mut Report, a: &DoctorArgs, env: &Env, path: &Path) {
    let c = match read(path) {
        Ok(c) => {
            r.ok(
                CONFIG_FILE,
                format!(
                    "{}: an external_account configuration that runs a command",
                    path.display()
                ),
            );
            c
        }
        Err(e) => {
            r.error(
                CONFIG_FILE,
                &e,
                format!(
                    "point --config or GOOGLE_APPLICATION_CREDENTIALS at the file `wif-helper \
                     generate-config` wrote, or write one: wif-helper generate-config --provider \
                     PROVIDER --service-account SA --output-file {}",
                    path.display()
                ),
            );
            for name in [
                CONFIG_COMMAND,
                ALLOW,
                CONFIG_PROVIDER,
                CONFIG_SA,
                AWS_REGION,
            ] {
                r.skip(
                    name,
                    "needs a readable credential configuration (config_file)",
                );
            }
            for name in [AWS_CREDENTIALS, FEDERATION, ANSWER, STS, IMPERSONATION] {
                r.skip(
                    name,
                    "needs a readable credential configuration (config_file)",
                );
            }
            Walk::new(r, env, None, a.timeout()).cache(&a.cache.settings());
            return;
        }
    };
    let regenerate = format!(
        "regenerate it: wif-helper generate-config --provider PROVIDER --service-account SA \
         --output-file {} --force",
        path.display()
    );
    let exec = command(r, &c, &regenerate);
    allow_executables(r, env);
    let provider = provider(r, a, &c, exec.as_ref(), &regenerate);
    let (service_account, iam_root) = service_account(r, a, &c, &regenerate);
    let target = provider.map(|provider| Target {
        provider,
        provider_type: ProviderType::Oidc,
        service_account: service_account.clone(),
        delegates: Vec::new(),
        token_url: c.token_url.clone(),
        iam_root: iam_root.unwrap_or_else(|| a.google.iam_credentials_url.clone()),
        jwt_duration: exec
            .as_ref()
            .map_or(a.duration.seconds, |e| e.duration.seconds),
        id_audience: a.audience.clone(),
    });
    // What the command itself uses: its flags, else doctor's.
    let aws = match &exec {
        Some(e) => e.aws.settings(),
        None => a.aws.settings(),
    };
    let cache = exec
        .as_ref()
        .map_or_else(|| a.cache.settings(), |e| e.cache.settings());
    let mut walk = Walk::new(r, env, target.as_ref(), a.timeout());
    let aws = match aws {
        Ok(aws) => aws,
        Err(e) => {
            walk.failed(AWS_CREDENTIALS, &e);
            let why = "needs valid AWS settings (aws_credentials)";
            walk.skip_all(&[FEDERATION, ANSWER, STS, IMPERSONATION], why);
            walk.cache(&cache);
            return;
        }
    };
    walk.with_aws(&aws, async |walk, session| {
        walk.aws_identity(session).await;
        walk.federation(session).await;
    });
    answer(&mut walk, &c, service_account.as_deref());
    walk.restart();
    let not_ready =
        (!walk.report.passed(ANSWER)).then_some("needs the command's answer (command_answer)");
    walk.with_aws(&aws, async |walk, session| {
        walk.exchange(session, not_ready).await;
        walk.impersonate().await;
        walk.id_token().await;
    });
    walk.cache(&cache);
}

fn read(path: &Path) -> Result<LoadedConfig> {
    // Not a FIFO or a device, which would block or never end.
    if path.exists() && !path.is_file() {
        return Err(Error::invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES).read_to_string(&mut text))
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    let c = credential_config::parse(&text)
        .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))?;
    validate::url("its token_url", &c.token_url)?;
    Ok(c)
}

/// `config_command`: an absolute path to an executable file, and, when it
/// is wif-helper, its flags (as `wif-helper executable` will parse them).
fn command(r: &mut Report, c: &LoadedConfig, regenerate: &str) -> Option<ExecutableArgs> {
    let (program, args) = c.command_words();
    let path = Path::new(program);
    let problem = if !path.is_absolute() {
        Some(format!(
            "`{program}` is not an absolute path (libraries require one)"
        ))
    } else if !path.is_file() {
        Some(format!("{program} does not exist or is not a file"))
    } else if rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_err() {
        Some(format!("{program} is not executable by this user"))
    } else {
        None
    };
    if let Some(problem) = problem {
        r.fail(
            CONFIG_COMMAND,
            problem,
            format!(
                "install wif-helper where the command says (or {regenerate} --executable-path \
                 /usr/local/bin/wif-helper); the user running the library needs read and execute \
                 permission on it"
            ),
        );
        return None;
    }
    let argv = std::iter::once("wif-helper").chain(args);
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Executable(args),
        }) => {
            r.ok(
                CONFIG_COMMAND,
                format!("{program} is executable and runs `wif-helper executable`"),
            );
            Some(args)
        }
        Ok(_) | Err(_) => {
            r.fail(
                CONFIG_COMMAND,
                format!(
                    "`{}` is not a `wif-helper executable` command line doctor can read",
                    c.command
                ),
                regenerate,
            );
            None
        }
    }
}

/// `allow_executables`: libraries run a command only when
/// `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES` is exactly `1`.
fn allow_executables(r: &mut Report, env: &Env) {
    const VAR: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
    match env.get(VAR) {
        Some("1") => r.ok(ALLOW, format!("{VAR}=1")),
        other => r.fail(
            ALLOW,
            format!(
                "{VAR} is {}: Google's Python, Go, Node and Java libraries refuse to run the command \
                 unless it is exactly 1",
                other.map_or_else(|| "unset".to_owned(), |v| format!("`{v}`"))
            ),
            format!("export {VAR}=1  (in the environment of the process that uses the library)"),
        ),
    }
}

/// `config_provider`: the audience is a pool provider, the command asks AWS
/// for a token with that audience, and it agrees with `--provider`.
fn provider(
    r: &mut Report,
    a: &DoctorArgs,
    c: &LoadedConfig,
    exec: Option<&ExecutableArgs>,
    regenerate: &str,
) -> Option<Provider> {
    let provider: Provider = match c.audience.parse() {
        Ok(p) => p,
        Err(e) => {
            r.fail(
                CONFIG_PROVIDER,
                format!(
                    "its audience `{}` is not a pool provider: {}",
                    c.audience,
                    e.message()
                ),
                regenerate,
            );
            return None;
        }
    };
    if c.subject_token_type != JWT_TOKEN_TYPE && c.subject_token_type != ID_TOKEN_TYPE {
        r.fail(
            CONFIG_PROVIDER,
            format!(
                "its subject_token_type is {}, but wif-helper answers with a JWT ({JWT_TOKEN_TYPE})",
                c.subject_token_type
            ),
            regenerate,
        );
        return Some(provider);
    }
    let command_provider = exec
        .and_then(|e| e.provider.as_deref())
        .map(str::parse::<Provider>);
    match command_provider {
        Some(Ok(p)) if p != provider => r.fail(
            CONFIG_PROVIDER,
            format!(
                "the command asks AWS for a token for {}, but libraries exchange it at {}: Google \
                 STS refuses the token's audience",
                p.resource(),
                provider.resource()
            ),
            regenerate,
        ),
        Some(Err(e)) => r.error(CONFIG_PROVIDER, &e, regenerate),
        None if exec.is_some() => r.warn(
            CONFIG_PROVIDER,
            format!(
                "{}: the command has no --provider, and the Rust library passes no \
                 GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE",
                provider.resource()
            ),
            regenerate,
        ),
        _ => match a.provider.as_deref().map(str::parse::<Provider>) {
            Some(Ok(flag)) if flag != provider => r.warn(
                CONFIG_PROVIDER,
                format!(
                    "{}, but --provider (WIF_HELPER_PROVIDER) is {}: doctor checked the \
                     configuration. It needs an OIDC provider; print-access-token can use another \
                     (an AWS provider with --provider-type aws)",
                    provider.resource(),
                    flag.resource()
                ),
                format!(
                    "to diagnose print-access-token instead: env -u GOOGLE_APPLICATION_CREDENTIALS \
                     wif-helper doctor --provider {} --provider-type aws|oidc",
                    flag.resource()
                ),
            ),
            _ => r.ok(
                CONFIG_PROVIDER,
                format!(
                    "{}: the command asks AWS for a token with this audience and libraries \
                     exchange it there (an OIDC provider trusting the AWS account's issuer)",
                    provider.resource()
                ),
            ),
        },
    }
    Some(provider)
}

/// `config_service_account`: whom the configuration impersonates (its
/// `service_account_impersonation_url`), against `--service-account`.
fn service_account(
    r: &mut Report,
    a: &DoctorArgs,
    c: &LoadedConfig,
    regenerate: &str,
) -> (Option<String>, Option<String>) {
    let Some(url) = &c.impersonation_url else {
        r.ok(
            CONFIG_SA,
            "none: libraries use the federated identity itself (grant it roles directly)",
        );
        return (None, None);
    };
    let Some((root, sa)) = iam_credentials::split_endpoint(url) else {
        r.fail(
            CONFIG_SA,
            format!("service_account_impersonation_url `{url}` names no service account"),
            regenerate,
        );
        return (None, None);
    };
    if let Err(e) = validate::service_account("service_account_impersonation_url", sa)
        .and_then(|()| validate::url("service_account_impersonation_url", url))
    {
        r.error(CONFIG_SA, &e, regenerate);
        return (None, None);
    }
    match &a.service_account {
        Some(flag) if flag != sa => r.warn(
            CONFIG_SA,
            format!(
                "{sa}, but --service-account (WIF_HELPER_SERVICE_ACCOUNT) is {flag}: doctor checked \
                 the configuration's"
            ),
            format!("if libraries should act as {flag}: {regenerate} (with --service-account {flag})"),
        ),
        _ => r.ok(CONFIG_SA, format!("{sa} (impersonated at {root})")),
    }
    (Some(sa.to_owned()), Some(root.to_owned()))
}

/// `command_answer`: runs the command as a library does (its variables, its
/// timeout) and reads the answer. The token is kept, never shown.
fn answer(walk: &mut Walk<'_>, c: &LoadedConfig, service_account: Option<&str>) {
    if !walk.report.passed(CONFIG_COMMAND) {
        return walk
            .report
            .skip(ANSWER, "needs a command to run (config_command)");
    }
    // Like a library, doctor runs the command only when the variable allows
    // executables, and only when it is wif-helper itself: a configuration is
    // input, and its command could be anything.
    if !walk.report.passed(ALLOW) {
        return walk.report.skip(
            ANSWER,
            "client libraries would not run it (google_external_account_allow_executables)",
        );
    }
    if let Some(why) = not_wif_helper(c) {
        return walk.report.fail(
            ANSWER,
            why,
            "doctor runs only a wif-helper binary that only root or you can change; regenerate \
             the configuration with wif-helper generate-config",
        );
    }
    if !walk.report.passed(FEDERATION) {
        return walk.report.skip(
            ANSWER,
            "the command asks AWS for the same token, which outbound_federation could not get",
        );
    }
    // timeout_millis is input too: held to what libraries accept.
    let bounds = crate::settings::CONFIG_TIMEOUT_MILLIS_RANGE;
    let millis = c
        .timeout_millis
        .clamp(u64::from(*bounds.start()), u64::from(*bounds.end()));
    let timeout = Duration::from_millis(millis);
    let out = match run(c, service_account, timeout) {
        Ok(out) => out,
        Err(why) => {
            return walk.report.fail(
                ANSWER,
                format!("`{}`: {why}", c.command),
                "run the command by hand and see docs/executable-protocol.md; raise the \
                 configuration's timeout_millis (generate-config --executable-timeout-millis) \
                 if it is slow",
            );
        }
    };
    let v: Value = match serde_json::from_str(out.trim()) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => {
            return walk.report.fail(
                ANSWER,
                "the command's output is not one JSON object (the executable-sourced credential protocol)",
                "run the command by hand; wif-helper executable prints exactly one JSON object",
            );
        }
    };
    if v["success"] != Value::Bool(true) {
        let code = v["code"].as_str().unwrap_or("NO_CODE");
        let message = v["message"].as_str().unwrap_or("no message");
        return walk.failed_code(ANSWER, code, message);
    }
    let token = v["id_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let (Some(token), Some(expires), Some(1)) =
        (token, v["expiration_time"].as_i64(), v["version"].as_i64())
    else {
        return walk.report.fail(
            ANSWER,
            "the answer says success but lacks version 1, id_token or expiration_time",
            "use wif-helper's own `executable` command",
        );
    };
    let aud = crate::jwt::string_claim(token.expose(), "aud").unwrap_or_default();
    let want = c.audience.clone();
    if aud != want {
        return walk.report.fail(
            ANSWER,
            format!("the command answered a token for {aud}, not for the configuration's audience {want}"),
            "regenerate the configuration with wif-helper generate-config",
        );
    }
    let left = expires.saturating_sub(crate::clock::Clock::now_unix(&crate::clock::SystemClock));
    if left <= 0 {
        return walk.report.fail(
            ANSWER,
            format!(
                "the answer expired {} s ago (expiration_time {expires}): libraries refuse it",
                left.unsigned_abs()
            ),
            "check this machine's clock (timedatectl), then run the command by hand",
        );
    }
    let mut detail =
        format!("success: an AWS-issued JWT for {aud}; libraries reuse it for {left} s");
    if let Some(f) = &c.output_file {
        detail.push_str(&format!(
            "; libraries read {} first while it holds a fresh answer",
            f.display()
        ));
    }
    walk.report.ok(ANSWER, detail);
    walk.learn_jwt(token);
}

/// Why the configuration's program is not one doctor will run: not named
/// wif-helper (and not this very binary), or changeable by someone other
/// than root or this user.
fn not_wif_helper(c: &LoadedConfig) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let program = Path::new(c.command_words().0);
    let meta = std::fs::metadata(program).ok()?;
    let me = rustix::process::geteuid().as_raw();
    let same_as_this = std::env::current_exe()
        .and_then(std::fs::metadata)
        .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
    let named = program
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("wif-helper"));
    if !(same_as_this || named) {
        return Some(format!(
            "{} is not wif-helper: doctor does not run another program",
            program.display()
        ));
    }
    if (meta.uid() != me && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{} can be changed by another user (owner uid {}, mode {:04o})",
            program.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Runs the command with the variables libraries set, kills it at
/// `timeout`, and returns its stdout.
fn run(
    c: &LoadedConfig,
    service_account: Option<&str>,
    timeout: Duration,
) -> std::result::Result<String, String> {
    let (program, args) = c.command_words();
    let mut cmd = Process::new(program);
    cmd.args(args)
        .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", &c.audience)
        .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", &c.subject_token_type)
        .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(sa) = service_account {
        cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", sa);
    }
    if let Some(f) = &c.output_file {
        cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", f);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run it: {e}"))?;
    // Read on a thread and handed over through a channel: a grandchild that
    // keeps stdout open must not hold doctor past the timeout.
    let (sent, answer) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.take(MAX_BYTES).read_to_string(&mut text);
            let _ = sent.send(text);
        });
    }
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within the configuration's timeout_millis ({} ms); libraries kill it then",
                    timeout.as_millis()
                ));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    let text = answer.recv_timeout(left).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "it exited with {status}; libraries read only the answer of a command that exits 0"
        ));
    }
    Ok(text)
}
