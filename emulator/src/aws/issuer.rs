//! OIDC discovery documents and JWKS of the AWS outbound-federation issuer
//! (`/aws/issuer`) and of the emulated EKS cluster issuer (`/eks/oidc`).

use crate::jwt::{SigningKey, jwks};
use crate::state::Shared;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

fn discovery(issuer: &str, claims: &[&str]) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
        "claims_supported": claims,
    })
}

pub(crate) fn key_set(key: &SigningKey) -> Json<Value> {
    Json(jwks(&[key.public()]))
}

/// `GET /aws/issuer/.well-known/openid-configuration`.
pub(crate) async fn aws_openid_configuration(State(app): State<Arc<Shared>>) -> Json<Value> {
    Json(discovery(
        &app.issuer(),
        &[
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "sub",
            "https://sts.amazonaws.com/",
        ],
    ))
}

/// `GET /aws/issuer/.well-known/jwks.json`.
pub(crate) async fn aws_jwks(State(app): State<Arc<Shared>>) -> Json<Value> {
    key_set(&app.aws_issuer_key)
}

/// `GET /eks/oidc/.well-known/openid-configuration`.
pub(crate) async fn eks_openid_configuration(State(app): State<Arc<Shared>>) -> Json<Value> {
    Json(discovery(
        &app.eks_issuer(),
        &["aud", "exp", "iat", "iss", "nbf", "sub"],
    ))
}

/// `GET /eks/oidc/.well-known/jwks.json`.
pub(crate) async fn eks_jwks(State(app): State<Arc<Shared>>) -> Json<Value> {
    key_set(&app.eks_key)
}
