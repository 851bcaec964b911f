//! The member to bind after a refusal: IAM Credentials' answer plus the facts.

use super::*;
use crate::error::Result;
use crate::google::iam_credentials::{Call, parse_response, tests::with};
use crate::token::IssuedToken;

const POOL: &str = "projects/123456789012/locations/global/workloadIdentityPools/pool";
const SA: &str = "app@my-project.iam.gserviceaccount.com";
const ACCESS: Call = Call::AccessToken { lifetime: 3600 };

fn provider() -> Provider {
    format!("{POOL}/providers/prov")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// IAM's answer, explained with the facts of a `pt` provider and `subject`.
fn parse_with(
    call: Call,
    status: u16,
    body: &str,
    pt: ProviderType,
    subject: Option<&str>,
) -> Result<IssuedToken> {
    let p = provider();
    let facts = Facts {
        provider: &p,
        provider_type: pt,
        service_account: SA,
        subject,
    };
    with(&[], |t| parse_response(call, status, body.as_bytes(), t, 0))
        .map_err(|e| explain(e, &facts))
}

fn parse(call: Call, status: u16, body: &str, pt: ProviderType) -> Result<IssuedToken> {
    parse_with(call, status, body, pt, None)
}

const DENIED: &str = r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"iam.googleapis.com"}]}}"#;

#[test]
fn permission_denied_for_aws_names_the_principal_set_and_the_role() {
    let e = parse(ACCESS, 403, DENIED, ProviderType::Aws)
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(e.code(), ErrorCode::GooglePermissionDenied);
    let m = e.message();
    assert!(
        m.contains(&format!(
            "principalSet://iam.googleapis.com/{POOL}/attribute.aws_role/arn:aws:sts::ACCOUNT_ID:assumed-role/ROLE_NAME"
        )),
        "{m}"
    );
    assert!(m.contains("roles/iam.workloadIdentityUser"), "{m}");
    assert!(m.contains("role/ ARN"), "{m}");
    assert!(m.contains(SA), "{m}");
    assert!(!m.contains("OpenIdToken"), "{m}");
    assert!(!e.is_transient());
}

#[test]
fn permission_denied_for_aws_can_name_the_exact_member() {
    let role = "arn:aws:sts::111122223333:assumed-role/app";
    let e = parse_with(ACCESS, 403, DENIED, ProviderType::Aws, Some(role))
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(e.code(), ErrorCode::GooglePermissionDenied);
    let m = e.message();
    let member = format!("principalSet://iam.googleapis.com/{POOL}/attribute.aws_role/{role}");
    assert!(m.contains(&format!("--member=\"{member}\"")), "{m}");
    assert!(!m.contains("ACCOUNT_ID"), "{m}");
    assert!(m.contains("roles/iam.workloadIdentityUser"), "{m}");
}

#[test]
fn permission_denied_for_oidc_names_the_principal_and_id_token_permission() {
    let e = parse_with(
        Call::IdToken,
        403,
        DENIED,
        ProviderType::Oidc,
        Some("arn:aws:iam::111122223333:role/app"),
    )
    .err()
    .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(e.code(), ErrorCode::GooglePermissionDenied);
    let m = e.message();
    assert!(
        m.contains(&format!(
            "principal://iam.googleapis.com/{POOL}/subject/arn:aws:iam::111122223333:role/app"
        )),
        "{m}"
    );
    assert!(m.contains("iam.serviceAccounts.getOpenIdToken"), "{m}");
    assert!(
        m.contains("roles/iam.serviceAccountOpenIdTokenCreator"),
        "{m}"
    );
    let e = parse(Call::IdToken, 403, DENIED, ProviderType::Oidc)
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert!(e.message().contains(&format!(
        "principal://iam.googleapis.com/{POOL}/subject/SUBJECT"
    )));
}

#[test]
fn other_errors_are_left_alone() {
    let p = provider();
    let facts = Facts {
        provider: &p,
        provider_type: ProviderType::Aws,
        service_account: SA,
        subject: None,
    };
    let e = explain(Error::new(ErrorCode::GoogleError, "x"), &facts);
    assert_eq!(e.message(), "x");
}

#[test]
fn aws_role_attribute_drops_the_session_name_only() {
    for (arn, attr) in [
        (
            "arn:aws:sts::111122223333:assumed-role/app/i-0abc",
            "arn:aws:sts::111122223333:assumed-role/app",
        ),
        (
            "arn:aws:sts::111122223333:assumed-role/app",
            "arn:aws:sts::111122223333:assumed-role/app",
        ),
        (
            "arn:aws:iam::111122223333:user/wif-user",
            "arn:aws:iam::111122223333:user/wif-user",
        ),
    ] {
        assert_eq!(aws_role_attribute(arn), attr);
    }
}

#[test]
fn the_session_of_a_role_to_assume_is_known_without_asking_aws() {
    assert_eq!(
        assumed_role_attribute("arn:aws:iam::111122223333:role/wif-assumed").as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/wif-assumed")
    );
    assert_eq!(
        assumed_role_attribute("arn:aws-us-gov:iam::111122223333:role/team/app").as_deref(),
        Some("arn:aws-us-gov:sts::111122223333:assumed-role/app")
    );
    assert_eq!(assumed_role_attribute("arn:aws:iam::1:user/u"), None);
}
