//! STS `GetWebIdentityToken`: an AWS-signed OIDC JWT for Google.
//!
//! AWS IAM outbound identity federation issues a JWT (RS256 here, the
//! algorithm Google STS accepts) whose `iss` is the account's issuer URL and
//! whose `aud` is the pool provider. The call is not offered on the global STS
//! endpoint; the SDK uses the regional one for the resolved region (or
//! `AWS_ENDPOINT_URL_STS`).

use super::{AwsContext, sdk_transport_error, sts_client, sts_service_error};
use crate::error::{Error, ErrorCode, Result};
use crate::secret::Secret;
use crate::token::IssuedToken;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::get_web_identity_token::GetWebIdentityTokenError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// The shortest and longest `DurationSeconds` AWS accepts.
pub(crate) const DURATION_RANGE: std::ops::RangeInclusive<i64> = 60..=3600;

/// Asks STS for a JWT with `audience`, valid `duration` seconds (shortened to
/// the credentials' own remaining life, which AWS refuses to exceed).
pub(crate) async fn get_web_identity_token(
    aws: &AwsContext,
    audience: &str,
    duration: i64,
    now: i64,
) -> Result<IssuedToken> {
    let mut duration = clamp_to_credentials(duration, aws, now);
    let client = sts_client(&aws.config);
    let out = loop {
        let sent = client
            .get_web_identity_token()
            .audience(audience)
            .signing_algorithm("RS256")
            .duration_seconds(i32::try_from(duration).unwrap_or(3600))
            .send()
            .await;
        match sent {
            Ok(out) => break out,
            // Credentials without a known expiry (environment keys on Lambda,
            // exported session keys) can still belong to a session that ends
            // sooner than `duration`: AWS then refuses. Ask for less, down to
            // AWS's minimum; a session with under a minute left fails.
            Err(e) if duration > *DURATION_RANGE.start() && is_escalation(&e) => {
                duration = (duration / 2).max(*DURATION_RANGE.start());
                tracing::debug!(
                    duration,
                    "the session ends sooner; asking for a shorter token"
                );
            }
            Err(e) => return Err(map_error(e, audience)),
        }
    };
    let token = out.web_identity_token.ok_or_else(|| {
        Error::new(
            ErrorCode::AwsError,
            "GetWebIdentityToken answered without a token",
        )
    })?;
    let expires_at = match out.expiration {
        Some(t) => t.secs(),
        None => now.saturating_add(duration),
    };
    let token = IssuedToken {
        token: Secret::new(token),
        expires_at,
        issued_at: now,
    };
    token.validate().map_err(|why| {
        Error::new(
            ErrorCode::AwsError,
            format!("GetWebIdentityToken answered with an unusable token: {why}"),
        )
    })?;
    if expires_at <= now {
        return Err(Error::new(
            ErrorCode::AwsError,
            format!(
                "GetWebIdentityToken answered with a token that expired at {expires_at} (Unix time), \
                 before now ({now}); check the system clock"
            ),
        ));
    }
    // Never believe AWS's absolute expiry beyond the duration asked for.
    Ok(token.capped(duration))
}

type StsError = SdkError<GetWebIdentityTokenError, HttpResponse>;

fn is_escalation(e: &StsError) -> bool {
    matches!(
        e.as_service_error(),
        Some(GetWebIdentityTokenError::SessionDurationEscalationException(_))
    )
}

fn map_error(e: StsError, audience: &str) -> Error {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    if let Some(err) = sdk_transport_error("GetWebIdentityToken", &e) {
        return err;
    }
    match e.into_service_error() {
        GetWebIdentityTokenError::OutboundWebIdentityFederationDisabledException(_) => Error::new(
            ErrorCode::AwsOutboundFederationDisabled,
            "outbound web identity federation is not enabled for this AWS account. \
             Enable it once per account (an administrator): \
             `aws iam enable-outbound-web-identity-federation`; then \
             `aws iam get-outbound-web-identity-federation-info` prints the issuer URL \
             to trust in the Google pool's OIDC provider",
        ),
        other => sts_service_error(
            "GetWebIdentityToken",
            other.code(),
            other.message(),
            status,
            &format!(
                "Grant the caller's role: {{\"Effect\":\"Allow\",\"Action\":\"sts:GetWebIdentityToken\",\
                 \"Resource\":\"*\",\"Condition\":{{\"ForAnyValue:StringEquals\":\
                 {{\"sts:IdentityTokenAudience\":\"{audience}\"}}}}}}"
            ),
        ),
    }
}

/// AWS refuses a token that outlives the session it is minted from
/// (`SessionDurationEscalationException`); ask for no more than the
/// credentials have left, less a minute, and never below AWS's minimum.
fn clamp_to_credentials(duration: i64, aws: &AwsContext, now: i64) -> i64 {
    let left = aws
        .credentials
        .expiry()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .map_or(i64::MAX, |exp| exp.saturating_sub(now).saturating_sub(60));
    duration
        .min(left)
        .clamp(*DURATION_RANGE.start(), *DURATION_RANGE.end())
}
