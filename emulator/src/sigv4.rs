//! AWS Signature Version 4 verification, written once and used both for STS
//! calls received over HTTP and for the signed `GetCallerIdentity` requests
//! embedded in Google `aws4_request` subject tokens.
//!
//! The canonical request is rebuilt from what was received (method, path,
//! query, the headers named in `SignedHeaders`, SHA-256 of the body); the
//! signing key and HMAC come from `aws_sigv4::sign::v4`.

use crate::principal::Principal;
use crate::util::{amz_date, parse_amz_date, parse_scope_date};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// Maximum clock difference between `x-amz-date` and the emulator clock.
pub(crate) const MAX_SKEW: Duration = Duration::minutes(15);

/// A request as received: raw (still percent-encoded) path and query.
pub(crate) struct SignedRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    /// Header (name, value) pairs; names are compared case-insensitively.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: &'a [u8],
}

/// What the verifier knows about an access key.
#[derive(Clone, Debug)]
pub(crate) struct KeyInfo {
    pub(crate) secret: String,
    pub(crate) session_token: Option<String>,
    pub(crate) expiration: Option<OffsetDateTime>,
    pub(crate) principal: Principal,
}

/// A verification failure, with the AWS error code, message and HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SigV4Error {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn err(status: u16, code: &'static str, message: impl Into<String>) -> SigV4Error {
    SigV4Error {
        status,
        code,
        message: message.into(),
    }
}

fn mismatch(message: impl Into<String>) -> SigV4Error {
    err(403, "SignatureDoesNotMatch", message)
}

const BAD_SIGNATURE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let incomplete = |m: String| err(400, "IncompleteSignature", m);
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            incomplete(format!(
                "Unsupported AWS 'algorithm' in Authorization header: {:?}",
                value.split(' ').next().unwrap_or("")
            ))
        })?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header"
            )));
        };
        fields.insert(k.trim(), v.trim());
    }
    let mut missing = Vec::new();
    for name in ["Credential", "SignedHeaders", "Signature"] {
        if !fields.contains_key(name) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(missing.join(" ")));
    }
    let credential = fields.get("Credential").copied().unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers: fields
            .get("SignedHeaders")
            .copied()
            .unwrap_or_default()
            .split(';')
            .collect(),
        signature: fields.get("Signature").copied().unwrap_or_default(),
    })
}

/// Collects header values by lowercase name (values of repeated headers joined by ',').
fn header_map(headers: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        map.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.clone());
    }
    map
}

fn canonical_header_value(values: &[String]) -> String {
    values
        .iter()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 3986 encoding with AWS's unreserved set (`A-Z a-z 0-9 - _ . ~`).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Canonical URI for non-S3 services: dot segments removed, then each
/// segment encoded again (AWS double-encodes the already encoded path).
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.len() > 1 && path.ends_with('/') && !segments.is_empty();
    let mut out = format!(
        "/{}",
        segments
            .iter()
            .map(|s| uri_encode(s, false))
            .collect::<Vec<_>>()
            .join("/")
    );
    if trailing {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Verifies `req`, signed for `service` in `region`, at time `now`.
/// `lookup` returns what is known about an access key id.
pub(crate) fn verify(
    req: &SignedRequest<'_>,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    lookup: impl Fn(&str) -> Option<KeyInfo>,
) -> Result<KeyInfo, SigV4Error> {
    let headers = header_map(&req.headers);
    let one = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    };
    let Some(auth_value) = one("authorization") else {
        return Err(err(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
    };
    let auth = parse_authorization(auth_value)?;
    let Some(date_value) = one("x-amz-date") else {
        return Err(err(
            400,
            "IncompleteSignature",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let Some(request_time) = parse_amz_date(date_value) else {
        return Err(err(
            400,
            "IncompleteSignature",
            format!(
                "Date must be in ISO-8601 'basic format'. Got '{date_value}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ),
        ));
    };

    let key = lookup(auth.access_key_id)
        .ok_or_else(|| err(403, "InvalidClientTokenId", INVALID_TOKEN))?;
    if one("x-amz-security-token") != key.session_token.as_deref() {
        return Err(err(403, "InvalidClientTokenId", INVALID_TOKEN));
    }
    if key.expiration.is_some_and(|exp| exp <= now) {
        return Err(err(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        ));
    }

    if auth.service != service {
        return Err(mismatch(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if auth.region != region {
        return Err(mismatch(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(mismatch(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
            auth.terminator
        )));
    }
    let Some(scope_date) = parse_scope_date(auth.date) else {
        return Err(mismatch(format!(
            "Invalid credential date \"{}\". Date is not the same as X-Amz-Date: \"{date_value}\".",
            auth.date
        )));
    };
    if !date_value.starts_with(auth.date) {
        return Err(mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{date_value}'.",
            auth.date,
            &date_value[..8.min(date_value.len())]
        )));
    }
    if request_time < now - MAX_SKEW {
        return Err(mismatch(format!(
            "Signature expired: {date_value} is now earlier than {} ({} - 15 min.)",
            amz_date(now - MAX_SKEW),
            amz_date(now)
        )));
    }
    if request_time > now + MAX_SKEW {
        return Err(mismatch(format!(
            "Signature not yet current: {date_value} is still later than {} ({} + 15 min.)",
            amz_date(now + MAX_SKEW),
            amz_date(now)
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(mismatch(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }

    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let Some(values) = headers.get(*name) else {
            return Err(mismatch(BAD_SIGNATURE));
        };
        canonical_headers.push_str(&format!("{name}:{}\n", canonical_header_value(values)));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        hex::encode(Sha256::digest(req.body)),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_value}\n{}/{}/{}/aws4_request\n{}",
        auth.date,
        auth.region,
        auth.service,
        hex::encode(Sha256::digest(canonical_request.as_bytes())),
    );
    let signing_key = aws_sigv4::sign::v4::generate_signing_key(
        &key.secret,
        scope_date.into(),
        auth.region,
        auth.service,
    );
    let expected = aws_sigv4::sign::v4::calculate_signature(signing_key, string_to_sign.as_bytes());
    verify_slices_are_equal(expected.as_bytes(), auth.signature.as_bytes())
        .map_err(|_| mismatch(BAD_SIGNATURE))?;
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_parts() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("x=a%2Fb~"), "x=a%2Fb~");
        assert_eq!(canonical_header_value(&["  a   b ".into()]), "a b");
    }

    #[test]
    fn authorization_parsing() {
        let a = parse_authorization("AWS4-HMAC-SHA256 Credential=AK/20260102/us-east-2/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab").unwrap();
        assert_eq!(
            (a.access_key_id, a.region, a.signature),
            ("AK", "us-east-2", "ab")
        );
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=AK/x")
                .err()
                .map(|e| e.code),
            Some("IncompleteSignature")
        );
        assert!(parse_authorization("Basic abc").is_err());
    }
}
