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
//! The resolved credentials are pinned into the returned [`AwsContext`] so
//! each source is asked once per process.

pub mod caller_identity;
pub mod web_identity;

use crate::error::{Error, ErrorCode, Result};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::SdkConfig;
use aws_types::region::Region;
use std::time::Duration;

/// The session name wif-helper uses for `--assume-role-arn`, visible in
/// CloudTrail and in the assumed-role ARN.
pub const SESSION_NAME: &str = "wif-helper";

/// How to obtain AWS credentials.
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
pub struct AwsContext {
    /// The SDK configuration, its credentials pinned to `credentials`.
    pub config: SdkConfig,
    /// The credentials the chain (and optional assume-role) produced.
    pub credentials: Credentials,
    /// The region.
    pub region: String,
}

/// Loads the default chain, applies `--assume-role-arn` and resolves the
/// credentials once.
pub async fn load(settings: &AwsSettings, attempt_timeout: Duration) -> Result<AwsContext> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
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
    let config = loader.load().await;
    let region = config.region().map(ToString::to_string).ok_or_else(|| {
        Error::new(
            ErrorCode::AwsRegionMissing,
            "no AWS region: pass --region (or WIF_HELPER_REGION), set AWS_REGION, \
                 or set `region` in the AWS profile",
        )
    })?;
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
    tracing::debug!(
        access_key_id = credentials.access_key_id(),
        region,
        "resolved AWS credentials"
    );
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

fn credentials_error(e: &CredentialsError, assume_role: Option<&str>) -> Error {
    let detail = DisplayErrorContext(e).to_string();
    match e {
        CredentialsError::CredentialsNotLoaded(_) => not_found(Some(&detail)),
        CredentialsError::ProviderTimedOut(_) => Error::new(
            ErrorCode::Timeout,
            format!("timed out loading AWS credentials: {detail}"),
        ),
        _ if assume_role.is_some() && detail.contains("AccessDenied") => Error::new(
            ErrorCode::AwsAccessDenied,
            format!(
                "AWS refused to assume {}: the role's trust policy must allow the caller \
                 sts:AssumeRole, and the caller needs sts:AssumeRole on it: {detail}",
                assume_role.unwrap_or_default()
            ),
        ),
        _ if detail.contains("dispatch failure") || detail.contains("io error") => Error::new(
            ErrorCode::NetworkError,
            format!("network error loading AWS credentials: {detail}"),
        ),
        _ => Error::new(
            ErrorCode::AwsError,
            format!("could not load AWS credentials: {detail}"),
        ),
    }
}

/// Maps an error answered by AWS STS (`code`, `message`) to a stable code and
/// a message that names the fix. `what` names the call, `fix_permission` the
/// IAM statement to grant on `AccessDenied`.
pub(crate) fn sts_service_error(
    what: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
    fix_permission: &str,
) -> Error {
    let said = format!(
        "{}: {}",
        code.unwrap_or("UnknownError"),
        message.unwrap_or("no message")
    );
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
            format!("AWS throttled {what} ({said})"),
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
    R: std::fmt::Debug,
{
    use aws_sdk_sts::error::SdkError;
    let detail = DisplayErrorContext(e).to_string();
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
