//! IMDSv2 and the container credentials endpoint, with raw HTTP and with
//! the aws-config providers.

use crate::common::*;
use aws_config::imds;
use aws_credential_types::provider::ProvideCredentials;
use serde_json::Value;
use time::OffsetDateTime;
use wif_emulator::{Emulator, EmulatorConfig};

async fn put_token(emu: &Emulator, ttl: Option<&str>) -> reqwest::Response {
    let mut req = http().put(format!("{}/latest/api/token", emu.url()));
    if let Some(ttl) = ttl {
        req = req.header("x-aws-ec2-metadata-token-ttl-seconds", ttl);
    }
    req.send().await.unwrap()
}

async fn get(emu: &Emulator, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http().get(format!("{}{path}", emu.url()));
    if let Some(t) = token {
        req = req.header("x-aws-ec2-metadata-token", t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn imdsv2_token_required() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    for bad_ttl in [None, Some("0"), Some("21601"), Some("abc")] {
        assert_eq!(put_token(&emu, bad_ttl).await.status(), 400, "{bad_ttl:?}");
    }
    let resp = put_token(&emu, Some("60")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aws-ec2-metadata-token-ttl-seconds"], "60");
    let token = resp.text().await.unwrap();

    // IMDSv1 (no token) and unknown tokens are refused.
    assert_eq!(
        get(&emu, "/latest/meta-data/iam/security-credentials/", None)
            .await
            .0,
        401
    );
    assert_eq!(
        get(&emu, "/latest/meta-data/placement/region", Some("forged"))
            .await
            .0,
        401
    );

    let t = Some(token.as_str());
    assert_eq!(
        get(&emu, "/latest/meta-data/iam/security-credentials/", t).await,
        (200, "wif-workload".into())
    );
    assert_eq!(
        get(&emu, "/latest/meta-data/placement/region", t).await,
        (200, "us-east-1".into())
    );
    assert_eq!(
        get(&emu, "/latest/meta-data/placement/availability-zone", t).await,
        (200, "us-east-1a".into())
    );
    assert_eq!(
        get(
            &emu,
            "/latest/meta-data/iam/security-credentials/other-role",
            t
        )
        .await
        .0,
        404
    );
    assert_eq!(
        get(
            &emu,
            "/latest/meta-data/iam/security-credentials-extended/",
            t
        )
        .await
        .0,
        404
    );
    let (status, body) = get(
        &emu,
        "/latest/meta-data/iam/security-credentials/wif-workload",
        t,
    )
    .await;
    assert_eq!(status, 200);
    let creds: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(creds["Code"], "Success");
    assert_eq!(creds["Type"], "AWS-HMAC");
    assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    for k in ["SecretAccessKey", "Token", "Expiration", "LastUpdated"] {
        assert!(creds[k].is_string(), "{k}");
    }
    // Each fetch issues fresh credentials.
    let (_, again) = get(
        &emu,
        "/latest/meta-data/iam/security-credentials/wif-workload",
        t,
    )
    .await;
    assert_ne!(
        serde_json::from_str::<Value>(&again).unwrap()["AccessKeyId"],
        creds["AccessKeyId"]
    );

    // Tokens expire after their TTL.
    emu.set_clock(Some(
        OffsetDateTime::now_utc() + time::Duration::seconds(61),
    ));
    assert_eq!(
        get(&emu, "/latest/meta-data/placement/region", t).await.0,
        401
    );
    assert_eq!(emu.count("imds:token"), 5);
    assert_eq!(emu.count("imds:region"), 4);
}

#[tokio::test]
async fn aws_config_imds_provider_gets_working_credentials() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let client = imds::Client::builder().endpoint(emu.url()).unwrap().build();
    let provider = imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(client.clone())
        .build();
    let creds = provider.provide_credentials().await.unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    let sts = sts_client(
        &emu,
        (
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token(),
        ),
        "us-east-1",
    );
    let who = sts.get_caller_identity().send().await.unwrap();
    assert!(
        who.arn()
            .unwrap()
            .starts_with("arn:aws:sts::111122223333:assumed-role/wif-workload/i-")
    );
    let region = imds::region::ImdsRegionProvider::builder()
        .imds_client(client)
        .build()
        .region()
        .await;
    assert_eq!(region.map(|r| r.to_string()), Some("us-east-1".into()));
    assert!(emu.count("imds:token") >= 1);
}

#[tokio::test]
async fn container_credentials_require_the_auth_token() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let url = format!("{}/aws/container/credentials", emu.url());
    assert_eq!(http().get(&url).send().await.unwrap().status(), 401);
    let wrong = http()
        .get(&url)
        .header("authorization", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let resp = http()
        .get(&url)
        .header("authorization", emu.container_auth_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let c: Value = resp.json().await.unwrap();
    assert_eq!(c["AccountId"], "111122223333");
    assert_eq!(c["RoleArn"], "arn:aws:iam::111122223333:role/wif-workload");
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let sts = sts_client(
        &emu,
        (&s("AccessKeyId"), &s("SecretAccessKey"), Some(&s("Token"))),
        "us-east-1",
    );
    let who = sts.get_caller_identity().send().await.unwrap();
    assert!(who.arn().unwrap().contains(":assumed-role/wif-workload/"));
    assert_eq!(emu.count("container:credentials"), 3);
    assert!(emu.issued_secrets().contains(&s("Token")));
}
