//! The emulated AWS STS, driven by the AWS SDK for Rust: accepted calls and
//! the rejections real STS gives.

use crate::common::*;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::operation::get_web_identity_token::GetWebIdentityTokenError;
use time::OffsetDateTime;
use wif_emulator::config::StaticCredential;
use wif_emulator::{Emulator, EmulatorConfig};

const ACCOUNT: &str = "111122223333";

#[tokio::test]
async fn sdk_signed_get_caller_identity_succeeds() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let out = user_client(&emu)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(out.arn(), Some("arn:aws:iam::111122223333:user/wif-user"));
    assert_eq!(out.account(), Some(ACCOUNT));
    assert!(out.user_id().unwrap().starts_with("AIDA"));
    assert_eq!(emu.count("sts:GetCallerIdentity"), 1);
}

#[tokio::test]
async fn get_web_identity_token_jwt_verifies_with_claims() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let client = user_client(&emu);
    let out = client
        .get_web_identity_token()
        .audience("aud-one")
        .audience("aud-two")
        .signing_algorithm("RS256")
        .duration_seconds(600)
        .send()
        .await
        .unwrap();
    let token = out.web_identity_token().unwrap();
    let jwks_url = format!("{}/.well-known/jwks.json", emu.issuer());
    let claims = verify_with_jwks(&jwks_url, token, "aud-two", &emu.issuer()).await;
    assert_eq!(claims["sub"], "arn:aws:iam::111122223333:user/wif-user");
    assert_eq!(claims["aud"], serde_json::json!(["aud-one", "aud-two"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36));
    let aws = &claims["https://sts.amazonaws.com/"];
    assert_eq!(aws["aws_account"], ACCOUNT);
    assert_eq!(aws["source_region"], "us-east-1");
    assert_eq!(
        aws["principal_id"],
        "arn:aws:iam::111122223333:user/wif-user"
    );
    let exp = out.expiration().unwrap().secs();
    assert_eq!(exp, claims["exp"].as_i64().unwrap());
    assert!(emu.issued_secrets().iter().any(|s| s == token));

    // The discovery document points at the JWKS.
    let conf: serde_json::Value = http()
        .get(format!("{}/.well-known/openid-configuration", emu.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conf["issuer"], emu.issuer());
    assert_eq!(conf["jwks_uri"], jwks_url);
}

#[tokio::test]
async fn assume_role_then_caller_identity_and_role_sub() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let out = user_client(&emu)
        .assume_role()
        .role_arn("arn:aws:iam::111122223333:role/wif-assumed")
        .role_session_name("test-session")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    assert!(c.access_key_id().starts_with("ASIA"));
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::111122223333:assumed-role/wif-assumed/test-session"
    );
    let assumed = sts_client(
        &emu,
        (
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token()),
        ),
        "us-east-1",
    );
    let who = assumed.get_caller_identity().send().await.unwrap();
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::111122223333:assumed-role/wif-assumed/test-session")
    );
    assert!(who.user_id().unwrap().ends_with(":test-session"));

    // The outbound token of a role session names the role, not the session.
    let jwt = web_identity_jwt(&assumed, "x", None).await;
    let claims = verify_with_jwks(
        &format!("{}/.well-known/jwks.json", emu.issuer()),
        &jwt,
        "x",
        &emu.issuer(),
    )
    .await;
    assert_eq!(claims["sub"], "arn:aws:iam::111122223333:role/wif-assumed");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    // A session token that is not the key's is refused.
    let wrong = sts_client(
        &emu,
        (c.access_key_id(), c.secret_access_key(), Some("bogus")),
        "us-east-1",
    );
    let err = wrong
        .get_caller_identity()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidClientTokenId"));
    // Role chaining is limited to 1 hour.
    let err = assumed
        .assume_role()
        .role_arn("arn:aws:iam::111122223333:role/wif-assumed")
        .role_session_name("chain")
        .duration_seconds(7200)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationError"));
}

#[tokio::test]
async fn assume_role_with_web_identity_accepts_emulated_eks_token() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let client = sts_client(&emu, ("unused", "unused", None), "us-east-1");
    let token = emu.web_identity_token("system:serviceaccount:default:app");
    let out = client
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::111122223333:role/wif-workload")
        .role_session_name("pod")
        .web_identity_token(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.subject_from_web_identity_token(),
        Some("system:serviceaccount:default:app")
    );
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::111122223333:assumed-role/wif-workload/pod"
    );
    let c = out.credentials().unwrap();
    let who = sts_client(
        &emu,
        (
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token()),
        ),
        "us-east-1",
    )
    .get_caller_identity()
    .send()
    .await
    .unwrap();
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::111122223333:assumed-role/wif-workload/pod")
    );

    // A GetWebIdentityToken JWT is not accepted (different issuer), nor a tampered token.
    let outbound = web_identity_jwt(&user_client(&emu), "sts.amazonaws.com", None).await;
    let mut tampered = token.clone();
    tampered.insert(tampered.rfind('.').unwrap() + 1, 'A');
    for bad in [outbound, tampered] {
        let err = client
            .assume_role_with_web_identity()
            .role_arn("arn:aws:iam::111122223333:role/wif-workload")
            .role_session_name("pod")
            .web_identity_token(bad)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_invalid_identity_token_exception(), "{err:?}");
    }
    // Expired.
    emu.set_clock(Some(OffsetDateTime::now_utc() + time::Duration::days(2)));
    let err = client
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::111122223333:role/wif-workload")
        .role_session_name("pod")
        .web_identity_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_expired_token_exception(), "{err:?}");
}

#[tokio::test]
async fn rejects_wrong_secret_unknown_key_and_wrong_region() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let (id, secret) = emu.static_credentials();
    let cases = [
        (
            id.as_str(),
            "wrong-secret",
            "us-east-1",
            "SignatureDoesNotMatch",
            "does not match",
        ),
        (
            "AKIAUNKNOWN000000000",
            "x",
            "us-east-1",
            "InvalidClientTokenId",
            "security token",
        ),
        (
            id.as_str(),
            secret.as_str(),
            "eu-west-1",
            "SignatureDoesNotMatch",
            "valid region",
        ),
    ];
    for (key, secret, region, code, message) in cases {
        let err = sts_client(&emu, (key, secret, None), region)
            .get_caller_identity()
            .send()
            .await
            .unwrap_err();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let err = err.into_service_error();
        assert_eq!(err.code(), Some(code), "{err:?}");
        assert!(err.message().unwrap_or("").contains(message), "{err:?}");
        assert_eq!(status, Some(403));
    }
}

#[tokio::test]
async fn rejects_stale_signature() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    // The SDK signs with the real time; the emulator lives 16 minutes later.
    emu.set_clock(Some(
        OffsetDateTime::now_utc() + time::Duration::minutes(16),
    ));
    let err = user_client(&emu)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    assert!(
        err.message().unwrap().starts_with("Signature expired:"),
        "{err:?}"
    );
    // 14 minutes is inside the window.
    emu.set_clock(Some(
        OffsetDateTime::now_utc() + time::Duration::minutes(14),
    ));
    user_client(&emu)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn federation_disabled_maps_to_sdk_variant() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    emu.set_outbound_federation(false);
    let err = user_client(&emu)
        .get_web_identity_token()
        .audience("a")
        .signing_algorithm("RS256")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            GetWebIdentityTokenError::OutboundWebIdentityFederationDisabledException(_)
        ),
        "{err:?}"
    );
    emu.set_outbound_federation(true);
    web_identity_jwt(&user_client(&emu), "a", None).await;
}

#[tokio::test]
async fn access_denied_and_validation_errors() {
    let mut config = EmulatorConfig::default();
    config.aws.web_identity_token_denied = vec!["arn:aws:iam::111122223333:user/wif-user".into()];
    let emu = Emulator::start(config).unwrap();
    let client = user_client(&emu);
    let err = client
        .get_web_identity_token()
        .audience("a")
        .signing_algorithm("RS256")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDenied"));
    // wif-workload is not assumable by AssumeRole.
    let err = client
        .assume_role()
        .role_arn("arn:aws:iam::111122223333:role/wif-workload")
        .role_session_name("s1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert!(err.message().unwrap().contains("sts:AssumeRole"));
    // GetWebIdentityToken parameter validation.
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let client = user_client(&emu);
    for (alg, duration) in [
        ("ES384", 300),
        ("HS256", 300),
        ("RS256", 59),
        ("RS256", 3601),
    ] {
        let err = client
            .get_web_identity_token()
            .audience("a")
            .signing_algorithm(alg)
            .duration_seconds(duration)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("ValidationError"), "{alg} {duration}");
    }
}

#[tokio::test]
async fn expired_session_credentials_answer_expired_token() {
    let mut config = EmulatorConfig::default();
    config.aws.static_credentials.push(StaticCredential {
        access_key_id: "ASIAEXPIRED000000000".into(),
        secret_access_key: "secret".into(),
        session_token: Some("session".into()),
        principal: "arn:aws:sts::111122223333:assumed-role/wif-workload/old".into(),
        expiration: Some(OffsetDateTime::now_utc() - time::Duration::minutes(1)),
    });
    let emu = Emulator::start(config).unwrap();
    let err = sts_client(
        &emu,
        ("ASIAEXPIRED000000000", "secret", Some("session")),
        "us-east-1",
    )
    .get_caller_identity()
    .send()
    .await
    .unwrap_err()
    .into_service_error();
    assert_eq!(err.code(), Some("ExpiredToken"));
}

#[tokio::test]
async fn unsigned_and_unknown_actions() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let resp = http()
        .post(format!("{}/aws/sts", emu.url()))
        .form(&[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<Code>MissingAuthenticationToken</Code>")
    );
    let resp = http()
        .post(emu.url())
        .form(&[("Action", "GetSessionToken"), ("Version", "2011-06-15")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<Code>InvalidAction</Code>")
    );
}
