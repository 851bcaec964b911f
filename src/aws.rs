//! AWS credentials and region, from the full default chain.
//!
//! `aws-config`'s default chain is used as it is: environment keys, the shared
//! profile (`--profile`/`AWS_PROFILE`, incl. `role_arn`/`source_profile`,
//! SSO and `credential_process`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`,
//! EKS IRSA), the ECS/EKS container endpoint and EC2 IMDSv2. Every standard
//! AWS variable works, including `AWS_ENDPOINT_URL_STS`, which is how tests
//! point wif-helper at the emulator. `--assume-role-arn` then assumes one more
//! role with the chain's credentials.
//!
//! The chain reads the [`Env`] wif-helper was given, not the process
//! environment behind its back (aws-config's `ConfigLoader::env`, offered
//! under its `test-util` feature), so the variables that make the cache keys
//! and the variables that pick the AWS identity are the same snapshot. The
//! resolved credentials are pinned into the [`AwsContext`] an
//! [`AwsSession`] loads once per run, on first use.
//!
//! Every AWS call goes through [`transport::client`]: AWS services honour
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, instance metadata and container
//! credentials never go through a proxy. The SDK's standard retry mode
//! (3 attempts; throttling, 5xx, timeouts and connection failures, plus a
//! bare 429 for wif-helper's own STS calls) runs inside each call's deadline.

pub(crate) mod caller_identity;
pub(crate) mod transport;
pub(crate) mod web_identity;

use crate::deadline::Deadline;
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::text::{error_chain as chain, quote};
use aws_config::BehaviorVersion;
use aws_config::meta::ProviderChainError;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::config::interceptors::InterceptorContext;
use aws_sdk_sts::config::retry::{ClassifyRetry, RetryAction};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::SdkConfig;
use aws_types::region::Region;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The session name wif-helper uses for `--assume-role-arn`, visible in
/// CloudTrail and in the assumed-role ARN.
pub(crate) const SESSION_NAME: &str = "wif-helper";

/// How to obtain AWS credentials (validated by `crate::settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `--region`; otherwise the AWS region chain.
    pub region: Option<String>,
    /// `--profile`; otherwise `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// `--assume-role-arn`: a role to assume after the chain.
    pub assume_role_arn: Option<String>,
}

/// An AWS configuration with resolved credentials and region.
#[derive(Debug, Clone)]
pub(crate) struct AwsContext {
    /// The SDK configuration, its credentials pinned to `credentials`.
    pub(crate) config: SdkConfig,
    /// The credentials the chain (and optional assume-role) produced.
    pub(crate) credentials: Credentials,
    /// The region.
    pub(crate) region: String,
}

impl AwsContext {
    /// The credential provider that won the chain, as aws-config names it
    /// (`EnvironmentVariable`, `ProfileFile`, `WebIdentityToken`,
    /// `EcsContainer`, `IMDSv2`, `AssumeRoleProvider`, `SSO`…). aws-config
    /// offers no getter; its `Debug` names the provider and redacts the keys,
    /// and only the name is taken from it.
    pub(crate) fn provider_name(&self) -> String {
        let debug = format!("{:?}", self.credentials);
        debug
            .split_once("provider_name: \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or_else(|| "unknown".to_owned(), |(name, _)| name.to_owned())
    }
}

/// The AWS side of one run: loads the configuration and credentials at
/// most once, on first use, with the deadline's AWS attempt policy; a run
/// whose tokens all come from the cache never loads it. What it loaded
/// stays at hand for error hints ([`AwsSession::loaded`]).
#[derive(Debug)]
pub(crate) struct AwsSession<'a> {
    settings: &'a AwsSettings,
    env: &'a Env,
    deadline: Deadline,
    config: OnceCell<SdkConfig>,
    context: OnceCell<AwsContext>,
}

impl<'a> AwsSession<'a> {
    /// A session that has loaded nothing yet.
    pub(crate) fn new(settings: &'a AwsSettings, env: &'a Env, deadline: Deadline) -> Self {
        Self {
            settings,
            env,
            deadline,
            config: OnceCell::new(),
            context: OnceCell::new(),
        }
    }

    /// The loaded context, loading it now if needed.
    pub(crate) async fn context(&self) -> Result<&AwsContext> {
        self.context
            .get_or_try_init(|| async { resolve(self.settings, self.config().await.clone()).await })
            .await
    }

    /// The region the chain resolves, without resolving credentials (so
    /// `doctor` can report it even when no credentials are found).
    pub(crate) async fn region(&self) -> Result<String> {
        region_of(self.config().await)
    }

    /// The SDK configuration (credentials still unresolved), loaded once.
    async fn config(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| configure(self.settings, self.env, self.deadline.aws_attempt()))
            .await
    }

    /// The context if this run has loaded it.
    pub(crate) fn loaded(&self) -> Option<&AwsContext> {
        self.context.get()
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &AwsSettings {
        self.settings
    }
}

/// Loads the default chain's configuration from `env` (the same variables
/// the cache keys are made of); credentials are resolved by [`resolve`].
async fn configure(settings: &AwsSettings, env: &Env, attempt_timeout: Duration) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .env(env.to_aws())
        .http_client(transport::client(env))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    if let Some(r) = &settings.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &settings.profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

fn region_of(config: &SdkConfig) -> Result<String> {
    config.region().map(ToString::to_string).ok_or_else(|| {
        Error::new(
            ErrorCode::AwsRegionMissing,
            "no AWS region: pass --region (or WIF_HELPER_REGION), set AWS_REGION, \
                 or set `region` in the AWS profile",
        )
    })
}

/// Applies `--assume-role-arn` to `config` and resolves the credentials once.
async fn resolve(settings: &AwsSettings, config: SdkConfig) -> Result<AwsContext> {
    let region = region_of(&config)?;
    let mut provider = config
        .credentials_provider()
        .ok_or_else(|| not_found(None))?;
    if let Some(arn) = &settings.assume_role_arn {
        let assume = aws_config::sts::AssumeRoleProvider::builder(arn)
            .session_name(SESSION_NAME)
            .configure(&config)
            .build()
            .await;
        provider = SharedCredentialsProvider::new(assume);
    }
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| credentials_error(&e, settings.assume_role_arn.as_deref()))?;
    crate::secret::remember(credentials.secret_access_key());
    if let Some(t) = credentials.session_token() {
        crate::secret::remember(t);
    }
    // Debug of Credentials names the provider that won and redacts the keys.
    tracing::debug!(?credentials, region, "resolved AWS credentials");
    let config = config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
        .build();
    Ok(AwsContext {
        config,
        credentials,
        region,
    })
}

fn not_found(detail: Option<&str>) -> Error {
    let mut msg = String::from(
        "no AWS credentials found: tried environment variables, the shared profile, \
         web identity, the container endpoint and EC2 instance metadata. \
         Run where the workload's AWS identity is available, or set AWS_PROFILE / --profile",
    );
    if let Some(d) = detail {
        msg.push_str(" (");
        msg.push_str(d);
        msg.push(')');
    }
    Error::new(ErrorCode::AwsCredentialsNotFound, msg)
}

/// What aws-config's `credential_process` provider puts before the process's
/// stderr in its error ("…external process exited with code … Stderr: …").
const PROCESS_STDERR: &str = " Stderr:";

/// `detail` without what a `credential_process` printed. That is the output of
/// a program from the user's configuration, not AWS's answer: it can hold
/// anything (a key it read, a password it was given), and no redaction can
/// know what, so none of it is quoted.
fn without_process_output(detail: &str) -> String {
    match detail.split_once(PROCESS_STDERR) {
        Some((before, _)) => format!(
            "{}; what it printed is not shown, as it may hold secrets: run the profile's \
             credential_process yourself to see it",
            before.trim_end_matches(['.', ' '])
        ),
        None => detail.to_owned(),
    }
}

/// The [`transport::TooLarge`] behind `e`: among its sources, or among
/// those of a provider the default chain tried (aws-config keeps each
/// attempt's error in a [`ProviderChainError`], not in the chain of sources).
fn too_large(e: &CredentialsError) -> Option<&transport::TooLarge> {
    transport::TooLarge::find(e).or_else(|| {
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .find_map(|e| e.downcast_ref::<ProviderChainError<CredentialsError>>())?
        .attempts()
        .iter()
        .find_map(|a| transport::TooLarge::find(a.error()))
    })
}

fn credentials_error(e: &CredentialsError, assume_role: Option<&str>) -> Error {
    // Classify on the full context (it holds AWS's error codes), print the
    // chain: shortened, redacted, and without what a process printed.
    let context = DisplayErrorContext(e).to_string();
    let detail = without_process_output(&chain(e));
    if let Some(too_large) = too_large(e) {
        return Error::new(
            ErrorCode::AwsError,
            format!("could not load AWS credentials: {too_large}"),
        );
    }
    match e {
        CredentialsError::CredentialsNotLoaded(_) => not_found(Some(&detail)),
        CredentialsError::ProviderTimedOut(_) => Error::new(
            ErrorCode::Timeout,
            format!("timed out loading AWS credentials: {detail}"),
        ),
        _ if assume_role.is_some() && context.contains("AccessDenied") => Error::new(
            ErrorCode::AwsAccessDenied,
            format!(
                "AWS refused to assume {}: the role's trust policy must allow the caller \
                 sts:AssumeRole, and the caller needs sts:AssumeRole on it: {detail}",
                assume_role.unwrap_or_default()
            ),
        ),
        _ if context.contains("ExpiredToken") => Error::new(
            ErrorCode::AwsExpiredToken,
            format!(
                "the AWS credentials have expired; refresh them (e.g. `aws sso login`) or let the \
                 credential source renew them: {detail}"
            ),
        ),
        _ if context.contains("timeout") || context.contains("timed out") => Error::new(
            ErrorCode::Timeout,
            format!(
                "timed out loading AWS credentials: the credential source did not answer in time \
                 (check the instance metadata service or container credentials endpoint; in a \
                 container on EC2, IMDSv2 needs a hop limit of 2): {detail}"
            ),
        ),
        _ if context.contains("dispatch failure") || context.contains("io error") => Error::new(
            ErrorCode::NetworkError,
            format!("network error loading AWS credentials: {detail}"),
        ),
        _ => Error::new(
            ErrorCode::AwsError,
            format!("could not load AWS credentials: {detail}"),
        ),
    }
}

/// Makes the SDK retry a bare HTTP 429 (from a proxy or load balancer, with
/// no AWS error code) as throttling, as it already retries AWS's own
/// throttling codes and 500, 502, 503 and 504.
#[derive(Debug)]
pub(crate) struct RetryTooManyRequests;

impl ClassifyRetry for RetryTooManyRequests {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response() {
            Some(r) if r.status().as_u16() == 429 => RetryAction::throttling_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "wif-helper: HTTP 429"
    }
}

/// The STS client wif-helper's own calls use: the SDK's standard retries
/// plus [`RetryTooManyRequests`].
pub(crate) fn sts_client(config: &SdkConfig) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::config::Builder::from(config)
        .retry_classifier(RetryTooManyRequests)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// Maps an error answered by AWS STS (`code`, `message`, HTTP `status` or 0
/// when unknown) to a stable code and a message that names the fix. `what`
/// names the call, `fix_permission` the IAM statement to grant on
/// `AccessDenied`. AWS's text is shortened and flattened to one line.
pub(crate) fn sts_service_error(
    what: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
    fix_permission: &str,
) -> Error {
    let code = code.map(quote).filter(|c| !c.is_empty());
    let message = message.map(quote).filter(|m| !m.is_empty());
    let said = match (&code, &message, status) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.clone(),
        (None, Some(m), 0) => m.clone(),
        (None, Some(m), s) => format!("HTTP {s}: {m}"),
        (None, None, 0) => "no error code or message".to_owned(),
        (None, None, s) => format!("HTTP {s}, no error code or message"),
    };
    let code = code.as_deref();
    match code.unwrap_or_default() {
        "AccessDenied" | "AccessDeniedException" => Error::new(
            ErrorCode::AwsAccessDenied,
            format!("AWS refused {what} ({said}). {fix_permission}"),
        ),
        "ExpiredToken" | "ExpiredTokenException" => Error::new(
            ErrorCode::AwsExpiredToken,
            format!(
                "the AWS credentials have expired ({said}); refresh them \
                 (e.g. `aws sso login`) or let the credential source renew them"
            ),
        ),
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "IncompleteSignature" => Error::new(
            ErrorCode::AwsInvalidCredentials,
            format!(
                "AWS did not accept the credentials for {what} ({said}); check the access key, secret and session token, and the clock"
            ),
        ),
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => Error::transient(
            ErrorCode::AwsError,
            format!("AWS throttled {what} ({said}); retry later"),
        ),
        _ if status == 429 => Error::transient(
            ErrorCode::AwsError,
            format!("AWS or a proxy throttled {what} ({said}); retry later"),
        ),
        _ if status >= 500 => {
            Error::transient(ErrorCode::AwsError, format!("AWS failed {what} ({said})"))
        }
        _ => Error::new(ErrorCode::AwsError, format!("AWS refused {what} ({said})")),
    }
}

/// Maps an `SdkError` that is not a service answer (timeouts, network).
pub(crate) fn sdk_transport_error<E, R>(
    what: &str,
    e: &aws_sdk_sts::error::SdkError<E, R>,
) -> Option<Error>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_sts::error::SdkError;
    // An oversized answer is a broken or hostile endpoint, not the network.
    if let Some(t) = transport::TooLarge::find(e) {
        return Some(Error::new(
            ErrorCode::AwsError,
            format!("AWS STS {what}: {t}"),
        ));
    }
    let detail = chain(e);
    match e {
        SdkError::TimeoutError(_) => Some(Error::new(
            ErrorCode::Timeout,
            format!("AWS STS {what} timed out: {detail}"),
        )),
        SdkError::DispatchFailure(_) => Some(Error::new(
            ErrorCode::NetworkError,
            format!("could not reach AWS STS for {what}: {detail}"),
        )),
        SdkError::ConstructionFailure(_) => Some(Error::invalid(format!(
            "could not build the AWS STS {what} request: {detail}"
        ))),
        _ => None,
    }
}
