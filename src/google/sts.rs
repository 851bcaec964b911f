//! Google STS token exchange (RFC 8693) at `token_url` (`/v1/token`).
//!
//! Form-encoded, no `Authorization` header:
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `audience`
//! (the pool provider), `scope`, `requested_token_type=…:access_token`,
//! `subject_token` and `subject_token_type` (`aws4_request` or `jwt`).
//! The answer's `access_token` is the federated token; `expires_in` (an
//! integer, or a numeric string as Python accepts) gives its expiry.
//!
//! Refusals come in OAuth's shape, `{"error":"invalid_grant",
//! "error_description":…}`, and become [`ErrorCode::GoogleInvalidGrant`]
//! with a message that names the audience sent and the likely fix for the
//! provider type; 429 and 5xx are transient [`ErrorCode::GoogleError`]s.

use crate::deadline::Deadline;
use crate::error::{Error, ErrorCode, Result};
use crate::http;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::subject::ProviderType;
use crate::text::quote;
use crate::token::IssuedToken;
use serde_json::Value;

/// RFC 8693 grant type.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type wif-helper asks for.
pub(crate) const REQUESTED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// One token exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange<'a> {
    /// The STS endpoint, e.g. `https://sts.googleapis.com/v1/token`.
    pub(crate) token_url: &'a str,
    /// The pool provider; its audience is sent.
    pub(crate) provider: &'a Provider,
    /// Selects `subject_token_type` and the hints in errors.
    pub(crate) provider_type: ProviderType,
    /// The AWS subject token.
    pub(crate) subject_token: &'a Secret,
    /// The space-separated scope of the federated token.
    pub(crate) scope: &'a str,
}

/// Exchanges the subject token for a federated access token.
pub(crate) async fn exchange(
    client: &reqwest::Client,
    ex: &Exchange<'_>,
    deadline: Deadline,
    now: i64,
) -> Result<IssuedToken> {
    let audience = ex.provider.audience();
    let form = [
        ("grant_type", GRANT_TYPE),
        ("audience", audience.as_str()),
        ("scope", ex.scope),
        ("requested_token_type", REQUESTED_TOKEN_TYPE),
        ("subject_token", ex.subject_token.expose()),
        ("subject_token_type", ex.provider_type.subject_token_type()),
    ];
    let resp = http::send_with_retry(deadline, "Google STS", || {
        client
            .post(ex.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
    })
    .await?;
    parse_response(resp.status, &resp.body, ex.provider, ex.provider_type, now)
}

/// Turns an STS answer into a token valid from `now`, or into an error that
/// names the fix.
pub(crate) fn parse_response(
    status: u16,
    body: &[u8],
    provider: &Provider,
    provider_type: ProviderType,
    now: i64,
) -> Result<IssuedToken> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return parse_success(json.as_ref(), now);
    }
    let (error, description) = oauth_error(json.as_ref());
    let said = match (&error, &description) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => "no error details".to_owned(),
    };
    if http::is_retryable_status(status) {
        return Err(Error::transient(
            ErrorCode::GoogleError,
            format!("Google STS is unavailable or throttling (HTTP {status}: {said}); retry later"),
        ));
    }
    let oauth_refusal = matches!(
        error.as_deref(),
        Some(
            "invalid_grant"
                | "invalid_target"
                | "invalid_request"
                | "unauthorized_client"
                | "access_denied"
                | "invalid_scope"
        )
    );
    if !(oauth_refusal || matches!(status, 400 | 401 | 403)) {
        return Err(Error::new(
            ErrorCode::GoogleError,
            format!(
                "Google STS answered HTTP {status} ({said}); check --token-url (default https://sts.googleapis.com/v1/token)"
            ),
        ));
    }
    Err(Error::new(
        ErrorCode::GoogleInvalidGrant,
        invalid_grant_message(
            status,
            &said,
            error.as_deref(),
            description.as_deref(),
            provider,
            provider_type,
        ),
    ))
}

fn parse_success(json: Option<&Value>, now: i64) -> Result<IssuedToken> {
    let bad = |why: &str| {
        Error::new(
            ErrorCode::GoogleError,
            format!("Google STS answered success but {why}"),
        )
    };
    let json = json.ok_or_else(|| bad("not with JSON"))?;
    let token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("without access_token"))?;
    let expires_in = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("without an integer expires_in"))?;
    if expires_in <= 0 {
        return Err(bad(&format!("with expires_in {expires_in}")));
    }
    let token = IssuedToken {
        token: Secret::new(token),
        expires_at: now.saturating_add(expires_in),
        issued_at: now,
    };
    token.validate().map_err(|why| {
        bad(&format!(
            "with an unusable access_token or expires_in: {why}"
        ))
    })?;
    Ok(token)
}

/// The audiences an STS refusal names, in order: bracketed (`[X]`) or
/// double-quoted (`"X"`) values that look like audiences (they contain `/`).
/// Google's text names the token's audience first and, when it does, the
/// audience it expected second.
fn audiences_named(description: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = description;
    while let Some(start) = rest.find(['[', '"']) {
        let close = if rest.get(start..start + 1) == Some("[") {
            ']'
        } else {
            '"'
        };
        let after = rest.get(start + 1..).unwrap_or_default();
        let Some(len) = after.find(close) else {
            break;
        };
        let inner = after.get(..len).unwrap_or_default();
        for a in inner.split(',') {
            let a = a.trim().trim_matches('"').trim();
            if a.contains('/') && !a.contains(' ') && !found.iter().any(|f| f == a) {
                found.push(a.to_owned());
            }
        }
        rest = after.get(len + 1..).unwrap_or_default();
    }
    found
}

/// `error` and `error_description` of an OAuth error (or the `message` of a
/// Google JSON error), shortened for messages.
fn oauth_error(json: Option<&Value>) -> (Option<String>, Option<String>) {
    let Some(json) = json else {
        return (None, None);
    };
    match json.get("error") {
        Some(Value::String(e)) => (
            Some(quote(e)),
            json.get("error_description")
                .and_then(Value::as_str)
                .map(quote),
        ),
        Some(Value::Object(o)) => (
            o.get("status").and_then(Value::as_str).map(quote),
            o.get("message").and_then(Value::as_str).map(quote),
        ),
        _ => (None, None),
    }
}

fn invalid_grant_message(
    status: u16,
    said: &str,
    error: Option<&str>,
    description: Option<&str>,
    provider: &Provider,
    provider_type: ProviderType,
) -> String {
    let audience = provider.audience();
    let d = description.unwrap_or_default().to_ascii_lowercase();
    let mut msg = format!(
        "Google STS refused the {} subject token (HTTP {status}, {said}). The audience sent was {audience}.",
        provider_type.subject_token_type()
    );
    let describe = format!(
        "gcloud iam workload-identity-pools providers describe {}",
        provider.resource()
    );
    if error == Some("invalid_target")
        || [
            "disabled",
            "deleted",
            "not exist",
            "not found",
            "does not exist",
            "invalid target",
        ]
        .iter()
        .any(|w| d.contains(w))
    {
        msg.push_str(&format!(
            " The pool or provider is unknown, disabled or deleted: check the project number, pool and \
             provider IDs in --provider, and that both are ACTIVE (`{describe}`)."
        ));
    } else if d.contains("attribute condition") {
        msg.push_str(
            " The provider's attribute condition rejected this identity: check the provider's \
             --attribute-condition against the AWS role or token claims.",
        );
    } else if d.contains("audience")
        || d.contains("target resource")
        || d.contains("target-resource")
    {
        let named = audiences_named(description.unwrap_or_default());
        match named.as_slice() {
            [token_aud, expected, ..] => msg.push_str(&format!(
                " Google's answer names the audience the token carries, {token_aud}, and the one it \
                 expected, {expected}."
            )),
            [token_aud] => msg.push_str(&format!(
                " Google's answer names the audience the token carries: {token_aud}."
            )),
            [] => {}
        }
        msg.push_str(&match provider_type {
            ProviderType::Aws => format!(
                " The audience does not match the provider: --provider must name exactly the provider \
                 Google checks (`{describe}`)."
            ),
            ProviderType::Oidc => format!(
                " The token's aud is {audience}: the OIDC provider's allowed audiences must include it \
                 exactly, or be empty (`{describe}`)."
            ),
        });
    } else if provider_type == ProviderType::Aws
        && ["signature", "expired", "date", "time"]
            .iter()
            .any(|w| d.contains(w))
    {
        msg.push_str(
            " If AWS rejected the signed request, check the AWS credentials and the system clock.",
        );
    }
    msg.push_str(&match provider_type {
        ProviderType::Aws => format!(
            " With --provider-type aws the provider must be an AWS provider for the AWS account that owns \
             the credentials (`gcloud iam workload-identity-pools providers create-aws PROVIDER \
             --account-id=ACCOUNT_ID ...`); if {} is an OIDC provider trusting the AWS issuer URL, pass \
             --provider-type oidc.",
            provider.resource()
        ),
        ProviderType::Oidc => format!(
            " With --provider-type oidc the provider must be an OIDC provider whose issuer URI is this AWS \
             account's outbound issuer (`aws iam get-outbound-web-identity-federation-info`) and whose \
             allowed audiences include {audience}; if it is an AWS provider, pass --provider-type aws."
        ),
    });
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/pool/providers/prov";

    fn provider() -> Provider {
        RES.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse(status: u16, body: &str, t: ProviderType) -> Result<IssuedToken> {
        parse_response(status, body.as_bytes(), &provider(), t, 1000)
    }

    fn err(status: u16, body: &str, t: ProviderType) -> Error {
        parse(status, body, t)
            .err()
            .unwrap_or_else(|| panic!("expected an error for {body}"))
    }

    #[test]
    fn success_with_integer_or_string_expires_in() -> Result<()> {
        let t = parse(
            200,
            r#"{"access_token":"ya29.fed","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3599}"#,
            ProviderType::Aws,
        )?;
        assert_eq!(
            (t.token.expose(), t.issued_at, t.expires_at),
            ("ya29.fed", 1000, 4599)
        );
        let t = parse(
            200,
            r#"{"access_token":"x","expires_in":"3600"}"#,
            ProviderType::Aws,
        )?;
        assert_eq!(t.expires_at, 4600);
        Ok(())
    }

    #[test]
    fn success_without_usable_fields_is_a_google_error() {
        for body in [
            "not json",
            "{}",
            r#"{"access_token":"","expires_in":3600}"#,
            r#"{"access_token":"x"}"#,
            r#"{"access_token":"x","expires_in":0}"#,
            r#"{"access_token":"x","expires_in":-5}"#,
            r#"{"access_token":"x","expires_in":"soon"}"#,
            r#"{"access_token":"x","expires_in":1.5}"#,
            r#"{"access_token":7,"expires_in":3600}"#,
            r#"{"access_token":"two words","expires_in":3600}"#,
            r#"{"access_token":"line\nbreak","expires_in":3600}"#,
            r#"{"access_token":"x","expires_in":9223372036854775807}"#,
            r#"{"access_token":"x","expires_in":99999999}"#,
        ] {
            let e = err(200, body, ProviderType::Aws);
            assert_eq!(e.code(), ErrorCode::GoogleError, "{body}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn audience_mismatch_names_the_audience_and_the_oidc_fix() {
        let e = err(
            400,
            r#"{"error":"invalid_grant","error_description":"The audience in ID Token [x] does not match the expected audience."}"#,
            ProviderType::Oidc,
        );
        assert_eq!(e.code(), ErrorCode::GoogleInvalidGrant);
        let m = e.message();
        assert!(m.contains(&format!("//iam.googleapis.com/{RES}")), "{m}");
        assert!(m.contains("allowed audiences"), "{m}");
        assert!(
            m.contains("get-outbound-web-identity-federation-info"),
            "{m}"
        );
        assert!(m.contains("invalid_grant"), "{m}");
        assert!(!e.is_transient());
    }

    #[test]
    fn audience_mismatch_prints_both_audiences_when_google_names_them() {
        let other = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/other";
        let body = serde_json::json!({
            "error": "invalid_grant",
            "error_description": format!(
                "The audience in ID Token [\"//iam.googleapis.com/{RES}\"] does not match the expected audience \"{other}\"."
            ),
        })
        .to_string();
        let m = err(400, &body, ProviderType::Oidc).message().to_owned();
        assert!(
            m.contains(&format!(
                "the audience the token carries, //iam.googleapis.com/{RES}, and the one it expected, {other}."
            )),
            "{m}"
        );
        // Google's own text names only the token's audience.
        let body = r#"{"error":"invalid_grant","error_description":"The audience in ID Token [https://example.com/x] does not match the expected audience."}"#;
        let m = err(400, body, ProviderType::Oidc).message().to_owned();
        assert!(
            m.contains("the audience the token carries: https://example.com/x."),
            "{m}"
        );
        assert_eq!(
            audiences_named("no audiences [here] or \"there\""),
            Vec::<String>::new()
        );
        assert_eq!(audiences_named("unterminated [a/b"), Vec::<String>::new());
        assert_eq!(
            audiences_named(r#"["a/b","c/d"] then "a/b""#),
            vec!["a/b".to_owned(), "c/d".to_owned()]
        );
    }

    #[test]
    fn unknown_or_disabled_provider_says_so() {
        let e = err(
            400,
            r#"{"error":"invalid_target","error_description":"The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist."}"#,
            ProviderType::Aws,
        );
        assert_eq!(e.code(), ErrorCode::GoogleInvalidGrant);
        let m = e.message();
        assert!(m.contains("unknown, disabled or deleted"), "{m}");
        assert!(m.contains(&format!("providers describe {RES}")), "{m}");
        assert!(m.contains("create-aws"), "{m}");
        assert!(m.contains("--provider-type oidc"), "{m}");
    }

    #[test]
    fn aws_token_refusal_hints_at_an_aws_provider() {
        let e = err(
            400,
            r#"{"error":"invalid_grant","error_description":"Received invalid AWS response of type InvalidClientTokenId with error message: The security token included in the request is invalid."}"#,
            ProviderType::Aws,
        );
        assert_eq!(e.code(), ErrorCode::GoogleInvalidGrant);
        assert!(
            e.message().contains("must be an AWS provider"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("aws4_request"), "{}", e.message());
    }

    #[test]
    fn attribute_condition_and_bare_401s_are_invalid_grant() {
        let e = err(
            401,
            r#"{"error":"unauthorized_client","error_description":"The given credential is rejected by the attribute condition."}"#,
            ProviderType::Aws,
        );
        assert_eq!(e.code(), ErrorCode::GoogleInvalidGrant);
        assert!(e.message().contains("attribute condition"));
        assert_eq!(
            err(403, "<html>", ProviderType::Oidc).code(),
            ErrorCode::GoogleInvalidGrant
        );
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for s in [429, 500, 502, 503, 504] {
            let e = err(
                s,
                r#"{"error":"temporarily_unavailable"}"#,
                ProviderType::Aws,
            );
            assert_eq!(e.code(), ErrorCode::GoogleError, "{s}");
            assert!(e.is_transient(), "{s}");
            assert_eq!(e.exit_code(), 3);
        }
    }

    #[test]
    fn other_statuses_point_at_the_token_url_without_echoing_html() {
        let e = err(
            404,
            "<html><body>Not Found secret-ish</body></html>",
            ProviderType::Aws,
        );
        assert_eq!(e.code(), ErrorCode::GoogleError);
        assert!(!e.is_transient());
        assert!(e.message().contains("--token-url"));
        assert!(!e.message().contains("secret-ish"));
    }

    #[test]
    fn google_json_errors_are_understood_too() {
        let e = err(
            400,
            r#"{"error":{"code":400,"message":"Invalid value for \"audience\".","status":"INVALID_ARGUMENT"}}"#,
            ProviderType::Aws,
        );
        assert_eq!(e.code(), ErrorCode::GoogleInvalidGrant);
        assert!(
            e.message().contains("INVALID_ARGUMENT: Invalid value"),
            "{}",
            e.message()
        );
    }

    #[tokio::test]
    async fn exchange_posts_the_rfc8693_form_without_authorization() -> Result<()> {
        let server = crate::http::fake::FakeServer::start(vec![(
            200,
            r#"{"access_token":"ya29.fed","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.into(),
        )]);
        let client = crate::http::client(std::time::Duration::from_secs(5))?;
        let p = provider();
        let subject = Secret::new("%7B%22url%22%3A%22x%22%7D");
        let ex = Exchange {
            token_url: &format!("{}/v1/token", server.url),
            provider: &p,
            provider_type: ProviderType::Aws,
            subject_token: &subject,
            scope: crate::settings::CLOUD_PLATFORM_SCOPE,
        };
        let t = exchange(
            &client,
            &ex,
            Deadline::after(std::time::Duration::from_secs(5)),
            1000,
        )
        .await?;
        assert_eq!((t.token.expose(), t.expires_at), ("ya29.fed", 4600));
        let reqs = server.requests();
        let req = reqs.first().map(String::as_str).unwrap_or_default();
        assert!(req.starts_with("POST /v1/token HTTP/1.1"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/x-www-form-urlencoded"),
            "{req}"
        );
        assert!(!lower.contains("authorization:"), "{req}");
        let body = req.rsplit("\r\n\r\n").next().unwrap_or_default();
        let form: std::collections::HashMap<String, String> = url_pairs(body);
        assert_eq!(form["grant_type"], GRANT_TYPE);
        assert_eq!(form["audience"], format!("//iam.googleapis.com/{RES}"));
        assert_eq!(
            form["scope"],
            "https://www.googleapis.com/auth/cloud-platform"
        );
        assert_eq!(form["requested_token_type"], REQUESTED_TOKEN_TYPE);
        assert_eq!(
            form["subject_token_type"],
            "urn:ietf:params:aws:token-type:aws4_request"
        );
        // The already URL-encoded subject token survives form encoding intact.
        assert_eq!(form["subject_token"], subject.expose());
        Ok(())
    }

    fn url_pairs(body: &str) -> std::collections::HashMap<String, String> {
        body.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let dec = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (dec(k), dec(v))
            })
            .collect()
    }
}
