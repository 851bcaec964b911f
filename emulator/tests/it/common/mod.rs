//! Helpers shared by the integration tests: SDK clients pointed at the
//! emulator, plain HTTP helpers, independent JWT verification (jsonwebtoken)
//! and a SigV4-signed `aws4_request` subject token builder (aws-sigv4).

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Value, json};
use std::time::SystemTime;
use wif_emulator::Emulator;

pub const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// An STS client for the emulator with the given credentials and region (no retries).
pub fn sts_client(
    emu: &Emulator,
    creds: (&str, &str, Option<&str>),
    region: &str,
) -> aws_sdk_sts::Client {
    let creds = Credentials::new(creds.0, creds.1, creds.2.map(String::from), None, "test");
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(emu.url())
        .credentials_provider(creds)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// An STS client using the built-in IAM user's static keys.
pub fn user_client(emu: &Emulator) -> aws_sdk_sts::Client {
    let (id, secret) = emu.static_credentials();
    sts_client(emu, (&id, &secret, None), "us-east-1")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// GetWebIdentityToken through the SDK; returns the JWT.
pub async fn web_identity_jwt(
    client: &aws_sdk_sts::Client,
    audience: &str,
    duration: Option<i32>,
) -> String {
    let out = client
        .get_web_identity_token()
        .audience(audience)
        .signing_algorithm("RS256")
        .set_duration_seconds(duration)
        .send()
        .await
        .expect("GetWebIdentityToken");
    out.web_identity_token().expect("token").to_string()
}

/// POSTs a token exchange to the emulated Google STS; returns (status, JSON).
pub async fn google_sts(
    emu: &Emulator,
    audience: &str,
    token_type: &str,
    token: &str,
) -> (u16, Value) {
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", audience),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token_type", token_type),
        ("subject_token", token),
    ];
    let resp = http()
        .post(emu.token_url())
        .form(&form)
        .send()
        .await
        .expect("sts request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("sts json"))
}

/// Exchanges and returns the federated access token (panics unless 200).
pub async fn federated_token(
    emu: &Emulator,
    audience: &str,
    token_type: &str,
    token: &str,
) -> String {
    let (status, body) = google_sts(emu, audience, token_type, token).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// Calls IAM Credentials `method` for `email`; returns (status, JSON).
pub async fn iam_call(
    emu: &Emulator,
    bearer: &str,
    email: &str,
    method: &str,
    body: Value,
) -> (u16, Value) {
    let url = format!(
        "{}/google/iamcredentials/v1/projects/-/serviceAccounts/{email}:{method}",
        emu.url()
    );
    let resp = http()
        .post(url)
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .expect("iam request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("iam json"))
}

/// Verifies an RS256 JWT against the JWKS at `jwks_url` with jsonwebtoken
/// (an implementation independent of the emulator's); returns the claims.
pub async fn verify_with_jwks(jwks_url: &str, token: &str, audience: &str, issuer: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(jwks_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("valid JWT")
        .claims
}

/// A URL-encoded `aws4_request` subject token signed with aws-sigv4 (the
/// target-resource header signed, as the Go/Java/Rust libraries do).
pub fn aws_subject_token(
    creds: (&str, &str, Option<&str>),
    region: &str,
    audience: &str,
    time: SystemTime,
) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let host = format!("sts.{region}.amazonaws.com");
    let url = format!("https://{host}?Action=GetCallerIdentity&Version=2011-06-15");
    let identity =
        Credentials::new(creds.0, creds.1, creds.2.map(String::from), None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let headers = [
        ("host", host.as_str()),
        ("x-goog-cloud-target-resource", audience),
    ];
    let request = SignableRequest::new(
        "POST",
        url.clone(),
        headers.into_iter(),
        SignableBody::Bytes(b""),
    )
    .expect("signable");
    let (instructions, _) = sign(request, &params).expect("sign").into_parts();
    let mut list: Vec<Value> = headers
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    for (k, v) in instructions.headers() {
        list.push(json!({"key": k, "value": v}));
    }
    let doc = json!({"url": url, "method": "POST", "headers": list, "body": ""});
    form_urlencoded::byte_serialize(doc.to_string().as_bytes()).collect()
}

/// Fetches fresh instance-role credentials from the emulated IMDS.
pub async fn imds_credentials(emu: &Emulator) -> (String, String, String) {
    let token = http()
        .put(format!("{}/latest/api/token", emu.url()))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let creds: Value = http()
        .get(format!(
            "{}/latest/meta-data/iam/security-credentials/wif-workload",
            emu.url()
        ))
        .header("x-aws-ec2-metadata-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = |k: &str| creds[k].as_str().unwrap().to_string();
    (s("AccessKeyId"), s("SecretAccessKey"), s("Token"))
}

/// base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Replaces the header of a JWT, keeping payload and signature.
pub fn with_header(token: &str, header: Value) -> String {
    let mut parts = token.splitn(3, '.');
    let (_, payload, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    format!("{}.{payload}.{sig}", b64url(header.to_string().as_bytes()))
}
