//! `print-access-token` and `print-identity-token` end to end against the
//! emulator: the direct path (signed GetCallerIdentity or AWS JWT → Google
//! STS → IAM Credentials), its cache, and its errors.

use crate::common::*;
use serde_json::Value;
use wif_emulator::config::ServiceAccountConfig;
use wif_emulator::{EmulatorConfig, Fault};

fn print(w: &World, cmd: &str, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec![cmd.into()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs)
}

fn ok_token(run: &Run) -> String {
    assert_eq!(run.status, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stderr, "");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", run.stdout);
    lines[0].to_owned()
}

#[test]
fn access_token_through_an_aws_provider_and_then_from_cache() {
    let w = World::new();
    let token = ok_token(&print(&w, "print-access-token", &[]));
    assert!(
        w.emu.issued_secrets().contains(&token),
        "not an emulator-issued token"
    );
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
    // Second process: from disk, no upstream call at all.
    assert_eq!(ok_token(&print(&w, "print-access-token", &[])), token);
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
    // --no-cache goes upstream.
    let fresh = ok_token(&print(&w, "print-access-token", &["--no-cache"]));
    assert_ne!(fresh, token);
    assert_eq!(w.emu.count("google:generateAccessToken"), 2);
}

#[test]
fn json_format_has_token_expiry_and_type() {
    let w = World::new();
    let out = print(&w, "print-access-token", &["--format", "json"]);
    let v = out.json();
    assert!(v["access_token"].is_string(), "{v}");
    assert_eq!(v["token_type"], "Bearer");
    let exp = v["expiration_time"].as_i64().unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now + 3500..=now + 3700).contains(&exp), "{exp} vs {now}");
}

#[test]
fn identity_token_has_the_audience_and_email() {
    let w = World::new();
    let aud = "https://my-service-abc123-uc.a.run.app";
    let jwt = ok_token(&print(
        &w,
        "print-identity-token",
        &["--audience", aud, "--include-email"],
    ));
    let c = w.verify_google_id_token(&jwt, aud);
    assert_eq!(c["aud"], aud);
    assert_eq!(c["email"], w.emu.service_account());
    assert_eq!(c["iss"], "https://accounts.google.com");
    let plain = ok_token(&print(
        &w,
        "print-identity-token",
        &["--audience", "https://other.example"],
    ));
    assert!(
        jwt_claims(&plain).get("email").is_none(),
        "email without --include-email"
    );
    // Two audiences, one federated exchange.
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateIdToken"), 2);
}

/// `print-access-token --provider-type oidc` against the emulator.
fn print_oidc(w: &World) -> Run {
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(&w.oidc_provider(), &w.emu.service_account()));
    args.extend(["--provider-type".into(), "oidc".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs)
}

/// The OIDC direct path takes its subject token from the executable path's
/// `jwt` cache entry: one GetWebIdentityToken serves both, either way round.
#[test]
fn the_oidc_direct_path_and_the_executable_path_share_one_aws_issued_jwt() {
    let w = World::new();
    w.executable(&[]).success();
    ok_token(&print_oidc(&w));
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
    assert_eq!(w.emu.count("google:sts.token"), 1);

    let w = World::new();
    ok_token(&print_oidc(&w));
    w.executable(&[]).success();
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
}

#[test]
fn oidc_provider_type_uses_the_aws_issued_jwt() {
    let w = World::new();
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(&w.oidc_provider(), &w.emu.service_account()));
    args.extend(["--provider-type".into(), "oidc".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let token = ok_token(&w.run(&refs));
    assert!(w.emu.issued_secrets().contains(&token));
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
    assert_eq!(w.emu.count("google:sts.token"), 1);
}

#[test]
fn every_aws_credential_source_works_for_direct_tokens() {
    for source in AwsSource::ALL {
        let w = World::new().source(source);
        let token = ok_token(&print(&w, "print-access-token", &[]));
        assert!(w.emu.issued_secrets().contains(&token), "{source:?}");
    }
}

#[test]
fn assume_role_signs_with_the_assumed_credentials() {
    // A service account only the assumed role may impersonate.
    let mut config = EmulatorConfig::default();
    let pool = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/wif-pool";
    config.google.service_accounts.push(ServiceAccountConfig {
        email: "assumed-only@wif-demo.iam.gserviceaccount.com".into(),
        unique_id: None,
        members: vec![format!(
            "principalSet:{pool}/attribute.aws_role/arn:aws:sts::{ACCOUNT}:assumed-role/wif-assumed"
        )],
    });
    let w = World::with(config, AwsSource::EnvKeys);
    let sa = "assumed-only@wif-demo.iam.gserviceaccount.com";
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["print-access-token".into()];
        args.extend(w.direct_flags(&w.aws_provider(), sa));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        w.run(&refs)
    };
    // As the IAM user: refused, with the member to bind in the message.
    let denied = run(&[]);
    // The exact member: GetCallerIdentity told wif-helper who the caller is.
    let member = format!(
        "--member=\"principalSet:{pool}/attribute.aws_role/arn:aws:iam::{ACCOUNT}:user/wif-user\""
    );
    denied.error(
        1,
        "GOOGLE_PERMISSION_DENIED",
        &["roles/iam.workloadIdentityUser", &member],
    );
    assert!(!denied.stderr.contains("ACCOUNT_ID"), "{}", denied.stderr);
    assert_eq!(w.emu.count("sts:GetCallerIdentity"), 1);
    // After assuming the role: the emulator saw AssumeRole, and Google STS
    // accepted a GetCallerIdentity signed by the assumed credentials.
    let token = ok_token(&run(&["--assume-role-arn", ASSUMED_ROLE]));
    assert!(w.emu.issued_secrets().contains(&token));
    assert_eq!(w.emu.count("sts:AssumeRole"), 1);
}

#[test]
fn lifetime_above_an_hour_follows_the_org_policy() {
    let w = World::new();
    print(&w, "print-access-token", &["--lifetime", "7200"]).error(
        1,
        "GOOGLE_LIFETIME_NOT_ALLOWED",
        &["constraints/iam.allowServiceAccountCredentialLifetimeExtension"],
    );

    let mut config = EmulatorConfig::default();
    config.google.allow_lifetime_extension = true;
    let w = World::with(config, AwsSource::EnvKeys);
    let v = print(
        &w,
        "print-access-token",
        &["--lifetime", "7200", "--format", "json"],
    )
    .json();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = v["expiration_time"].as_i64().unwrap_or_default();
    assert!((now + 7100..=now + 7300).contains(&exp), "{v}");
}

#[test]
fn wrong_provider_and_unknown_service_account_fail_with_a_fix() {
    let w = World::new();
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(
        "projects/123456789012/locations/global/workloadIdentityPools/wif-pool/providers/nope",
        &w.emu.service_account(),
    ));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs)
        .error(1, "GOOGLE_INVALID_GRANT", &["providers/nope"]);

    let out = w.run(&[
        "print-access-token",
        "--provider",
        "projects/x",
        "--service-account",
        "a@b",
    ]);
    out.error(2, "INVALID_ARGUMENT", &[]);
}

#[test]
fn audience_mismatch_names_both_audiences() {
    let mut config = EmulatorConfig::default();
    let expected = "https://example.com/another-audience";
    for pool in &mut config.google.pools {
        for p in &mut pool.providers {
            p.allowed_audiences = vec![expected.into()];
        }
    }
    let w = World::with(config, AwsSource::EnvKeys);
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(&w.oidc_provider(), &w.emu.service_account()));
    args.extend(["--provider-type".into(), "oidc".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let both = format!(
        "the audience the token carries, {}, and the one it expected, {expected}",
        w.emu.oidc_audience()
    );
    w.run(&refs)
        .error(1, "GOOGLE_INVALID_GRANT", &[&both, "allowed audiences"]);
    assert_eq!(w.emu.count("google:sts.token"), 1);
}

#[test]
fn expiry_is_right_in_any_time_zone() {
    for tz in ["America/New_York", "Asia/Tokyo"] {
        let w = World::new().env("TZ", tz);
        let v = print(&w, "print-access-token", &["--format", "json"]).json();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let exp = v["expiration_time"].as_i64().unwrap_or_default();
        assert!(
            (now + 3500..=now + 3700).contains(&exp),
            "{tz}: {exp} vs {now}"
        );
    }
}

#[test]
fn hundred_processes_make_one_exchange_and_one_impersonation() {
    let w = World::new();
    let mut base: Vec<String> = vec!["print-access-token".into()];
    base.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    let runs = w.spawn_all(&vec![base; 100]);
    let tokens: Vec<String> = runs.iter().map(ok_token).collect();
    assert!(
        tokens.windows(2).all(|p| p[0] == p[1]),
        "different tokens printed"
    );
    assert_eq!(w.emu.count("google:sts.token"), 1, "{:?}", w.emu.stats());
    assert_eq!(
        w.emu.count("google:generateAccessToken"),
        1,
        "{:?}",
        w.emu.stats()
    );
}

#[test]
fn twenty_audiences_share_one_exchange() {
    let w = World::new();
    let argsets: Vec<Vec<String>> = (0..20)
        .map(|i| {
            let mut a: Vec<String> = vec!["print-identity-token".into()];
            a.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
            a.extend(["--audience".into(), format!("https://svc-{i}.example")]);
            a
        })
        .collect();
    let runs = w.spawn_all(&argsets);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(
            jwt_claims(&ok_token(r))["aud"],
            format!("https://svc-{i}.example")
        );
    }
    assert_eq!(w.emu.count("google:sts.token"), 1, "{:?}", w.emu.stats());
    assert_eq!(
        w.emu.count("google:generateIdToken"),
        20,
        "{:?}",
        w.emu.stats()
    );
}

#[test]
fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let w = World::new();
    w.emu.inject_fault(Fault {
        operation: "google:sts.token".into(),
        count: 2,
        status: 503,
        body: "{}".into(),
        delay_ms: 0,
    });
    ok_token(&print(&w, "print-access-token", &["--no-cache"]));
    assert_eq!(w.emu.count("google:sts.token"), 3);

    let w = World::new();
    w.emu.inject_fault(Fault {
        operation: "google:generateAccessToken".into(),
        count: 5,
        status: 403,
        body: r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#.into(),
        delay_ms: 0,
    });
    print(&w, "print-access-token", &["--no-cache"]).error(1, "GOOGLE_PERMISSION_DENIED", &[]);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}

#[test]
fn no_secret_reaches_stderr_or_the_log() {
    let w = World::new();
    let log = w.dir.path().join("debug.log");
    let out = print(
        &w,
        "print-identity-token",
        &[
            "--audience",
            "https://a.example",
            "--verbose",
            "--log-file",
            log.to_str().unwrap_or_default(),
            "--log-level",
            "trace",
        ],
    );
    let printed = ok_token_allow_stderr(&out);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for secret in w.emu.issued_secrets() {
        assert!(!out.stderr.contains(&secret), "stderr leaks a secret");
        assert!(!text.contains(&secret), "log leaks a secret");
        if secret != printed {
            assert!(!out.stdout.contains(&secret), "stdout leaks another secret");
        }
    }
    let (_, key) = w.emu.static_credentials();
    assert!(!text.contains(&key) && !out.stderr.contains(&key));
    let _ = Value::Null;
}

fn ok_token_allow_stderr(run: &Run) -> String {
    assert_eq!(run.status, 0, "stderr: {}", run.stderr);
    run.stdout.trim_end().to_owned()
}

#[test]
fn a_cached_federated_token_iam_refuses_is_exchanged_again_once() {
    let w = World::new();
    ok_token(&print(&w, "print-access-token", &[]));
    assert_eq!(w.emu.count("google:sts.token"), 1);
    // IAM now refuses the (cached) federated token once: wif-helper forgets
    // it, exchanges again and retries.
    let unauthenticated = Fault {
        operation: "google:generateIdToken".into(),
        count: 1,
        status: 401,
        body: r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#.into(),
        delay_ms: 0,
    };
    w.emu.inject_fault(unauthenticated.clone());
    let jwt = ok_token(&print(
        &w,
        "print-identity-token",
        &["--audience", "https://a.example"],
    ));
    assert_eq!(jwt_claims(&jwt)["aud"], "https://a.example");
    assert_eq!(w.emu.count("google:sts.token"), 2);
    assert_eq!(w.emu.count("google:generateIdToken"), 2);
    // A token fresh from STS that IAM refuses is not retried.
    w.emu.inject_fault(unauthenticated);
    print(
        &w,
        "print-identity-token",
        &["--audience", "https://b.example", "--no-cache"],
    )
    .error(1, "GOOGLE_INVALID_GRANT", &["revoked"]);
    assert_eq!(w.emu.count("google:sts.token"), 3);
    assert_eq!(w.emu.count("google:generateIdToken"), 3);
}
