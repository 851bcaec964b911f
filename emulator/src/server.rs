//! The HTTP router and the observation layer every request goes through:
//! operation classification, counters, fault injection and the request log.

use crate::aws::{issuer, metadata, sts};
use crate::google::{self, iam};
use crate::state::{Fault, RequestRecord, Shared};
use crate::util::form_get;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// Every operation name the emulator counts (and accepts faults for).
pub const OPERATIONS: [&str; 15] = [
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:GetWebIdentityToken",
    "imds:token",
    "imds:credentials",
    "imds:region",
    "container:credentials",
    "issuer:jwks",
    "issuer:openid-configuration",
    "google:sts.token",
    "google:generateAccessToken",
    "google:generateIdToken",
    "google:certs",
    "eks:jwks",
];

/// Error code attached to a response (for the request log).
#[derive(Clone, Debug)]
pub(crate) struct ErrorCode(pub(crate) String);

/// Builds the router for all emulated endpoints plus the admin API.
pub(crate) fn router(app: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(sts::handle))
        .route("/aws/sts", post(sts::handle))
        .route(
            "/aws/issuer/.well-known/openid-configuration",
            get(issuer::aws_openid_configuration),
        )
        .route("/aws/issuer/.well-known/jwks.json", get(issuer::aws_jwks))
        .route(
            "/eks/oidc/.well-known/openid-configuration",
            get(issuer::eks_openid_configuration),
        )
        .route("/eks/oidc/.well-known/jwks.json", get(issuer::eks_jwks))
        .route("/latest/api/token", put(metadata::imds_token))
        .route("/latest/{*rest}", get(metadata::imds_get))
        .route(
            "/aws/container/credentials",
            get(metadata::container_credentials),
        )
        .route("/google/sts/v1/token", post(google::sts::token))
        .route(
            "/google/iamcredentials/v1/projects/{project}/serviceAccounts/{target}",
            post(iam::handle),
        )
        .route("/google/oauth2/v3/certs", get(iam::certs))
        .merge(crate::admin::routes())
        .fallback(not_found)
        .layer(from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

async fn not_found() -> Response {
    let mut resp = (StatusCode::NOT_FOUND, "Not Found").into_response();
    resp.extensions_mut().insert(ErrorCode("NotFound".into()));
    resp
}

/// Maps a request to its operation name (None for admin and unknown routes).
fn classify(method: &Method, path: &str, query: &str, body: &[u8]) -> Option<&'static str> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/" | "/aws/sts" if post => {
            let params = sts::query_and_form(query, body);
            let action = form_get(&params, "Action")?;
            OPERATIONS
                .iter()
                .copied()
                .find(|op| op.strip_prefix("sts:") == Some(action))
        }
        "/latest/api/token" if method == Method::PUT => Some("imds:token"),
        p if get && p.starts_with("/latest/meta-data/iam/") => Some("imds:credentials"),
        p if get && p.starts_with("/latest/meta-data/placement/") => Some("imds:region"),
        "/aws/container/credentials" if get => Some("container:credentials"),
        "/aws/issuer/.well-known/jwks.json" if get => Some("issuer:jwks"),
        "/aws/issuer/.well-known/openid-configuration" if get => {
            Some("issuer:openid-configuration")
        }
        "/eks/oidc/.well-known/jwks.json" if get => Some("eks:jwks"),
        "/google/sts/v1/token" if post => Some("google:sts.token"),
        "/google/oauth2/v3/certs" if get => Some("google:certs"),
        p if post
            && p.starts_with("/google/iamcredentials/")
            && p.ends_with(":generateAccessToken") =>
        {
            Some("google:generateAccessToken")
        }
        p if post
            && p.starts_with("/google/iamcredentials/")
            && p.ends_with(":generateIdToken") =>
        {
            Some("google:generateIdToken")
        }
        _ => None,
    }
}

fn fault_response(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match fault.body.trim_start().chars().next() {
        Some('{') | Some('[') => "application/json",
        Some('<') => "text/xml",
        _ => "text/plain",
    };
    let mut resp = (status, fault.body.clone()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.extensions_mut()
        .insert(ErrorCode("InjectedFault".into()));
    resp
}

async fn observe(State(app): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/admin" || path.starts_with("/admin/") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let (op, resp) = match axum::body::to_bytes(body, MAX_BODY).await {
        Err(_) => {
            let mut resp =
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
            resp.extensions_mut()
                .insert(ErrorCode("PayloadTooLarge".into()));
            (None, resp)
        }
        Ok(bytes) => {
            let op = classify(&method, &path, parts.uri.query().unwrap_or(""), &bytes);
            let req = Request::from_parts(parts, Body::from(Bytes::clone(&bytes)));
            (op, run_operation(&app, op, req, next).await)
        }
    };
    app.log(RequestRecord {
        operation: op.unwrap_or("unknown").to_string(),
        method: method.to_string(),
        path,
        status: resp.status().as_u16(),
        error: resp.extensions().get::<ErrorCode>().map(|e| e.0.clone()),
        time: app.now(),
    });
    resp
}

async fn run_operation(
    app: &Shared,
    op: Option<&'static str>,
    req: Request,
    next: Next,
) -> Response {
    let Some(fault) = op.and_then(|op| app.enter(op)) else {
        return next.run(req).await;
    };
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if fault.status == 0 {
        next.run(req).await
    } else {
        fault_response(&fault)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let body = b"Action=GetWebIdentityToken&Version=2011-06-15";
        assert_eq!(
            classify(&Method::POST, "/", "", body),
            Some("sts:GetWebIdentityToken")
        );
        assert_eq!(classify(&Method::POST, "/", "", b"Action=Nope"), None);
        assert_eq!(
            classify(
                &Method::POST,
                "/aws/sts",
                "Action=AssumeRole&Version=2011-06-15",
                b""
            ),
            Some("sts:AssumeRole")
        );
        assert_eq!(
            classify(&Method::PUT, "/latest/api/token", "", b""),
            Some("imds:token")
        );
        assert_eq!(
            classify(
                &Method::POST,
                "/google/iamcredentials/v1/projects/-/serviceAccounts/a@b:generateIdToken",
                "",
                b""
            ),
            Some("google:generateIdToken")
        );
        assert_eq!(
            classify(&Method::GET, "/google/sts/v1/token", "", b""),
            None
        );
    }
}
