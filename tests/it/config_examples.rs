//! The deployment examples in `config-examples/metadata-server/`, checked as
//! far as a machine with no cluster can: the Kubernetes manifests against
//! the API schemas (kubernetes-validate, installed by tests/clients/setup.sh),
//! the ECS task definition's shape, the systemd unit with
//! `systemd-analyze verify` where it exists, and the Lambda wrapper run for
//! real, with HOME unset, against the emulator.

use crate::client_libraries::clients;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config-examples/metadata-server")
        .join(name)
}

/// The variables every example must give the application, with the value
/// for a server on `addr`, as `metadata-server` prints them.
const CLIENT_VARS: [&str; 4] = [
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "GCE_METADATA_ROOT",
    "METADATA_SERVER_DETECTION",
];

fn kubernetes_validate(files: &[&Path]) -> std::process::Output {
    Command::new(clients().join("venv/bin/kubernetes-validate"))
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate runs (tests/clients/setup.sh installs it)")
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let pod = example("kubernetes-pod-sidecar.yaml");
    let ds = example("kubernetes-daemonset.yaml");
    let out = kubernetes_validate(&[&pod, &ds]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The checker does check: a misspelt field fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&pod).expect("pod");
    std::fs::write(
        &broken,
        text.replace("restartPolicy: Always", "restartPolicyy: Always"),
    )
    .expect("write");
    assert!(!kubernetes_validate(&[&broken]).status.success());
    // The sidecar's app gets every variable, pointing at the sidecar.
    for v in CLIENT_VARS {
        assert!(text.contains(&format!("- name: {v}\n")), "{v}");
    }
    assert!(text.contains("value: 127.0.0.1:8954"));
    let ds_text = std::fs::read_to_string(&ds).expect("daemonset");
    assert!(ds_text.contains("--allow-remote") && ds_text.contains("--allow-other-users"));
}

#[test]
fn the_ecs_task_definition_runs_the_server_as_a_sidecar() {
    let text = std::fs::read_to_string(example("ecs-task-definition.json")).expect("read");
    let td: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(td["networkMode"], "awsvpc", "containers share localhost");
    assert!(
        td["taskRoleArn"]
            .as_str()
            .is_some_and(|r| r.starts_with("arn:aws:iam::"))
    );
    let containers = td["containerDefinitions"].as_array().expect("containers");
    let by_name = |n: &str| {
        containers
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no container {n}"))
    };
    let sidecar = by_name("wif-metadata");
    let app = by_name("app");
    let command: Vec<&str> = sidecar["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command, ["metadata-server", "--listen", "127.0.0.1:8954"]);
    let env = |c: &Value| -> Vec<(String, String)> {
        c["environment"]
            .as_array()
            .expect("environment")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("name").to_owned(),
                    e["value"].as_str().expect("value").to_owned(),
                )
            })
            .collect()
    };
    let sidecar_env = env(sidecar);
    for v in ["WIF_HELPER_PROVIDER", "WIF_HELPER_SERVICE_ACCOUNT"] {
        assert!(sidecar_env.iter().any(|(k, _)| k == v), "{v}");
    }
    let app_env = env(app);
    for v in CLIENT_VARS {
        let value = app_env
            .iter()
            .find(|(k, _)| k == v)
            .map(|(_, v)| v.as_str());
        let want = if v == "METADATA_SERVER_DETECTION" {
            "assume-present"
        } else {
            "127.0.0.1:8954"
        };
        assert_eq!(value, Some(want), "{v}");
    }
    assert!(
        !app_env
            .iter()
            .any(|(k, _)| k == "GOOGLE_APPLICATION_CREDENTIALS")
    );
    // The same user: the server serves only its own uid.
    assert_eq!(sidecar["user"], app["user"]);
    assert_eq!(app["dependsOn"][0]["containerName"], "wif-metadata");
    assert_eq!(app["dependsOn"][0]["condition"], "HEALTHY");
    for c in [sidecar, app] {
        assert_eq!(c["essential"], true);
        assert!(c["image"].as_str().is_some_and(|i| !i.is_empty()));
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let name = "wif-helper-metadata-server.service";
    let text = std::fs::read_to_string(example(name)).expect("unit");
    assert!(text.contains("ExecStart=/usr/local/bin/wif-helper metadata-server\n"));
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join(name);
    std::fs::write(&unit, text.replace("/usr/local/bin/wif-helper", BIN)).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // A setting it could not parse is only a warning: none is allowed.
    assert_eq!(stderr.trim(), "", "systemd-analyze verify warned");
}

#[test]
fn the_lambda_wrapper_runs_the_function_under_exec_without_home() {
    let w = World::new();
    let wrapper = example("lambda-exec-wrapper");
    let tmp = w.dir.path().join("lambda-tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_mds_client.py");
    let audience = "https://fn.example.com";
    let mut c = Command::new(&wrapper);
    // What Lambda passes: the runtime's command line.
    c.args([
        clients()
            .join("venv/bin/python")
            .to_str()
            .unwrap_or_default(),
        py.to_str().unwrap_or_default(),
        audience,
    ])
    .env_clear();
    for (k, v) in w.env_vars() {
        // Lambda has no HOME (and no AWS config files).
        if k != "HOME" && !k.starts_with("AWS_CONFIG_FILE") && !k.starts_with("AWS_SHARED") {
            c.env(k, v);
        }
    }
    let provider = w.aws_provider();
    c.env("WIF_HELPER_BIN", BIN)
        .env("WIF_HELPER_PROVIDER", &provider)
        .env("WIF_HELPER_SERVICE_ACCOUNT", w.emu.service_account())
        .env("WIF_HELPER_TOKEN_URL", w.emu.token_url())
        .env(
            "WIF_HELPER_IAM_CREDENTIALS_URL",
            format!("{}/google/iamcredentials", w.emu.url()),
        )
        .env("TMPDIR", &tmp);
    let out = c.output().expect("the wrapper runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON");
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        w.emu
            .issued_secrets()
            .iter()
            .any(|s| s == v["token"].as_str().unwrap_or_default())
    );
    w.verify_google_id_token(v["id_token"].as_str().unwrap_or_default(), audience);
    // The cache went where the wrapper put it.
    assert!(tmp.join("wif-helper").is_dir());
    // Without the function's settings it says which one is missing.
    let out = Command::new(&wrapper)
        .arg("true")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("the wrapper runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WIF_HELPER_PROVIDER"));
}
