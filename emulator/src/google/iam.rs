//! IAM Credentials API: `generateAccessToken` and `generateIdToken` for a
//! service account, authorized by a federated token from the emulated STS,
//! and the JWKS (`/google/oauth2/v3/certs`) of the emulated Google key.

use super::ApiError;
use crate::config::ServiceAccountConfig;
use crate::state::{FederatedToken, Shared};
use crate::util::{random_b64url, rfc3339};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use time::Duration;

const DEFAULT_LIFETIME_SECS: i64 = 3600;
const EXTENDED_LIFETIME_SECS: i64 = 43200;
const ID_TOKEN_SECS: i64 = 3600;
const CALLER_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/iam",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccessTokenRequest {
    scope: Option<Vec<String>>,
    lifetime: Option<String>,
    delegates: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdTokenRequest {
    audience: Option<String>,
    include_email: Option<bool>,
    delegates: Option<Vec<String>>,
    organization_number_included: Option<bool>,
}

/// `GET /google/oauth2/v3/certs`.
pub(crate) async fn certs(State(app): State<Arc<Shared>>) -> Json<Value> {
    crate::aws::issuer::key_set(&app.google_key)
}

/// `POST /google/iamcredentials/v1/projects/{project}/serviceAccounts/{email}:{method}`.
pub(crate) async fn handle(
    State(app): State<Arc<Shared>>,
    Path((_project, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match run(&app, &target, &headers, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The numeric unique id of a service account (configured or derived from the e-mail).
pub(crate) fn unique_id(sa: &ServiceAccountConfig) -> String {
    if let Some(id) = &sa.unique_id {
        return id.clone();
    }
    let digest = Sha256::digest(sa.email.as_bytes());
    let digits: String = digest
        .iter()
        .take(19)
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    format!("10{digits}")
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))
}

fn caller(app: &Shared, headers: &HeaderMap) -> Result<FederatedToken, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    bearer.and_then(|t| app.federated_token(t)).ok_or_else(|| {
        ApiError::new(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
    })
}

fn permission_denied(permission: &str, resource: &str) -> ApiError {
    let mut e = ApiError::new(
        403,
        "PERMISSION_DENIED",
        format!("Permission '{permission}' denied on resource (or it may not exist)."),
    );
    e.details = Some(json!([{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "IAM_PERMISSION_DENIED",
        "domain": "iam.googleapis.com",
        "metadata": {"permission": permission, "resource": resource},
    }]));
    e
}

/// Parses a protobuf JSON Duration (`"3600s"`, `"1.5s"`) to whole seconds.
fn parse_lifetime(s: &str) -> Option<i64> {
    let num = s.strip_suffix('s')?;
    let (whole, frac) = num.split_once('.').unwrap_or((num, "0"));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    whole.parse().ok()
}

fn run(app: &Shared, target: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(404, "NOT_FOUND", format!("Method not found: {target}"));
    let (sa_ref, method) = target.rsplit_once(':').ok_or_else(not_found)?;
    let permission = match method {
        "generateAccessToken" => "iam.serviceAccounts.getAccessToken",
        "generateIdToken" => "iam.serviceAccounts.getOpenIdToken",
        _ => return Err(not_found()),
    };
    let token = caller(app, headers)?;
    if !token.scopes.is_empty()
        && !token
            .scopes
            .iter()
            .any(|s| CALLER_SCOPES.contains(&s.as_str()))
    {
        return Err(ApiError::new(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        ));
    }
    let resource = format!("projects/-/serviceAccounts/{sa_ref}");
    let sa = app
        .config
        .google
        .service_accounts
        .iter()
        .find(|sa| sa.email == sa_ref || unique_id(sa) == sa_ref)
        .filter(|sa| {
            sa.members
                .iter()
                .any(|m| *m == token.principal || token.principal_sets.contains(m))
        });
    if method == "generateAccessToken" {
        let req: AccessTokenRequest = parse_body(body)?;
        let sa = sa.ok_or_else(|| permission_denied(permission, &resource))?;
        no_delegates(req.delegates.as_deref())?;
        generate_access_token(app, sa, req)
    } else {
        let req: IdTokenRequest = parse_body(body)?;
        let sa = sa.ok_or_else(|| permission_denied(permission, &resource))?;
        no_delegates(req.delegates.as_deref())?;
        let _ = req.organization_number_included;
        generate_id_token(app, sa, req)
    }
}

fn no_delegates(delegates: Option<&[String]>) -> Result<(), ApiError> {
    match delegates {
        Some(d) if !d.is_empty() => Err(ApiError::invalid_argument(
            "wif-emulator does not emulate delegation chains; omit \"delegates\"",
        )),
        _ => Ok(()),
    }
}

fn generate_access_token(
    app: &Shared,
    sa: &ServiceAccountConfig,
    req: AccessTokenRequest,
) -> Result<Response, ApiError> {
    let scopes = req.scope.unwrap_or_default();
    if scopes.is_empty() {
        return Err(ApiError::invalid_argument("Scope required."));
    }
    let lifetime = match req.lifetime.as_deref() {
        None => DEFAULT_LIFETIME_SECS,
        Some(s) => parse_lifetime(s).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), Field 'lifetime', Illegal duration format {s:?}; duration must end with 's'"
            ))
        })?,
    };
    let max = if app.config.google.allow_lifetime_extension {
        EXTENDED_LIFETIME_SECS
    } else {
        DEFAULT_LIFETIME_SECS
    };
    if lifetime < 1 || lifetime > max {
        return Err(ApiError::invalid_argument(format!(
            "The lifetime requested ({lifetime}s) is invalid: it must be between 1s and {max}s for {}. Lifetimes up to 43200s need the org policy constraints/iam.allowServiceAccountCredentialLifetimeExtension.",
            sa.email
        )));
    }
    let access_token = format!("ya29.c.emu-{}", random_b64url(120));
    app.record_secret(&access_token);
    let expire = app.now() + Duration::seconds(lifetime);
    Ok(Json(json!({"accessToken": access_token, "expireTime": rfc3339(expire)})).into_response())
}

fn generate_id_token(
    app: &Shared,
    sa: &ServiceAccountConfig,
    req: IdTokenRequest,
) -> Result<Response, ApiError> {
    let audience = req
        .audience
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::invalid_argument("Audience required."))?;
    let now = app.now();
    let id = unique_id(sa);
    let mut claims = json!({
        "aud": audience,
        "azp": id,
        "exp": (now + Duration::seconds(ID_TOKEN_SECS)).unix_timestamp(),
        "iat": now.unix_timestamp(),
        "iss": "https://accounts.google.com",
        "sub": id,
    });
    if req.include_email.unwrap_or(false) {
        claims["email"] = json!(sa.email);
        claims["email_verified"] = json!(true);
    }
    let token = app.google_key.sign(&claims);
    app.record_secret(&token);
    Ok(Json(json!({ "token": token })).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("3600s"), Some(3600));
        assert_eq!(parse_lifetime("1.5s"), Some(1));
        assert_eq!(parse_lifetime("3600"), None);
        assert_eq!(parse_lifetime("-1s"), None);
        assert_eq!(parse_lifetime("s"), None);
    }
}
