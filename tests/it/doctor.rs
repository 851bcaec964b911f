//! `wif-helper doctor` against the emulator: every check ok in a healthy
//! world (exit 0), and each fault the emulator can inject failing the right
//! check with its fix (exit 1). The harness checks that no secret is printed.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use wif_emulator::EmulatorConfig;
use wif_emulator::config::ServiceAccountConfig;

const POOL: &str = "projects/123456789012/locations/global/workloadIdentityPools/wif-pool";

/// `doctor --format json` plus the direct flags for `provider` and `sa`.
fn doctor(w: &World, provider: &str, sa: &str, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["doctor".into(), "--format".into(), "json".into()];
    args.extend(w.direct_flags(provider, sa));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs)
}

/// The checks of a JSON report, each checked for the documented shape.
fn checks(run: &Run) -> Vec<Value> {
    assert_eq!(run.stderr, "", "doctor wrote to stderr");
    let v = run.json();
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["checks"], "{v}");
    let checks = v["checks"].as_array().expect("checks").clone();
    for c in &checks {
        let o = c.as_object().expect("check object");
        let mut keys: Vec<&String> = o.keys().collect();
        keys.sort();
        assert_eq!(keys, ["detail", "fix", "name", "status"], "{c}");
        let status = c["status"].as_str().unwrap_or_default();
        assert!(["ok", "warn", "fail", "skip"].contains(&status), "{c}");
        assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
        match status {
            "fail" | "warn" => assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}"),
            _ => assert!(c["fix"].is_null(), "{c}"),
        }
    }
    checks
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

fn all_ok(run: &Run, names: &[&str]) {
    let checks = checks(run);
    for c in &checks {
        assert_eq!(c["status"], "ok", "{c}");
    }
    let got: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(got, names);
    assert_eq!(run.status, 0, "{}", run.stdout);
}

/// The named check failed with a fix containing every needle; the others
/// listed were skipped; the exit status is 1.
fn fails(run: &Run, name: &str, fix: &[&str], skipped: &[&str]) -> Vec<Value> {
    let checks = checks(run);
    let c = check(&checks, name);
    assert_eq!(c["status"], "fail", "{c}");
    let f = c["fix"].as_str().unwrap_or_default();
    for n in fix {
        assert!(f.contains(n), "{n:?} not in the fix {f:?}");
    }
    for s in skipped {
        assert_eq!(check(&checks, s)["status"], "skip", "{s}: {checks:?}");
    }
    assert_eq!(run.status, 1, "{}", run.stdout);
    checks
}

const DIRECT_AWS: [&str; 7] = [
    "settings",
    "aws_region",
    "aws_credentials",
    "google_sts",
    "impersonation",
    "id_token",
    "cache_dir",
];

#[test]
fn a_healthy_aws_provider_passes_every_check() {
    let w = World::new();
    let run = doctor(
        &w,
        &w.aws_provider(),
        &w.emu.service_account(),
        &["--audience", "https://svc.example"],
    );
    all_ok(&run, &DIRECT_AWS);
    let checks = checks(&run);
    let creds = check(&checks, "aws_credentials")["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(creds.contains("EnvironmentVariable"), "{creds}");
    assert!(
        creds.contains(&format!("arn:aws:iam::{ACCOUNT}:user/wif-user")),
        "{creds}"
    );
    // Doctor never uses the cache: nothing was stored, every call went upstream.
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
    assert_eq!(w.emu.count("google:generateIdToken"), 1);
}

#[test]
fn every_aws_credential_source_is_named() {
    for (source, name) in [
        (AwsSource::ProfileAssumeRole, "AssumeRoleProvider"),
        (AwsSource::WebIdentity, "WebIdentityToken"),
        (AwsSource::Container, "EcsContainer"),
        (AwsSource::Imds, "IMDSv2"),
    ] {
        let w = World::new().source(source);
        let run = doctor(&w, &w.aws_provider(), &w.emu.service_account(), &[]);
        let checks = checks(&run);
        let c = check(&checks, "aws_credentials");
        assert_eq!(c["status"], "ok", "{source:?}: {c}");
        assert!(
            c["detail"].as_str().unwrap_or_default().contains(name),
            "{source:?}: {c}"
        );
        if source == AwsSource::ProfileAssumeRole {
            let d = c["detail"].as_str().unwrap_or_default();
            assert!(d.contains("profile app"), "{c}");
        }
        assert_eq!(run.status, 0, "{source:?}: {}", run.stdout);
    }
}

#[test]
fn invalid_aws_settings_fail_the_aws_check_and_skip_the_rest() {
    let w = World::new();
    let run = doctor(
        &w,
        &w.aws_provider(),
        &w.emu.service_account(),
        &["--region", "not a region"],
    );
    let checks = fails(
        &run,
        "aws_credentials",
        &[],
        &["google_sts", "impersonation"],
    );
    let c = check(&checks, "aws_credentials");
    assert!(
        c["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("--region"),
        "{c}"
    );
    assert_eq!(w.emu.count("google:sts.token"), 0);
    // An ID token asked for is skipped with the rest, not left out.
    let run = doctor(
        &w,
        &w.aws_provider(),
        &w.emu.service_account(),
        &[
            "--region",
            "not a region",
            "--audience",
            "https://svc.example.com",
        ],
    );
    fails(
        &run,
        "aws_credentials",
        &[],
        &["google_sts", "impersonation", "id_token"],
    );
}

#[test]
fn a_healthy_oidc_provider_passes_every_check_and_the_text_report_says_so() {
    let w = World::new();
    let run = doctor(
        &w,
        &w.oidc_provider(),
        &w.emu.service_account(),
        &["--provider-type", "oidc"],
    );
    all_ok(
        &run,
        &[
            "settings",
            "aws_region",
            "aws_credentials",
            "outbound_federation",
            "google_sts",
            "impersonation",
            "cache_dir",
        ],
    );
    let mut args: Vec<String> = vec!["doctor".into()];
    args.extend(w.direct_flags(&w.oidc_provider(), &w.emu.service_account()));
    args.extend(["--provider-type".into(), "oidc".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = w.run(&refs);
    assert_eq!(text.status, 0, "{}", text.stdout);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 9, "{}", text.stdout);
    assert!(
        lines[1..8].iter().all(|l| l.starts_with("ok  ")),
        "{}",
        text.stdout
    );
    assert!(lines[8].starts_with("no check failed"), "{}", text.stdout);
}

/// A config generated for the emulator, the world set up as a library's.
fn generated_config(w: &World) -> String {
    let path = w.dir.path().join("credential_config.json");
    let p = path.display().to_string();
    let iam = format!("{}/google/iamcredentials", w.emu.url());
    let run = w.run(&[
        "generate-config",
        "--provider",
        &w.oidc_provider(),
        "--service-account",
        &w.emu.service_account(),
        "--token-url",
        &w.emu.token_url(),
        "--iam-credentials-url",
        &iam,
        "--output-file",
        &p,
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    p
}

const CONFIG: [&str; 12] = [
    "config_file",
    "config_command",
    "allow_executables",
    "config_provider",
    "config_service_account",
    "aws_region",
    "aws_credentials",
    "outbound_federation",
    "command_answer",
    "google_sts",
    "impersonation",
    "cache_dir",
];

#[test]
fn a_generated_config_passes_every_check_from_the_flag_or_the_variable() {
    let w = World::new().env("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let config = generated_config(&w);
    all_ok(
        &w.run(&["doctor", "--format", "json", "--config", &config]),
        &CONFIG,
    );
    // Doctor's own outbound_federation check, then the command, run once
    // as a library runs it: two GetWebIdentityToken calls.
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 2);
    let w = w.env("GOOGLE_APPLICATION_CREDENTIALS", &config);
    all_ok(&w.run(&["doctor", "--format", "json"]), &CONFIG);
}

#[test]
fn federation_disabled_fails_outbound_federation_with_the_command_that_enables_it() {
    let enable = "aws iam enable-outbound-web-identity-federation";
    let w = World::new();
    w.emu.set_outbound_federation(false);
    let run = doctor(
        &w,
        &w.oidc_provider(),
        &w.emu.service_account(),
        &["--provider-type", "oidc"],
    );
    let checks = fails(
        &run,
        "outbound_federation",
        &[enable],
        &["google_sts", "impersonation"],
    );
    let detail = check(&checks, "outbound_federation")["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.starts_with("AWS_OUTBOUND_FEDERATION_DISABLED: "),
        "{detail}"
    );
    assert_eq!(check(&checks, "aws_credentials")["status"], "ok");

    let w = World::new().env("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let config = generated_config(&w);
    w.emu.set_outbound_federation(false);
    let run = w.run(&["doctor", "--format", "json", "--config", &config]);
    fails(
        &run,
        "outbound_federation",
        &[enable],
        &["command_answer", "google_sts", "impersonation"],
    );
}

#[test]
fn no_binding_fails_the_impersonation_with_the_exact_binding_to_add() {
    let mut config = EmulatorConfig::default();
    let sa = "unbound@wif-demo.iam.gserviceaccount.com";
    config.google.service_accounts.push(ServiceAccountConfig {
        email: sa.into(),
        unique_id: None,
        members: Vec::new(),
    });
    let w = World::with(config, AwsSource::EnvKeys);
    let user = format!("arn:aws:iam::{ACCOUNT}:user/wif-user");
    let run = doctor(
        &w,
        &w.aws_provider(),
        sa,
        &["--audience", "https://svc.example"],
    );
    let aws_member = format!(
        "gcloud iam service-accounts add-iam-policy-binding {sa} --role=roles/iam.workloadIdentityUser \
         --member=\"principalSet://iam.googleapis.com/{POOL}/attribute.aws_role/{user}\""
    );
    let checks = fails(&run, "impersonation", &[&aws_member], &["id_token"]);
    assert_eq!(check(&checks, "google_sts")["status"], "ok");

    let run = doctor(&w, &w.oidc_provider(), sa, &["--provider-type", "oidc"]);
    let oidc_member = format!("--member=\"principal://iam.googleapis.com/{POOL}/subject/");
    fails(&run, "impersonation", &[&oidc_member], &[]);
}

#[test]
fn a_wrong_audience_or_an_unknown_provider_fails_the_exchange_with_its_fix() {
    let mut config = EmulatorConfig::default();
    for pool in &mut config.google.pools {
        for p in &mut pool.providers {
            p.allowed_audiences = vec!["https://example.com/another-audience".into()];
        }
    }
    let w = World::with(config, AwsSource::EnvKeys);
    let run = doctor(
        &w,
        &w.oidc_provider(),
        &w.emu.service_account(),
        &["--provider-type", "oidc"],
    );
    let update = format!(
        "gcloud iam workload-identity-pools providers update-oidc {} --allowed-audiences={}",
        w.oidc_provider(),
        w.emu.oidc_audience()
    );
    fails(&run, "google_sts", &[&update], &["impersonation"]);

    let w = World::new();
    let nope = format!("{POOL}/providers/nope");
    let run = doctor(&w, &nope, &w.emu.service_account(), &[]);
    let checks = fails(
        &run,
        "google_sts",
        &[&format!("providers describe {nope}")],
        &["impersonation"],
    );
    let detail = check(&checks, "google_sts")["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.starts_with("GOOGLE_INVALID_GRANT: "), "{detail}");
}

#[test]
fn no_aws_credentials_fail_the_aws_check_and_skip_what_needs_them() {
    let w = World::new().source(AwsSource::None);
    let run = doctor(&w, &w.aws_provider(), &w.emu.service_account(), &[]);
    let checks = fails(
        &run,
        "aws_credentials",
        &["AWS_PROFILE"],
        &["google_sts", "impersonation"],
    );
    let c = check(&checks, "aws_credentials");
    assert!(
        c["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AWS_CREDENTIALS_NOT_FOUND: "),
        "{c}"
    );
    assert_eq!(check(&checks, "aws_region")["status"], "ok");
    assert_eq!(check(&checks, "cache_dir")["status"], "ok");
    let skipped = check(&checks, "google_sts")["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(skipped.contains("aws_credentials"), "{skipped}");
}

#[test]
fn an_unsafe_cache_directory_fails_with_the_chmod_that_fixes_it() {
    let w = World::new();
    let dir = w.cache_dir();
    std::fs::create_dir_all(&dir).expect("cache dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let run = doctor(&w, &w.aws_provider(), &w.emu.service_account(), &[]);
    let checks = fails(
        &run,
        "cache_dir",
        &[&format!("chmod 700 {}", dir.display())],
        &[],
    );
    let c = check(&checks, "cache_dir");
    assert!(
        c["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("CACHE_INSECURE: "),
        "{c}"
    );
    // Everything else still works.
    assert_eq!(
        checks.iter().filter(|c| c["status"] == "fail").count(),
        1,
        "{checks:?}"
    );
}

#[test]
fn a_config_without_the_variable_or_with_a_missing_command_fails_with_the_fix() {
    let w = World::new();
    let config = generated_config(&w);
    let run = w.run(&["doctor", "--format", "json", "--config", &config]);
    fails(
        &run,
        "allow_executables",
        &["export GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"],
        &[],
    );

    let text = std::fs::read_to_string(&config).expect("config");
    let moved = text.replace(BIN, "/nonexistent/wif-helper");
    std::fs::write(&config, moved).expect("write");
    let run = w.run(&["doctor", "--format", "json", "--config", &config]);
    fails(
        &run,
        "config_command",
        &["--executable-path"],
        &["command_answer"],
    );

    let run = w.run(&[
        "doctor",
        "--format",
        "json",
        "--config",
        "/nonexistent.json",
    ]);
    fails(
        &run,
        "config_file",
        &["generate-config"],
        &["command_answer", "google_sts"],
    );
}

/// A configuration is input: doctor never runs a command that is not
/// wif-helper, nor one libraries would not run (no ALLOW_EXECUTABLES).
#[test]
fn doctor_runs_only_wif_helper_and_only_when_libraries_would() {
    let w = World::new().env("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let config = generated_config(&w);
    let marker = w.dir.path().join("ran");
    let script = w.dir.path().join("not-the-helper");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(BIN, script.to_str().unwrap_or_default()),
    )
    .expect("write");
    let run = w.run(&["doctor", "--format", "json", "--config", &config]);
    let answer = check(&checks(&run), "command_answer").clone();
    assert_eq!(answer["status"], "fail", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is not wif-helper")
    );
    assert!(
        !marker.exists(),
        "doctor ran a program that is not wif-helper"
    );

    // The real command, but the variable unset: skipped, not run.
    let w = World::new();
    let config = generated_config(&w);
    let run = w.run(&["doctor", "--format", "json", "--config", &config]);
    assert_eq!(check(&checks(&run), "command_answer")["status"], "skip");
    assert_eq!(
        w.emu.count("sts:GetWebIdentityToken"),
        1,
        "only doctor's own check"
    );
}

#[test]
fn with_nothing_to_diagnose_it_still_checks_aws_and_says_what_to_pass() {
    let w = World::new();
    let run = w.run(&["doctor", "--format", "json"]);
    let checks = fails(
        &run,
        "settings",
        &["--provider", "--config"],
        &["google_sts"],
    );
    assert_eq!(check(&checks, "aws_credentials")["status"], "ok");
}

/// The `credential_config.json` of [`generated_config`] with its command
/// replaced by a stand-in named like wif-helper that runs `body`, and its
/// timeout set to the least libraries accept; `doctor --config` on it.
fn doctor_with_stand_in(w: &World, generated: &Value, case: usize, body: &str) -> Run {
    let script = w.dir.path().join(format!("wif-helper-stand-in-{case}"));
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut v = generated.clone();
    let exe = &mut v["credential_source"]["executable"];
    let command = exe["command"].as_str().unwrap_or_default().to_owned();
    exe["command"] = command
        .replace(BIN, script.to_str().unwrap_or_default())
        .into();
    exe["timeout_millis"] = 5000.into();
    let config = w.dir.path().join(format!("stand-in-{case}.json"));
    std::fs::write(&config, v.to_string()).expect("write");
    w.run(&[
        "doctor",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap_or_default(),
    ])
}

/// A success answer of the executable protocol for a JWT with `aud`.
fn answer_for(aud: &str, expiration_time: u64) -> String {
    use base64::Engine;
    let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
    let jwt = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"none"}"#),
        b64(&serde_json::json!({ "aud": aud }).to_string())
    );
    let answer = serde_json::json!({
        "version": 1,
        "success": true,
        "token_type": "urn:ietf:params:oauth:token-type:jwt",
        "id_token": jwt,
        "expiration_time": expiration_time,
    });
    format!("echo '{answer}'")
}

/// What a broken command can do, each failing `command_answer` with what
/// was wrong and its fix: never a pass, never a wait past timeout_millis.
#[test]
fn a_command_that_hangs_fails_or_answers_wrongly_fails_its_check() {
    let w = World::new().env("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let generated: Value =
        serde_json::from_str(&std::fs::read_to_string(generated_config(&w)).expect("config"))
            .expect("json");
    let aud = generated["audience"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let failure = r#"echo '{"version":1,"success":false,"code":"AWS_ACCESS_DENIED","message":"denied","token_type":"urn:ietf:params:oauth:token-type:jwt"}'"#;
    let cases: [(&str, String, &str, &str); 7] = [
        (
            "hangs",
            "exec sleep 30".into(),
            "within the configuration's timeout_millis (5000 ms)",
            "timeout_millis",
        ),
        (
            "exits non-zero",
            "echo '{}'; exit 3".into(),
            "exited with",
            "run the command by hand",
        ),
        (
            "not JSON",
            "echo hello".into(),
            "not one JSON object",
            "run the command by hand",
        ),
        ("a failure answer", failure.into(), "AWS_ACCESS_DENIED", ""),
        (
            "no expiration_time",
            answer_for(&aud, now + 3000).replace("\"expiration_time\"", "\"expires\""),
            "lacks version 1, id_token or expiration_time",
            "executable",
        ),
        (
            "another audience",
            answer_for("//iam.googleapis.com/other", now + 3000),
            "//iam.googleapis.com/other",
            "generate-config",
        ),
        ("expired", answer_for(&aud, now - 60), "expired", "clock"),
    ];
    for (n, (why, body, detail, fix)) in cases.iter().enumerate() {
        let started = std::time::Instant::now();
        let run = doctor_with_stand_in(&w, &generated, n, body);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(25),
            "{why}: doctor waited past the command's timeout"
        );
        let checks = fails(&run, "command_answer", &[fix], &[]);
        let answer = check(&checks, "command_answer");
        let text = answer["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{why}: {detail:?} not in {answer}");
    }
    // The same stand-in answering for the right audience, in time, passes.
    let run = doctor_with_stand_in(&w, &generated, 99, &answer_for(&aud, now + 3000));
    assert_eq!(check(&checks(&run), "command_answer")["status"], "ok");
}
