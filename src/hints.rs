//! Error hints that need facts from both sides: built in one place, after a
//! failure, from what the run already knows.
//!
//! When IAM Credentials refuses to impersonate (`PERMISSION_DENIED`), the fix
//! is a binding of `roles/iam.workloadIdentityUser` to the exact member the
//! federated identity maps to. Which member that is depends on the provider
//! type and on the AWS caller; the Google client does not know the AWS side
//! and the AWS code does not know Google's members, so [`explain`] joins
//! them here from [`Facts`] gathered by the direct path: the caller's
//! `attribute.aws_role` (from the AWS context the run loaded, or the role it
//! was told to assume) or the AWS-issued JWT's `sub`.

use crate::error::{Error, ErrorCode};
use crate::provider::Provider;
use crate::subject::ProviderType;

/// The role that lets a federated identity impersonate a service account.
pub(crate) const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// What is known about the federated identity when a call fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// The pool provider the federated token came from.
    pub(crate) provider: &'a Provider,
    /// Its type.
    pub(crate) provider_type: ProviderType,
    /// The service account that refused.
    pub(crate) service_account: &'a str,
    /// When known: the caller's `attribute.aws_role` (AWS provider) or the
    /// AWS-issued JWT's `sub` (OIDC provider).
    pub(crate) subject: Option<&'a str>,
}

/// `error` with the fix appended when it is a refusal to impersonate;
/// any other error unchanged.
pub(crate) fn explain(error: Error, facts: &Facts<'_>) -> Error {
    if error.code() != ErrorCode::GooglePermissionDenied {
        return error;
    }
    let sa = facts.service_account;
    let (member, note) = member(facts);
    Error::new(
        error.code(),
        format!(
            "{} Grant the member {WORKLOAD_IDENTITY_USER} on the service account: gcloud iam \
             service-accounts add-iam-policy-binding {sa} --role={WORKLOAD_IDENTITY_USER} \
             --member=\"{member}\". {note}",
            error.message()
        ),
    )
}

/// The member to bind, as `gcloud … --member` takes it, and a note on it.
pub(crate) fn member(f: &Facts<'_>) -> (String, String) {
    let pool = f.provider.pool_resource();
    match (f.provider_type, f.subject) {
        (ProviderType::Aws, Some(role)) => (
            format!("principalSet://iam.googleapis.com/{pool}/attribute.aws_role/{role}"),
            format!(
                "{role} is this caller's attribute.aws_role under an AWS provider's default attribute \
                 mapping (for a role session, the assumed-role ARN without the session name; a binding \
                 with the IAM role/ ARN never matches)."
            ),
        ),
        (ProviderType::Aws, None) => (
            format!("principalSet://iam.googleapis.com/{pool}/attribute.aws_role/arn:aws:sts::ACCOUNT_ID:assumed-role/ROLE_NAME"),
            "With an AWS provider's default attribute mapping, attribute.aws_role of a role session is the \
             assumed-role ARN without the session name (arn:aws:sts::ACCOUNT_ID:assumed-role/ROLE_NAME), not \
             the IAM role ARN (arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME): a binding with the role/ ARN never \
             matches. For an IAM user it is the user ARN. `aws sts get-caller-identity` prints the ARN."
                .to_owned(),
        ),
        (ProviderType::Oidc, subject) => {
            let shown = subject.unwrap_or("SUBJECT");
            (
                format!("principal://iam.googleapis.com/{pool}/subject/{shown}"),
                if subject.is_some() {
                    format!("{shown} is the AWS-issued token's sub (google.subject=assertion.sub).")
                } else {
                    "SUBJECT is google.subject, by default the AWS-issued token's sub claim: the ARN of the \
                     calling IAM role (arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME)."
                        .to_owned()
                },
            )
        }
    }
}

/// `attribute.aws_role` as an AWS provider's default attribute mapping
/// makes it from the caller's ARN: a role session's assumed-role ARN without
/// the session name (`arn:aws:sts::ACCOUNT:assumed-role/ROLE`), else the ARN.
pub(crate) fn aws_role_attribute(caller_arn: &str) -> String {
    match caller_arn.split_once(":assumed-role/") {
        Some((head, rest)) => format!(
            "{head}:assumed-role/{}",
            rest.split('/').next().unwrap_or(rest)
        ),
        None => caller_arn.to_owned(),
    }
}

/// The `attribute.aws_role` of a session of the IAM role `role_arn`
/// (`arn:aws:iam::ACCOUNT:role/PATH/NAME` → `arn:aws:sts::ACCOUNT:assumed-role/NAME`).
pub(crate) fn assumed_role_attribute(role_arn: &str) -> Option<String> {
    let (head, role) = role_arn.split_once(":role/")?;
    let (partition, account) = head.split_once(":iam::")?;
    let name = role.rsplit('/').next().filter(|n| !n.is_empty())?;
    Some(format!("{partition}:sts::{account}:assumed-role/{name}"))
}

#[cfg(test)]
mod tests;
