//! The Rust API (`TokenService`) end to end against the emulator.
//!
//! `aws::load` reads the process environment, and tests must not change a
//! shared process environment, so each test re-runs this test binary as a
//! child (`child_*` tests, ignored unless a parent runs them with `WIF_SERVICE_TEST` set) with the
//! world's environment, and checks the emulator's counters from the parent.

use crate::common::World;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;
use wif_helper::env::Env;
use wif_helper::service::{ProviderType, ServiceSettings, TokenService};

fn child(world: &World, name: &str, params: &Value) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("test binary path"));
    c.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_clear()
    .envs(world.env_vars())
    .env("WIF_SERVICE_TEST", params.to_string());
    c
}

/// Runs the child test `name` with `params` in `world`'s environment.
fn run_child(world: &World, name: &str, params: Value) {
    let out = child(world, name, &params).output().expect("child runs");
    assert!(
        out.status.success(),
        "child {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn params(world: &World) -> Value {
    let url = world.emu.url();
    json!({
        "aws_provider": world.emu.aws_audience(),
        "oidc_provider": world.emu.oidc_audience(),
        "service_account": world.emu.service_account(),
        "token_url": world.emu.token_url(),
        "iam": format!("{url}/google/iamcredentials"),
    })
}

/// The child's parameters (set by the parent test).
fn child_params() -> Option<Value> {
    std::env::var("WIF_SERVICE_TEST")
        .ok()
        .map(|p| serde_json::from_str(&p).expect("params"))
}

fn settings(p: &Value, provider_key: &str) -> ServiceSettings {
    let s = |k: &str| p[k].as_str().expect(k).to_owned();
    let mut settings = ServiceSettings::new(
        s(provider_key).parse().expect("provider"),
        s("service_account"),
    );
    settings.token_url = s("token_url");
    settings.iam_credentials_url = s("iam");
    settings.timeout = Duration::from_secs(20);
    settings
}

#[test]
fn aws_provider_access_and_id_tokens_share_one_exchange() {
    let world = World::new();
    run_child(&world, "service_api::child_aws_provider", params(&world));
    assert_eq!(world.emu.count("google:sts.token"), 1);
    assert_eq!(world.emu.count("google:generateAccessToken"), 1);
    assert_eq!(world.emu.count("google:generateIdToken"), 3);
    // A second process is served from the disk cache.
    run_child(&world, "service_api::child_cached_only", params(&world));
    assert_eq!(world.emu.count("google:sts.token"), 1);
    assert_eq!(world.emu.count("google:generateAccessToken"), 1);
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a child process of another test"]
async fn child_aws_provider() {
    let p = child_params().expect("WIF_SERVICE_TEST: run by its parent test");
    let svc =
        TokenService::new(settings(&p, "aws_provider"), Env::from_process()).expect("service");
    assert!(svc.cached_access_token().expect("cache").is_none());
    let a = svc.access_token().await.unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    assert!(
        a.expires_at > now + time::Duration::minutes(50),
        "{:?}",
        a.expires_at
    );
    let again = svc.access_token().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, a);
    assert_eq!(svc.cached_access_token().expect("cache"), Some(a));
    for aud in [
        "https://a.example",
        "https://b.example",
        "https://c.example",
    ] {
        let t = svc
            .id_token(aud, true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let claims = crate::common::jwt_claims(t.token.expose());
        assert_eq!(claims["aud"], aud, "{claims}");
        assert_eq!(claims["email"], p["service_account"], "{claims}");
        assert_eq!(claims["exp"].as_i64(), Some(t.expires_at_unix()));
    }
}

#[test]
#[ignore = "a child process of another test"]
fn child_cached_only() {
    let p = child_params().expect("WIF_SERVICE_TEST: run by its parent test");
    let svc =
        TokenService::new(settings(&p, "aws_provider"), Env::from_process()).expect("service");
    assert!(svc.cached_access_token().expect("cache").is_some());
    assert!(
        svc.cached_id_token("https://a.example", true)
            .expect("cache")
            .is_some()
    );
    assert!(
        svc.cached_id_token("https://a.example", false)
            .expect("cache")
            .is_none()
    );
}

#[test]
fn oidc_provider_without_cache_exchanges_every_time() {
    let world = World::new();
    run_child(&world, "service_api::child_oidc_no_cache", params(&world));
    assert_eq!(world.emu.count("sts:GetWebIdentityToken"), 2);
    assert_eq!(world.emu.count("google:sts.token"), 2);
    assert_eq!(world.emu.count("google:generateAccessToken"), 2);
    assert!(!world.cache_dir().exists());
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a child process of another test"]
async fn child_oidc_no_cache() {
    let p = child_params().expect("WIF_SERVICE_TEST: run by its parent test");
    let mut s = settings(&p, "oidc_provider");
    s.provider_type = ProviderType::Oidc;
    s.cache.disabled = true;
    let svc = TokenService::new(s, Env::from_process()).expect("service");
    for _ in 0..2 {
        svc.access_token().await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(svc.cached_access_token().expect("cache").is_none());
}

#[test]
fn concurrent_processes_with_different_audiences_make_one_exchange() {
    let world = World::new();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut p = params(&world);
            p["audience"] = json!(format!("https://svc-{i}.example"));
            child(&world, "service_api::child_id_token", &p)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("child starts")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("child ends");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(world.emu.count("google:sts.token"), 1);
    assert_eq!(world.emu.count("google:generateIdToken"), 8);
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a child process of another test"]
async fn child_id_token() {
    let p = child_params().expect("WIF_SERVICE_TEST: run by its parent test");
    let svc =
        TokenService::new(settings(&p, "aws_provider"), Env::from_process()).expect("service");
    let aud = p["audience"].as_str().expect("audience");
    let t = svc
        .id_token(aud, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(crate::common::jwt_claims(t.token.expose())["aud"], aud);
}

#[test]
fn lifetime_above_the_policy_is_refused_with_the_constraint_named() {
    let world = World::new();
    run_child(&world, "service_api::child_long_lifetime", params(&world));
    assert_eq!(
        world.emu.count("google:generateAccessToken"),
        1,
        "a refusal is not retried"
    );
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a child process of another test"]
async fn child_long_lifetime() {
    let p = child_params().expect("WIF_SERVICE_TEST: run by its parent test");
    let mut s = settings(&p, "aws_provider");
    s.lifetime = 43_200;
    let svc = TokenService::new(s, Env::from_process()).expect("service");
    let e = svc
        .access_token()
        .await
        .expect_err("the default emulated policy allows 3600 s");
    assert_eq!(
        e.code(),
        wif_helper::error::ErrorCode::GoogleLifetimeNotAllowed,
        "{e}"
    );
    assert!(
        e.message()
            .contains("constraints/iam.allowServiceAccountCredentialLifetimeExtension"),
        "{e}"
    );
    // Errors are not cached.
    assert!(svc.cached_access_token().expect("cache").is_none());
}
