//! Admin API under `/admin/` (not counted, not logged): the same controls as
//! the library methods, for shell scripts and tests in other languages.

use crate::config::ProviderType;
use crate::server::OPERATIONS;
use crate::state::{Fault, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;

/// The world as the binary prints it and `GET /admin/info` returns it.
pub(crate) fn info(app: &Shared) -> Value {
    let url = &app.url;
    let aws = &app.config.aws;
    let sa = crate::service_account_of(app);
    let mut env = serde_json::Map::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), Value::String(v));
    };
    set("AWS_ENDPOINT_URL_STS", url.clone());
    set("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.clone());
    set(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("{url}/aws/container/credentials"),
    );
    set(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        app.container_token.clone(),
    );
    set("AWS_REGION", aws.region.clone());
    if let Some(user) = aws.users.first() {
        set("AWS_ACCESS_KEY_ID", user.access_key_id.clone());
        set("AWS_SECRET_ACCESS_KEY", user.secret_access_key.clone());
    }
    json!({
        "url": url,
        "issuer": app.issuer(),
        "oidc_audience": crate::audience_of(app, ProviderType::Oidc),
        "aws_audience": crate::audience_of(app, ProviderType::Aws),
        "service_account": sa,
        "token_url": format!("{url}/google/sts/v1/token"),
        "service_account_impersonation_url":
            format!("{url}/google/iamcredentials/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"),
        "google_certs_url": format!("{url}/google/oauth2/v3/certs"),
        "env": env,
    })
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/admin/info",
            get(|State(app): State<Arc<Shared>>| async move { Json(info(&app)) }),
        )
        .route(
            "/admin/stats",
            get(|State(app): State<Arc<Shared>>| async move { Json(app.stats()) }),
        )
        .route(
            "/admin/requests",
            get(|State(app): State<Arc<Shared>>| async move { Json(app.requests()) }),
        )
        .route(
            "/admin/issued-secrets",
            get(|State(app): State<Arc<Shared>>| async move { Json(app.issued_secrets()) }),
        )
        .route("/admin/faults", post(faults))
        .route("/admin/reset", post(reset))
        .route("/admin/clock", post(clock))
        .route("/admin/outbound-federation", post(outbound))
}

fn ok() -> Response {
    Json(json!({"ok": true})).into_response()
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"ok": false, "error": message})),
    )
        .into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn faults(State(app): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let fault: Fault = match parse(&body) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    if !OPERATIONS.contains(&fault.operation.as_str()) {
        return bad(format!(
            "unknown operation {:?}; known: {}",
            fault.operation,
            OPERATIONS.join(", ")
        ));
    }
    if fault.status != 0 && StatusCode::from_u16(fault.status).is_err() {
        return bad(format!("invalid status {}", fault.status));
    }
    app.inject_fault(fault);
    ok()
}

async fn reset(State(app): State<Arc<Shared>>) -> Response {
    app.reset();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    #[serde(with = "time::serde::rfc3339::option", default)]
    time: Option<OffsetDateTime>,
}

async fn clock(State(app): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match parse::<ClockBody>(&body) {
        Ok(c) => {
            app.set_clock(c.time);
            ok()
        }
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundBody {
    enabled: bool,
}

async fn outbound(State(app): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match parse::<OutboundBody>(&body) {
        Ok(b) => {
            app.set_outbound_federation(b.enabled);
            ok()
        }
        Err(e) => bad(e),
    }
}
