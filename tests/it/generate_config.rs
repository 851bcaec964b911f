//! `generate-config`: the file Google client libraries load, and the command
//! inside it run exactly as a library runs it.

use crate::common::*;
use serde_json::Value;
use std::process::Command;

fn generate(w: &World, extra: &[&str]) -> (Run, std::path::PathBuf) {
    let cfg = w.dir.path().join("credential_config.json");
    let provider = w.oidc_provider();
    let sa = w.emu.service_account();
    let token_url = format!("{}/google/sts/v1/token", w.emu.url());
    let iam = format!("{}/google/iamcredentials", w.emu.url());
    let mut args = vec![
        "generate-config",
        "--provider",
        provider.as_str(),
        "--service-account",
        sa.as_str(),
        "--output-file",
        cfg.to_str().unwrap_or_default(),
        "--token-url",
        token_url.as_str(),
        "--iam-credentials-url",
        iam.as_str(),
    ];
    args.extend_from_slice(extra);
    (w.run(&args), cfg)
}

#[test]
fn writes_a_complete_external_account_config() {
    let w = World::new();
    let (out, path) = generate(&w, &["--lifetime", "1800"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("export GOOGLE_APPLICATION_CREDENTIALS="),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("export GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1")
    );
    let v = read_json(&path);
    assert_eq!(v["type"], "external_account");
    assert_eq!(v["audience"], w.emu.oidc_audience());
    assert_eq!(
        v["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(
        v["token_url"],
        format!("{}/google/sts/v1/token", w.emu.url())
    );
    assert_eq!(
        v["service_account_impersonation_url"],
        format!(
            "{}/google/iamcredentials/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            w.emu.url(),
            w.emu.service_account()
        )
    );
    assert_eq!(
        v["service_account_impersonation"]["token_lifetime_seconds"],
        1800
    );
    let exe = &v["credential_source"]["executable"];
    let timeout = exe["timeout_millis"].as_i64().unwrap_or_default();
    assert!((5000..=120_000).contains(&timeout), "{timeout}");
    // No output_file by default: a library reads it before running
    // wif-helper, whatever AWS identity it runs as.
    assert!(exe.get("output_file").is_none(), "{exe}");
    let command = exe["command"].as_str().unwrap_or_default();
    assert!(command.starts_with('/'), "{command}");
    assert!(
        !command.contains("  ") && !command.contains('"') && !command.contains('\''),
        "{command}"
    );
}

#[test]
fn the_generated_command_works_when_run_as_go_java_and_rust_libraries_run_it() {
    let w = World::new();
    let response = w.dir.path().join("response.json");
    let (out, path) = generate(
        &w,
        &[
            "--region",
            "us-east-1",
            "--executable-output-file",
            response.to_str().unwrap_or_default(),
        ],
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let v = read_json(&path);
    let command = v["credential_source"]["executable"]["command"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Java splits on single spaces, Go and Rust on whitespace: the same here.
    let by_space: Vec<&str> = command.split(' ').collect();
    assert_eq!(by_space, command.split_whitespace().collect::<Vec<_>>());
    // The Rust library passes no GOOGLE_EXTERNAL_ACCOUNT_* variables: the command alone must do.
    let mut c = Command::new(by_space[0]);
    c.args(&by_space[1..]).env_clear();
    for (k, val) in w.env_vars() {
        c.env(k, val);
    }
    let run: Run = c.output().unwrap_or_else(|e| panic!("{e}")).into();
    let (jwt, _) = run.success();
    assert_eq!(jwt_claims(&jwt)["aud"], w.emu.oidc_audience());
    // And it wrote the output file the config names (asked for explicitly).
    let output_file = v["credential_source"]["executable"]["output_file"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(output_file, response.to_str().unwrap_or_default());
    assert_eq!(
        read_json(std::path::Path::new(output_file))["success"],
        Value::Bool(true)
    );
}

#[test]
fn refuses_to_overwrite_a_different_file_without_force() {
    let w = World::new();
    let (first, path) = generate(&w, &[]);
    assert_eq!(first.status, 0);
    let (same, _) = generate(&w, &[]);
    assert_eq!(
        same.status, 0,
        "an identical file is not an overwrite: {}",
        same.stderr
    );
    assert!(same.stdout.starts_with("Unchanged"), "{}", same.stdout);
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    let (other, _) = generate(&w, &["--lifetime", "900"]);
    assert_eq!(other.status, 2);
    assert!(
        other.stderr.contains("FILE_EXISTS") && other.stderr.contains("--force"),
        "{}",
        other.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), before);
    let (forced, _) = generate(&w, &["--lifetime", "900", "--force"]);
    assert_eq!(forced.status, 0, "{}", forced.stderr);
    assert_eq!(
        read_json(&path)["service_account_impersonation"]["token_lifetime_seconds"],
        900
    );
}

/// A file that is not UTF-8 (or cannot be read) is not "absent": it is not
/// overwritten without --force.
#[test]
fn an_unreadable_or_binary_file_is_not_overwritten_without_force() {
    let w = World::new();
    let path = w.dir.path().join("credential_config.json");
    std::fs::write(&path, b"\xff\xfe not a config").unwrap_or_default();
    let (out, _) = generate(&w, &[]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("FILE_EXISTS"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(&path).unwrap_or_default(),
        b"\xff\xfe not a config"
    );
    let (forced, _) = generate(&w, &["--force"]);
    assert_eq!(forced.status, 0, "{}", forced.stderr);
}

#[test]
fn a_path_with_spaces_is_refused_with_a_way_out() {
    let w = World::new();
    let (out, path) = generate(&w, &["--executable-path", "/opt/My Tools/wif-helper"]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("INVALID_ARGUMENT") && out.stderr.contains("ln -s"),
        "{}",
        out.stderr
    );
    assert!(!path.exists());
    let (out, _) = generate(&w, &["--cache-dir", "/tmp/cache dir"]);
    assert_eq!(out.status, 2, "{}", out.stderr);
}

#[test]
fn bad_input_is_refused_with_exit_2_and_the_field_named() {
    let w = World::new();
    for (args, needle) in [
        (
            vec![
                "generate-config",
                "--provider",
                "projects/my-proj/locations/global/workloadIdentityPools/p/providers/q",
            ],
            "projectNumber",
        ),
        (
            vec![
                "generate-config",
                "--provider",
                "projects/1/locations/global/workloadIdentityPools/p/providers/q",
                "--lifetime",
                "100",
                "--service-account",
                "a@b.c",
            ],
            "--lifetime",
        ),
        (
            vec![
                "generate-config",
                "--provider",
                "projects/1/locations/global/workloadIdentityPools/p/providers/q",
                "--executable-timeout-millis",
                "1000",
            ],
            "5000",
        ),
        (
            vec![
                "generate-config",
                "--provider",
                "projects/1/locations/global/workloadIdentityPools/p/providers/q",
                "--service-account",
                "nope",
            ],
            "--service-account",
        ),
    ] {
        let out = w.run(&args);
        assert_eq!(out.status, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn json_format_reports_the_paths() {
    let w = World::new();
    let (out, path) = generate(&w, &["--format", "json"]);
    let v = out.json();
    assert_eq!(v["credential_config"], path.display().to_string());
    assert_eq!(v["env"]["GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"], "1");
}
