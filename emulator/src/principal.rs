//! AWS principals (IAM users and assumed-role sessions), their ARNs and ids.

use sha2::{Digest, Sha256};

/// The identity behind a set of AWS credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Principal {
    /// An IAM user (long-term `AKIA` key).
    User { account: String, name: String },
    /// A role session (temporary `ASIA` key).
    AssumedRole {
        account: String,
        role: String,
        session: String,
    },
}

impl Principal {
    /// Parses `arn:aws:iam::ACCT:user/NAME` or `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`.
    pub(crate) fn parse(arn: &str) -> Option<Principal> {
        let mut it = arn.splitn(6, ':');
        let (arn_kw, partition, service, _region, account, resource) = (
            it.next()?,
            it.next()?,
            it.next()?,
            it.next()?,
            it.next()?,
            it.next()?,
        );
        if arn_kw != "arn" || partition != "aws" || !is_account_id(account) {
            return None;
        }
        let account = account.to_string();
        match service {
            "iam" => {
                let name = resource.strip_prefix("user/")?.rsplit('/').next()?;
                (!name.is_empty()).then(|| Principal::User {
                    account,
                    name: name.into(),
                })
            }
            "sts" => {
                let rest = resource.strip_prefix("assumed-role/")?;
                let (role, session) = rest.split_once('/')?;
                (!role.is_empty() && !session.is_empty()).then(|| Principal::AssumedRole {
                    account,
                    role: role.into(),
                    session: session.into(),
                })
            }
            _ => None,
        }
    }

    pub(crate) fn account(&self) -> &str {
        match self {
            Principal::User { account, .. } | Principal::AssumedRole { account, .. } => account,
        }
    }

    /// The caller ARN as GetCallerIdentity reports it.
    pub(crate) fn arn(&self) -> String {
        match self {
            Principal::User { account, name } => format!("arn:aws:iam::{account}:user/{name}"),
            Principal::AssumedRole {
                account,
                role,
                session,
            } => {
                format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")
            }
        }
    }

    /// The IAM identity: the user ARN, or the role ARN for a role session.
    pub(crate) fn identity_arn(&self) -> String {
        match self {
            Principal::User { .. } => self.arn(),
            Principal::AssumedRole { account, role, .. } => role_arn(account, role),
        }
    }

    /// Google's default `attribute.aws_role` mapping for AWS providers.
    pub(crate) fn aws_role_attribute(&self) -> String {
        match self {
            Principal::User { .. } => self.arn(),
            Principal::AssumedRole { account, role, .. } => {
                format!("arn:aws:sts::{account}:assumed-role/{role}")
            }
        }
    }

    /// `UserId` as GetCallerIdentity reports it (`AIDA...` or `AROA...:session`).
    pub(crate) fn user_id(&self) -> String {
        match self {
            Principal::User { account, name } => unique_id("AIDA", account, name),
            Principal::AssumedRole {
                account,
                role,
                session,
            } => {
                format!("{}:{session}", unique_id("AROA", account, role))
            }
        }
    }

    /// Whether `pattern` (caller, role or user ARN) designates this principal.
    pub(crate) fn matches(&self, pattern: &str) -> bool {
        pattern == self.arn()
            || pattern == self.identity_arn()
            || pattern == self.aws_role_attribute()
    }
}

/// `arn:aws:iam::ACCT:role/NAME`.
pub(crate) fn role_arn(account: &str, role: &str) -> String {
    format!("arn:aws:iam::{account}:role/{role}")
}

/// Parses a role ARN into (account, role name); a path before the name is allowed.
pub(crate) fn parse_role_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (is_account_id(account) && !name.is_empty()).then(|| (account.into(), name.into()))
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A stable AWS-style unique id (`PREFIX` + 17 base32 chars) for an entity.
pub(crate) fn unique_id(prefix: &str, account: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{prefix}/{account}/{name}").as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| crate::util::BASE32[usize::from(b % 32)] as char)
        .collect();
    format!("{prefix}{tail}")
}

/// Valid `RoleSessionName`: 2..=64 chars of `[\w+=,.@-]`.
pub(crate) fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn arns_round_trip() {
        let p = Principal::parse("arn:aws:sts::111122223333:assumed-role/r/s").unwrap();
        assert_eq!(p.arn(), "arn:aws:sts::111122223333:assumed-role/r/s");
        assert_eq!(p.identity_arn(), "arn:aws:iam::111122223333:role/r");
        assert_eq!(
            p.aws_role_attribute(),
            "arn:aws:sts::111122223333:assumed-role/r"
        );
        assert!(p.user_id().starts_with("AROA") && p.user_id().ends_with(":s"));
        let u = Principal::parse("arn:aws:iam::111122223333:user/u").unwrap();
        assert_eq!(u.identity_arn(), "arn:aws:iam::111122223333:user/u");
        assert!(Principal::parse("arn:aws:iam::1:user/u").is_none());
        assert!(Principal::parse("garbage").is_none());
        assert_eq!(
            parse_role_arn("arn:aws:iam::111122223333:role/path/x"),
            Some(("111122223333".into(), "x".into()))
        );
        assert!(valid_session_name("ab") && !valid_session_name("a") && !valid_session_name("a b"));
    }
}
