//! Google's side of the exchange: STS token exchange and IAM Credentials.
//!
//! * [`sts`]: RFC 8693 token exchange at `token_url`, turning the AWS
//!   subject token (signed `GetCallerIdentity`, or an AWS-issued JWT) into a
//!   federated access token.
//! * [`iam_credentials`]: `generateAccessToken` / `generateIdToken` for a
//!   service account, authorized by the federated token.
//!
//! Each module keeps response parsing in pure functions (status + body in,
//! token or a fix-naming [`crate::error::Error`] out) so every Google error
//! shape is unit-tested without a network. All calls go through
//! [`crate::http::send_with_retry`].

pub mod iam_credentials;
pub mod sts;

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The default scope of access tokens and of the STS exchange.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

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
            Self::Aws => crate::aws::caller_identity::TOKEN_TYPE,
            Self::Oidc => sts::JWT_TOKEN_TYPE,
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

/// At most this many characters of a Google error text go into a message.
const MAX_QUOTED: usize = 400;

/// A Google-supplied text, shortened and stripped of control characters,
/// safe to put in a one-line message.
pub(crate) fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out.trim().to_owned()
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

    #[test]
    fn quote_shortens_and_flattens() {
        assert_eq!(quote("a\nb\tc"), "a b c");
        let long = "x".repeat(1000);
        let q = quote(&long);
        assert!(q.chars().count() <= MAX_QUOTED + 1);
        assert!(q.ends_with('…'));
    }
}
