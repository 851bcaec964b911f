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
//! Refusals become errors that name the fix: the `principalSet://` (AWS
//! provider) or `principal://` (OIDC provider) member to bind with
//! `roles/iam.workloadIdentityUser`, the organization policy that allows
//! lifetimes above an hour, or enabling the API.

use super::{ProviderType, quote};
use crate::cache::CachedToken;
use crate::error::{Error, ErrorCode, Result};
use crate::http;
use crate::provider::Provider;
use crate::secret::Secret;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use std::time::Instant;

/// The role that lets a federated identity impersonate a service account.
pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";
/// The organization policy constraint for lifetimes above one hour.
pub const LIFETIME_CONSTRAINT: &str =
    "constraints/iam.allowServiceAccountCredentialLifetimeExtension";

/// Which service account to impersonate, and what to say when it fails.
#[derive(Debug, Clone, Copy)]
pub struct Impersonation<'a> {
    /// The API root, e.g. `https://iamcredentials.googleapis.com`.
    pub iam_root: &'a str,
    /// The service account's email (or unique ID).
    pub service_account: &'a str,
    /// Delegation chain, as emails or `projects/-/serviceAccounts/EMAIL`.
    pub delegates: &'a [String],
    /// The pool provider the federated token came from (for error hints).
    pub provider: &'a Provider,
    /// Its type (for error hints).
    pub provider_type: ProviderType,
    /// For error hints, when known: the federated `sub` (OIDC provider) or
    /// the caller's `attribute.aws_role` (AWS provider).
    pub subject: Option<&'a str>,
}

impl Impersonation<'_> {
    /// `{iam_root}/v1/projects/-/serviceAccounts/{email}:{method}`.
    pub fn endpoint(&self, method: &str) -> String {
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

/// A delegate as IAM wants it: `projects/-/serviceAccounts/EMAIL`.
pub fn delegate_resource(d: &str) -> String {
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
pub enum Call {
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
pub async fn generate_access_token(
    client: &reqwest::Client,
    target: &Impersonation<'_>,
    federated: &Secret,
    scopes: &[String],
    lifetime: u32,
    deadline: Instant,
    now: i64,
) -> Result<CachedToken> {
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
pub async fn generate_id_token(
    client: &reqwest::Client,
    target: &Impersonation<'_>,
    federated: &Secret,
    audience: &str,
    include_email: bool,
    deadline: Instant,
    now: i64,
) -> Result<CachedToken> {
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
pub fn parse_response(
    call: Call,
    status: u16,
    body: &[u8],
    target: &Impersonation<'_>,
    now: i64,
) -> Result<CachedToken> {
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
        let token = CachedToken {
            token: Secret::new(token),
            expires_at,
            issued_at: now,
        };
        token.validate().map_err(bad)?;
        return Ok(token);
    }
    Err(error_for(call, status, json.as_ref(), target))
}

/// Parses an RFC 3339 timestamp (fractions and offsets allowed) to Unix
/// seconds; the instant named, independent of the local time zone.
pub fn parse_expire_time(s: &str) -> Result<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            Error::new(
                ErrorCode::GoogleError,
                format!("expireTime `{}` is not RFC 3339: {e}", quote(s)),
            )
        })
}

/// The claims of a JWT (its payload, base64url with or without padding),
/// which must be a JSON object. The signature is not checked: the token came
/// straight from Google (or AWS) over TLS and is only inspected.
pub fn jwt_claims(token: &str) -> Result<serde_json::Map<String, Value>> {
    let bad = |why: &str| {
        Error::new(
            ErrorCode::GoogleError,
            format!("the token is not a usable JWT: {why}"),
        )
    };
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected three dot-separated parts"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(payload)
        .map_err(|_| bad("the payload is not base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("the payload is not a JSON object")),
        Err(_) => Err(bad("the payload is not JSON")),
    }
}

/// The integer `exp` claim of a JWT.
pub fn jwt_exp(token: &str) -> Result<i64> {
    jwt_claims(token)?
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::GoogleError,
                "the token is not a usable JWT: no integer exp claim",
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

/// The member to bind, as `gcloud … --member` takes it, and a note on it.
pub fn member_hint(t: &Impersonation<'_>) -> (String, String) {
    let pool = t.provider.pool_resource();
    match t.provider_type {
        ProviderType::Aws if t.subject.is_some() => {
            let role = t.subject.unwrap_or_default();
            (
                format!("principalSet://iam.googleapis.com/{pool}/attribute.aws_role/{role}"),
                format!(
                    "{role} is this caller's attribute.aws_role under an AWS provider's default attribute \
                     mapping (for a role session, the assumed-role ARN without the session name; a binding \
                     with the IAM role/ ARN never matches)."
                ),
            )
        }
        ProviderType::Aws => (
            format!("principalSet://iam.googleapis.com/{pool}/attribute.aws_role/arn:aws:sts::ACCOUNT_ID:assumed-role/ROLE_NAME"),
            "With an AWS provider's default attribute mapping, attribute.aws_role of a role session is the \
             assumed-role ARN without the session name (arn:aws:sts::ACCOUNT_ID:assumed-role/ROLE_NAME), not \
             the IAM role ARN (arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME): a binding with the role/ ARN never \
             matches. For an IAM user it is the user ARN. `aws sts get-caller-identity` prints the ARN."
                .to_owned(),
        ),
        ProviderType::Oidc => {
            let subject = t.subject.unwrap_or("SUBJECT");
            (
                format!("principal://iam.googleapis.com/{pool}/subject/{subject}"),
                if t.subject.is_some() {
                    format!("{subject} is the AWS-issued token's sub (google.subject=assertion.sub).")
                } else {
                    "SUBJECT is google.subject, by default the AWS-issued token's sub claim: the ARN of the \
                     calling IAM role (arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME)."
                        .to_owned()
                },
            )
        }
    }
}

/// A PERMISSION_DENIED error made for `t` without a subject, with the exact
/// member for `aws_role` (the caller's `attribute.aws_role`, learned after
/// the fact) in place of the template.
pub fn with_aws_role(e: Error, t: &Impersonation<'_>, aws_role: &str) -> Error {
    let (template, note) = member_hint(t);
    let exact = Impersonation {
        subject: Some(aws_role),
        ..*t
    };
    let (member, exact_note) = member_hint(&exact);
    Error::new(
        e.code(),
        e.message()
            .replace(&template, &member)
            .replace(&note, &exact_note),
    )
}

fn permission_message(call: Call, said: &str, t: &Impersonation<'_>) -> String {
    let sa = t.service_account;
    let (member, note) = member_hint(t);
    let mut msg = format!(
        "IAM Credentials refused to let the federated identity {} {sa} ({said}). Grant the member \
         {WORKLOAD_IDENTITY_USER} on the service account: gcloud iam service-accounts add-iam-policy-binding \
         {sa} --role={WORKLOAD_IDENTITY_USER} --member=\"{member}\". {note}",
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
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const POOL: &str = "projects/123456789012/locations/global/workloadIdentityPools/pool";
    const SA: &str = "app@my-project.iam.gserviceaccount.com";

    fn provider() -> Provider {
        format!("{POOL}/providers/prov")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn with<T>(
        pt: ProviderType,
        subject: Option<&str>,
        delegates: &[String],
        f: impl FnOnce(&Impersonation<'_>) -> T,
    ) -> T {
        let p = provider();
        let t = Impersonation {
            iam_root: "https://iamcredentials.googleapis.com/",
            service_account: SA,
            delegates,
            provider: &p,
            provider_type: pt,
            subject,
        };
        f(&t)
    }

    fn parse(call: Call, status: u16, body: &str, pt: ProviderType) -> Result<CachedToken> {
        with(pt, None, &[], |t| {
            parse_response(call, status, body.as_bytes(), t, 1_767_323_045)
        })
    }

    const ACCESS: Call = Call::AccessToken { lifetime: 3600 };

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn endpoint_and_request_bodies() {
        with(ProviderType::Aws, None, &[], |t| {
            assert_eq!(
                t.endpoint("generateAccessToken"),
                format!(
                    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
                )
            );
        });
        let scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
        let b = AccessTokenRequest {
            delegates: None,
            scope: &scopes,
            lifetime: "3600s".into(),
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap_or_default(),
            r#"{"scope":["https://www.googleapis.com/auth/cloud-platform"],"lifetime":"3600s"}"#
        );
        let delegates = vec![
            "a@p.iam.gserviceaccount.com".to_owned(),
            "projects/-/serviceAccounts/b@p".to_owned(),
        ];
        with(ProviderType::Aws, None, &delegates, |t| {
            let b = IdTokenRequest {
                delegates: t.delegate_resources(),
                audience: "https://run.app",
                include_email: true,
            };
            assert_eq!(
                serde_json::to_string(&b).unwrap_or_default(),
                r#"{"delegates":["projects/-/serviceAccounts/a@p.iam.gserviceaccount.com","projects/-/serviceAccounts/b@p"],"audience":"https://run.app","includeEmail":true}"#
            );
        });
    }

    #[test]
    fn expire_time_is_rfc3339_utc_with_optional_fractions() -> Result<()> {
        assert_eq!(parse_expire_time("2026-01-02T04:04:05Z")?, 1_767_326_645);
        assert_eq!(parse_expire_time("2026-01-02T04:04:05.5Z")?, 1_767_326_645);
        assert_eq!(
            parse_expire_time("2026-01-02T04:04:05.123456789Z")?,
            1_767_326_645
        );
        assert_eq!(
            parse_expire_time("2026-01-02T05:04:05+01:00")?,
            1_767_326_645
        );
        for bad in [
            "",
            "2026-01-02 04:04:05",
            "2026-01-02T04:04:05",
            "1767326645",
            "tomorrow",
        ] {
            assert!(parse_expire_time(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn access_token_success() -> Result<()> {
        let t = parse(
            ACCESS,
            200,
            r#"{"accessToken":"ya29.sa","expireTime":"2026-01-02T04:04:05Z"}"#,
            ProviderType::Aws,
        )?;
        assert_eq!(
            (t.token.expose(), t.expires_at, t.issued_at),
            ("ya29.sa", 1_767_326_645, 1_767_323_045)
        );
        for body in [
            "{}",
            "nope",
            r#"{"accessToken":"x"}"#,
            r#"{"accessToken":"x","expireTime":"soon"}"#,
            r#"{"accessToken":"","expireTime":"2026-01-02T04:04:05Z"}"#,
            r#"{"accessToken":"x","expireTime":"2020-01-01T00:00:00Z"}"#,
            r#"{"accessToken":"x y","expireTime":"2026-01-02T04:04:05Z"}"#,
            r#"{"accessToken":"x","expireTime":"9999-12-31T23:59:59Z"}"#,
        ] {
            let e = parse(ACCESS, 200, body, ProviderType::Aws).err();
            assert_eq!(e.map(|e| e.code()), Some(ErrorCode::GoogleError), "{body}");
        }
        Ok(())
    }

    #[test]
    fn id_token_expiry_comes_from_exp() -> Result<()> {
        let tok = jwt(r#"{"aud":"https://run.app","exp":1767326645,"iat":1767323045}"#);
        let t = parse(
            Call::IdToken,
            200,
            &format!(r#"{{"token":"{tok}"}}"#),
            ProviderType::Aws,
        )?;
        assert_eq!(t.expires_at, 1_767_326_645);
        // Padded base64url is accepted too.
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":1767326645}"#)
        );
        assert_eq!(jwt_exp(&padded)?, 1_767_326_645);
        for bad in [
            "notajwt".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "a.!!!.c".to_owned(),
            jwt("[1,2]"),
            jwt("not json"),
            jwt(r#"{"exp":"1767326645"}"#),
            jwt(r#"{"exp":1767326645.5}"#),
            jwt(r#"{"iat":1}"#),
        ] {
            assert!(jwt_exp(&bad).is_err(), "{bad}");
            let e = parse(
                Call::IdToken,
                200,
                &format!(r#"{{"token":"{bad}"}}"#),
                ProviderType::Aws,
            )
            .err();
            assert_eq!(e.map(|e| e.code()), Some(ErrorCode::GoogleError), "{bad}");
        }
        Ok(())
    }

    const DENIED: &str = r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"iam.googleapis.com"}]}}"#;

    #[test]
    fn permission_denied_for_aws_names_the_principal_set_and_the_role() {
        let e = parse(ACCESS, 403, DENIED, ProviderType::Aws)
            .err()
            .unwrap_or_else(|| panic!("error expected"));
        assert_eq!(e.code(), ErrorCode::GooglePermissionDenied);
        let m = e.message();
        assert!(
            m.contains(&format!(
                "principalSet://iam.googleapis.com/{POOL}/attribute.aws_role/arn:aws:sts::ACCOUNT_ID:assumed-role/ROLE_NAME"
            )),
            "{m}"
        );
        assert!(m.contains("roles/iam.workloadIdentityUser"), "{m}");
        assert!(m.contains("role/ ARN"), "{m}");
        assert!(m.contains(SA), "{m}");
        assert!(!m.contains("OpenIdToken"), "{m}");
        assert!(!e.is_transient());
    }

    #[test]
    fn permission_denied_for_aws_can_name_the_exact_member() {
        let role = "arn:aws:sts::111122223333:assumed-role/app";
        let e = with(ProviderType::Aws, None, &[], |t| {
            let e = parse_response(ACCESS, 403, DENIED.as_bytes(), t, 0)
                .err()
                .unwrap_or_else(|| panic!("error expected"));
            with_aws_role(e, t, role)
        });
        assert_eq!(e.code(), ErrorCode::GooglePermissionDenied);
        let m = e.message();
        let member = format!("principalSet://iam.googleapis.com/{POOL}/attribute.aws_role/{role}");
        assert!(m.contains(&format!("--member=\"{member}\"")), "{m}");
        assert!(!m.contains("ACCOUNT_ID"), "{m}");
        assert!(m.contains("roles/iam.workloadIdentityUser"), "{m}");
    }

    #[test]
    fn permission_denied_for_oidc_names_the_principal_and_id_token_permission() {
        let e = with(
            ProviderType::Oidc,
            Some("arn:aws:iam::111122223333:role/app"),
            &[],
            |t| parse_response(Call::IdToken, 403, DENIED.as_bytes(), t, 0),
        )
        .err()
        .unwrap_or_else(|| panic!("error expected"));
        assert_eq!(e.code(), ErrorCode::GooglePermissionDenied);
        let m = e.message();
        assert!(
            m.contains(&format!(
                "principal://iam.googleapis.com/{POOL}/subject/arn:aws:iam::111122223333:role/app"
            )),
            "{m}"
        );
        assert!(m.contains("iam.serviceAccounts.getOpenIdToken"), "{m}");
        assert!(
            m.contains("roles/iam.serviceAccountOpenIdTokenCreator"),
            "{m}"
        );
        let e = parse(Call::IdToken, 403, DENIED, ProviderType::Oidc)
            .err()
            .unwrap_or_else(|| panic!("error expected"));
        assert!(e.message().contains(&format!(
            "principal://iam.googleapis.com/{POOL}/subject/SUBJECT"
        )));
    }

    #[test]
    fn refused_lifetime_names_the_org_policy() {
        let body = r#"{"error":{"code":400,"message":"Requested lifetime 43200s exceeds the maximum allowed lifetime of 3600s. Check the organization policy.","status":"INVALID_ARGUMENT"}}"#;
        let e = parse(
            Call::AccessToken { lifetime: 43200 },
            400,
            body,
            ProviderType::Aws,
        )
        .err()
        .unwrap_or_else(|| panic!("error expected"));
        assert_eq!(e.code(), ErrorCode::GoogleLifetimeNotAllowed);
        assert!(e.message().contains(LIFETIME_CONSTRAINT), "{}", e.message());
        assert!(e.message().contains("43200"), "{}", e.message());
    }

    #[test]
    fn other_statuses() {
        let code = |call, status, body: &str| {
            parse(call, status, body, ProviderType::Aws)
                .err()
                .map(|e| (e.code(), e.is_transient()))
        };
        let unauth = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        assert_eq!(
            code(ACCESS, 401, unauth),
            Some((ErrorCode::GoogleInvalidGrant, false))
        );
        for s in [429, 500, 502, 503, 504] {
            assert_eq!(
                code(ACCESS, s, "{}"),
                Some((ErrorCode::GoogleError, true)),
                "{s}"
            );
            assert_eq!(
                code(Call::IdToken, s, "<html>"),
                Some((ErrorCode::GoogleError, true)),
                "{s}"
            );
        }
        let disabled = r#"{"error":{"code":403,"message":"IAM Service Account Credentials API has not been used in project 123 before or it is disabled.","status":"PERMISSION_DENIED","details":[{"reason":"SERVICE_DISABLED"}]}}"#;
        let e = parse(ACCESS, 403, disabled, ProviderType::Aws)
            .err()
            .unwrap_or_else(|| panic!("error expected"));
        assert_eq!(e.code(), ErrorCode::GoogleError);
        assert!(
            e.message()
                .contains("gcloud services enable iamcredentials.googleapis.com")
        );
        let nf = r#"{"error":{"code":404,"message":"Not found; Gaia id not found for email x","status":"NOT_FOUND"}}"#;
        let e = parse(ACCESS, 404, nf, ProviderType::Aws)
            .err()
            .unwrap_or_else(|| panic!("error expected"));
        assert_eq!(e.code(), ErrorCode::GoogleError);
        assert!(e.message().contains("--service-account"));
        let bad_scope =
            r#"{"error":{"code":400,"message":"Invalid scope","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            code(ACCESS, 400, bad_scope),
            Some((ErrorCode::GoogleError, false))
        );
        assert_eq!(
            code(Call::IdToken, 400, bad_scope),
            Some((ErrorCode::GoogleError, false))
        );
    }

    #[test]
    fn messages_never_echo_tokens() {
        // A body that is not a Google error is not quoted.
        let e = parse(
            ACCESS,
            418,
            r#"{"accessToken":"ya29.leak"}"#,
            ProviderType::Aws,
        )
        .err();
        assert!(e.is_some_and(|e| !e.message().contains("ya29.leak")));
    }

    #[tokio::test]
    async fn calls_send_the_bearer_token_and_json_bodies() -> Result<()> {
        let id = jwt(r#"{"aud":"https://a.run.app","exp":1767326645}"#);
        let server = crate::http::fake::FakeServer::start(vec![
            (
                200,
                r#"{"accessToken":"ya29.sa","expireTime":"2026-01-02T04:04:05Z"}"#.into(),
            ),
            (200, format!(r#"{{"token":"{id}"}}"#)),
        ]);
        let client = crate::http::client(std::time::Duration::from_secs(5))?;
        let p = provider();
        let delegates = vec!["d@p.iam.gserviceaccount.com".to_owned()];
        let t = Impersonation {
            iam_root: &server.url,
            service_account: SA,
            delegates: &delegates,
            provider: &p,
            provider_type: ProviderType::Aws,
            subject: None,
        };
        let fed = Secret::new("ya29.federated");
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
        let a = generate_access_token(&client, &t, &fed, &scopes, 7200, deadline, 1_767_323_045)
            .await?;
        assert_eq!(a.token.expose(), "ya29.sa");
        let i = generate_id_token(
            &client,
            &t,
            &fed,
            "https://a.run.app",
            true,
            deadline,
            1_767_323_045,
        )
        .await?;
        assert_eq!(i.expires_at, 1_767_326_645);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert!(
            reqs[0].starts_with(&format!(
                "POST /v1/projects/-/serviceAccounts/{SA}:generateAccessToken HTTP/1.1"
            )),
            "{}",
            reqs[0]
        );
        assert!(
            reqs[1].starts_with(&format!(
                "POST /v1/projects/-/serviceAccounts/{SA}:generateIdToken HTTP/1.1"
            )),
            "{}",
            reqs[1]
        );
        for r in &reqs {
            assert!(
                r.to_ascii_lowercase()
                    .contains("authorization: bearer ya29.federated"),
                "{r}"
            );
        }
        let body = |r: &str| -> Value {
            serde_json::from_str(r.rsplit("\r\n\r\n").next().unwrap_or_default())
                .unwrap_or_default()
        };
        assert_eq!(
            body(&reqs[0]),
            serde_json::json!({"delegates":["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"],"scope":scopes,"lifetime":"7200s"})
        );
        assert_eq!(
            body(&reqs[1]),
            serde_json::json!({"delegates":["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"],"audience":"https://a.run.app","includeEmail":true})
        );
        Ok(())
    }
}
