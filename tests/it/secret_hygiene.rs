//! Secret hygiene across a representative set of commands and every AWS
//! credential source, each with `--log-file` at `trace` (and `--verbose`):
//! stdout, stderr and the log hold no secret the emulator issued (AWS secret
//! keys, session tokens, IMDS and container tokens, AWS-issued JWTs,
//! federated and service-account tokens), except on stdout the one token the
//! command prints. Upstreams that echo secrets in their errors (a compromised
//! proxy) are redacted as well.
//!
//! The harness (`tests/it/common`) applies the same scan to every CLI test; the
//! last two tests prove that scan catches a leak.

use crate::common::*;
use std::path::Path;
use wif_emulator::Fault;

fn log_flags(log: &Path) -> Vec<String> {
    vec![
        "--log-file".into(),
        log.display().to_string(),
        "--log-level".into(),
        "trace".into(),
    ]
}

fn google(w: &World, provider_type: &str) -> Vec<String> {
    let provider = if provider_type == "oidc" {
        w.oidc_provider()
    } else {
        w.emu
            .aws_audience()
            .trim_start_matches("//iam.googleapis.com/")
            .to_owned()
    };
    vec![
        "--provider".into(),
        provider,
        "--provider-type".into(),
        provider_type.into(),
        "--service-account".into(),
        w.emu.service_account(),
        "--token-url".into(),
        w.emu.token_url(),
        "--iam-credentials-url".into(),
        format!("{}/google/iamcredentials", w.emu.url()),
    ]
}

fn run(w: &World, parts: &[&[String]]) -> Run {
    let args: Vec<&str> = parts
        .iter()
        .flat_map(|p| p.iter().map(String::as_str))
        .collect();
    w.run(&args)
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| (*x).to_owned()).collect()
}

/// The log holds none of the emulator's secrets, and holds something.
fn assert_clean_log(w: &World, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(text.contains("resolved AWS credentials"), "{text}");
    for secret in w.emu.issued_secrets() {
        assert!(!text.contains(&secret), "{} leaks a secret", log.display());
    }
}

#[test]
fn every_command_and_credential_source_keeps_secrets_out_of_output_and_logs() {
    for source in AwsSource::ALL {
        let w = World::new().source(source);
        let log = w.dir.path().join("explicit.log");
        let logf = log_flags(&log);
        let provider = strings(&["--provider", &w.oidc_provider()]);
        let exe = strings(&["executable"]);
        let assume = strings(&["--assume-role-arn", ASSUMED_ROLE, "--no-cache"]);
        let access = strings(&["print-access-token", "--verbose"]);
        let id = strings(&["print-identity-token", "--audience", "https://a.run.app"]);
        let runs = [
            run(&w, &[&exe, &provider, &logf]),
            run(&w, &[&exe, &provider, &logf, &assume]),
            run(&w, &[&access, &google(&w, "aws"), &logf]),
            run(
                &w,
                &[
                    &access,
                    &google(&w, "oidc"),
                    &logf,
                    &strings(&["--format", "json"]),
                ],
            ),
            run(
                &w,
                &[
                    &id,
                    &google(&w, "aws"),
                    &logf,
                    &strings(&["--include-email"]),
                ],
            ),
            run(
                &w,
                &[
                    &id,
                    &google(&w, "oidc"),
                    &logf,
                    &strings(&["--format", "json", "--no-cache"]),
                ],
            ),
        ];
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.status, 0, "{source:?} #{i}: {}", r.stderr);
            assert!(printed_token(&r.stdout).is_some(), "{source:?} #{i}");
        }
        // --verbose without any log file: diagnostics on stderr.
        let args: Vec<String> = [
            id.clone(),
            google(&w, "aws"),
            strings(&["--verbose", "--no-cache"]),
        ]
        .concat();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let verbose: Run = w
            .command(&refs)
            .env_remove("WIF_HELPER_LOG_FILE")
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
            .into();
        assert_eq!(verbose.status, 0, "{}", verbose.stderr);
        assert!(
            verbose.stderr.contains("token obtained from Google"),
            "{}",
            verbose.stderr
        );
        w.assert_no_secret_printed(&verbose);
        assert_clean_log(&w, &log);
    }
}

#[test]
fn failures_keep_secrets_out_of_output_and_logs() {
    let w = World::new();
    let log = w.dir.path().join("failures.log");
    let logf = log_flags(&log);
    let verbose = strings(&["--verbose", "--no-cache"]);
    let access = strings(&["print-access-token"]);
    // Each fault makes the next run fail with a different code.
    let faults = [
        (
            "google:generateAccessToken",
            403,
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        ),
        (
            "google:sts.token",
            400,
            r#"{"error":"invalid_grant","error_description":"The audience in ID Token [a/b] does not match the expected audience."}"#,
        ),
        ("google:generateAccessToken", 503, "down"),
    ];
    for (op, status, body) in faults {
        w.emu.inject_fault(Fault {
            operation: op.into(),
            count: 5,
            status,
            body: body.into(),
            delay_ms: 0,
        });
        let r = run(&w, &[&access, &google(&w, "aws"), &logf, &verbose]);
        assert_ne!(r.status, 0, "{op} {status}");
        w.emu.reset();
    }
    let r = run(
        &w,
        &[
            &access,
            &google(&w, "aws"),
            &logf,
            &verbose,
            &strings(&["--lifetime", "7200"]),
        ],
    );
    assert!(
        r.stderr.contains("GOOGLE_LIFETIME_NOT_ALLOWED"),
        "{}",
        r.stderr
    );
    w.emu.set_outbound_federation(false);
    let exe = strings(&["executable", "--provider", &w.oidc_provider(), "--no-cache"]);
    run(&w, &[&exe, &logf]).failure("AWS_OUTBOUND_FEDERATION_DISABLED");
    assert_clean_log(&w, &log);
}

#[test]
fn secrets_echoed_by_a_hostile_upstream_are_redacted() {
    let w = World::new();
    let (_, key) = w.emu.static_credentials();
    // AWS (or a proxy posing as AWS) quotes the caller's secret key.
    w.emu.inject_fault(Fault {
        operation: "sts:GetWebIdentityToken".into(),
        count: 1,
        status: 403,
        body: format!(
            "<ErrorResponse><Error><Code>AccessDenied</Code><Message>key {key} is not allowed</Message></Error></ErrorResponse>"
        ),
        delay_ms: 0,
    });
    let exe = strings(&["executable", "--provider", &w.oidc_provider()]);
    let msg = run(&w, &[&exe]).failure("AWS_ACCESS_DENIED");
    assert!(
        !msg.contains(&key) && msg.contains("key [redacted] is not allowed"),
        "{msg}"
    );

    // Google STS quotes the key, a JWT, an access token and a signature.
    let echo = format!(
        "{key} eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln ya29.a0AfB_leak Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
    w.emu.inject_fault(Fault {
        operation: "google:sts.token".into(),
        count: 1,
        status: 400,
        body: serde_json::json!({"error": "invalid_grant", "error_description": echo}).to_string(),
        delay_ms: 0,
    });
    let access = strings(&["print-access-token"]);
    let r = run(&w, &[&access, &google(&w, "aws")]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(r.stderr.contains("GOOGLE_INVALID_GRANT"), "{}", r.stderr);
    for leak in [
        key.as_str(),
        "eyJhbGciOiJSUzI1NiJ9",
        "ya29.a0AfB_leak",
        "5d672d79c15b",
    ] {
        assert!(!r.stderr.contains(leak), "{leak} in {}", r.stderr);
    }

    // IAM quotes the federated token the process read from its cache.
    let ok = run(&w, &[&access, &google(&w, "aws")]);
    assert_eq!(ok.status, 0, "{}", ok.stderr);
    let federated: Vec<String> = w
        .emu
        .issued_secrets()
        .into_iter()
        .filter(|s| s.starts_with("ya29.d.emu-"))
        .collect();
    assert_eq!(federated.len(), 1, "one federated token");
    w.emu.inject_fault(Fault {
        operation: "google:generateIdToken".into(),
        count: 1,
        status: 403,
        body: serde_json::json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
            "message": format!("caller {} denied", federated[0])}})
        .to_string(),
        delay_ms: 0,
    });
    let id = strings(&["print-identity-token", "--audience", "https://a.run.app"]);
    let r = run(&w, &[&id, &google(&w, "aws")]);
    assert!(
        r.stderr.contains("GOOGLE_PERMISSION_DENIED"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("caller [redacted] denied"),
        "{}",
        r.stderr
    );
    assert_eq!(
        w.emu.count("google:sts.token"),
        2,
        "the federated token came from the cache"
    );
}

#[test]
#[should_panic(expected = "holds a secret")]
fn the_harness_catches_a_secret_in_the_debug_log() {
    let w = World::new();
    let (_, key) = w.emu.static_credentials();
    std::fs::write(w.log_file(), format!("oops {key}\n")).unwrap_or_default();
    drop(w);
}

#[test]
#[should_panic(expected = "stderr holds a secret")]
fn the_harness_catches_a_secret_on_stderr() {
    let w = World::new();
    let (_, key) = w.emu.static_credentials();
    w.assert_no_secret_printed(&Run {
        status: 1,
        stdout: String::new(),
        stderr: format!("wif-helper: AWS_ERROR: {key}"),
    });
}
