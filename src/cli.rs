//! Command-line interface: parsing, dispatch, rendering, exit codes.
//!
//! Every flag has a `WIF_HELPER_*` environment twin. `executable` is special:
//! whatever happens (bad flags, upstream errors, a panic) it prints exactly one
//! protocol JSON object on stdout, nothing on stderr, and exits 0 (see
//! `docs/executable-protocol.md` for why 0).

mod cache_cmd;
mod doctor;
mod exec;
mod executable;
mod generate_config;
mod metadata_server;
mod print;

use crate::aws::AwsSettings;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::output;
use crate::settings::{CacheSettings, DEFAULT_IAM_CREDENTIALS_URL, DEFAULT_TOKEN_URL, validate};
use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Google Cloud credentials from the AWS identity a process already has,
/// through Workload Identity Federation, with no service-account keys.
///
/// Three ways to use it:
///
///   1. Google client libraries and gcloud: `wif-helper generate-config` writes
///      a credential_config.json that makes every library run
///      `wif-helper executable`, which answers with an AWS-signed OIDC token
///      (STS GetWebIdentityToken).
///
///   2. Tokens for scripts: `print-access-token` / `print-identity-token`.
///
///   3. Any Google library, any language, through Application Default
///      Credentials: `metadata-server` (or `exec -- COMMAND`) serves the Compute
///      Engine metadata server on loopback, with access and ID tokens.
///
/// AWS credentials come from the standard AWS chain (environment, profiles,
/// SSO, web identity, ECS/EKS, EC2). Tokens are cached on disk, shared by
/// every process of the user, and refreshed 300 s before they expire.
#[derive(Debug, Parser)]
#[command(
    name = "wif-helper",
    version,
    long_version = LONG_VERSION,
    about,
    long_about,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--version`: the version, the commit it was built from and the target.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WIF_HELPER_COMMIT"),
    ", ",
    env!("WIF_HELPER_TARGET"),
    ")"
);

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a credential configuration for Google client libraries and gcloud
    ///
    /// Example:
    ///   wif-helper generate-config \
    ///     --provider projects/123456789012/locations/global/workloadIdentityPools/my-pool/providers/aws \
    ///     --service-account app@my-project.iam.gserviceaccount.com
    ///   export GOOGLE_APPLICATION_CREDENTIALS=$PWD/credential_config.json
    ///   export GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1
    #[command(verbatim_doc_comment)]
    GenerateConfig(generate_config::GenerateConfigArgs),
    /// Print an AWS-issued OIDC token in the executable-sourced credential protocol
    ///
    /// Google client libraries run this command from credential_config.json
    /// (see generate-config); you rarely run it yourself except to test. It
    /// prints exactly one JSON object on stdout and nothing on stderr, and
    /// exits 0 even on failure so every library shows the error's code and
    /// message.
    Executable(executable::ExecutableArgs),
    /// Print a Google access token for the service account
    ///
    /// Exchanges the AWS identity at Google STS and impersonates the service
    /// account. Use it with curl, Terraform or gcloud:
    ///   curl -H "Authorization: Bearer $(wif-helper print-access-token ...)" ...
    ///   wif-helper print-access-token ... > token && gcloud --access-token-file=token ...
    #[command(verbatim_doc_comment)]
    PrintAccessToken(print::AccessTokenArgs),
    /// Print a Google-signed ID token for the service account (Cloud Run, Cloud Functions, IAP)
    ///
    /// Example:
    ///   curl -H "Authorization: Bearer $(wif-helper print-identity-token ... \
    ///     --audience https://my-service-abc123-uc.a.run.app)" https://my-service-abc123-uc.a.run.app
    #[command(verbatim_doc_comment)]
    PrintIdentityToken(print::IdentityTokenArgs),
    /// Serve the Compute Engine metadata server on loopback, for every Google library
    ///
    /// Google libraries in every language (Python, Go, Java, Node, .NET, Ruby, Rust)
    /// and gcloud find credentials on a Compute Engine VM by asking its metadata
    /// server; pointed here by GCE_METADATA_HOST and friends, they get the service
    /// account's access tokens and ID tokens through Application Default Credentials,
    /// with no credential file and no AWS-side setup (use an AWS provider, the default).
    /// One exchange serves every process on the host.
    ///
    /// When ready it prints one JSON line on stdout with the address and the variables
    /// to export:
    ///   {"listen":"127.0.0.1:8954","env":{"GCE_METADATA_HOST":...}}
    ///
    /// Example:
    ///   wif-helper metadata-server --provider projects/123/locations/global/workloadIdentityPools/p/providers/aws \
    ///     --service-account app@my-project.iam.gserviceaccount.com &
    ///   export GCE_METADATA_HOST=127.0.0.1:8954 GCE_METADATA_IP=127.0.0.1:8954 \
    ///     GCE_METADATA_ROOT=127.0.0.1:8954 METADATA_SERVER_DETECTION=assume-present
    ///   unset GOOGLE_APPLICATION_CREDENTIALS
    ///
    /// Only the user running it is served (the connecting socket's owner is checked);
    /// requests need `Metadata-Flavor: Google` and may not carry X-Forwarded-For.
    /// SIGTERM or SIGINT stop it after the requests in flight. See docs/metadata-server.md.
    #[command(verbatim_doc_comment)]
    MetadataServer(metadata_server::MetadataServerArgs),
    /// Run a command with a metadata server of its own (tokens for every Google library)
    ///
    /// Starts a metadata server on 127.0.0.1 (a free port, this user only), then runs
    /// COMMAND with GCE_METADATA_HOST, GCE_METADATA_IP, GCE_METADATA_ROOT,
    /// METADATA_SERVER_DETECTION, GOOGLE_CLOUD_PROJECT and CLOUDSDK_AUTH_ACCESS_TOKEN_FILE
    /// (a 0600 file kept fresh, for gcloud) set, and GOOGLE_APPLICATION_CREDENTIALS
    /// removed, so its Google libraries use the metadata server. Tokens stay fresh for
    /// as long as COMMAND runs. Standard streams are inherited, SIGINT, SIGTERM and
    /// SIGHUP are forwarded (a Ctrl-C at the terminal reaches COMMAND once, from the
    /// terminal), and wif-helper exits with COMMAND's status.
    ///
    /// Example:
    ///   wif-helper exec --provider projects/123/locations/global/workloadIdentityPools/p/providers/aws \
    ///     --service-account app@my-project.iam.gserviceaccount.com -- python app.py
    #[command(verbatim_doc_comment)]
    Exec(exec::ExecArgs),
    /// Check the setup step by step and print the fix for what fails
    ///
    /// Walks the path a command takes and prints one line per step (ok, warn,
    /// fail or skip) and, for each failure, the command, binding or variable
    /// that fixes it. Exits 0 when no check fails, 1 otherwise. Prints no token.
    ///
    /// Client libraries: diagnoses the credential configuration (--config, else
    /// GOOGLE_APPLICATION_CREDENTIALS): its command, GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES,
    /// the AWS identity, outbound federation, the command's answer, the exchange and the
    /// impersonation a library then makes.
    ///   wif-helper doctor --config /etc/wif/credential_config.json
    ///
    /// Direct tokens: takes the flags of print-access-token (and --audience of
    /// print-identity-token):
    ///   wif-helper doctor --provider projects/123456789012/locations/global/workloadIdentityPools/my-pool/providers/aws \
    ///     --service-account app@my-project.iam.gserviceaccount.com
    #[command(verbatim_doc_comment)]
    Doctor(doctor::DoctorArgs),
    /// Show or clear the token cache (never prints a token)
    ///
    /// The cache lives in $XDG_CACHE_HOME/wif-helper (else ~/.cache/wif-helper; when that cannot
    /// be used, $XDG_RUNTIME_DIR/wif-helper or $TMPDIR/wif-helper-UID). Deleting it is always
    /// safe: the next call fetches anew.
    #[command(subcommand)]
    Cache(cache_cmd::CacheCommand),
    /// Print a shell completion script
    ///
    /// Example:
    ///   wif-helper completions bash > /etc/bash_completion.d/wif-helper
    ///   wif-helper completions zsh > "${fpath[1]}/_wif-helper"
    ///   wif-helper completions fish > ~/.config/fish/completions/wif-helper.fish
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff)
    ///
    /// Example: wif-helper man > /usr/local/share/man/man1/wif-helper.1 && man wif-helper
    Man,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "AWS credentials")]
struct AwsArgs {
    /// AWS region for STS (default: the AWS region chain: AWS_REGION, profile, EC2 metadata)
    #[arg(long, env = "WIF_HELPER_REGION", value_name = "REGION")]
    region: Option<String>,
    /// AWS shared-config profile (default: AWS_PROFILE or `default`)
    #[arg(long, env = "WIF_HELPER_PROFILE", value_name = "PROFILE")]
    profile: Option<String>,
    /// Assume this IAM role (with session name `wif-helper`) after resolving credentials
    #[arg(long, env = "WIF_HELPER_ASSUME_ROLE_ARN", value_name = "ARN")]
    assume_role_arn: Option<String>,
}

impl AwsArgs {
    fn settings(&self) -> Result<AwsSettings> {
        let settings = AwsSettings {
            region: self.region.clone(),
            profile: self.profile.clone(),
            assume_role_arn: self.assume_role_arn.clone(),
        };
        validate::aws(&settings)?;
        Ok(settings)
    }

    /// The flags to repeat in a generated command.
    fn to_args(&self, out: &mut Vec<String>) {
        for (flag, v) in [
            ("--region", &self.region),
            ("--profile", &self.profile),
            ("--assume-role-arn", &self.assume_role_arn),
        ] {
            if let Some(v) = v {
                out.push(flag.into());
                out.push(v.clone());
            }
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache and logs")]
struct CacheArgs {
    /// Token cache directory (default: $XDG_CACHE_HOME/wif-helper or ~/.cache/wif-helper)
    #[arg(long, env = "WIF_HELPER_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the token cache (env: 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "WIF_HELPER_NO_CACHE", value_parser = BoolishValueParser::new())]
    no_cache: bool,
}

impl CacheArgs {
    fn settings(&self) -> CacheSettings {
        CacheSettings {
            dir: self.cache_dir.clone(),
            disabled: self.no_cache,
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache and logs")]
struct LogArgs {
    /// Append diagnostic logs (secrets redacted) to this file
    #[arg(long, env = "WIF_HELPER_LOG_FILE", value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, env = "WIF_HELPER_LOG", value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Entry point of the binary.
pub(crate) fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let env = Env::from_process();
    crate::secret::remember_env(&env);
    if argv.get(1).is_some_and(|a| a == "executable") {
        return executable::main_executable(&argv, &env);
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        Command::GenerateConfig(a) => generate_config::run(a).map(|()| ExitCode::SUCCESS),
        Command::PrintAccessToken(a) => print::access_token(a, &env).map(|()| ExitCode::SUCCESS),
        Command::PrintIdentityToken(a) => {
            print::identity_token(a, &env).map(|()| ExitCode::SUCCESS)
        }
        Command::MetadataServer(a) => metadata_server::run(a, &env).map(|()| ExitCode::SUCCESS),
        Command::Exec(a) => exec::run(a, &env),
        Command::Cache(c) => cache_cmd::run(c, &env).map(|()| ExitCode::SUCCESS),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "wif-helper", &mut out);
            output::stdout(String::from_utf8_lossy(&out).trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man_page().map(|()| ExitCode::SUCCESS),
        Command::Executable(_) => return executable::main_executable(&argv, &env),
        Command::Doctor(a) => return doctor::main(a, &env),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::stderr(&format!("wif-helper: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// `--duration`: the lifetime of the AWS-issued JWT.
#[derive(Debug, Clone, Copy, Args)]
#[command(next_help_heading = "Advanced")]
struct JwtDurationArg {
    /// Lifetime of the AWS-issued token, 60..=3600 seconds
    #[arg(
        long = "duration",
        env = "WIF_HELPER_TOKEN_DURATION",
        value_name = "SECONDS",
        default_value_t = JwtDurationArg::DEFAULT
    )]
    seconds: i64,
}

impl JwtDurationArg {
    const DEFAULT: i64 = crate::settings::DEFAULT_JWT_DURATION;
}

/// `--timeout-millis`: the deadline of one run.
#[derive(Debug, Clone, Copy, Args)]
#[command(next_help_heading = "Advanced")]
struct TimeoutArg {
    /// Finish, successfully or not, within this many milliseconds
    #[arg(
        long,
        env = "WIF_HELPER_TIMEOUT_MILLIS",
        value_name = "MS",
        default_value_t = 30_000
    )]
    timeout_millis: u32,
}

/// The Google endpoints (overridable for other universes and the emulator).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Advanced: Google endpoints (other universes, emulators)")]
struct GoogleUrlArgs {
    /// Google STS token endpoint
    #[arg(long, env = "WIF_HELPER_TOKEN_URL", value_name = "URL", default_value = DEFAULT_TOKEN_URL)]
    token_url: String,
    /// IAM Credentials API root
    #[arg(long, env = "WIF_HELPER_IAM_CREDENTIALS_URL", value_name = "URL",
          default_value = DEFAULT_IAM_CREDENTIALS_URL)]
    iam_credentials_url: String,
}

/// The manual: the main page, then each command's, in one roff document.
fn man_page() -> Result<()> {
    let internal = |e: std::io::Error| {
        Error::new(
            crate::error::ErrorCode::Internal,
            format!("cannot render the manual: {e}"),
        )
    };
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(internal)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("wif-helper-{}", sub.get_name());
        clap_mangen::Man::new(sub.clone())
            .title(name)
            .render(&mut out)
            .map_err(internal)?;
    }
    output::stdout(String::from_utf8_lossy(&out).trim_end());
    Ok(())
}

/// `--lifetime`: whole seconds, written `3600` or `3600s` as gcloud and
/// google-github-actions/auth write it; zero and negative values are refused
/// with the flag named (clap puts the flag before this message).
fn parse_lifetime(text: &str) -> std::result::Result<u32, String> {
    let digits = text.trim().strip_suffix('s').unwrap_or(text.trim());
    match digits.parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("{n} seconds is too long")),
        Ok(n) => Err(format!(
            "{n} is not a lifetime: give a positive number of seconds, such as 3600 or 3600s"
        )),
        Err(_) => Err("expected a number of seconds, such as 3600 or 3600s".into()),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::invalid(format!("{}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every switch with an environment twin takes 1/0, yes/no, on/off.
    #[test]
    fn every_boolean_twin_takes_the_values_users_write() {
        let root = Cli::command();
        let mut checked = 0;
        for cmd in root.get_subcommands() {
            let mut cmds = vec![cmd.clone()];
            cmds.extend(cmd.get_subcommands().cloned());
            for cmd in cmds {
                for arg in cmd.get_arguments() {
                    if arg.get_action().takes_values() || arg.get_env().is_none() {
                        continue;
                    }
                    // The switch's own value parser, fed the way its env twin is.
                    let probe = clap::Command::new("probe").arg(
                        arg.clone()
                            .env(None::<&str>)
                            .action(clap::ArgAction::Set)
                            .num_args(1),
                    );
                    let long = format!("--{}", arg.get_long().unwrap_or_default());
                    for value in ["1", "0", "yes", "No", "ON", "off", "true", "FALSE"] {
                        let parsed =
                            probe
                                .clone()
                                .try_get_matches_from(["probe", long.as_str(), value]);
                        assert!(parsed.is_ok(), "{} {long}={value}", cmd.get_name());
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 5, "{checked}");
    }

    #[test]
    fn lifetimes_are_written_as_gcloud_writes_them() {
        assert_eq!(super::parse_lifetime("3600"), Ok(3600));
        assert_eq!(super::parse_lifetime("3600s"), Ok(3600));
        assert_eq!(super::parse_lifetime(" 600s "), Ok(600));
        for bad in ["-5", "0", "0s", "1h", "", "s", "99999999999"] {
            assert!(super::parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
