//! Validation of `urn:ietf:params:oauth:token-type:jwt` / `id_token` subject
//! tokens for OIDC providers: RS256 signature with a known `kid` from the
//! issuer's JWKS, `iss`, `aud`, `exp`, `iat`, `sub` — against the emulator
//! clock. Keys are never fetched from the network.

use super::{OAuthError, Provider, invalid_grant};
use crate::jwt::{self, PublicJwk, audiences, num_claim};
use crate::state::Shared;
use serde_json::{Map, Value};

/// Longest accepted token lifetime (`exp - iat`), as Google documents.
const MAX_LIFETIME_SECS: i64 = 48 * 3600;

fn issuer_keys(
    app: &Shared,
    provider: &Provider<'_>,
    issuer: &str,
) -> Result<Vec<PublicJwk>, OAuthError> {
    if let Some(doc) = &provider.config.jwks {
        return Ok(jwt::parse_jwks(doc));
    }
    if issuer == app.issuer() {
        return Ok(vec![app.aws_issuer_key.public().clone()]);
    }
    if issuer == app.eks_issuer() {
        return Ok(vec![app.eks_key.public().clone()]);
    }
    Err(invalid_grant(format!(
        "wif-emulator does not fetch the JWKS of issuer {issuer}; upload it in the provider's \"jwks\" config"
    )))
}

/// Validates the JWT for `provider`; returns its claims.
pub(crate) fn verify(
    app: &Shared,
    provider: &Provider<'_>,
    token: &str,
) -> Result<Map<String, Value>, OAuthError> {
    let issuer = provider
        .config
        .issuer
        .clone()
        .unwrap_or_else(|| app.issuer());
    let keys = issuer_keys(app, provider, &issuer)?;
    let claims = jwt::verify_rs256(token, &keys)
        .map_err(|e| invalid_grant(format!("Invalid subject token: {e}.")))?
        .claims;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != issuer {
        return Err(invalid_grant(format!(
            "The issuer in ID Token {iss} does not match the expected ones: {issuer}."
        )));
    }
    let allowed: Vec<String> = if provider.config.allowed_audiences.is_empty() {
        vec![provider.name.clone(), format!("https:{}", provider.name)]
    } else {
        provider.config.allowed_audiences.clone()
    };
    let aud = audiences(&claims);
    if !aud.iter().any(|a| allowed.contains(a)) {
        return Err(invalid_grant(format!(
            "The audience in ID Token {aud:?} does not match the expected audience {:?}.",
            allowed.first().map_or("", String::as_str)
        )));
    }
    let now = app.now().unix_timestamp();
    let exp =
        num_claim(&claims, "exp").ok_or_else(|| invalid_grant("The ID Token has no exp claim."))?;
    let iat =
        num_claim(&claims, "iat").ok_or_else(|| invalid_grant("The ID Token has no iat claim."))?;
    if exp <= now {
        return Err(invalid_grant(format!(
            "The ID Token expired at {exp}; it is now {now}."
        )));
    }
    if iat > now {
        return Err(invalid_grant(format!(
            "The ID Token was issued in the future (iat {iat}, now {now})."
        )));
    }
    if exp - iat > MAX_LIFETIME_SECS {
        return Err(invalid_grant(
            "The ID Token lifetime (exp - iat) exceeds 48 hours.",
        ));
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(claims),
        _ => Err(invalid_grant("The ID Token has no sub claim.")),
    }
}
