//! The real Google client libraries (Python google-auth, Node
//! google-auth-library) load a config written by `generate-config`, run
//! wif-helper, exchange its JWT at the emulated Google STS and impersonate the
//! service account at the emulated IAM Credentials.
//!
//! `tests/clients/setup.sh` installs the pinned libraries under
//! `target/clients` on first use (a virtualenv and node_modules). The Rust
//! library (`google-cloud-auth`, a dev-dependency) runs in a child process of
//! this test binary, because it reads the process environment.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Node modules of the client-library tests (installed on first use).
pub(crate) fn node_modules() -> PathBuf {
    clients().join("node/node_modules")
}

pub(crate) fn clients() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("target/clients");
        let status = Command::new("bash")
            .arg(root.join("tests/clients/setup.sh"))
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run tests/clients/setup.sh: {e}"));
        assert!(status.success(), "tests/clients/setup.sh failed: the client-library tests need python3 (venv, pip) and npm");
        dir
    })
}

struct Setup {
    world: World,
    config: PathBuf,
    helper: PathBuf,
}

/// A world and a credential config whose command runs a private copy of
/// wif-helper (so a test can delete it to prove it is not run again).
fn setup() -> Setup {
    setup_with(&[])
}

/// [`setup`] with more `generate-config` flags.
fn setup_with(extra: &[&str]) -> Setup {
    let world = World::new();
    let helper = world.dir.path().join("bin/wif-helper");
    std::fs::create_dir_all(helper.parent().unwrap_or(world.dir.path())).unwrap_or_default();
    std::fs::copy(BIN, &helper).unwrap_or_else(|e| panic!("copy binary: {e}"));
    let config = world.dir.path().join("credential_config.json");
    let provider = world.oidc_provider();
    let sa = world.emu.service_account();
    let token_url = format!("{}/google/sts/v1/token", world.emu.url());
    let iam_url = format!("{}/google/iamcredentials", world.emu.url());
    let mut args: Vec<&str> = vec![
        "generate-config",
        "--provider",
        &provider,
        "--service-account",
        &sa,
        "--output-file",
        config.to_str().unwrap_or_default(),
        "--token-url",
        &token_url,
        "--iam-credentials-url",
        &iam_url,
        "--executable-path",
        helper.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    let out = world.run(&args);
    assert_eq!(out.status, 0, "generate-config: {}", out.stderr);
    Setup {
        world,
        config,
        helper,
    }
}

impl Setup {
    fn library(&self, program: &Path, args: &[&str]) -> Value {
        self.library_with(program, args, &[])
    }

    fn library_with(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut c = Command::new(program);
        c.args(args).env_clear();
        for (k, v) in self.world.env_vars() {
            c.env(k, v);
        }
        // The test's own variables win; an empty value removes one.
        for (k, v) in env {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        c.env("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
            .env("GOOGLE_APPLICATION_CREDENTIALS", &self.config)
            .env("GOOGLE_CLOUD_PROJECT", "wif-demo")
            .env("NODE_MODULES_DIR", clients().join("node/node_modules"));
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{} printed no JSON ({e}): stdout {stdout:?} stderr {:?}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn python(&self, mode: &str) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
        let config = self.config.to_str().unwrap_or_default().to_owned();
        self.library(
            &clients().join("venv/bin/python"),
            &[script.to_str().unwrap_or_default(), mode, &config],
        )
    }

    fn node(&self) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_client.js");
        let config = self.config.to_str().unwrap_or_default().to_owned();
        self.library(
            Path::new("node"),
            &[script.to_str().unwrap_or_default(), &config],
        )
    }

    /// google-cloud-auth, in a child process (see `rust_client_child`). It
    /// sets no `GOOGLE_EXTERNAL_ACCOUNT_*` variable: the command alone must do.
    fn rust(&self) -> Value {
        let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let config = self.config.to_str().unwrap_or_default().to_owned();
        self.library_with(
            &me,
            &[
                "client_libraries::rust_client_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ],
            &[("WIF_RUST_CLIENT_CONFIG", &config)],
        )
    }

    /// The token is one the emulated IAM Credentials issued for the service account.
    fn assert_service_account_token(&self, v: &Value) {
        assert_eq!(v["ok"], Value::Bool(true), "{v}");
        let token = v["token"].as_str().unwrap_or_default();
        assert!(!token.is_empty(), "{v}");
        assert!(
            self.world.emu.issued_secrets().iter().any(|s| s == token),
            "token not issued by the emulator: {v}"
        );
    }
}

#[test]
fn python_load_credentials_from_file_gets_the_service_account_token() {
    let s = setup();
    let v = s.python("load");
    s.assert_service_account_token(&v);
    assert_eq!(s.world.emu.count("sts:GetWebIdentityToken"), 1);
    assert_eq!(s.world.emu.count("google:sts.token"), 1);
    assert_eq!(s.world.emu.count("google:generateAccessToken"), 1);
}

#[test]
fn python_default_credentials_gets_the_service_account_token() {
    let s = setup();
    let v = s.python("default");
    s.assert_service_account_token(&v);
    assert_eq!(s.world.emu.count("google:generateAccessToken"), 1);
}

#[test]
fn node_google_auth_gets_the_service_account_token() {
    let s = setup();
    let v = s.node();
    s.assert_service_account_token(&v);
    assert_eq!(s.world.emu.count("google:sts.token"), 1);
    assert_eq!(s.world.emu.count("google:generateAccessToken"), 1);
}

#[test]
fn libraries_reuse_the_output_file_without_running_wif_helper_again() {
    let response = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = response.path().join("response.json");
    let s = setup_with(&[
        "--executable-output-file",
        file.to_str().unwrap_or_default(),
    ]);
    s.assert_service_account_token(&s.python("load"));
    // Remove the program: fresh library processes must now answer from the output file.
    std::fs::remove_file(&s.helper).unwrap_or_else(|e| panic!("{e}"));
    s.assert_service_account_token(&s.python("load"));
    s.assert_service_account_token(&s.node());
    s.assert_service_account_token(&s.rust());
    assert_eq!(s.world.emu.count("sts:GetWebIdentityToken"), 1);
    // Each library process still exchanged the (reused) JWT itself.
    assert_eq!(s.world.emu.count("google:sts.token"), 4);
}

/// The default config has no `output_file`, so a library never reads one
/// identity's answer while running as another: each identity runs
/// wif-helper, whose cache keys follow the identity.
#[test]
fn one_config_used_by_two_aws_identities_gives_each_its_own_token() {
    let s = setup();
    let python = |env: &[(&str, &str)]| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
        let config = s.config.to_str().unwrap_or_default().to_owned();
        s.library_with(
            &clients().join("venv/bin/python"),
            &[script.to_str().unwrap_or_default(), "load", &config],
            env,
        )
    };
    // Identity 1: the IAM user wif-user (environment keys).
    let first = python(&[]);
    s.assert_service_account_token(&first);
    // Identity 2: a profile that assumes wif-assumed, without the
    // environment keys (which the AWS chain would try first).
    let home = s.world.home();
    std::fs::write(
        home.join(".aws/config"),
        format!("[profile other]\nrole_arn = {ASSUMED_ROLE}\nsource_profile = base\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (akid, secret) = s.world.emu.static_credentials();
    std::fs::write(
        home.join(".aws/credentials"),
        format!("[base]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let second = python(&[
        ("AWS_PROFILE", "other"),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
    ]);
    s.assert_service_account_token(&second);
    assert_ne!(first["token"], second["token"]);
    // Two identities, two AWS-issued JWTs, two exchanges.
    assert_eq!(s.world.emu.count("sts:AssumeRole"), 1);
    assert_eq!(s.world.emu.count("sts:GetWebIdentityToken"), 2);
    assert_eq!(s.world.emu.count("google:sts.token"), 2);
}

#[test]
fn libraries_show_wif_helpers_error_code_and_message() {
    let s = setup();
    s.world.emu.set_outbound_federation(false);
    for v in [s.python("load"), s.node(), s.rust()] {
        assert_eq!(v["ok"], Value::Bool(false), "{v}");
        let err = v["error"].as_str().unwrap_or_default();
        assert!(err.contains("AWS_OUTBOUND_FEDERATION_DISABLED"), "{err}");
        assert!(
            err.contains("enable-outbound-web-identity-federation"),
            "{err}"
        );
    }
}

#[test]
fn rust_google_cloud_auth_gets_the_service_account_token() {
    let s = setup();
    let v = s.rust();
    s.assert_service_account_token(&v);
    assert_eq!(s.world.emu.count("sts:GetWebIdentityToken"), 1);
    assert_eq!(s.world.emu.count("google:sts.token"), 1);
    assert_eq!(s.world.emu.count("google:generateAccessToken"), 1);
}

/// The Rust client library's side of `Setup::rust`, run only by it, with
/// `WIF_RUST_CLIENT_CONFIG` naming a credential configuration.
#[test]
#[ignore = "a child process of the Rust client-library tests"]
#[allow(clippy::print_stdout)] // the parent reads the answer from stdout
fn rust_client_child() {
    let path = std::env::var("WIF_RUST_CLIENT_CONFIG")
        .unwrap_or_else(|_| panic!("WIF_RUST_CLIENT_CONFIG: run by its parent test"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let config: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The library spawns its token cache on the current Tokio runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = rt.block_on(async {
        let built = google_cloud_auth::credentials::external_account::Builder::new(config)
            .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
            .build_access_token_credentials();
        match built {
            Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            Ok(creds) => match creds.access_token().await {
                Ok(t) => serde_json::json!({"ok": true, "token": t.token}),
                Err(e) => serde_json::json!({"ok": false, "error": format!("{e:?}")}),
            },
        }
    });
    // On a line of its own: the test harness has printed "test ... " before it.
    println!("\n{answer}");
}
