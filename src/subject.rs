//! The subject token: what wif-helper presents to Google STS (or, in
//! executable mode, hands to a client library that presents it), for either
//! kind of pool provider.
//!
//! * An **AWS provider** takes a signed `GetCallerIdentity` request
//!   (`urn:ietf:params:aws:token-type:aws4_request`), built locally from the
//!   AWS credentials by [`crate::aws::caller_identity`].
//! * An **OIDC provider** trusting the AWS account's outbound issuer takes an
//!   AWS-issued JWT (`urn:ietf:params:oauth:token-type:jwt`) from STS
//!   `GetWebIdentityToken`. [`web_identity_jwt`] gets it through the cache
//!   under the executable path's key, so the executable path and the OIDC
//!   direct path share one JWT.

use crate::aws::{AwsSession, caller_identity, web_identity};
use crate::cache::{self, AwsIdentity, Cache, CacheKey};
use crate::clock::Clock;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::token::IssuedToken;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The `subject_token_type` of a signed `GetCallerIdentity` request.
pub(crate) const AWS4_REQUEST_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// The `subject_token_type` of a JWT, and the only `token_type` the
/// executable protocol answers with (every library that runs executables
/// accepts it).
pub(crate) const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The OIDC ID-token type some configurations ask for; a JWT serves it.
pub(crate) const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Which kind of pool provider trusts the AWS identity, and so which subject
/// token wif-helper presents to Google STS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProviderType {
    /// An AWS provider (`gcloud iam workload-identity-pools providers create-aws`):
    /// the subject token is a signed `GetCallerIdentity` request
    /// (`urn:ietf:params:aws:token-type:aws4_request`).
    #[default]
    Aws,
    /// An OIDC provider trusting the AWS account's outbound issuer URL: the
    /// subject token is a `GetWebIdentityToken` JWT
    /// (`urn:ietf:params:oauth:token-type:jwt`).
    Oidc,
}

impl ProviderType {
    /// `aws` or `oidc`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Oidc => "oidc",
        }
    }

    /// The `subject_token_type` sent to Google STS.
    pub fn subject_token_type(self) -> &'static str {
        match self {
            Self::Aws => AWS4_REQUEST_TOKEN_TYPE,
            Self::Oidc => JWT_TOKEN_TYPE,
        }
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "aws" => Ok(Self::Aws),
            "oidc" => Ok(Self::Oidc),
            _ => Err(Error::invalid(format!(
                "provider type `{s}`: expected aws or oidc"
            ))),
        }
    }
}

/// A subject token and, when it says, whose it is (the JWT's `sub`), for
/// error hints.
#[derive(Debug)]
pub(crate) struct SubjectToken {
    /// The token.
    pub(crate) token: Secret,
    /// The federated subject, when the token names it.
    pub(crate) sub: Option<String>,
}

/// What an AWS-issued JWT is asked for, and how it is cached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JwtRequest<'a> {
    /// The pool provider's audience (`//iam.googleapis.com/…`).
    pub(crate) audience: &'a str,
    /// The lifetime asked for, seconds.
    pub(crate) duration: i64,
    /// The AWS identity, for the cache key.
    pub(crate) identity: &'a AwsIdentity,
    /// The cache, if any.
    pub(crate) cache: Option<&'a Cache>,
}

/// The AWS-issued JWT for `req`, from the cache or `GetWebIdentityToken`.
pub(crate) async fn web_identity_jwt(
    req: &JwtRequest<'_>,
    aws: &AwsSession<'_>,
    clock: &Arc<dyn Clock>,
    deadline: Deadline,
) -> Result<IssuedToken> {
    let key = CacheKey::jwt(req.identity, req.audience, req.duration);
    let (token, source) = cache::through(req.cache, &key, clock, deadline, || async {
        let ctx = aws.context().await?;
        web_identity::get_web_identity_token(ctx, req.audience, req.duration, clock.now_unix())
            .await
    })
    .await?;
    tracing::debug!(?source, expires_at = token.expires_at, "web identity token");
    Ok(token)
}

/// The subject token for a provider of `provider_type`.
pub(crate) async fn subject_token(
    provider_type: ProviderType,
    req: &JwtRequest<'_>,
    aws: &AwsSession<'_>,
    clock: &Arc<dyn Clock>,
    deadline: Deadline,
) -> Result<SubjectToken> {
    match provider_type {
        ProviderType::Aws => {
            let ctx = aws.context().await?;
            let token = caller_identity::subject_token(
                &ctx.credentials,
                &ctx.region,
                req.audience,
                clock.now_system(),
            )?;
            Ok(SubjectToken { token, sub: None })
        }
        ProviderType::Oidc => {
            let jwt = web_identity_jwt(req, aws, clock, deadline).await?;
            let sub = crate::jwt::string_claim(jwt.token.expose(), "sub");
            Ok(SubjectToken {
                token: jwt.token,
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_type_round_trips_and_maps_to_token_types() {
        for t in [ProviderType::Aws, ProviderType::Oidc] {
            assert_eq!(t.as_str().parse::<ProviderType>().ok(), Some(t));
        }
        assert!("AWS".parse::<ProviderType>().is_err());
        assert_eq!(ProviderType::default(), ProviderType::Aws);
        assert_eq!(
            ProviderType::Aws.subject_token_type(),
            "urn:ietf:params:aws:token-type:aws4_request"
        );
        assert_eq!(
            ProviderType::Oidc.subject_token_type(),
            "urn:ietf:params:oauth:token-type:jwt"
        );
    }
}
