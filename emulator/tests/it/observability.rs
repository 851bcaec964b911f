//! Counters, the request log, fault injection and the admin HTTP API.

use crate::common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wif_emulator::{Emulator, EmulatorConfig, Fault};

#[tokio::test]
async fn fault_503_twice_then_ok() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let jwt = web_identity_jwt(&user_client(&emu), &emu.oidc_audience(), None).await;
    emu.inject_fault(Fault {
        operation: "google:sts.token".into(),
        count: 2,
        status: 503,
        body: r#"{"error":"temporarily_unavailable"}"#.into(),
        delay_ms: 0,
    });
    for _ in 0..2 {
        let (status, body) = google_sts(&emu, &emu.oidc_audience(), JWT_TYPE, &jwt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
    }
    federated_token(&emu, &emu.oidc_audience(), JWT_TYPE, &jwt).await;
    assert_eq!(emu.count("google:sts.token"), 3);
    let statuses: Vec<u16> = emu
        .requests()
        .iter()
        .filter(|r| r.operation == "google:sts.token")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
}

#[tokio::test]
async fn fault_delay_then_normal_answer_and_sdk_error_status() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    emu.inject_fault(Fault {
        operation: "issuer:jwks".into(),
        delay_ms: 400,
        ..Fault::default()
    });
    let start = Instant::now();
    let resp = http()
        .get(format!("{}/.well-known/jwks.json", emu.issuer()))
        .send()
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(resp.status(), 200);
    let start = Instant::now();
    http()
        .get(format!("{}/.well-known/jwks.json", emu.issuer()))
        .send()
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "the fault applied once"
    );

    // An STS fault with an AWS error body reaches the SDK as that error.
    emu.inject_fault(Fault {
        operation: "sts:GetCallerIdentity".into(),
        count: 1,
        status: 400,
        body: "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>".into(),
        delay_ms: 0,
    });
    let err = user_client(&emu)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&err),
        Some("Throttling")
    );
    user_client(&emu)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(emu.count("sts:GetCallerIdentity"), 2);
}

#[tokio::test]
async fn request_log_has_no_secrets() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let jwt = web_identity_jwt(&user_client(&emu), &emu.oidc_audience(), None).await;
    let sts = federated_token(&emu, &emu.oidc_audience(), JWT_TYPE, &jwt).await;
    iam_call(
        &emu,
        &sts,
        &emu.service_account(),
        "generateAccessToken",
        json!({"scope": ["x"]}),
    )
    .await;
    imds_credentials(&emu).await;
    let log = serde_json::to_string(&emu.requests()).unwrap();
    let secrets = emu.issued_secrets();
    assert!(secrets.len() >= 6, "{secrets:?}");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "secret in log");
    }
    assert!(secrets.contains(&emu.static_credentials().1));
    let requests = emu.requests();
    let ops: Vec<&str> = requests.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        ops,
        vec![
            "sts:GetWebIdentityToken",
            "google:sts.token",
            "google:generateAccessToken",
            "imds:token",
            "imds:credentials"
        ]
    );
}

#[tokio::test]
async fn admin_http_api() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let admin = |p: &str| format!("{}/admin/{p}", emu.url());
    let post = |p: &str, body: Value| http().post(admin(p)).json(&body).send();

    let info: Value = http()
        .get(admin("info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["url"], emu.url());
    assert_eq!(info["issuer"], emu.issuer());
    assert_eq!(info["env"]["AWS_ENDPOINT_URL_STS"], emu.url());

    let fault = json!({"operation": "imds:token", "count": 1, "status": 500, "body": "boom"});
    assert_eq!(post("faults", fault).await.unwrap().status(), 200);
    assert_eq!(
        post("faults", json!({"operation": "nope"}))
            .await
            .unwrap()
            .status(),
        400
    );
    let resp = http()
        .put(format!("{}/latest/api/token", emu.url()))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (500, "boom".to_string())
    );

    let stats: Value = http()
        .get(admin("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, json!({"imds:token": 1}));
    let log: Value = http()
        .get(admin("requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["status"], 500);
    assert_eq!(log[0]["path"], "/latest/api/token");

    assert_eq!(
        post("outbound-federation", json!({"enabled": false}))
            .await
            .unwrap()
            .status(),
        200
    );
    let err = user_client(&emu)
        .get_web_identity_token()
        .audience("a")
        .signing_algorithm("RS256")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_outbound_web_identity_federation_disabled_exception());

    assert_eq!(
        post("clock", json!({"time": "2026-01-02T03:04:05Z"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let log: Value = http()
        .get(admin("requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = log.as_array().unwrap().len();
    assert_eq!(post("reset", json!({})).await.unwrap().status(), 200);
    assert!(last > 0 && emu.requests().is_empty() && emu.stats().is_empty());
    emu.web_identity_token("x");
    let secrets: Vec<String> = http()
        .get(admin("issued-secrets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest = secrets.last().unwrap();
    let payload = newest.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iat"], 1767323045, "frozen clock used");
    assert_eq!(
        post("clock", json!({"time": null})).await.unwrap().status(),
        200
    );
    assert_eq!(
        post("clock", json!({"time": "yesterday"}))
            .await
            .unwrap()
            .status(),
        400
    );
}

#[test]
fn usable_from_plain_test_and_drop_stops_server() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let url = emu.url();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with('/'));
    let addr = url.trim_start_matches("http://").to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(emu);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "listener closed on drop"
    );
}

#[test]
fn config_file_round_trip_and_bad_config() {
    let dir = std::env::temp_dir().join(format!("wif-emulator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"aws": {"region": "eu-west-1"}, "google": {"allow_lifetime_extension": true}}"#,
    )
    .unwrap();
    let config = wif_emulator::EmulatorConfig::from_file(&path).unwrap();
    assert_eq!(config.aws.region, "eu-west-1");
    assert_eq!(
        config.aws.account_id, "111122223333",
        "missing fields keep defaults"
    );
    assert!(config.google.allow_lifetime_extension);
    std::fs::write(&path, r#"{"aws": {"regoin": "x"}}"#).unwrap();
    assert!(
        wif_emulator::EmulatorConfig::from_file(&path).is_err(),
        "typos are errors"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
