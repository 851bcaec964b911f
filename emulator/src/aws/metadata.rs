//! EC2 instance metadata (IMDSv2 only, as with `HttpTokens=required`) and the
//! ECS/EKS container credentials endpoint. Both hand out fresh temporary
//! credentials for the configured instance role on every request.

use crate::principal::role_arn;
use crate::server::ErrorCode;
use crate::state::Shared;
use crate::util::{random_b64url, rfc3339};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use time::Duration;

/// Instance id of the emulated EC2 instance (IMDS role session name).
pub(crate) const INSTANCE_ID: &str = "i-0e1a2b3c4d5e6f789";
/// Role session name of the emulated ECS task / EKS pod.
pub(crate) const CONTAINER_SESSION: &str = "wif-emulator-task";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

fn text(status: StatusCode, body: impl Into<String>, error: Option<&str>) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some(code) = error {
        resp.extensions_mut().insert(ErrorCode(code.into()));
    }
    resp
}

/// `PUT /latest/api/token`.
pub(crate) async fn imds_token(State(app): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if headers.contains_key("x-forwarded-for") {
        return text(StatusCode::FORBIDDEN, "", Some("Forbidden"));
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|t| (1..=21600).contains(t));
    let Some(ttl) = ttl else {
        return text(StatusCode::BAD_REQUEST, "", Some("BadRequest"));
    };
    let token = format!("AQAEA{}", random_b64url(42));
    app.add_imds_token(&token, app.now() + Duration::seconds(ttl));
    let mut resp = text(StatusCode::OK, token, None);
    if let Ok(v) = HeaderValue::from_str(&ttl.to_string()) {
        resp.headers_mut().insert(TTL_HEADER, v);
    }
    resp
}

/// `GET /latest/...` (metadata paths).
pub(crate) async fn imds_get(
    State(app): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    if !token.is_some_and(|t| app.imds_token_valid(t)) {
        return text(StatusCode::UNAUTHORIZED, "", Some("Unauthorized"));
    }
    let aws = &app.config.aws;
    let role = aws.instance_role.as_str();
    let az = aws
        .availability_zone
        .clone()
        .unwrap_or_else(|| format!("{}a", aws.region));
    let Some(path) = uri.path().strip_prefix("/latest/meta-data/") else {
        return text(StatusCode::NOT_FOUND, "Not Found", Some("NotFound"));
    };
    match path {
        "iam/security-credentials" | "iam/security-credentials/" => {
            text(StatusCode::OK, role, None)
        }
        "placement/region" => text(StatusCode::OK, aws.region.as_str(), None),
        "placement/availability-zone" => text(StatusCode::OK, az, None),
        "instance-id" => text(StatusCode::OK, INSTANCE_ID, None),
        "iam/info" => {
            let info = json!({
                "Code": "Success",
                "LastUpdated": rfc3339(app.now()),
                "InstanceProfileArn": format!("arn:aws:iam::{}:instance-profile/{role}", aws.account_id),
                "InstanceProfileId": crate::principal::unique_id("AIPA", &aws.account_id, role),
            });
            json_response(&info)
        }
        p if p.strip_prefix("iam/security-credentials/") == Some(role) => {
            let c = app.issue_role_credentials(role, INSTANCE_ID, Duration::hours(1));
            json_response(&json!({
                "Code": "Success",
                "LastUpdated": rfc3339(app.now()),
                "Type": "AWS-HMAC",
                "AccessKeyId": c.access_key_id,
                "SecretAccessKey": c.secret_access_key,
                "Token": c.session_token,
                "Expiration": rfc3339(c.expiration),
            }))
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found", Some("NotFound")),
    }
}

fn json_response(v: &serde_json::Value) -> Response {
    let body = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `GET /aws/container/credentials` (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub(crate) async fn container_credentials(
    State(app): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if given.is_empty() || verify_slices_are_equal(given, app.container_token.as_bytes()).is_err() {
        let body =
            json!({"code": "AccessDenied", "message": "Authorization token is missing or invalid"});
        let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        resp.extensions_mut()
            .insert(ErrorCode("AccessDenied".into()));
        return resp;
    }
    let aws = &app.config.aws;
    let role = aws.instance_role.as_str();
    let c = app.issue_role_credentials(role, CONTAINER_SESSION, Duration::hours(1));
    json_response(&json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "AccountId": aws.account_id,
        "Expiration": rfc3339(c.expiration),
        "RoleArn": role_arn(&aws.account_id, role),
    }))
}
