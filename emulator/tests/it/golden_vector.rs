//! Golden vector: subject tokens produced by Google's own google-auth Python
//! library (target header unsigned) and by botocore (target header signed)
//! for fixed inputs are accepted; any change to them is rejected.

use crate::common::*;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wif_emulator::config::{PoolConfig, ProviderConfig, StaticCredential};
use wif_emulator::{Emulator, EmulatorConfig, ProviderType};

const VECTOR: &str = include_str!("vectors/aws4_request_google_reference.json");

struct Vector {
    doc: Value,
    audience: String,
    time: OffsetDateTime,
}

fn vector() -> Vector {
    let doc: Value = serde_json::from_str(VECTOR).unwrap();
    let audience = doc["inputs"]["audience"].as_str().unwrap().to_string();
    let time = OffsetDateTime::parse(doc["inputs"]["time"].as_str().unwrap(), &Rfc3339).unwrap();
    Vector {
        doc,
        audience,
        time,
    }
}

/// An emulator that knows the vector's credentials and provider, clock at the vector time + 30 s.
fn emulator(v: &Vector) -> Emulator {
    let inputs = &v.doc["inputs"];
    let s = |k: &str| inputs[k].as_str().unwrap().to_string();
    let mut config = EmulatorConfig::default();
    config.aws.static_credentials.push(StaticCredential {
        access_key_id: s("access_key_id"),
        secret_access_key: s("secret_access_key"),
        session_token: Some(s("session_token")),
        principal: "arn:aws:sts::111122223333:assumed-role/wif-workload/golden".into(),
        expiration: None,
    });
    config.google.pools.push(PoolConfig {
        id: "aws-to-gcp-pool".into(),
        providers: vec![ProviderConfig {
            id: "aws-to-gcp-provider".into(),
            provider_type: ProviderType::Aws,
            account_id: Some("111122223333".into()),
            ..ProviderConfig::default()
        }],
    });
    let emu = Emulator::start(config).unwrap();
    emu.set_clock(Some(v.time + time::Duration::seconds(30)));
    emu
}

/// The decoded JSON request of the Python token.
fn decoded(v: &Vector) -> Value {
    v.doc["google_auth_python_token_decoded"].clone()
}

/// Re-encodes a request document as a subject token (form encoding, `+` for spaces).
fn encode(doc: &Value) -> String {
    form_urlencoded::byte_serialize(doc.to_string().as_bytes()).collect()
}

fn set_header(doc: &mut Value, name: &str, value: &str) {
    for h in doc["headers"].as_array_mut().unwrap() {
        if h["key"].as_str().unwrap().eq_ignore_ascii_case(name) {
            h["value"] = Value::String(value.into());
        }
    }
}

/// Changes one hex digit of the signature in an Authorization value.
fn flip_signature_byte(authorization: &str) -> String {
    let i = authorization.find("Signature=").unwrap() + "Signature=".len();
    let mut bytes = authorization.as_bytes().to_vec();
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

fn signed_target_doc(v: &Vector) -> Value {
    let mut doc = decoded(v);
    let auth = v.doc["signed_target_resource"]["authorization"]
        .as_str()
        .unwrap();
    set_header(&mut doc, "Authorization", auth);
    doc
}

#[tokio::test]
async fn accepts_google_auth_python_token_and_rejects_one_changed_byte() {
    let v = vector();
    let emu = emulator(&v);
    let token = v.doc["google_auth_python_token"].as_str().unwrap();
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );

    // Flip one hex digit of the signature inside the URL-encoded token itself.
    let i = token.find("Signature%3D").unwrap() + "Signature%3D".len();
    let mut bad = token.as_bytes().to_vec();
    bad[i] = if bad[i] == b'9' { b'8' } else { b'9' };
    let bad = String::from_utf8(bad).unwrap();
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch"),
        "{body}"
    );
}

#[tokio::test]
async fn accepts_signed_target_resource_and_rejects_one_changed_byte() {
    let v = vector();
    let emu = emulator(&v);
    let doc = signed_target_doc(&v);
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, &encode(&doc)).await;
    assert_eq!(status, 200, "{body}");

    let mut bad = doc.clone();
    let auth = v.doc["signed_target_resource"]["authorization"]
        .as_str()
        .unwrap();
    set_header(&mut bad, "Authorization", &flip_signature_byte(auth));
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, &encode(&bad)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // With the target header signed, even an equivalent spelling of it (with
    // the `https:` prefix, which the audience check accepts) breaks the signature.
    let mut other = doc.clone();
    set_header(
        &mut other,
        "x-goog-cloud-target-resource",
        &format!("https:{}", v.audience),
    );
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, &encode(&other)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch"),
        "{body}"
    );
}

#[tokio::test]
async fn raw_json_and_duplicate_headers_are_accepted() {
    let v = vector();
    let emu = emulator(&v);
    let mut doc = decoded(&v);
    // Java lists the target header twice; header names may be in any case.
    let target = serde_json::json!({"key": "X-Goog-Cloud-Target-Resource", "value": v.audience});
    doc["headers"].as_array_mut().unwrap().push(target);
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, &encode(&doc)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = google_sts(
        &emu,
        &format!("https:{}", v.audience),
        AWS_TYPE,
        &doc.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn rejects_wrong_audience_global_endpoint_and_stale_date() {
    let v = vector();
    let emu = emulator(&v);
    let token = v.doc["google_auth_python_token"].as_str().unwrap();

    // The token targets the vector's provider, not the built-in AWS provider.
    let (status, body) = google_sts(&emu, &emu.aws_audience(), AWS_TYPE, token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("x-goog-cloud-target-resource")
    );
    // An audience naming no provider.
    let unknown = v.audience.replace("aws-to-gcp-provider", "nope");
    let (status, body) = google_sts(&emu, &unknown, AWS_TYPE, token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );

    // The global endpoint is refused.
    let mut doc = decoded(&v);
    doc["url"] = Value::String(
        "https://sts.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15".into(),
    );
    set_header(&mut doc, "host", "sts.amazonaws.com");
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, &encode(&doc)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("regional"),
        "{body}"
    );

    // 16 minutes after signing the request is stale.
    emu.set_clock(Some(v.time + time::Duration::minutes(16)));
    let (status, body) = google_sts(&emu, &v.audience, AWS_TYPE, token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Signature expired"),
        "{body}"
    );

    // The JWT token type is not accepted for an AWS provider.
    emu.set_clock(Some(v.time));
    let (status, body) = google_sts(&emu, &v.audience, JWT_TYPE, token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}
