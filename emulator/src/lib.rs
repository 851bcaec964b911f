//! wif-emulator: a local emulator of the AWS and Google Cloud endpoints that
//! AWS-to-Google Workload Identity Federation talks to, on one 127.0.0.1 port.
//!
//! AWS: STS query API (GetCallerIdentity, AssumeRole, AssumeRoleWithWebIdentity,
//! GetWebIdentityToken) with SigV4 verification, the outbound-federation
//! issuer's discovery document and JWKS, IMDSv2 and the container
//! credentials endpoint. Google: STS token exchange (`aws4_request` and JWT
//! subject tokens), IAM Credentials generateAccessToken / generateIdToken and
//! the Google JWKS. Plus counters, a request log and fault injection.
//!
//! [`Emulator::start`] is synchronous: the server runs on its own thread with
//! its own tokio runtime, so it works from plain `#[test]`s and from inside
//! `#[tokio::test]`. Dropping the [`Emulator`] stops it. See `docs/emulator.md`.

mod admin;
mod aws;
pub mod config;
mod google;
mod jwt;
mod principal;
mod server;
mod sigv4;
mod state;
mod util;

pub use config::{EmulatorConfig, ProviderType};
pub use server::OPERATIONS;
pub use state::{Fault, RequestRecord};

use config::DEFAULT_USER_ACCESS_KEY_ID;
use state::Shared;
use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::thread::JoinHandle;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// A running emulator. Dropping it shuts the server down.
pub struct Emulator {
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

/// `//iam.googleapis.com/...` audience of the first provider of type `ty`.
pub(crate) fn audience_of(app: &Shared, ty: ProviderType) -> String {
    let g = &app.config.google;
    let found = g.pools.iter().find_map(|pool| {
        pool.providers
            .iter()
            .find(|p| p.provider_type == ty)
            .map(|p| (pool.id.as_str(), p.id.as_str()))
    });
    let default_provider = if ty == ProviderType::Oidc {
        "aws-oidc"
    } else {
        "aws"
    };
    let (pool, provider) = found.unwrap_or(("wif-pool", default_provider));
    format!(
        "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{pool}/providers/{provider}",
        g.project_number
    )
}

/// E-mail of the first configured service account.
pub(crate) fn service_account_of(app: &Shared) -> String {
    app.config
        .google
        .service_accounts
        .first()
        .map(|sa| sa.email.clone())
        .unwrap_or_else(|| "wif-sa@wif-demo.iam.gserviceaccount.com".into())
}

impl Emulator {
    /// Builds the world, binds `127.0.0.1:<config.port>` (0 = any free port)
    /// and serves on a dedicated thread. Returns once the socket is listening.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let shared = Arc::new(Shared::new(config, url)?);
        let router = server::router(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("wif-emulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("wif-emulator-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let serve = axum::serve(listener, router).into_future();
                    tokio::select! {
                        _ = serve => {}
                        _ = shutdown_rx => {}
                    }
                });
                runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::other("emulator thread exited during start")),
        }
        Ok(Emulator {
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The AWS outbound-federation issuer, `{url}/aws/issuer`.
    pub fn issuer(&self) -> String {
        self.shared.issuer()
    }

    /// The emulated EKS cluster OIDC issuer, `{url}/eks/oidc`.
    pub fn eks_issuer(&self) -> String {
        self.shared.eks_issuer()
    }

    /// Audience of the OIDC provider (default: `.../providers/aws-oidc`).
    pub fn oidc_audience(&self) -> String {
        audience_of(&self.shared, ProviderType::Oidc)
    }

    /// Audience of the AWS provider (default: `.../providers/aws`).
    pub fn aws_audience(&self) -> String {
        audience_of(&self.shared, ProviderType::Aws)
    }

    /// The first configured service account (default `wif-sa@wif-demo.iam.gserviceaccount.com`).
    pub fn service_account(&self) -> String {
        service_account_of(&self.shared)
    }

    /// Google STS token URL, `{url}/google/sts/v1/token`.
    pub fn token_url(&self) -> String {
        format!("{}/google/sts/v1/token", self.shared.url)
    }

    /// generateAccessToken URL for `email`.
    pub fn impersonation_url(&self, email: &str) -> String {
        format!(
            "{}/google/iamcredentials/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            self.shared.url
        )
    }

    /// The JSON the binary prints at start (URLs, audiences, env settings).
    pub fn info(&self) -> serde_json::Value {
        admin::info(&self.shared)
    }

    /// Calls of `operation` so far (including faulted ones).
    pub fn count(&self, operation: &str) -> u64 {
        self.shared.count(operation)
    }

    /// All counters.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.shared.stats()
    }

    /// The request log (no secrets).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Queues a fault for the next `fault.count` calls of `fault.operation`.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.inject_fault(fault);
    }

    /// Clears counters, the request log and pending faults.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Enables or disables AWS outbound web identity federation.
    pub fn set_outbound_federation(&self, enabled: bool) {
        self.shared.set_outbound_federation(enabled);
    }

    /// Freezes the emulator clock at `t` (`None` = follow the system clock).
    pub fn set_clock(&self, t: Option<OffsetDateTime>) {
        self.shared.set_clock(t);
    }

    /// Every secret the emulator ever issued or was configured with.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.shared.issued_secrets()
    }

    /// A JWT from the emulated EKS issuer (`aud` sts.amazonaws.com, 24 h)
    /// that AssumeRoleWithWebIdentity accepts, e.g. for `AWS_WEB_IDENTITY_TOKEN_FILE`.
    pub fn web_identity_token(&self, subject: &str) -> String {
        aws::web_identity::mint_web_identity_token(&self.shared, subject)
    }

    /// The `Authorization` value the container credentials endpoint requires.
    pub fn container_auth_token(&self) -> String {
        self.shared.container_token.clone()
    }

    /// Access key id and secret of the first configured IAM user (built-in: `wif-user`).
    pub fn static_credentials(&self) -> (String, String) {
        self.shared
            .config
            .aws
            .users
            .first()
            .map(|u| (u.access_key_id.clone(), u.secret_access_key.clone()))
            .unwrap_or_else(|| (DEFAULT_USER_ACCESS_KEY_ID.into(), String::new()))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
