//! IAM Service Account Credentials: `generateAccessToken` and
//! `generateIdToken`, authorized by the federated STS token.
//!
//! * `POST {iam_root}/v1/projects/-/serviceAccounts/{email}:generateAccessToken`
//!   with `{"scope":[…],"lifetime":"3600s"}` (plus `delegates`), answering
//!   `{"accessToken":…,"expireTime":"2026-01-02T04:04:05Z"}`. `expireTime`
//!   is RFC 3339 (0–9 fractional digits) and parsed as the instant it names,
//!   never as local time.
//! * `…:generateIdToken` with `{"audience":…,"includeEmail":bool}`,
//!   answering `{"token":JWT}`; the expiry is the JWT's `exp` claim.
//!
//! Refusals become errors that name the fix: the organization policy that
//! allows lifetimes above an hour, enabling the API, the permissions an ID
//! token or a delegation chain needs. The member to bind on
//! `PERMISSION_DENIED` depends on the AWS caller, which this module does not
//! know: `crate::hints` adds it.

use crate::deadline::Deadline;
use crate::error::{Error, ErrorCode, Result};
use crate::http;
use crate::secret::Secret;
use crate::text::quote;
use crate::token::{ID_TOKEN_LIFETIME_SECS, IssuedToken};
use serde::Serialize;
use serde_json::Value;

/// The organization policy constraint for lifetimes above one hour.
pub(crate) const LIFETIME_CONSTRAINT: &str =
    "constraints/iam.allowServiceAccountCredentialLifetimeExtension";

/// Which service account to impersonate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Impersonation<'a> {
    /// The API root, e.g. `https://iamcredentials.googleapis.com`.
    pub(crate) iam_root: &'a str,
    /// The service account's email (or unique ID).
    pub(crate) service_account: &'a str,
    /// Delegation chain, as emails or `projects/-/serviceAccounts/EMAIL`.
    pub(crate) delegates: &'a [String],
}

impl Impersonation<'_> {
    /// `{iam_root}/v1/projects/-/serviceAccounts/{email}:{method}`: the one
    /// place this URL is made (generated configs use it too).
    pub(crate) fn endpoint(&self, method: &str) -> String {
        format!(
            "{}/v1/projects/-/serviceAccounts/{}:{method}",
            self.iam_root.trim_end_matches('/'),
            self.service_account
        )
    }

    fn delegate_resources(&self) -> Option<Vec<String>> {
        (!self.delegates.is_empty()).then(|| {
            self.delegates
                .iter()
                .map(|d| delegate_resource(d))
                .collect()
        })
    }
}

/// The inverse of [`Impersonation::endpoint`]: the API root and the service
/// account of a `…/v1/projects/-/serviceAccounts/{sa}:{method}` URL (a
/// credential configuration's `service_account_impersonation_url`).
pub(crate) fn split_endpoint(url: &str) -> Option<(&str, &str)> {
    let (root, rest) = url.split_once("/v1/projects/-/serviceAccounts/")?;
    let (sa, _method) = rest.rsplit_once(':')?;
    (!root.is_empty() && !sa.is_empty() && !sa.contains('/')).then_some((root, sa))
}

/// A delegate as IAM wants it: `projects/-/serviceAccounts/EMAIL`.
pub(crate) fn delegate_resource(d: &str) -> String {
    if d.starts_with("projects/") {
        d.to_owned()
    } else {
        format!("projects/-/serviceAccounts/{d}")
    }
}

#[derive(Serialize)]
struct AccessTokenRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    delegates: Option<Vec<String>>,
    scope: &'a [String],
    lifetime: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdTokenRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    delegates: Option<Vec<String>>,
    audience: &'a str,
    include_email: bool,
}

/// Which call an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `generateAccessToken` with this lifetime in seconds.
    AccessToken {
        /// The requested lifetime.
        lifetime: u32,
    },
    /// `generateIdToken`.
    IdToken,
}

impl Call {
    fn method(self) -> &'static str {
        match self {
            Self::AccessToken { .. } => "generateAccessToken",
            Self::IdToken => "generateIdToken",
        }
    }
}

/// `generateAccessToken`: a service-account access token.
pub(crate) async fn generate_access_token(
    client: &reqwest::Client,
    target: &Impersonation<'_>,
    federated: &Secret,
    scopes: &[String],
    lifetime: u32,
    deadline: Deadline,
    now: i64,
) -> Result<IssuedToken> {
    let body = AccessTokenRequest {
        delegates: target.delegate_resources(),
        scope: scopes,
        lifetime: format!("{lifetime}s"),
    };
    let call = Call::AccessToken { lifetime };
    let url = target.endpoint(call.method());
    let resp = http::send_with_retry(deadline, "IAM Credentials generateAccessToken", || {
        client
            .post(&url)
            .bearer_auth(federated.expose())
            .json(&body)
    })
    .await?;
    parse_response(call, resp.status, &resp.body, target, now)
}

/// `generateIdToken`: a Google-signed ID token for `audience`.
pub(crate) async fn generate_id_token(
    client: &reqwest::Client,
    target: &Impersonation<'_>,
    federated: &Secret,
    audience: &str,
    include_email: bool,
    deadline: Deadline,
    now: i64,
) -> Result<IssuedToken> {
    let body = IdTokenRequest {
        delegates: target.delegate_resources(),
        audience,
        include_email,
    };
    let url = target.endpoint(Call::IdToken.method());
    let resp = http::send_with_retry(deadline, "IAM Credentials generateIdToken", || {
        client
            .post(&url)
            .bearer_auth(federated.expose())
            .json(&body)
    })
    .await?;
    parse_response(Call::IdToken, resp.status, &resp.body, target, now)
}

/// Turns an IAM Credentials answer into a token (issued at `now`) or into an
/// error that names the fix.
pub(crate) fn parse_response(
    call: Call,
    status: u16,
    body: &[u8],
    target: &Impersonation<'_>,
    now: i64,
) -> Result<IssuedToken> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        let bad = |why: String| {
            Error::new(
                ErrorCode::GoogleError,
                format!(
                    "IAM Credentials {} answered success but {why}",
                    call.method()
                ),
            )
        };
        let json = json.ok_or_else(|| bad("not with JSON".into()))?;
        let field = |name: &str| {
            json.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad(format!("without {name}")))
        };
        let (token, expires_at) = match call {
            Call::AccessToken { .. } => {
                let token = field("accessToken")?;
                let expires = parse_expire_time(field("expireTime")?)
                    .map_err(|e| bad(e.message().to_owned()))?;
                (token, expires)
            }
            Call::IdToken => {
                let token = field("token")?;
                (
                    token,
                    jwt_exp(token).map_err(|e| bad(e.message().to_owned()))?,
                )
            }
        };
        if expires_at <= now {
            return Err(bad(format!(
                "with a token that expired at {expires_at} (Unix time), before now ({now}); check the system clock"
            )));
        }
        let token = IssuedToken {
            token: Secret::new(token),
            expires_at,
            issued_at: now,
        };
        token.validate().map_err(bad)?;
        // An absolute expiry is only as good as the clocks behind it: never
        // believe more than was asked for (ID tokens live an hour).
        let asked = match call {
            Call::AccessToken { lifetime } => i64::from(lifetime),
            Call::IdToken => ID_TOKEN_LIFETIME_SECS,
        };
        return Ok(token.capped(asked));
    }
    Err(error_for(call, status, json.as_ref(), target))
}

/// Parses an RFC 3339 timestamp (fractions and offsets allowed) to Unix
/// seconds; the instant named, independent of the local time zone.
pub(crate) fn parse_expire_time(s: &str) -> Result<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            Error::new(
                ErrorCode::GoogleError,
                format!("expireTime `{}` is not RFC 3339: {e}", quote(s)),
            )
        })
}

/// The integer `exp` claim of an ID token.
pub(crate) fn jwt_exp(token: &str) -> Result<i64> {
    crate::jwt::exp(token).map_err(|why| {
        Error::new(
            ErrorCode::GoogleError,
            format!("the token is not a usable JWT: {why}"),
        )
    })
}

/// The fields of a Google JSON error: `(status, message, reasons)`.
fn google_error(json: Option<&Value>) -> (Option<String>, Option<String>, Vec<String>) {
    let Some(e) = json.and_then(|j| j.get("error")) else {
        return (None, None, Vec::new());
    };
    match e {
        Value::Object(o) => {
            let reasons = o
                .get("details")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.get("reason").and_then(Value::as_str))
                        .map(quote)
                        .collect()
                })
                .unwrap_or_default();
            (
                o.get("status").and_then(Value::as_str).map(quote),
                o.get("message").and_then(Value::as_str).map(quote),
                reasons,
            )
        }
        // OAuth shape, e.g. from a proxy or an emulator.
        Value::String(s) => (
            Some(quote(s)),
            json.and_then(|j| j.get("error_description"))
                .and_then(Value::as_str)
                .map(quote),
            Vec::new(),
        ),
        _ => (None, None, Vec::new()),
    }
}

fn error_for(call: Call, status: u16, json: Option<&Value>, t: &Impersonation<'_>) -> Error {
    let (gstatus, message, reasons) = google_error(json);
    let said = match (&gstatus, &message) {
        (Some(s), Some(m)) => format!("HTTP {status} {s}: {m}"),
        (Some(s), None) => format!("HTTP {status} {s}"),
        (None, Some(m)) => format!("HTTP {status}: {m}"),
        (None, None) => format!("HTTP {status}"),
    };
    let method = call.method();
    let sa = t.service_account;
    let text = message.as_deref().unwrap_or_default().to_ascii_lowercase();
    if http::is_retryable_status(status) {
        return Error::transient(
            ErrorCode::GoogleError,
            format!("IAM Credentials {method} is unavailable or throttling ({said}); retry later"),
        );
    }
    let lifetime_refused = text.contains("lifetime")
        || text.contains("allowserviceaccountcredentiallifetimeextension")
        || reasons
            .iter()
            .any(|r| r.to_ascii_lowercase().contains("lifetime"));
    match (call, status) {
        (Call::AccessToken { lifetime }, 400 | 403) if lifetime_refused => Error::new(
            ErrorCode::GoogleLifetimeNotAllowed,
            format!(
                "IAM Credentials refused a {lifetime} s token lifetime for {sa} ({said}). Lifetimes above \
                 3600 s (up to 43200 s) need the organization policy {LIFETIME_CONSTRAINT} to list this \
                 service account; ask an organization policy administrator, or use --lifetime 3600 or less."
            ),
        ),
        (_, 401) => Error::new(
            ErrorCode::GoogleInvalidGrant,
            format!(
                "IAM Credentials {method} did not accept the federated token from Google STS ({said}); it \
                 may have been revoked, or --token-url and --iam-credentials-url may belong to \
                 different Google universes; check both."
            ),
        ),
        (_, 403)
            if reasons.iter().any(|r| r == "SERVICE_DISABLED")
                || text.contains("has not been used in project")
                || text.contains("it is disabled") =>
        {
            Error::new(
                ErrorCode::GoogleError,
                format!(
                    "the IAM Service Account Credentials API is not enabled ({said}); enable it in the \
                     project named there: gcloud services enable iamcredentials.googleapis.com --project=PROJECT"
                ),
            )
        }
        (_, 403) => Error::new(
            ErrorCode::GooglePermissionDenied,
            permission_message(call, &said, t),
        ),
        (_, 404) => Error::new(
            ErrorCode::GoogleError,
            format!(
                "IAM Credentials {method}: service account {sa} was not found ({said}); check --service-account"
            ),
        ),
        (Call::IdToken, 400) => Error::new(
            ErrorCode::GoogleError,
            format!(
                "IAM Credentials refused the ID token request for {sa} ({said}); check --audience"
            ),
        ),
        (Call::AccessToken { .. }, 400) => Error::new(
            ErrorCode::GoogleError,
            format!(
                "IAM Credentials refused the access token request for {sa} ({said}); check --scopes and --lifetime"
            ),
        ),
        _ => Error::new(
            ErrorCode::GoogleError,
            format!(
                "IAM Credentials {method} answered {said}; check --iam-credentials-url (default https://iamcredentials.googleapis.com)"
            ),
        ),
    }
}

fn permission_message(call: Call, said: &str, t: &Impersonation<'_>) -> String {
    let sa = t.service_account;
    let mut msg = format!(
        "IAM Credentials refused to let the federated identity {} {sa} ({said}).",
        match call {
            Call::AccessToken { .. } => "get an access token for",
            Call::IdToken => "get an ID token for",
        }
    );
    if call == Call::IdToken {
        msg.push_str(
            " generateIdToken needs iam.serviceAccounts.getOpenIdToken on the service account; if the \
             binding exists and this still fails, also grant the member roles/iam.serviceAccountOpenIdTokenCreator.",
        );
    }
    if !t.delegates.is_empty() {
        msg.push_str(
            " With --delegates, each account in the chain must grant the previous one \
             roles/iam.serviceAccountTokenCreator.",
        );
    }
    msg.push_str(" (Google answers the same when the service account does not exist: check --service-account.)");
    msg
}

#[cfg(test)]
pub(crate) mod tests;
