//! The AWS subject token (`urn:ietf:params:aws:token-type:aws4_request`).
//!
//! Google STS verifies an AWS identity by replaying a pre-signed
//! `GetCallerIdentity` request against AWS STS. The token is that request,
//! signed with SigV4 (by the `aws-sigv4` crate, never by hand) and serialized
//! as URL-encoded JSON:
//!
//! ```json
//! {"url":"https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
//!  "method":"POST",
//!  "headers":[{"key":"Authorization","value":"AWS4-HMAC-SHA256 Credential=…"},
//!             {"key":"host","value":"sts.us-east-2.amazonaws.com"},
//!             {"key":"x-amz-date","value":"20260102T030405Z"},
//!             {"key":"x-amz-security-token","value":"…"},
//!             {"key":"x-goog-cloud-target-resource","value":"//iam.googleapis.com/projects/…"}]}
//! ```
//!
//! Differences from Google's Python library, all accepted by Google STS
//! (`shared/research/protocol.md` §3.1): the regional endpoint is always
//! used, and `x-goog-cloud-target-resource` is among the *signed* headers, as
//! Google recommends and as the Go, Java and Rust libraries do. The
//! URL-encoding matches Python's `urllib.parse.quote` (`/` kept, space as
//! `%20`).

use crate::error::{Error, ErrorCode, Result};
use crate::secret::Secret;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use std::time::SystemTime;

/// The header that binds the signed request to one pool provider.
pub(crate) const TARGET_RESOURCE_HEADER: &str = "x-goog-cloud-target-resource";

/// What `urllib.parse.quote` leaves alone: letters, digits, `_.-~` and `/`.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

#[derive(Serialize)]
struct Header<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Token<'a> {
    url: &'a str,
    method: &'a str,
    headers: Vec<Header<'a>>,
}

/// The regional `GetCallerIdentity` URL for `region` (validated).
pub(crate) fn verification_url(region: &str) -> Result<String> {
    crate::settings::validate::region("AWS region", region)?;
    Ok(format!(
        "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    ))
}

/// Builds the URL-encoded, signed `GetCallerIdentity` subject token for
/// `audience` (the pool provider, `//iam.googleapis.com/projects/…`),
/// signed with `credentials` for `region` at time `now`.
pub(crate) fn subject_token(
    credentials: &Credentials,
    region: &str,
    audience: &str,
    now: SystemTime,
) -> Result<Secret> {
    let url = verification_url(region)?;
    let host = format!("sts.{region}.amazonaws.com");
    let signed = sign_headers(credentials, region, &url, &host, audience, now)?;
    let mut headers = vec![
        Header {
            key: "Authorization",
            value: &signed.authorization,
        },
        Header {
            key: "host",
            value: &host,
        },
        Header {
            key: "x-amz-date",
            value: &signed.date,
        },
    ];
    if let Some(t) = &signed.security_token {
        headers.push(Header {
            key: "x-amz-security-token",
            value: t,
        });
    }
    headers.push(Header {
        key: TARGET_RESOURCE_HEADER,
        value: audience,
    });
    let json = serde_json::to_string(&Token {
        url: &url,
        method: "POST",
        headers,
    })
    .map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot encode the AWS subject token: {e}"),
        )
    })?;
    Ok(Secret::new(url_encode(&json)))
}

/// The caller's ARN from STS `GetCallerIdentity`, or `None` if AWS does not
/// answer; only for error hints (a member to bind).
pub(crate) async fn caller_arn(aws: &crate::aws::AwsContext) -> Option<String> {
    caller(aws).await.ok()
}

/// The caller's ARN from STS `GetCallerIdentity`, or why AWS refused: the
/// same call Google STS replays to verify an AWS subject token.
pub(crate) async fn caller(aws: &crate::aws::AwsContext) -> Result<String> {
    use aws_sdk_sts::error::ProvideErrorMetadata;
    const WHAT: &str = "GetCallerIdentity";
    match crate::aws::sts_client(&aws.config)
        .get_caller_identity()
        .send()
        .await
    {
        Ok(out) => out.arn.ok_or_else(|| {
            Error::new(
                ErrorCode::AwsError,
                "GetCallerIdentity answered without an ARN",
            )
        }),
        Err(e) => {
            if let Some(err) = crate::aws::sdk_transport_error(WHAT, &e) {
                return Err(err);
            }
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            let service = e.into_service_error();
            Err(crate::aws::sts_service_error(
                WHAT,
                service.code(),
                service.message(),
                status,
                "GetCallerIdentity needs no permission: an explicit Deny (an SCP or a permissions \
                 boundary) refuses it",
            ))
        }
    }
}

/// URL-encodes like Python's `urllib.parse.quote` (safe: `/`).
pub(crate) fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, QUOTE).to_string()
}

/// The headers SigV4 adds to the request.
struct Signed {
    authorization: String,
    date: String,
    security_token: Option<String>,
}

fn sign_headers(
    credentials: &Credentials,
    region: &str,
    url: &str,
    host: &str,
    audience: &str,
    now: SystemTime,
) -> Result<Signed> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot sign the AWS subject token ({what}): {e}"),
        )
    };
    // Visible ASCII and spaces only: what an HTTP header carries unchanged
    // (and all a provider resource can contain).
    if audience.is_empty() || audience.bytes().any(|b| !(b' '..=b'~').contains(&b)) {
        return Err(Error::invalid(format!(
            "audience `{}` cannot be sent in an HTTP header",
            audience.escape_debug()
        )));
    }
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| internal("parameters", &e))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        [("host", host), (TARGET_RESOURCE_HEADER, audience)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| internal("request", &e))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| internal("signature", &e))?
        .into_parts();
    let mut authorization = None;
    let mut date = None;
    let mut security_token = None;
    for (name, value) in instructions.headers() {
        match name.to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(value.to_owned()),
            "x-amz-date" => date = Some(value.to_owned()),
            "x-amz-security-token" => security_token = Some(value.to_owned()),
            _ => {}
        }
    }
    match (authorization, date) {
        (Some(authorization), Some(date)) => Ok(Signed {
            authorization,
            date,
            security_token,
        }),
        _ => Err(internal(
            "headers",
            &"the signer produced no Authorization or x-amz-date",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, UNIX_EPOCH};

    const VECTOR: &str = "aws4_request_google_reference.json";

    /// The shared copy when present (CI keeps shared/ beside the clone), else
    /// the copy committed with the tests.
    fn vector_path() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shared = root.join("../shared/test-vectors").join(VECTOR);
        if shared.is_file() {
            shared
        } else {
            root.join("tests/vectors").join(VECTOR)
        }
    }

    fn vector() -> Value {
        let p = vector_path();
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
        let mut cur = v;
        for k in path {
            cur = &cur[*k];
        }
        cur.as_str()
            .unwrap_or_else(|| panic!("vector has no string at {path:?}"))
    }

    fn frozen(v: &Value) -> SystemTime {
        let t = time::OffsetDateTime::parse(
            s(v, &["inputs", "time"]),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(t.unix_timestamp()).unwrap_or_else(|e| panic!("{e}")),
            )
    }

    fn creds(v: &Value, with_session: bool) -> Credentials {
        Credentials::new(
            s(v, &["inputs", "access_key_id"]),
            s(v, &["inputs", "secret_access_key"]),
            with_session.then(|| s(v, &["inputs", "session_token"]).to_owned()),
            None,
            "test",
        )
    }

    fn decode(token: &Secret) -> Value {
        let json = percent_encoding::percent_decode_str(token.expose())
            .decode_utf8()
            .unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn header<'a>(token: &'a Value, key: &str) -> Option<&'a str> {
        token["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("no headers"))
            .iter()
            .find(|h| h["key"] == key)
            .and_then(|h| h["value"].as_str())
    }

    #[test]
    fn golden_vector_authorization_matches_exactly() {
        let v = vector();
        let token = subject_token(
            &creds(&v, true),
            s(&v, &["inputs", "region"]),
            s(&v, &["inputs", "audience"]),
            frozen(&v),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = decode(&token);
        assert_eq!(
            header(&t, "Authorization"),
            Some(s(&v, &["signed_target_resource", "authorization"]))
        );
        assert_eq!(
            header(&t, "x-amz-date"),
            Some(s(&v, &["signed_target_resource", "x-amz-date"]))
        );
        assert_eq!(
            header(&t, "x-amz-security-token"),
            Some(s(&v, &["inputs", "session_token"]))
        );
        assert_eq!(header(&t, "host"), Some("sts.us-east-2.amazonaws.com"));
        assert_eq!(
            header(&t, TARGET_RESOURCE_HEADER),
            Some(s(&v, &["inputs", "audience"]))
        );
        assert_eq!(t["url"], s(&v, &["verification_url"]));
        assert_eq!(t["method"], "POST");
    }

    #[test]
    fn decoded_shape_is_url_method_and_ordered_key_value_headers() {
        let v = vector();
        let token = subject_token(
            &creds(&v, true),
            "us-east-2",
            s(&v, &["inputs", "audience"]),
            frozen(&v),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = decode(&token);
        let obj = t.as_object().unwrap_or_else(|| panic!("not an object"));
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["headers", "method", "url"]);
        let names: Vec<&str> = t["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("no headers"))
            .iter()
            .map(|h| {
                let o = h
                    .as_object()
                    .unwrap_or_else(|| panic!("header not an object"));
                assert_eq!(o.len(), 2);
                assert!(h["value"].is_string());
                h["key"].as_str().unwrap_or_default()
            })
            .collect();
        assert_eq!(
            names,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                TARGET_RESOURCE_HEADER
            ]
        );
        // Encoded: no raw JSON punctuation survives, `/` does.
        for c in ['{', '"', ':', ',', ' ', '+', '=', '&', '?'] {
            assert!(!token.expose().contains(c), "{c} left unencoded");
        }
        assert!(token.expose().contains("//iam.googleapis.com/projects/"));
    }

    #[test]
    fn without_a_session_token_nothing_mentions_one() {
        let v = vector();
        let token = subject_token(
            &creds(&v, false),
            "us-east-2",
            s(&v, &["inputs", "audience"]),
            frozen(&v),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = decode(&token);
        assert_eq!(header(&t, "x-amz-security-token"), None);
        let auth = header(&t, "Authorization").unwrap_or_default();
        assert!(
            auth.contains("SignedHeaders=host;x-amz-date;x-goog-cloud-target-resource,"),
            "{auth}"
        );
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-2/sts/aws4_request, "
        ));
    }

    #[test]
    fn encoding_matches_python_quote_on_the_reference_token() {
        // serde_json (without preserve_order) sorts keys like json.dumps(sort_keys=True).
        let v = vector();
        let compact = serde_json::to_string(&v["google_auth_python_token_decoded"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url_encode(&compact), s(&v, &["google_auth_python_token"]));
    }

    #[test]
    fn committed_vector_copy_matches_the_shared_one_when_both_exist() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let committed = root.join("tests/vectors").join(VECTOR);
        let shared = root.join("../shared/test-vectors").join(VECTOR);
        assert!(committed.is_file(), "{} is missing", committed.display());
        if shared.is_file() {
            let a: Value = serde_json::from_slice(&std::fs::read(&committed).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
            let b: Value = serde_json::from_slice(&std::fs::read(&shared).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_region_that_is_not_a_region_is_refused() {
        let v = vector();
        let e = subject_token(&creds(&v, true), "evil.com/x", "aud", frozen(&v)).err();
        assert_eq!(e.map(|e| e.code()), Some(ErrorCode::InvalidArgument));
    }

    #[test]
    fn audience_with_control_or_non_ascii_characters_is_refused() {
        let v = vector();
        for bad in ["aud\r\nx: y", "", "aud\u{7f}", "\u{11ab0}", "caf\u{e9}"] {
            let e = subject_token(&creds(&v, true), "us-east-2", bad, frozen(&v)).err();
            assert_eq!(
                e.map(|e| e.code()),
                Some(ErrorCode::InvalidArgument),
                "{bad:?}"
            );
        }
    }
}
