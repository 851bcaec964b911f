//! `wif-helper generate-config`: writes the credential configuration.

use super::{AwsArgs, Format, GoogleUrlArgs, JwtDurationArg, absolute};
use crate::credential_config::{self, ConfigSpec};
use crate::error::{Error, ErrorCode, Result};
use crate::output;
use crate::provider::Provider;
use crate::settings::validate;
use clap::Args;
use clap::builder::BoolishValueParser;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct GenerateConfigArgs {
    /// Workload identity pool provider (an OIDC provider trusting the AWS account's issuer URL):
    /// projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROV
    #[arg(long, env = "WIF_HELPER_PROVIDER", value_name = "RESOURCE")]
    provider: String,
    /// Service account to impersonate (omit to use the federated identity directly)
    #[arg(long, env = "WIF_HELPER_SERVICE_ACCOUNT", value_name = "EMAIL")]
    service_account: Option<String>,
    /// Where to write the credential configuration
    #[arg(
        long,
        env = "WIF_HELPER_CREDENTIAL_CONFIG_FILE",
        value_name = "PATH",
        default_value = "credential_config.json"
    )]
    output_file: PathBuf,
    /// Service-account token lifetime in seconds, 600..=43200 (above 3600 needs the org policy
    /// constraints/iam.allowServiceAccountCredentialLifetimeExtension)
    #[arg(
        long,
        env = "WIF_HELPER_LIFETIME",
        value_name = "SECONDS",
        value_parser = super::parse_lifetime,
        allow_negative_numbers = true
    )]
    lifetime: Option<u32>,
    /// Overwrite an existing, different credential configuration
    #[arg(long, env = "WIF_HELPER_FORCE", value_parser = BoolishValueParser::new())]
    force: bool,
    /// Output format of the summary
    #[arg(long, env = "WIF_HELPER_FORMAT", value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    aws: AwsArgs,
    /// How long libraries let the command run (5000..=120000 ms)
    #[arg(
        long,
        env = "WIF_HELPER_EXECUTABLE_TIMEOUT_MILLIS",
        help_heading = "The generated command",
        value_name = "MS",
        default_value_t = 30_000
    )]
    executable_timeout_millis: u32,
    /// A response file libraries read INSTEAD of running the command while it is fresh (default:
    /// none). Only for a config that a single AWS identity uses: a process running as another
    /// identity would be handed this one's token. Without it, each refresh runs wif-helper, whose
    /// own cache (bound to the AWS identity) answers in about 2 ms.
    #[arg(
        long,
        env = "WIF_HELPER_EXECUTABLE_OUTPUT_FILE",
        help_heading = "The generated command",
        value_name = "PATH"
    )]
    executable_output_file: Option<PathBuf>,
    /// The wif-helper path to put in the command (default: this binary)
    #[arg(
        long,
        env = "WIF_HELPER_EXECUTABLE_PATH",
        help_heading = "The generated command",
        value_name = "PATH"
    )]
    executable_path: Option<PathBuf>,
    /// Token cache directory for the generated command (default: the XDG cache directory)
    #[arg(
        long,
        env = "WIF_HELPER_CACHE_DIR",
        help_heading = "The generated command",
        value_name = "DIR"
    )]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    duration: JwtDurationArg,
    #[command(flatten)]
    google: GoogleUrlArgs,
}

pub(super) fn run(a: &GenerateConfigArgs) -> Result<()> {
    let provider: Provider = a.provider.parse()?;
    let duration = a.duration.seconds;
    validate::jwt_duration("--duration", duration)?;
    a.aws.settings()?; // validates --region and --assume-role-arn
    let cache_dir = match &a.cache_dir {
        Some(d) => Some(absolute(d)?),
        None => None,
    };
    let output_file = match &a.executable_output_file {
        Some(p) => {
            let p = absolute(p)?;
            crate::pluggable::check_output_file(&p)?;
            Some(p)
        }
        None => None,
    };
    let mut spec = ConfigSpec {
        provider: provider.clone(),
        service_account: a.service_account.clone(),
        lifetime: a.lifetime,
        token_url: a.google.token_url.clone(),
        iam_credentials_url: a.google.iam_credentials_url.clone(),
        timeout_millis: a.executable_timeout_millis,
        executable_output_file: output_file.clone(),
        command: String::new(),
    };
    spec.validate()?;
    let program = match &a.executable_path {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| {
                Error::new(
                    ErrorCode::Internal,
                    format!("cannot find this program's path: {e}"),
                )
            })?,
    };
    let mut args = vec![
        "executable".to_owned(),
        "--provider".to_owned(),
        provider.resource(),
    ];
    a.aws.to_args(&mut args);
    if duration != JwtDurationArg::DEFAULT {
        args.extend(["--duration".into(), duration.to_string()]);
    }
    if let Some(f) = &output_file {
        args.extend(["--output-file".into(), f.display().to_string()]);
    }
    if let Some(d) = &cache_dir {
        args.extend(["--cache-dir".into(), d.display().to_string()]);
    }
    args.extend([
        "--timeout-millis".into(),
        a.executable_timeout_millis.to_string(),
    ]);
    spec.command = credential_config::command_line(&program, &args)?;
    let text = credential_config::render(&spec)?;
    let path = absolute(&a.output_file)?;
    // Only a missing file is absent: one that cannot be read (permissions,
    // not UTF-8, a directory) is as much "there" as a different one.
    let unchanged = match std::fs::read(&path) {
        Ok(existing) if existing == text.as_bytes() => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        _ if a.force => false,
        _ => {
            return Err(Error::new(
                ErrorCode::FileExists,
                format!(
                    "{} exists with different content (or cannot be read); pass --force to overwrite it",
                    path.display()
                ),
            ));
        }
    };
    if !unchanged {
        // 0644: a config holds no secret, and one generated as root in an
        // image must be readable by the workload's user.
        crate::fsutil::write_atomic_mode(&path, text.as_bytes(), 0o644).map_err(|e| {
            Error::new(
                e.code(),
                format!("cannot write the credential configuration: {}", e.message()),
            )
        })?;
    }
    let p = path.display().to_string();
    match a.format {
        Format::Json => output::stdout(
            &serde_json::json!({
                "credential_config": p,
                "audience": provider.audience(),
                "service_account": a.service_account,
                "changed": !unchanged,
                "env": {
                    "GOOGLE_APPLICATION_CREDENTIALS": p,
                    "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES": "1",
                },
            })
            .to_string(),
        ),
        Format::Text => output::stdout(&format!(
            "{verb} {p}\n\
             \n\
             Point Google client libraries and gcloud at it:\n\
             \n  export GOOGLE_APPLICATION_CREDENTIALS={p}\n  export GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1\n\
             \n\
             Next steps:\n\
             \x20 1. Check that AWS issues a token for this provider:\n\
             \x20      {cmd}\n\
             \x20 2. The pool provider must be an OIDC provider trusting this AWS account's issuer URL\n\
             \x20     (aws iam get-outbound-web-identity-federation-info) with allowed audience\n\
             \x20     {aud}; see docs/setup-oidc.md.\n\
             \x20 3. For gcloud: gcloud auth login --cred-file={p}",
            verb = if unchanged { "Unchanged" } else { "Wrote" },
            cmd = spec.command,
            aud = provider.audience(),
        )),
    }
    Ok(())
}
