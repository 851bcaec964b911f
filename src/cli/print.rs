//! `print-access-token` and `print-identity-token`: tokens for people and scripts.
//!
//! stdout carries only the token (`--format text`, the default) or one JSON
//! object (`--format json`); errors and `--verbose` diagnostics go to stderr.
//! A cached token is served without starting an async runtime, TLS or the
//! AWS configuration.

use super::{AwsArgs, CacheArgs, GoogleUrlArgs, JwtDurationArg, LogArgs, TimeoutArg};
use crate::deadline::Deadline;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::logging::{self, Sink};
use crate::output;
use crate::service::{Token, TokenService};
use crate::settings::{ServiceSettings, validate};
use crate::subject::ProviderType;
use clap::Args;
use clap::builder::BoolishValueParser;
use std::time::Duration;

/// `--format` of the print commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum PrintFormat {
    /// The bare token.
    Text,
    /// `{"access_token"|"id_token", "expiration_time", "token_type"}`.
    Json,
    /// `export` lines (access tokens).
    Env,
}

/// The variables `--format env` sets: Terraform's google provider reads
/// the first; gcloud reads the second (and, being a property,
/// `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE`). Neither refreshes it: re-run before
/// `expiration_time` (the README says how each refreshes instead).
const ENV_VARIABLES: [&str; 2] = ["GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"];

/// `'text'` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The flags that make a [`ServiceSettings`]: the provider, the service
/// account and everything the direct path needs to reach them. Shared by
/// the print commands, `metadata-server` and `exec`.
#[derive(Debug, Args)]
pub(super) struct ServiceArgs {
    /// Workload identity pool provider:
    /// projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROV
    #[arg(
        long,
        env = "WIF_HELPER_PROVIDER",
        value_name = "RESOURCE",
        display_order = 1
    )]
    provider: String,
    /// Service account to impersonate (email or unique ID)
    #[arg(
        long,
        env = "WIF_HELPER_SERVICE_ACCOUNT",
        value_name = "EMAIL",
        display_order = 2
    )]
    pub(super) service_account: String,
    /// Provider type: `aws` (signed GetCallerIdentity, `providers create-aws`) or
    /// `oidc` (AWS-issued JWT, an OIDC provider trusting the account's issuer)
    #[arg(
        long,
        env = "WIF_HELPER_PROVIDER_TYPE",
        value_name = "TYPE",
        default_value = "aws",
        display_order = 3
    )]
    provider_type: ProviderType,
    /// Service accounts in the delegation chain, comma-separated
    #[arg(
        long,
        env = "WIF_HELPER_DELEGATES",
        value_name = "EMAILS",
        value_delimiter = ',',
        display_order = 20
    )]
    delegates: Vec<String>,
    /// Log diagnostics (secrets redacted) to stderr
    #[arg(short, long, env = "WIF_HELPER_VERBOSE", value_parser = BoolishValueParser::new(),
          display_order = 31)]
    pub(super) verbose: bool,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
    #[command(flatten)]
    pub(super) timeout: TimeoutArg,
    #[command(flatten)]
    duration: JwtDurationArg,
    #[command(flatten)]
    google: GoogleUrlArgs,
}

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// Output: the bare token; JSON with the token, its expiry and type; or (access tokens)
    /// `export` lines for Terraform and gcloud: eval "$(wif-helper print-access-token --format env)"
    #[arg(long, env = "WIF_HELPER_FORMAT", value_enum, default_value_t = PrintFormat::Text,
          display_order = 30)]
    format: PrintFormat,
    #[command(flatten)]
    service: ServiceArgs,
}

/// Access-token scopes and lifetime: the print command's, and the default
/// token of `metadata-server` and `exec`.
#[derive(Debug, Args)]
pub(super) struct AccessArgs {
    // Declared before the shared flags so they are listed with the everyday
    // ones (display_order puts them after --provider and --service-account).
    /// OAuth scopes, comma-separated
    #[arg(long, env = "WIF_HELPER_SCOPES", value_name = "S1,S2", value_delimiter = ',',
          default_value = crate::settings::CLOUD_PLATFORM_SCOPE, display_order = 10)]
    scopes: Vec<String>,
    /// Token lifetime in seconds (`3600` or `3600s`), up to 3600 (up to 43200 where the
    /// organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension allows it)
    #[arg(
        long,
        env = "WIF_HELPER_LIFETIME",
        value_name = "SECONDS",
        default_value = "3600",
        value_parser = super::parse_lifetime,
        allow_negative_numbers = true,
        display_order = 11
    )]
    lifetime: u32,
}

impl AccessArgs {
    /// Applies the scopes and lifetime to `s`.
    pub(super) fn apply(&self, s: &mut ServiceSettings) {
        s.scopes = self.scopes.clone();
        s.lifetime = self.lifetime;
    }
}

#[derive(Debug, Args)]
pub(super) struct AccessTokenArgs {
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    common: TokenArgs,
}

#[derive(Debug, Args)]
pub(super) struct IdentityTokenArgs {
    /// The receiving service's URL or client ID (the token's `aud`; gcloud's `--audiences`)
    #[arg(
        long,
        visible_alias = "audiences",
        env = "WIF_HELPER_AUDIENCE",
        value_name = "AUDIENCE",
        display_order = 10
    )]
    audience: String,
    /// Include the service account's `email` and `email_verified` claims
    #[arg(long, env = "WIF_HELPER_INCLUDE_EMAIL", value_parser = BoolishValueParser::new(),
          display_order = 11)]
    include_email: bool,
    #[command(flatten)]
    common: TokenArgs,
}

impl ServiceArgs {
    /// The validated settings these flags describe, with `tune` applied.
    pub(super) fn settings(
        &self,
        tune: impl FnOnce(&mut ServiceSettings),
    ) -> Result<ServiceSettings> {
        let mut s = ServiceSettings::new(self.provider.parse()?, self.service_account.clone());
        s.provider_type = self.provider_type;
        s.delegates = self.delegates.clone();
        s.token_url = self.google.token_url.clone();
        s.iam_credentials_url = self.google.iam_credentials_url.clone();
        validate::jwt_duration("--duration", self.duration.seconds)?;
        s.jwt_duration = self.duration.seconds;
        s.aws = self.aws.settings()?;
        s.cache = self.cache.settings();
        s.timeout = Duration::from_millis(u64::from(self.timeout.timeout_millis));
        tune(&mut s);
        s.validate()?;
        Ok(s)
    }
}

impl TokenArgs {
    fn service(&self, env: &Env, tune: impl FnOnce(&mut ServiceSettings)) -> Result<TokenService> {
        let sink = if self.service.verbose {
            Sink::Stderr
        } else {
            Sink::None
        };
        let log = &self.service.log;
        logging::init(log.log_file.as_deref(), log.log_level.as_deref(), sink)?;
        TokenService::new(self.service.settings(tune)?, env.clone())
    }

    fn deadline(&self) -> Deadline {
        // The service enforces the timeout itself; this only bounds the runtime.
        Deadline::after(Duration::from_millis(
            u64::from(self.service.timeout.timeout_millis) + 1_000,
        ))
    }

    fn print(&self, token: &Token, field: &str) -> Result<()> {
        match self.format {
            PrintFormat::Text => output::stdout(token.token.expose()),
            PrintFormat::Json => output::stdout(
                &serde_json::json!({
                    field: token.token.expose(),
                    "expiration_time": token.expires_at_unix(),
                    "token_type": "Bearer",
                })
                .to_string(),
            ),
            PrintFormat::Env if field == "access_token" => {
                let value = shell_quote(token.token.expose());
                let mut out = format!(
                    "# expires at {} (Unix {}); nothing refreshes these: run again before then\n",
                    token
                        .expires_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    token.expires_at_unix()
                );
                for var in ENV_VARIABLES {
                    out.push_str(&format!("export {var}={value}\n"));
                }
                output::stdout(out.trim_end());
            }
            PrintFormat::Env => {
                return Err(Error::invalid(
                    "--format env is for print-access-token; use --format text or json",
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn access_token(a: &AccessTokenArgs, env: &Env) -> Result<()> {
    let svc = a.common.service(env, |s| a.access.apply(s))?;
    let token = match svc.cached_access_token()? {
        Some(t) => t,
        None => a.common.deadline().block_on(svc.access_token())?,
    };
    a.common.print(&token, "access_token")
}

pub(super) fn identity_token(a: &IdentityTokenArgs, env: &Env) -> Result<()> {
    if a.common.format == PrintFormat::Env {
        return Err(Error::invalid(
            "--format env is for print-access-token; use --format text or json",
        ));
    }
    let svc = a.common.service(env, |_| {})?;
    let token = match svc.cached_id_token(&a.audience, a.include_email)? {
        Some(t) => t,
        None => a
            .common
            .deadline()
            .block_on(svc.id_token(&a.audience, a.include_email))?,
    };
    a.common.print(&token, "id_token")
}
