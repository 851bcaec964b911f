//! Validation of `urn:ietf:params:aws:token-type:aws4_request` subject tokens:
//! a URL-encoded JSON serialization of a SigV4-signed `GetCallerIdentity`
//! request, which Google replays to AWS. The emulator checks what Google
//! checks (URL, target-resource header) and what AWS would check on replay
//! (signature, scope region, age, credentials) with the shared verifier.

use super::{OAuthError, Provider, invalid_grant, invalid_request, without_https};
use crate::principal::Principal;
use crate::sigv4::{self, SignedRequest};
use crate::state::Shared;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct SerializedRequest {
    url: String,
    method: String,
    headers: Vec<HeaderEntry>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    key: String,
    value: String,
}

/// The parts of a `https://sts.<region>.amazonaws.com[/]?<query>` URL.
struct StsUrl<'a> {
    host: &'a str,
    region: &'a str,
    path: &'a str,
    query: &'a str,
}

fn parse_sts_url(url: &str) -> Result<StsUrl<'_>, OAuthError> {
    let bad = || {
        invalid_grant(format!(
            "The AWS subject token URL {url:?} is not a regional AWS STS GetCallerIdentity URL (https://sts.<region>.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15)."
        ))
    };
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let (authority, path_and_query) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if !(path.is_empty() || path == "/") {
        return Err(bad());
    }
    let region = authority
        .strip_prefix("sts.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
        .filter(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .ok_or_else(bad)?;
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if params.get("Action").map(String::as_str) != Some("GetCallerIdentity")
        || params.get("Version").map(String::as_str) != Some("2011-06-15")
    {
        return Err(bad());
    }
    Ok(StsUrl {
        host: authority,
        region,
        path,
        query,
    })
}

/// Decodes the subject token: URL-encoded JSON (`%20` or `+` for spaces), or raw JSON.
fn decode(token: &str) -> Result<SerializedRequest, OAuthError> {
    let json = if token.trim_start().starts_with('{') {
        token.to_string()
    } else {
        let plus_decoded = token.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_decoded)
            .decode_utf8()
            .map_err(|_| invalid_request("The AWS subject token is not valid URL-encoded UTF-8."))?
            .into_owned()
    };
    serde_json::from_str(&json).map_err(|e| {
        invalid_request(format!(
            "The AWS subject token is not a serialized request (url, method, headers): {e}"
        ))
    })
}

/// Validates the token for `provider`; returns the caller AWS principal.
pub(crate) fn verify(
    app: &Shared,
    provider: &Provider<'_>,
    token: &str,
) -> Result<Principal, OAuthError> {
    let req = decode(token)?;
    let url = parse_sts_url(&req.url)?;
    if req.method != "POST" {
        return Err(invalid_grant(format!(
            "The AWS subject token method must be POST, got {:?}.",
            req.method
        )));
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for h in &req.headers {
        let name = h.key.to_ascii_lowercase();
        match headers.get(&name) {
            Some(existing) if *existing != h.value => {
                return Err(invalid_request(format!(
                    "The AWS subject token has conflicting values for header {name}."
                )));
            }
            Some(_) => {}
            None => {
                headers.insert(name, h.value.clone());
            }
        }
    }
    for required in [
        "authorization",
        "host",
        "x-amz-date",
        "x-goog-cloud-target-resource",
    ] {
        if !headers.contains_key(required) {
            return Err(invalid_grant(format!(
                "The AWS subject token is missing the {required} header."
            )));
        }
    }
    if headers.get("host").map(String::as_str) != Some(url.host) {
        return Err(invalid_grant(
            "The AWS subject token host header does not match its URL.",
        ));
    }
    let target = headers
        .get("x-goog-cloud-target-resource")
        .map(String::as_str)
        .unwrap_or("");
    if without_https(target) != provider.name {
        return Err(invalid_grant(format!(
            "The x-goog-cloud-target-resource header {target:?} does not match the audience {:?}.",
            provider.name
        )));
    }
    let signed = SignedRequest {
        method: &req.method,
        path: url.path,
        query: url.query,
        headers: headers.into_iter().collect(),
        body: req.body.as_deref().unwrap_or("").as_bytes(),
    };
    let key = sigv4::verify(&signed, url.region, "sts", app.now(), |id| app.key_info(id)).map_err(
        |e| {
            invalid_grant(format!(
                "Received invalid AWS response of type {} with error message: {}",
                e.code, e.message
            ))
        },
    )?;
    let expected = provider.config.account_id.as_deref().unwrap_or("");
    if key.principal.account() != expected {
        return Err(invalid_grant(format!(
            "The AWS account {} of the caller is not the account {expected} trusted by the provider.",
            key.principal.account()
        )));
    }
    Ok(key.principal)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sts_urls() {
        let u = parse_sts_url(
            "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        )
        .unwrap();
        assert_eq!(
            (u.host, u.region, u.path),
            ("sts.us-east-2.amazonaws.com", "us-east-2", "")
        );
        assert!(
            parse_sts_url(
                "https://sts.eu-west-1.amazonaws.com/?Version=2011-06-15&Action=GetCallerIdentity"
            )
            .is_ok()
        );
        for bad in [
            "https://sts.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "http://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "https://sts.us-east-2.amazonaws.com?Action=AssumeRole&Version=2011-06-15",
            "https://evil.example/sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "https://sts.us-east-2.amazonaws.com.evil?Action=GetCallerIdentity&Version=2011-06-15",
        ] {
            assert!(parse_sts_url(bad).is_err(), "{bad}");
        }
    }
}
