//! The Google side: STS token exchange (`/google/sts/v1/token`), IAM
//! Credentials (`/google/iamcredentials/v1/...`) and the Google JWKS. This
//! module holds the two Google error shapes and workload identity pool
//! lookups.

mod aws_subject;
pub(crate) mod iam;
mod oidc_subject;
pub(crate) mod sts;

use crate::config::ProviderConfig;
use crate::server::ErrorCode;
use crate::state::Shared;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An OAuth 2.0 error (`{"error":..,"error_description":..}`), as Google STS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: u16,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

pub(crate) fn invalid_grant(description: impl Into<String>) -> OAuthError {
    OAuthError {
        status: 400,
        error: "invalid_grant",
        description: description.into(),
    }
}

pub(crate) fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError {
        status: 400,
        error: "invalid_request",
        description: description.into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode(self.error.into()));
        resp
    }
}

/// A Google API error (`{"error":{"code","message","status"}}`).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) status: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(code: u16, status: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "INVALID_ARGUMENT", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::BAD_REQUEST);
        let mut error = json!({"code": self.code, "message": self.message, "status": self.status});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut resp = (status, Json(json!({ "error": error }))).into_response();
        resp.extensions_mut().insert(ErrorCode(self.status.into()));
        resp
    }
}

/// A workload identity pool provider found by its audience.
pub(crate) struct Provider<'a> {
    pub(crate) config: &'a ProviderConfig,
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`.
    pub(crate) name: String,
}

impl Provider<'_> {
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P`.
    pub(crate) fn pool_name(&self) -> &str {
        self.name.split("/providers/").next().unwrap_or(&self.name)
    }
}

/// Strips an optional `https:` in front of a `//iam.googleapis.com/...` name.
pub(crate) fn without_https(s: &str) -> &str {
    s.strip_prefix("https:").unwrap_or(s)
}

/// Finds the provider named by an STS `audience` (with or without `https:`).
pub(crate) fn find_provider<'a>(app: &'a Shared, audience: &str) -> Option<Provider<'a>> {
    let rest = without_https(audience).strip_prefix("//iam.googleapis.com/projects/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [
        project,
        "locations",
        "global",
        "workloadIdentityPools",
        pool_id,
        "providers",
        provider_id,
    ] = parts.as_slice()
    else {
        return None;
    };
    let g = &app.config.google;
    if *project != g.project_number {
        return None;
    }
    let pool = g.pools.iter().find(|p| p.id == *pool_id)?;
    let config = pool.providers.iter().find(|p| p.id == *provider_id)?;
    let name = format!(
        "//iam.googleapis.com/projects/{project}/locations/global/workloadIdentityPools/{pool_id}/providers/{provider_id}"
    );
    Some(Provider { config, name })
}
