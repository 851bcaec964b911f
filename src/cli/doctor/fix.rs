//! The fix for a failed check: one command to run, binding to add or
//! variable to set, from the error's stable code and what the walk learned.
//!
//! The error messages already say what is wrong and name the fix in prose
//! (`crate::google`, `crate::aws`, `crate::hints`); this turns the code into
//! the line to paste, filled with the provider, service account and member
//! of this walk.

use crate::hints::{self, Facts, WORKLOAD_IDENTITY_USER};
use crate::provider::Provider;
use crate::subject::ProviderType;
use std::path::Path;

/// What the walk knows when a step fails.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known<'a> {
    pub(super) provider: Option<&'a Provider>,
    pub(super) provider_type: ProviderType,
    pub(super) service_account: Option<&'a str>,
    /// The AWS caller's ARN (`GetCallerIdentity`).
    pub(super) caller_arn: Option<&'a str>,
    /// The AWS-issued JWT's `sub` (OIDC providers).
    pub(super) jwt_sub: Option<&'a str>,
    pub(super) cache_dir: Option<&'a Path>,
}

/// The fix for an error with this stable `code` and `message`.
pub(super) fn for_error(code: &str, message: &str, k: &Known<'_>) -> String {
    match code {
        "AWS_CREDENTIALS_NOT_FOUND" => "run where the workload's AWS identity is available (instance \
            profile, ECS task role, EKS IRSA or Pod Identity), or set AWS_PROFILE (--profile) or \
            AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; `aws sts get-caller-identity` must answer in \
            the same environment"
            .to_owned(),
        "AWS_REGION_MISSING" => "export AWS_REGION=REGION (e.g. us-east-1), or pass --region, or set \
            `region` in the AWS profile"
            .to_owned(),
        "AWS_EXPIRED_TOKEN" => "refresh the AWS credentials (SSO: `aws sso login --profile PROFILE`) \
            or let their source renew them, then run `wif-helper doctor` again"
            .to_owned(),
        "AWS_INVALID_CREDENTIALS" => "check the access key, secret and session token the AWS chain \
            found, and the system clock: `aws sts get-caller-identity`"
            .to_owned(),
        "AWS_OUTBOUND_FEDERATION_DISABLED" => "aws iam enable-outbound-web-identity-federation  (once \
            per account, as an administrator; `aws iam get-outbound-web-identity-federation-info` then \
            prints the issuer URL the pool's OIDC provider must trust)"
            .to_owned(),
        "AWS_ACCESS_DENIED" if message.contains("GetWebIdentityToken") => web_identity_policy(k),
        "AWS_ACCESS_DENIED" => "let the caller assume the role: the role's trust policy must allow \
            the caller sts:AssumeRole, and the caller's own policy must allow sts:AssumeRole on the role"
            .to_owned(),
        "GOOGLE_INVALID_GRANT" => invalid_grant(message, k),
        "GOOGLE_PERMISSION_DENIED" => binding(message, k),
        "GOOGLE_LIFETIME_NOT_ALLOWED" => "use --lifetime 3600 or less, or have an organization \
            policy administrator list the service account in \
            constraints/iam.allowServiceAccountCredentialLifetimeExtension"
            .to_owned(),
        // Only the "API not enabled" message says to enable it (every IAM
        // message names the API's default URL).
        "GOOGLE_ERROR" if message.contains("services enable iamcredentials.googleapis.com") => format!(
            "gcloud services enable iamcredentials.googleapis.com --project={}",
            k.provider.map_or("PROJECT_ID", Provider::project_number)
        ),
        "GOOGLE_ERROR" if message.contains("was not found") => format!(
            "check the service account exists: gcloud iam service-accounts describe {}",
            k.service_account.unwrap_or("SERVICE_ACCOUNT")
        ),
        "NETWORK_ERROR" | "TIMEOUT" => "check that this machine reaches AWS STS, sts.googleapis.com \
            and iamcredentials.googleapis.com (through HTTPS_PROXY if it needs one; NO_PROXY must not \
            list them), or raise --timeout-millis"
            .to_owned(),
        "CACHE_INSECURE" => cache_insecure(message, k.cache_dir),
        "CACHE_ERROR" => "choose a directory this user can create and write: --cache-dir DIR \
            (WIF_HELPER_CACHE_DIR=DIR), or pass --no-cache"
            .to_owned(),
        "INVALID_ARGUMENT" => "correct the flag or value the detail names".to_owned(),
        _ => "see the detail; docs/errors.md lists every code and its fix".to_owned(),
    }
}

/// The member the federated identity maps to, as `gcloud --member` takes it.
pub(super) fn member(k: &Known<'_>) -> Option<String> {
    let provider = k.provider?;
    let subject = match k.provider_type {
        ProviderType::Aws => k.caller_arn.map(hints::aws_role_attribute),
        ProviderType::Oidc => k.jwt_sub.map(str::to_owned),
    };
    let facts = Facts {
        provider,
        provider_type: k.provider_type,
        service_account: k.service_account.unwrap_or_default(),
        subject: subject.as_deref(),
    };
    Some(hints::member(&facts).0)
}

fn binding(message: &str, k: &Known<'_>) -> String {
    let sa = k.service_account.unwrap_or("SERVICE_ACCOUNT");
    let member = member(k).unwrap_or_else(|| "MEMBER".to_owned());
    let command = |role: &str| {
        format!(
            "gcloud iam service-accounts add-iam-policy-binding {sa} --role={role} --member=\"{member}\""
        )
    };
    let mut fix = command(WORKLOAD_IDENTITY_USER);
    if message.contains("ID token") {
        fix.push_str(&format!(
            "  (if that binding exists already, ID tokens also need: {})",
            command("roles/iam.serviceAccountOpenIdTokenCreator")
        ));
    }
    fix
}

fn invalid_grant(message: &str, k: &Known<'_>) -> String {
    let Some(p) = k.provider else {
        return "check --provider against `gcloud iam workload-identity-pools providers list \
                --workload-identity-pool=POOL --location=global`"
            .to_owned();
    };
    let describe = format!(
        "gcloud iam workload-identity-pools providers describe {}",
        p.resource()
    );
    if message.contains("unknown, disabled or deleted") {
        return format!(
            "check that the provider exists and is ACTIVE: `{describe}`; correct --provider (project \
             number, pool and provider IDs) if it does not"
        );
    }
    if message.contains("attribute condition rejected") {
        return format!(
            "the provider's attribute condition refused this identity: compare it with the caller \
             (`{describe}`, and `aws sts get-caller-identity`)"
        );
    }
    // Every refusal says which audience was sent; only a mismatch says more.
    if message.contains("The token's aud is") && k.provider_type == ProviderType::Oidc {
        return format!(
            "gcloud iam workload-identity-pools providers update-oidc {} --allowed-audiences={}  \
             (or clear the allowed audiences: the default is the provider's own audience)",
            p.resource(),
            p.audience()
        );
    }
    match k.provider_type {
        ProviderType::Aws => format!(
            "if {} is an OIDC provider, pass --provider-type oidc; an AWS provider must trust the \
             caller's account and accept it in its attribute condition: `{describe}`",
            p.resource()
        ),
        ProviderType::Oidc => format!(
            "the OIDC provider must trust this AWS account's issuer (`aws iam \
             get-outbound-web-identity-federation-info`) and accept it in its attribute condition: \
             `{describe}`; if it is an AWS provider, pass --provider-type aws"
        ),
    }
}

/// `put-role-policy` (or `put-user-policy`) with the statement
/// `GetWebIdentityToken` needs for this provider.
fn web_identity_policy(k: &Known<'_>) -> String {
    let audience = k
        .provider
        .map_or_else(|| "AUDIENCE".to_owned(), Provider::audience);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "sts:GetWebIdentityToken",
            "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"sts:IdentityTokenAudience": audience}},
        }],
    });
    match k.caller_arn.and_then(principal_name) {
        Some(("role", name)) => format!(
            "aws iam put-role-policy --role-name {name} --policy-name wif-helper-web-identity-token \
             --policy-document '{policy}'"
        ),
        Some((_, name)) => format!(
            "aws iam put-user-policy --user-name {name} --policy-name wif-helper-web-identity-token \
             --policy-document '{policy}'"
        ),
        None => format!("attach this policy to the caller's role: {policy}"),
    }
}

/// `("role", NAME)` for a role session, `("user", NAME)` for an IAM user.
fn principal_name(arn: &str) -> Option<(&'static str, &str)> {
    if let Some((_, rest)) = arn.split_once(":assumed-role/") {
        return rest.split('/').next().map(|n| ("role", n));
    }
    let (_, rest) = arn.split_once(":user/")?;
    rest.rsplit('/').next().map(|n| ("user", n))
}

fn cache_insecure(message: &str, dir: Option<&Path>) -> String {
    let dir = dir.map_or_else(|| "DIR".to_owned(), |d| d.display().to_string());
    if message.contains("other users can write") {
        format!("chmod 700 {dir}")
    } else if message.contains("symbolic link") {
        format!(
            "replace the link {dir} with a real directory (rm {dir}; mkdir -m 700 {dir}), or \
             choose another --cache-dir"
        )
    } else {
        format!(
            "remove {dir} or choose another --cache-dir (WIF_HELPER_CACHE_DIR) that this user owns"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known<'a>(p: &'a Provider, t: ProviderType) -> Known<'a> {
        Known {
            provider: Some(p),
            provider_type: t,
            service_account: Some("app@p.iam.gserviceaccount.com"),
            caller_arn: Some("arn:aws:sts::111122223333:assumed-role/app/i-0abc"),
            jwt_sub: Some("arn:aws:iam::111122223333:role/app"),
            cache_dir: Some(Path::new("/h/.cache/wif-helper")),
        }
    }

    fn provider() -> Provider {
        "projects/1/locations/global/workloadIdentityPools/pool/providers/prov"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_refused_impersonation_gets_the_exact_binding_for_either_provider_type() {
        let p = provider();
        let f = for_error(
            "GOOGLE_PERMISSION_DENIED",
            "refused",
            &known(&p, ProviderType::Aws),
        );
        assert!(f.starts_with("gcloud iam service-accounts add-iam-policy-binding app@p.iam.gserviceaccount.com --role=roles/iam.workloadIdentityUser"), "{f}");
        assert!(f.contains("principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/attribute.aws_role/arn:aws:sts::111122223333:assumed-role/app\""), "{f}");
        let f = for_error(
            "GOOGLE_PERMISSION_DENIED",
            "refused",
            &known(&p, ProviderType::Oidc),
        );
        assert!(f.contains("principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/subject/arn:aws:iam::111122223333:role/app\""), "{f}");
    }

    #[test]
    fn a_denied_get_web_identity_token_gets_a_policy_for_the_caller() {
        let p = provider();
        let f = for_error(
            "AWS_ACCESS_DENIED",
            "AWS refused GetWebIdentityToken",
            &known(&p, ProviderType::Oidc),
        );
        assert!(
            f.starts_with("aws iam put-role-policy --role-name app "),
            "{f}"
        );
        assert!(f.contains(&p.audience()), "{f}");
        assert_eq!(
            principal_name("arn:aws:iam::1:user/ops/alice"),
            Some(("user", "alice"))
        );
        assert_eq!(principal_name("arn:aws:iam::1:root"), None);
    }

    #[test]
    fn every_code_has_a_fix_and_cache_fixes_name_the_directory() {
        let p = provider();
        let k = known(&p, ProviderType::Aws);
        let f = for_error("CACHE_INSECURE", "other users can write it (mode 777)", &k);
        assert_eq!(f, "chmod 700 /h/.cache/wif-helper");
        for code in [
            "AWS_OUTBOUND_FEDERATION_DISABLED",
            "AWS_CREDENTIALS_NOT_FOUND",
            "GOOGLE_INVALID_GRANT",
            "SOMETHING_NEW",
        ] {
            assert!(!for_error(code, "", &k).is_empty(), "{code}");
        }
        let f = for_error("GOOGLE_INVALID_GRANT", "unknown, disabled or deleted", &k);
        assert!(f.contains("providers describe projects/1/"), "{f}");
    }

    /// Each refusal gets its own fix, not the one of a word its message
    /// happens to share with another.
    #[test]
    fn fixes_follow_what_was_refused_not_a_shared_word() {
        let p = provider();
        let oidc = known(&p, ProviderType::Oidc);
        let sent = "Google STS refused the … subject token (HTTP 400, invalid_grant). The audience sent was //iam.googleapis.com/x.";
        let condition =
            format!("{sent} The provider's attribute condition rejected this identity.");
        let f = for_error("GOOGLE_INVALID_GRANT", &condition, &oidc);
        assert!(
            f.contains("attribute condition") && !f.contains("update-oidc"),
            "{f}"
        );
        let mismatch = format!(
            "{sent} The token's aud is //iam.googleapis.com/x: the OIDC provider's allowed audiences must include it"
        );
        let f = for_error("GOOGLE_INVALID_GRANT", &mismatch, &oidc);
        assert!(
            f.contains("update-oidc") && f.contains("--allowed-audiences"),
            "{f}"
        );
        let f = for_error("GOOGLE_INVALID_GRANT", sent, &oidc);
        assert!(!f.contains("update-oidc"), "{f}");
        let aws = known(&p, ProviderType::Aws);
        let other = "IAM Credentials generateAccessToken answered HTTP 418; check --iam-credentials-url (default https://iamcredentials.googleapis.com)";
        let f = for_error("GOOGLE_ERROR", other, &aws);
        assert!(!f.contains("services enable"), "{f}");
        let disabled = "the IAM Service Account Credentials API is not enabled (HTTP 403); enable it in the project named there: gcloud services enable iamcredentials.googleapis.com --project=PROJECT";
        let f = for_error("GOOGLE_ERROR", disabled, &aws);
        assert!(
            f.contains("gcloud services enable iamcredentials.googleapis.com"),
            "{f}"
        );
        let f = for_error("AWS_OUTBOUND_FEDERATION_DISABLED", "", &aws);
        assert!(f.contains("enable-outbound-web-identity-federation"), "{f}");
        let f = for_error("AWS_CREDENTIALS_NOT_FOUND", "", &aws);
        assert!(f.contains("AWS_PROFILE"), "{f}");
    }
}
