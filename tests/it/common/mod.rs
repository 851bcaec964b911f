//! Test harness: an emulator on loopback and the real wif-helper binary.
//!
//! Every command runs with a cleared environment, its own HOME and cache
//! directory, and AWS pointed at the emulator, so tests run in parallel and
//! no request leaves 127.0.0.1 (proxies point at a dead loopback port, with
//! `NO_PROXY` exempting only loopback). `Run` keeps stdout, stderr and the status
//! for assertions; executable-mode tests assert stderr is empty.
//!
//! Secret hygiene is checked for every CLI test: every command logs at
//! `trace` to the world's debug log (`WIF_HELPER_LOG_FILE`), every
//! [`World::run`] checks that stderr holds no secret the emulator issued and
//! stdout none but the token it prints, and dropping the world checks that
//! the debug log holds none.

pub mod mds;
pub mod relay;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use wif_emulator::{Emulator, EmulatorConfig};

pub const BIN: &str = env!("CARGO_BIN_EXE_wif-helper");
pub const ACCOUNT: &str = "111122223333";
pub const WORKLOAD_ROLE: &str = "arn:aws:iam::111122223333:role/wif-workload";
pub const ASSUMED_ROLE: &str = "arn:aws:iam::111122223333:role/wif-assumed";

/// How the child process finds AWS credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsSource {
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the emulator's IAM user.
    EnvKeys,
    /// A profile with role_arn + source_profile (keys in the credentials file).
    ProfileAssumeRole,
    /// AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IRSA).
    WebIdentity,
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI + authorization token (ECS, EKS Pod Identity).
    Container,
    /// EC2 instance metadata, IMDSv2.
    Imds,
    /// Nothing at all.
    None,
}

pub struct World {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub source: AwsSource,
    pub extra_env: Vec<(String, String)>,
    pub region: Option<String>,
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line of JSON on stdout, got {:?}",
            self.stdout
        );
        serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The executable-protocol contract every run must keep.
    pub fn protocol(&self) -> Value {
        assert_eq!(self.stderr, "", "executable mode wrote to stderr");
        assert_eq!(
            self.status, 0,
            "executable mode exit status; stdout {:?}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(v["version"], Value::from(1), "{v}");
        assert!(v["success"].is_boolean(), "{v}");
        assert_eq!(
            v["token_type"], "urn:ietf:params:oauth:token-type:jwt",
            "{v}"
        );
        if v["success"] == Value::Bool(true) {
            assert!(
                v["id_token"]
                    .as_str()
                    .is_some_and(|t| t.split('.').count() == 3),
                "{v}"
            );
            assert!(v["expiration_time"].is_i64(), "{v}");
        } else {
            assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
            assert!(v["message"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
        }
        v
    }

    /// A print-command failure: the exit status, `CODE:` on stderr and
    /// every needle in the message. Returns stderr.
    pub fn error(&self, exit: i32, code: &str, needles: &[&str]) -> &str {
        assert_eq!(self.status, exit, "exit status; stderr {:?}", self.stderr);
        assert!(
            self.stderr.contains(&format!("{code}:")),
            "{code} not in {:?}",
            self.stderr
        );
        for n in needles {
            assert!(self.stderr.contains(n), "{n:?} not in {:?}", self.stderr);
        }
        &self.stderr
    }

    /// A failed protocol answer with this code.
    pub fn failure(&self, code: &str) -> String {
        let v = self.protocol();
        assert_eq!(v["success"], Value::Bool(false), "{v}");
        assert_eq!(v["code"], code, "{v}");
        v["message"].as_str().unwrap_or_default().to_owned()
    }

    /// A successful protocol answer: (JWT, expiration_time).
    pub fn success(&self) -> (String, i64) {
        let v = self.protocol();
        assert_eq!(v["success"], Value::Bool(true), "{v}");
        (
            v["id_token"].as_str().unwrap_or_default().to_owned(),
            v["expiration_time"].as_i64().unwrap_or_default(),
        )
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            status: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl World {
    pub fn new() -> Self {
        Self::with(EmulatorConfig::default(), AwsSource::EnvKeys)
    }

    pub fn with(config: EmulatorConfig, source: AwsSource) -> Self {
        let emu = Emulator::start(config).expect("emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        Self {
            emu,
            dir,
            source,
            extra_env: Vec::new(),
            region: Some("us-east-1".into()),
        }
    }

    pub fn source(mut self, source: AwsSource) -> Self {
        self.source = source;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.push((k.into(), v.into()));
        self
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Another AWS identity behind the same profile: `app` (of
    /// [`AwsSource::ProfileAssumeRole`]) now names the IAM user's keys
    /// instead of the role.
    pub fn profile_names_the_iam_user(&self) {
        let (akid, secret) = self.emu.static_credentials();
        std::fs::write(
            self.home().join(".aws/config"),
            format!(
                "[profile app]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
            ),
        )
        .expect("edit the profile");
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.home().join(".cache").join("wif-helper")
    }

    pub fn oidc_provider(&self) -> String {
        self.emu
            .oidc_audience()
            .trim_start_matches("//iam.googleapis.com/")
            .to_owned()
    }

    /// A command for the wif-helper binary with the world's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env_clear().stdin(Stdio::null());
        for (k, v) in self.env_vars() {
            c.env(k, v);
        }
        c
    }

    /// The debug log every command of this world appends to.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("wif-helper-debug.log")
    }

    pub fn env_vars(&self) -> Vec<(String, String)> {
        let home = self.home();
        std::fs::create_dir_all(home.join(".aws")).expect("home");
        let url = self.emu.url();
        let mut e: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            (
                "WIF_HELPER_LOG_FILE".into(),
                self.log_file().display().to_string(),
            ),
            ("WIF_HELPER_LOG".into(), "trace".into()),
            ("AWS_ENDPOINT_URL_STS".into(), url.clone()),
            (
                "AWS_CONFIG_FILE".into(),
                home.join(".aws/config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                home.join(".aws/credentials").display().to_string(),
            ),
        ];
        // A safety net: anything not for the emulator goes to a dead proxy
        // and fails instead of leaving the machine.
        for v in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
            e.push((v.into(), "http://127.0.0.1:9".into()));
        }
        for v in ["NO_PROXY", "no_proxy"] {
            e.push((v.into(), "127.0.0.1,localhost".into()));
        }
        if let Some(r) = &self.region {
            e.push(("AWS_REGION".into(), r.clone()));
        }
        if self.source != AwsSource::Imds {
            // Never let the SDK try the real 169.254.169.254.
            e.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
        }
        let (akid, secret) = self.emu.static_credentials();
        match self.source {
            AwsSource::EnvKeys => {
                e.push(("AWS_ACCESS_KEY_ID".into(), akid));
                e.push(("AWS_SECRET_ACCESS_KEY".into(), secret));
            }
            AwsSource::ProfileAssumeRole => {
                std::fs::write(
                    home.join(".aws/credentials"),
                    format!(
                        "[base]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
                    ),
                )
                .expect("credentials file");
                std::fs::write(
                    home.join(".aws/config"),
                    format!("[profile app]\nrole_arn = {ASSUMED_ROLE}\nsource_profile = base\nrole_session_name = from-profile\n"),
                )
                .expect("config file");
                e.push(("AWS_PROFILE".into(), "app".into()));
            }
            AwsSource::WebIdentity => {
                let token_file = home.join("web-identity-token");
                std::fs::write(
                    &token_file,
                    self.emu
                        .web_identity_token("system:serviceaccount:default:app"),
                )
                .expect("token file");
                e.push((
                    "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                    token_file.display().to_string(),
                ));
                e.push(("AWS_ROLE_ARN".into(), WORKLOAD_ROLE.into()));
                e.push(("AWS_ROLE_SESSION_NAME".into(), "irsa-session".into()));
            }
            AwsSource::Container => {
                e.push((
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                    format!("{url}/aws/container/credentials"),
                ));
                e.push((
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
                    self.emu.container_auth_token(),
                ));
            }
            AwsSource::Imds => {
                e.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), url.clone()));
            }
            AwsSource::None => {}
        }
        e.extend(self.extra_env.iter().cloned());
        e
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let run: Run = self.command(args).output().expect("wif-helper runs").into();
        self.assert_no_secret_printed(&run);
        run
    }

    /// stderr holds no secret the emulator issued; stdout none but the
    /// token the command prints (the bare line, or the JSON's token field).
    pub fn assert_no_secret_printed(&self, run: &Run) {
        let printed = printed_token(&run.stdout);
        for secret in self.emu.issued_secrets() {
            assert!(!run.stderr.contains(&secret), "stderr holds a secret");
            if run.stdout.contains(&secret) {
                assert_eq!(
                    printed.as_deref(),
                    Some(secret.as_str()),
                    "stdout holds a secret that is not the token it prints"
                );
            }
        }
    }

    /// `wif-helper executable --provider <oidc provider>` plus `extra`.
    pub fn executable(&self, extra: &[&str]) -> Run {
        let provider = self.oidc_provider();
        let mut args = vec!["executable", "--provider", provider.as_str()];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let log = self.log_file();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for secret in self.emu.issued_secrets() {
            assert!(
                !text.contains(&secret),
                "the debug log {} holds a secret the emulator issued",
                log.display()
            );
        }
    }
}

/// The token a command's stdout carries: the `id_token` or `access_token`
/// of a JSON answer, or the one bare line.
pub fn printed_token(stdout: &str) -> Option<String> {
    let line = stdout.trim_end();
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return ["id_token", "access_token"]
            .iter()
            .find_map(|k| v[*k].as_str().map(str::to_owned));
    }
    // `--format env`: `export NAME='token'` lines (after a comment), one token.
    let exported: Vec<&str> = line
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once("='").map(|(_, v)| v.trim_end_matches('\'')))
        .collect();
    if !exported.is_empty() && exported.iter().all(|v| *v == exported[0]) {
        return Some(exported[0].to_owned());
    }
    (!line.is_empty() && !line.contains(char::is_whitespace)).then(|| line.to_owned())
}

/// The claims of a JWT (no verification; the emulator verifies signatures).
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file exists")).expect("JSON file")
}

impl World {
    /// Verifies a Google-signed ID token against the emulated Google JWKS
    /// with jsonwebtoken (independent of the emulator's own code) and
    /// returns its claims.
    pub fn verify_google_id_token(&self, token: &str, audience: &str) -> Value {
        let url = format!("{}/google/oauth2/v3/certs", self.emu.url());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let jwks: jsonwebtoken::jwk::JwkSet = rt
            .block_on(async { reqwest::Client::new().get(url).send().await?.json().await })
            .expect("JWKS");
        let header = jsonwebtoken::decode_header(token).expect("JWT header");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let jwk = jwks
            .find(&header.kid.expect("kid"))
            .expect("kid in the JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["https://accounts.google.com"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .expect("valid ID token")
            .claims
    }
}

impl AwsSource {
    /// Every source that yields credentials.
    pub const ALL: [AwsSource; 5] = [
        AwsSource::EnvKeys,
        AwsSource::ProfileAssumeRole,
        AwsSource::WebIdentity,
        AwsSource::Container,
        AwsSource::Imds,
    ];
}

impl World {
    /// The emulator's AWS-type provider, as users write it.
    pub fn aws_provider(&self) -> String {
        self.emu
            .aws_audience()
            .trim_start_matches("//iam.googleapis.com/")
            .to_owned()
    }

    /// The flags every direct-path command needs: the provider, the service
    /// account and the emulator's Google URLs.
    pub fn direct_flags(&self, provider: &str, service_account: &str) -> Vec<String> {
        vec![
            "--provider".into(),
            provider.into(),
            "--service-account".into(),
            service_account.into(),
            "--token-url".into(),
            self.emu.token_url(),
            "--iam-credentials-url".into(),
            format!("{}/google/iamcredentials", self.emu.url()),
        ]
    }

    /// Starts every command at once and waits for all of them.
    pub fn spawn_all(&self, argsets: &[Vec<String>]) -> Vec<Run> {
        let children: Vec<_> = argsets
            .iter()
            .map(|args| {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                self.command(&refs)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn: {e}"))
            })
            .collect();
        children
            .into_iter()
            .map(|c| Run::from(c.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"))))
            .collect()
    }
}
