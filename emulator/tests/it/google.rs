//! The emulated Google side: STS exchange of AWS outbound JWTs and of
//! SigV4-signed requests, and IAM Credentials impersonation.

use crate::common::*;
use serde_json::{Value, json};
use std::time::SystemTime;
use time::OffsetDateTime;
use wif_emulator::{Emulator, EmulatorConfig};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

async fn outbound_jwt(emu: &Emulator, audience: &str, duration: Option<i32>) -> String {
    web_identity_jwt(&user_client(emu), audience, duration).await
}

fn assert_invalid_grant(status: u16, body: &Value, needle: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let description = body["error_description"].as_str().unwrap_or("");
    assert!(description.contains(needle), "{needle:?} not in {body}");
}

#[tokio::test]
async fn jwt_exchange_then_access_and_id_tokens() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let jwt = outbound_jwt(&emu, &emu.oidc_audience(), None).await;
    let sts = federated_token(&emu, &emu.oidc_audience(), JWT_TYPE, &jwt).await;
    assert!(emu.issued_secrets().contains(&sts));
    // The `https:` form of the audience is accepted in `aud` as well.
    let jwt2 = outbound_jwt(&emu, &format!("https:{}", emu.oidc_audience()), None).await;
    federated_token(
        &emu,
        &emu.oidc_audience(),
        "urn:ietf:params:oauth:token-type:id_token",
        &jwt2,
    )
    .await;

    let sa = emu.service_account();
    let (status, body) = iam_call(
        &emu,
        &sts,
        &sa,
        "generateAccessToken",
        json!({"scope": [CLOUD_PLATFORM]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["accessToken"].as_str().unwrap().starts_with("ya29."));
    let expire = body["expireTime"].as_str().unwrap();
    assert_eq!(expire.len(), 20, "no fractional seconds: {expire}");
    assert!(expire.ends_with('Z') && !expire.contains('.'));

    let (status, body) = iam_call(
        &emu,
        &sts,
        &sa,
        "generateIdToken",
        json!({"audience": "https://svc.example", "includeEmail": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let certs = format!("{}/google/oauth2/v3/certs", emu.url());
    let claims = verify_with_jwks(
        &certs,
        body["token"].as_str().unwrap(),
        "https://svc.example",
        "https://accounts.google.com",
    )
    .await;
    assert_eq!(claims["email"], sa);
    assert_eq!(claims["email_verified"], true);
    assert!(
        claims["sub"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit())
    );
    assert_eq!(claims["azp"], claims["sub"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    let (_, body) = iam_call(&emu, &sts, &sa, "generateIdToken", json!({"audience": "a"})).await;
    let payload = body["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: Value = serde_json::from_slice(&base64_decode(&payload)).unwrap();
    assert!(claims.get("email").is_none());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn jwt_rejections() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let aud = emu.oidc_audience();
    let good = outbound_jwt(&emu, &aud, Some(60)).await;

    let wrong_aud = outbound_jwt(&emu, "https://not-the-provider", None).await;
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &wrong_aud).await;
    assert_invalid_grant(s, &b, "audience");

    let unknown_kid = with_header(
        &good,
        json!({"alg": "RS256", "kid": "no-such-kid", "typ": "JWT"}),
    );
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &unknown_kid).await;
    assert_invalid_grant(s, &b, "no-such-kid");

    let payload = good.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &none).await;
    assert_invalid_grant(s, &b, "RS256");

    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let hs_header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
    let claims: Value = serde_json::from_slice(&base64_decode(payload)).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = hs_header["kid"].as_str().map(String::from);
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &hs256).await;
    assert_invalid_grant(s, &b, "RS256");

    let mut tampered = good.clone();
    let sig_start = tampered.rfind('.').unwrap() + 1;
    tampered.replace_range(
        sig_start..sig_start + 1,
        if &good[sig_start..=sig_start] == "A" {
            "B"
        } else {
            "A"
        },
    );
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &tampered).await;
    assert_invalid_grant(s, &b, "signature");

    // Expired (DurationSeconds 60, two minutes later) and issued in the future.
    emu.set_clock(Some(OffsetDateTime::now_utc() + time::Duration::minutes(2)));
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &good).await;
    assert_invalid_grant(s, &b, "expired");
    emu.set_clock(Some(OffsetDateTime::now_utc() - time::Duration::minutes(5)));
    let (s, b) = google_sts(&emu, &aud, JWT_TYPE, &good).await;
    assert_invalid_grant(s, &b, "future");
    emu.set_clock(None);

    // Untouched tokens are accepted; the AWS token type is refused for an OIDC provider.
    let good = outbound_jwt(&emu, &aud, None).await;
    federated_token(&emu, &aud, JWT_TYPE, &good).await;
    let (s, b) = google_sts(&emu, &aud, AWS_TYPE, &good).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
}

#[tokio::test]
async fn aws_provider_exchange_with_imds_credentials() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let (id, secret, token) = imds_credentials(&emu).await;
    let aud = emu.aws_audience();
    let subject = aws_subject_token(
        (&id, &secret, Some(&token)),
        "us-east-2",
        &aud,
        SystemTime::now(),
    );
    let sts = federated_token(&emu, &aud, AWS_TYPE, &subject).await;
    let (status, body) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        json!({"scope": [CLOUD_PLATFORM]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A provider for another AWS account refuses the same caller.
    let mut config = EmulatorConfig::default();
    config.google.pools[0].providers[1].account_id = Some("999999999999".into());
    let other = Emulator::start(config).unwrap();
    let (id, secret, token) = imds_credentials(&other).await;
    let subject = aws_subject_token(
        (&id, &secret, Some(&token)),
        "us-east-2",
        &aud,
        SystemTime::now(),
    );
    let (s, b) = google_sts(&other, &aud, AWS_TYPE, &subject).await;
    assert_invalid_grant(s, &b, "999999999999");
    // Credentials unknown to the emulator are refused like AWS would.
    let subject = aws_subject_token(
        ("ASIANOTISSUED0000000", "x", Some("y")),
        "us-east-2",
        &aud,
        SystemTime::now(),
    );
    let (s, b) = google_sts(&emu, &aud, AWS_TYPE, &subject).await;
    assert_invalid_grant(s, &b, "InvalidClientTokenId");
}

#[tokio::test]
async fn iam_rejections() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let jwt = outbound_jwt(&emu, &emu.oidc_audience(), None).await;
    let sts = federated_token(&emu, &emu.oidc_audience(), JWT_TYPE, &jwt).await;
    let scope = json!({"scope": [CLOUD_PLATFORM]});

    let (s, b) = iam_call(
        &emu,
        &sts,
        "unbound-sa@wif-demo.iam.gserviceaccount.com",
        "generateAccessToken",
        scope.clone(),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], 403);
    assert_eq!(b["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        b["error"]["message"],
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
    );
    let (s, b) = iam_call(
        &emu,
        &sts,
        "unbound-sa@wif-demo.iam.gserviceaccount.com",
        "generateIdToken",
        json!({"audience": "a"}),
    )
    .await;
    assert_eq!(s, 403);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("iam.serviceAccounts.getOpenIdToken")
    );

    for bearer in ["not-a-token", &format!("{sts}x")] {
        let (s, b) = iam_call(
            &emu,
            bearer,
            &emu.service_account(),
            "generateAccessToken",
            scope.clone(),
        )
        .await;
        assert_eq!(
            (s, b["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{b}"
        );
    }
    // A token minted by generateAccessToken is not an STS token.
    let (_, b) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        scope.clone(),
    )
    .await;
    let sa_token = b["accessToken"].as_str().unwrap();
    let (s, _) = iam_call(
        &emu,
        sa_token,
        &emu.service_account(),
        "generateAccessToken",
        scope.clone(),
    )
    .await;
    assert_eq!(s, 401);

    let (s, b) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        json!({"scope": [CLOUD_PLATFORM], "lifetime": "7200s"}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{b}"
    );
    let (s, _) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        json!({"lifetime": "600s"}),
    )
    .await;
    assert_eq!(s, 400, "scope is required");
    let (s, _) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateIdToken",
        json!({"includeEmail": true}),
    )
    .await;
    assert_eq!(s, 400, "audience is required");

    // Expired federated token.
    emu.set_clock(Some(OffsetDateTime::now_utc() + time::Duration::hours(2)));
    let (s, _) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        scope,
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn lifetime_extension_allows_12_hours() {
    let mut config = EmulatorConfig::default();
    config.google.allow_lifetime_extension = true;
    let emu = Emulator::start(config).unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    emu.set_clock(Some(now));
    let jwt = outbound_jwt(&emu, &emu.oidc_audience(), None).await;
    let sts = federated_token(&emu, &emu.oidc_audience(), JWT_TYPE, &jwt).await;
    let body = json!({"scope": [CLOUD_PLATFORM], "lifetime": "7200s", "delegates": null});
    let (s, b) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        body,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let expected = now + time::Duration::hours(2);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    assert_eq!(b["expireTime"], expected.format(&fmt).unwrap());
    let body = json!({"scope": [CLOUD_PLATFORM], "lifetime": "43201s"});
    let (s, _) = iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        body,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn sts_accepts_a_json_body_with_camel_case_names() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let jwt = outbound_jwt(&emu, &emu.oidc_audience(), None).await;
    let post = |body: Value| {
        let url = format!("{}/google/sts/v1/token", emu.url());
        async move {
            let r = http().post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(json!({
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": emu.oidc_audience(),
        "scope": CLOUD_PLATFORM,
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        "subjectToken": jwt,
        "subjectTokenType": JWT_TYPE,
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        emu.issued_secrets()
            .contains(&body["access_token"].as_str().unwrap().to_owned())
    );
    // A JSON body missing a field is refused like a form would be.
    let (status, body) =
        post(json!({"grantType": "urn:ietf:params:oauth:grant-type:token-exchange"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
}
