//! The real Google client libraries get tokens from the metadata server
//! through Application Default Credentials, with no credential file and no
//! `GOOGLE_APPLICATION_CREDENTIALS`: Python google-auth, Node
//! google-auth-library and Rust google-cloud-auth, first with only the
//! environment `metadata-server` printed, then as children of
//! `wif-helper exec`. Access tokens come from the emulated IAM
//! Credentials; ID tokens verify against the emulated Google JWKS with the
//! audience asked for.

use crate::client_libraries::clients;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const AUDIENCE: &str = "https://my-svc-abc123-uc.a.run.app/api?x=1&y=2";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

fn python() -> PathBuf {
    clients().join("venv/bin/python")
}

/// The variables a library process gets besides the printed ones: a PATH, a
/// HOME with no gcloud credentials, and the dead-proxy safety net.
fn base_env(w: &World) -> Vec<(String, String)> {
    w.env_vars()
        .into_iter()
        .filter(|(k, _)| k == "PATH" || k == "HOME" || k.to_ascii_lowercase().ends_with("_proxy"))
        .chain([(
            "NODE_MODULES_DIR".to_owned(),
            clients().join("node/node_modules").display().to_string(),
        )])
        .collect()
}

/// The last JSON line of a run's stdout.
fn answer(what: &str, out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): stdout {stdout:?} stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `program args` with only `env` (plus [`base_env`]).
fn library(w: &World, env: &[(String, String)], program: &Path, args: &[&str]) -> Value {
    let mut c = Command::new(program);
    c.args(args).env_clear();
    for (k, v) in base_env(w).iter().chain(env) {
        c.env(k, v);
    }
    answer(&program.display().to_string(), &c.output().expect("runs"))
}

/// The answer is a token the emulated IAM issued and an ID token for [`AUDIENCE`].
fn assert_tokens(w: &World, v: &Value) {
    assert_eq!(v["ok"], Value::Bool(true), "{v}");
    let token = v["token"].as_str().unwrap_or_default();
    assert!(w.emu.issued_secrets().iter().any(|s| s == token), "{v}");
    let claims = w.verify_google_id_token(v["id_token"].as_str().unwrap_or_default(), AUDIENCE);
    assert_eq!(claims["aud"], AUDIENCE);
}

#[test]
fn python_google_auth_default_uses_the_metadata_server() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let py = script("python_mds_client.py");
    let v = library(
        &w,
        &m.env,
        &python(),
        &[py.to_str().unwrap_or_default(), AUDIENCE],
    );
    assert_tokens(&w, &v);
    assert_eq!(
        v["class"],
        "google.auth.compute_engine.credentials.Credentials"
    );
    assert_eq!(v["project"], "wif-demo");
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
    assert_eq!(w.emu.count("google:generateIdToken"), 1);
}

#[test]
fn node_google_auth_library_uses_the_metadata_server() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let js = script("node_mds_client.js");
    let v = library(
        &w,
        &m.env,
        Path::new("node"),
        &[js.to_str().unwrap_or_default(), AUDIENCE],
    );
    assert_tokens(&w, &v);
    assert_eq!(v["class"], "Compute");
    assert_eq!(v["project"], "wif-demo");
    assert_eq!(w.emu.count("google:sts.token"), 1);
}

#[test]
fn python_and_node_share_one_exchange_and_one_token() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let py = script("python_mds_client.py");
    let js = script("node_mds_client.js");
    let a = library(
        &w,
        &m.env,
        &python(),
        &[py.to_str().unwrap_or_default(), AUDIENCE],
    );
    let b = library(
        &w,
        &m.env,
        Path::new("node"),
        &[js.to_str().unwrap_or_default(), AUDIENCE],
    );
    assert_tokens(&w, &a);
    assert_tokens(&w, &b);
    assert_eq!(a["token"], b["token"]);
    // Both ask with format=full: one ID token too.
    assert_eq!(a["id_token"], b["id_token"]);
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
    assert_eq!(w.emu.count("google:generateIdToken"), 1);
}

#[test]
fn rust_google_cloud_auth_uses_the_metadata_server() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let me = std::env::current_exe().expect("test binary");
    let v = library(
        &w,
        &m.env,
        &me,
        &[
            "metadata_clients::rust_mds_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
    );
    assert_tokens(&w, &v);
    assert_eq!(w.emu.count("google:sts.token"), 1);
}

/// `wif-helper exec` with the world's environment (AWS credentials and all)
/// plus a `GOOGLE_APPLICATION_CREDENTIALS` that would break every library if
/// exec left it in place.
fn exec_library(w: &World, argv: &[&str]) -> Value {
    let mut args: Vec<String> = vec!["exec".into()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    args.push("--".into());
    args.extend(argv.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w
        .command(&refs)
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/nonexistent/credential_config.json",
        )
        .env("NODE_MODULES_DIR", clients().join("node/node_modules"))
        .output()
        .expect("exec runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    answer("exec", &out)
}

#[test]
fn python_and_node_under_exec_get_tokens() {
    let w = World::new();
    let py = script("python_mds_client.py");
    let v = exec_library(
        &w,
        &[
            python().to_str().unwrap_or_default(),
            py.to_str().unwrap_or_default(),
            AUDIENCE,
        ],
    );
    assert_tokens(&w, &v);
    let js = script("node_mds_client.js");
    let v = exec_library(&w, &["node", js.to_str().unwrap_or_default(), AUDIENCE]);
    assert_tokens(&w, &v);
    // Two exec runs, two servers, one on-disk cache: one exchange.
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}

/// The Rust client library's side of `rust_google_cloud_auth_uses_the_metadata_server`:
/// Application Default Credentials with the metadata server the environment names.
#[test]
#[ignore = "a child process of the metadata-server client-library tests"]
#[allow(clippy::print_stdout)] // the parent reads the answer from stdout
fn rust_mds_child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answer = rt.block_on(async {
        let access = async {
            let creds = google_cloud_auth::credentials::Builder::default()
                .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
                .build_access_token_credentials()
                .map_err(|e| e.to_string())?;
            creds
                .access_token()
                .await
                .map(|t| t.token)
                .map_err(|e| format!("{e:?}"))
        };
        let id = async {
            let creds = google_cloud_auth::credentials::idtoken::Builder::new(AUDIENCE)
                .build()
                .map_err(|e| e.to_string())?;
            creds.id_token().await.map_err(|e| format!("{e:?}"))
        };
        match (access.await, id.await) {
            (Ok(token), Ok(id_token)) => {
                serde_json::json!({"ok": true, "token": token, "id_token": id_token})
            }
            (Err(e), _) | (_, Err(e)) => serde_json::json!({"ok": false, "error": e}),
        }
    });
    println!("\n{answer}");
}
