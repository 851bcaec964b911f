//! Google STS token exchange, `POST /google/sts/v1/token` (RFC 8693, form
//! encoded as the client libraries send it). Maps the external identity to a
//! federated principal like Google's default attribute mappings and issues a
//! federated access token.

use super::{
    OAuthError, Provider, aws_subject, find_provider, invalid_grant, invalid_request, oidc_subject,
};
use crate::config::ProviderType;
use crate::state::{FederatedToken, Shared};
use crate::util::{form_get, parse_form, random_b64url};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use time::Duration;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const JWT_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// Lifetime of federated access tokens.
pub(crate) const FEDERATED_TOKEN_SECS: i64 = 3600;
/// Google's limit on the mapped `google.subject`.
const MAX_SUBJECT_BYTES: usize = 127;

/// Axum handler.
pub(crate) async fn token(State(app): State<Arc<Shared>>, body: Bytes) -> Response {
    match exchange(&app, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, OAuthError> {
    form_get(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            invalid_request(format!(
                "Invalid value for \"{name}\": the parameter is required."
            ))
        })
}

/// The request parameters. Client libraries send a form with OAuth's
/// snake_case names; the REST API also takes a JSON object with the
/// discovery document's camelCase names (the Python original sends that).
fn parse_params(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    if !body.trim_ascii_start().starts_with(b"{") {
        return Ok(parse_form(body));
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| invalid_request(format!("Invalid JSON payload received. {e}")))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => return None,
                other => other.to_string(),
            };
            let mut name = String::new();
            for c in k.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                    name.push(c.to_ascii_lowercase());
                } else {
                    name.push(c);
                }
            }
            Some((name, value))
        })
        .collect())
}

fn exchange(app: &Shared, body: &[u8]) -> Result<Response, OAuthError> {
    let params = parse_params(body)?;
    let grant_type = required(&params, "grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(OAuthError {
            status: 400,
            error: "unsupported_grant_type",
            description: format!("Unsupported grant_type {grant_type:?}; expected {GRANT_TYPE}."),
        });
    }
    let requested = required(&params, "requested_token_type")?;
    if requested != ACCESS_TOKEN_TYPE {
        return Err(invalid_request(format!(
            "Invalid value for \"requested_token_type\": {requested:?}."
        )));
    }
    let subject_token_type = required(&params, "subject_token_type")?;
    let subject_token = required(&params, "subject_token")?;
    let audience = required(&params, "audience")?;
    let provider = find_provider(app, audience).ok_or_else(|| OAuthError {
        status: 400,
        error: "invalid_target",
        description: "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.".into(),
    })?;
    let scopes: Vec<String> = form_get(&params, "scope")
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();

    let (subject, mut sets) = match (provider.config.provider_type, subject_token_type) {
        (ProviderType::Aws, AWS_TYPE) => {
            let principal = aws_subject::verify(app, &provider, subject_token)?;
            let role_set = format!(
                "{}/attribute.aws_role/{}",
                provider.pool_name(),
                principal.aws_role_attribute()
            );
            (principal.arn(), vec![role_set])
        }
        (ProviderType::Oidc, t) if JWT_TYPES.contains(&t) => {
            let claims = oidc_subject::verify(app, &provider, subject_token)?;
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (sub, Vec::new())
        }
        (kind, t) => {
            return Err(invalid_request(format!(
                "Invalid value for \"subject_token_type\": {t:?} is not supported by the {} provider {}.",
                if kind == ProviderType::Aws {
                    "AWS"
                } else {
                    "OIDC"
                },
                provider.name
            )));
        }
    };
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(invalid_grant(format!(
            "The size of mapped attribute google.subject exceeds the {MAX_SUBJECT_BYTES} bytes limit."
        )));
    }
    sets.push(format!("{}/*", provider.pool_name()));
    let principal = principal_of(&provider, &subject);
    let access_token = format!("ya29.d.emu-{}", random_b64url(96));
    app.add_federated_token(
        &access_token,
        FederatedToken {
            principal,
            principal_sets: sets.iter().map(|s| format!("principalSet:{s}")).collect(),
            scopes,
            expires: app.now() + Duration::seconds(FEDERATED_TOKEN_SECS),
        },
    );
    Ok(Json(json!({
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": FEDERATED_TOKEN_SECS,
    }))
    .into_response())
}

/// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/SUB`.
fn principal_of(provider: &Provider<'_>, subject: &str) -> String {
    format!("principal:{}/subject/{subject}", provider.pool_name())
}
