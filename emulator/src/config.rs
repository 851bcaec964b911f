//! The emulated world: AWS account, roles, users and credentials, Google pools,
//! providers and service accounts.
//!
//! [`EmulatorConfig::default`] is the built-in world described in
//! `docs/emulator.md`. A JSON config file has the same shape; every field is
//! optional and a missing field keeps its built-in value (lists are replaced
//! as a whole, not merged).

use serde::{Deserialize, Serialize};
use std::path::Path;
use time::OffsetDateTime;

/// Access key id of the built-in IAM user `wif-user`.
pub const DEFAULT_USER_ACCESS_KEY_ID: &str = "AKIAWIFEMULATOR00001";
/// Secret access key of the built-in IAM user `wif-user` (not a real secret).
pub const DEFAULT_USER_SECRET_ACCESS_KEY: &str = "wifEmulatorStaticSecretKey/NotReal+00001";

/// Top-level emulator configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The AWS side.
    pub aws: AwsConfig,
    /// The Google Cloud side.
    pub google: GoogleConfig,
}

/// The emulated AWS account.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// 12-digit account id.
    pub account_id: String,
    /// The region STS serves (SigV4 scope region must match) and IMDS reports.
    pub region: String,
    /// Availability zone IMDS reports; default: region + "a".
    pub availability_zone: Option<String>,
    /// Whether `iam:EnableOutboundWebIdentityFederation` was run (GetWebIdentityToken works).
    pub outbound_federation: bool,
    /// Role whose credentials IMDS and the container endpoint hand out.
    pub instance_role: String,
    /// IAM roles.
    pub roles: Vec<RoleConfig>,
    /// IAM users with long-term access keys.
    pub users: Vec<UserConfig>,
    /// Extra credentials the emulator accepts (e.g. the golden vector's AKIDEXAMPLE).
    pub static_credentials: Vec<StaticCredential>,
    /// Principals denied `sts:GetWebIdentityToken` (caller ARN, role ARN or user ARN).
    pub web_identity_token_denied: Vec<String>,
}

/// An IAM role.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// Role name (the part after `role/`).
    pub name: String,
    /// Any principal of the account may `sts:AssumeRole` it.
    pub assumable: bool,
    /// Trusts the emulated EKS OIDC issuer for `AssumeRoleWithWebIdentity`.
    pub web_identity: bool,
    /// MaxSessionDuration in seconds (3600..=43200).
    pub max_session_duration: u32,
}

impl Default for RoleConfig {
    fn default() -> Self {
        RoleConfig {
            name: String::new(),
            assumable: false,
            web_identity: false,
            max_session_duration: 3600,
        }
    }
}

/// An IAM user with one long-term access key.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// `AKIA...` key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// A fixed credential set, optionally temporary (with a session token).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StaticCredential {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token that must accompany the key (`x-amz-security-token`).
    pub session_token: Option<String>,
    /// Caller ARN: `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION` or `arn:aws:iam::ACCT:user/NAME`.
    pub principal: String,
    /// After this instant the key answers `ExpiredToken`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expiration: Option<OffsetDateTime>,
}

/// The Google Cloud project hosting the pool and the service accounts.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleConfig {
    /// Project number (used in audiences and principal identifiers).
    pub project_number: String,
    /// Project id (used in service account e-mails).
    pub project_id: String,
    /// Org policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension`:
    /// generateAccessToken lifetimes up to 43200 s instead of 3600 s.
    pub allow_lifetime_extension: bool,
    /// Workload identity pools.
    pub pools: Vec<PoolConfig>,
    /// Service accounts and who may impersonate them.
    pub service_accounts: Vec<ServiceAccountConfig>,
}

/// A workload identity pool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool id.
    pub id: String,
    /// Providers in the pool.
    pub providers: Vec<ProviderConfig>,
}

/// Provider type.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// AWS provider: accepts `aws4_request` subject tokens from `account_id`.
    #[default]
    Aws,
    /// OIDC provider: accepts JWTs from `issuer`.
    Oidc,
}

/// A workload identity pool provider.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Provider id.
    pub id: String,
    /// `aws` or `oidc`.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// AWS providers: the trusted account.
    pub account_id: Option<String>,
    /// OIDC providers: the issuer; `None` = the emulator's own AWS outbound issuer.
    /// The emulator never fetches remote keys: other issuers need `jwks`.
    pub issuer: Option<String>,
    /// OIDC providers: allowed `aud` values; empty = the provider's own resource name.
    pub allowed_audiences: Vec<String>,
    /// OIDC providers: uploaded JWKS (`{"keys":[...]}`), as `jwksJson` in Google.
    pub jwks: Option<serde_json::Value>,
}

/// A service account.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceAccountConfig {
    /// E-mail.
    pub email: String,
    /// Numeric unique id (ID token `sub`); default derived from the e-mail.
    pub unique_id: Option<String>,
    /// Members granted `roles/iam.workloadIdentityUser` (and token creator):
    /// `principal://...`, `principalSet://...` identifiers.
    pub members: Vec<String>,
}

/// Error loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// File path.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
}

impl EmulatorConfig {
    /// Reads a JSON config file; missing fields keep their built-in values.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Checks cross-references; returns a human-readable problem.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for pool in &self.google.pools {
            for p in &pool.providers {
                if p.provider_type == ProviderType::Aws && p.account_id.is_none() {
                    return Err(format!(
                        "provider {}/{}: aws type needs account_id",
                        pool.id, p.id
                    ));
                }
            }
        }
        for c in &self.aws.static_credentials {
            if crate::principal::Principal::parse(&c.principal).is_none() {
                return Err(format!(
                    "static credential {}: bad principal ARN {:?}",
                    c.access_key_id, c.principal
                ));
            }
        }
        for r in &self.aws.roles {
            if !(3600..=43200).contains(&r.max_session_duration) {
                return Err(format!(
                    "role {}: max_session_duration must be 3600..=43200",
                    r.name
                ));
            }
        }
        Ok(())
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            availability_zone: None,
            outbound_federation: true,
            instance_role: "wif-workload".into(),
            roles: vec![
                RoleConfig {
                    name: "wif-workload".into(),
                    web_identity: true,
                    ..RoleConfig::default()
                },
                RoleConfig {
                    name: "wif-assumed".into(),
                    assumable: true,
                    ..RoleConfig::default()
                },
            ],
            users: vec![UserConfig {
                name: "wif-user".into(),
                access_key_id: DEFAULT_USER_ACCESS_KEY_ID.into(),
                secret_access_key: DEFAULT_USER_SECRET_ACCESS_KEY.into(),
            }],
            static_credentials: Vec::new(),
            web_identity_token_denied: Vec::new(),
        }
    }
}

impl Default for GoogleConfig {
    fn default() -> Self {
        let number = "123456789012";
        let pool = format!(
            "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/wif-pool"
        );
        let acct = "111122223333";
        let mut members = Vec::new();
        for role in ["wif-workload", "wif-assumed"] {
            members.push(format!(
                "principalSet:{pool}/attribute.aws_role/arn:aws:sts::{acct}:assumed-role/{role}"
            ));
            members.push(format!(
                "principal:{pool}/subject/arn:aws:iam::{acct}:role/{role}"
            ));
        }
        members.push(format!(
            "principalSet:{pool}/attribute.aws_role/arn:aws:iam::{acct}:user/wif-user"
        ));
        members.push(format!(
            "principal:{pool}/subject/arn:aws:iam::{acct}:user/wif-user"
        ));
        GoogleConfig {
            project_number: number.into(),
            project_id: "wif-demo".into(),
            allow_lifetime_extension: false,
            pools: vec![PoolConfig {
                id: "wif-pool".into(),
                providers: vec![
                    ProviderConfig {
                        id: "aws-oidc".into(),
                        provider_type: ProviderType::Oidc,
                        ..ProviderConfig::default()
                    },
                    ProviderConfig {
                        id: "aws".into(),
                        provider_type: ProviderType::Aws,
                        account_id: Some(acct.into()),
                        ..ProviderConfig::default()
                    },
                ],
            }],
            service_accounts: vec![
                ServiceAccountConfig {
                    email: "wif-sa@wif-demo.iam.gserviceaccount.com".into(),
                    unique_id: None,
                    members,
                },
                ServiceAccountConfig {
                    email: "unbound-sa@wif-demo.iam.gserviceaccount.com".into(),
                    unique_id: None,
                    members: Vec::new(),
                },
            ],
        }
    }
}
