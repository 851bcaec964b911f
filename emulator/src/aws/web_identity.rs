//! AssumeRoleWithWebIdentity (unsigned, as in AWS) and the emulated EKS
//! cluster OIDC issuer whose tokens it trusts (what IRSA projects into pods).

use super::sts::{role_and_session, session_duration};
use super::{AwsError, assumed_role_user_xml, credentials_xml, el, xml_ok};
use crate::jwt::{self, JwtError, audiences, num_claim};
use crate::state::Shared;
use crate::util::form_get;
use axum::response::Response;
use serde_json::{Value, json};
use time::Duration;

/// Audience EKS projects into service-account tokens for IRSA.
pub(crate) const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// Mints a service-account token from the emulated EKS issuer (valid 24 h).
pub(crate) fn mint_web_identity_token(app: &Shared, subject: &str) -> String {
    let now = app.now();
    let claims = json!({
        "iss": app.eks_issuer(),
        "sub": subject,
        "aud": [STS_AUDIENCE],
        "iat": now.unix_timestamp(),
        "nbf": now.unix_timestamp(),
        "exp": (now + Duration::hours(24)).unix_timestamp(),
    });
    let token = app.eks_key.sign(&claims);
    app.record_secret(&token);
    token
}

fn invalid_token(message: impl Into<String>) -> AwsError {
    AwsError::new(400, "InvalidIdentityToken", message)
}

/// Handles `Action=AssumeRoleWithWebIdentity`.
pub(crate) fn assume_role_with_web_identity(
    app: &Shared,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    let req = role_and_session(params)?;
    let token = form_get(params, "WebIdentityToken")
        .ok_or_else(|| AwsError::constraint(None, "webIdentityToken", "Member must not be null"))?;
    let Some(unverified) = jwt::unverified_claims(token) else {
        return Err(invalid_token(
            "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)",
        ));
    };
    let issuer = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
    if issuer != app.eks_issuer() {
        return Err(invalid_token(format!(
            "No OpenIDConnect provider found in your account for {issuer}"
        )));
    }
    let verified = jwt::verify_rs256(token, std::slice::from_ref(app.eks_key.public())).map_err(
        |e| match e {
            JwtError::BadSignature | JwtError::UnknownKid(_) | JwtError::MissingKid => {
                invalid_token("Couldn't verify the signature of the ID token.")
            }
            other => invalid_token(other.to_string()),
        },
    )?;
    let claims = verified.claims;
    let now = app.now().unix_timestamp();
    let exp = num_claim(&claims, "exp").ok_or_else(|| invalid_token("Missing exp claim"))?;
    if exp <= now {
        return Err(AwsError::new(
            400,
            "ExpiredTokenException",
            format!(
                "Token expired: current date/time {now} must be before the expiration date/time {exp}"
            ),
        ));
    }
    let aud = audiences(&claims);
    if !aud.iter().any(|a| a == STS_AUDIENCE) {
        return Err(invalid_token("Incorrect token audience"));
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_token("Missing sub claim"))?;
    let role = app
        .role(&req.name)
        .filter(|r| r.web_identity && req.account == app.config.aws.account_id)
        .ok_or_else(|| {
            AwsError::access_denied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
        })?;
    let lifetime = session_duration(params, role.max_session_duration)?;
    let creds = app.issue_role_credentials(&req.name, &req.session, lifetime);
    let mut inner = credentials_xml(&creds);
    inner += &el(4, "SubjectFromWebIdentityToken", subject);
    inner += &assumed_role_user_xml(&creds.principal);
    inner += &el(4, "Provider", issuer);
    inner += &el(4, "Audience", STS_AUDIENCE);
    Ok(xml_ok("AssumeRoleWithWebIdentity", &inner))
}
