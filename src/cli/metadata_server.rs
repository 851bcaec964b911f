//! `metadata-server`: the Compute Engine metadata server on loopback, served
//! from the direct path (`crate::metadata`).
//!
//! stdout carries one JSON line once the server listens:
//! `{"listen":"127.0.0.1:PORT","env":{…}}`, the variables that point every
//! Google library at it. Human logs go to stderr (or `--log-file`).
//! SIGTERM and SIGINT end it with exit 0 after the requests in flight.

use super::print::{AccessArgs, ServiceArgs};
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::logging::{self, Sink};
use crate::metadata::{self, App, Identity, Limits, Policy, Tokens};
use crate::output;
use crate::service::TokenService;
use crate::settings::validate;
use clap::Args;
use clap::builder::BoolishValueParser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// What the server says about the project.
#[derive(Debug, Args)]
pub(super) struct ProjectArgs {
    /// The project clients see at project/project-id and in GOOGLE_CLOUD_PROJECT
    /// (default: GOOGLE_CLOUD_PROJECT, else the service account's project)
    #[arg(long, env = "WIF_HELPER_PROJECT_ID", value_name = "PROJECT")]
    project_id: Option<String>,
    /// The number clients see at project/numeric-project-id (default: none, 404)
    #[arg(long, env = "WIF_HELPER_PROJECT_NUMBER", value_name = "NUMBER")]
    project_number: Option<u64>,
}

#[derive(Debug, Args)]
pub(super) struct MetadataServerArgs {
    #[command(flatten)]
    pub(super) service: ServiceArgs,
    #[command(flatten)]
    pub(super) access: AccessArgs,
    #[command(flatten)]
    pub(super) project: ProjectArgs,
    /// Address to listen on; port 0 picks a free one (printed on stdout)
    #[arg(
        long,
        env = "WIF_HELPER_LISTEN",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8954"
    )]
    listen: SocketAddr,
    /// Serve every local user, not only the one running the server (a
    /// node-level server): anyone on the host can then get the service
    /// account's tokens
    #[arg(long, env = "WIF_HELPER_ALLOW_OTHER_USERS", value_parser = BoolishValueParser::new())]
    allow_other_users: bool,
    /// Allow a non-loopback --listen address: every host that can reach it can
    /// then get the service account's tokens (see docs/security.md)
    #[arg(long, env = "WIF_HELPER_ALLOW_REMOTE", value_parser = BoolishValueParser::new())]
    allow_remote: bool,
    /// Connections served at once; one more is answered 503 and closed
    #[arg(
        long,
        env = "WIF_HELPER_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 1024
    )]
    max_connections: usize,
}

/// Installs logging: stderr (or `--log-file`) at `info`, `debug` with
/// `--verbose`, or `--log-level`.
pub(super) fn init_logging(service: &ServiceArgs, sink: Sink) -> Result<()> {
    let default = if service.verbose { "debug" } else { "info" };
    let level = service.log.log_level.as_deref().unwrap_or(default);
    logging::init(service.log.log_file.as_deref(), Some(level), sink)
}

/// The service, the identity the server shows, and its routes.
pub(super) fn app(
    service: &ServiceArgs,
    access: &AccessArgs,
    project: &ProjectArgs,
    env: &Env,
) -> Result<Arc<App>> {
    let settings = service.settings(|s| access.apply(s))?;
    let project_id = match &project.project_id {
        Some(p) => Some(p.clone()),
        None => env
            .get("GOOGLE_CLOUD_PROJECT")
            .map(str::to_owned)
            .or_else(|| metadata::project_of(&settings.service_account).map(str::to_owned)),
    };
    if let Some(p) = &project_id {
        validate::project_id("--project-id", p)?;
    }
    let id = Identity {
        email: settings.service_account.clone(),
        scopes: settings.scopes.clone(),
        project_id,
        project_number: project.project_number.map(|n| n.to_string()),
        universe_domain: "googleapis.com".to_owned(),
    };
    let service = TokenService::new(settings, env.clone())?;
    Ok(Arc::new(App::new(Tokens::new(service), id)))
}

/// A runtime for the server: up to 4 worker threads, as many as there are CPUs.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("wif-helper-mds")
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

/// How long requests in flight may take to finish after a signal.
pub(super) fn grace(service: &ServiceArgs) -> Duration {
    Duration::from_millis(u64::from(service.timeout.timeout_millis)) + Duration::from_secs(5)
}

/// Starts listening for signals of `kind` (from now on: none is lost while
/// the caller goes on).
pub(super) fn listen(kind: SignalKind) -> Result<Signal> {
    signal(kind).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot listen for signals: {e}"),
        )
    })
}

/// A future that resolves at SIGTERM or SIGINT. The handlers are installed
/// now, so a signal sent as soon as the server says it is ready is caught.
/// Call it inside the runtime.
pub(super) fn on_termination() -> Result<impl std::future::Future<Output = ()>> {
    let (mut term, mut int) = (
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
    );
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

pub(super) fn run(a: &MetadataServerArgs, env: &Env) -> Result<()> {
    init_logging(&a.service, Sink::Stderr)?;
    let app = app(&a.service, &a.access, &a.project, env)?;
    let policy = Policy {
        allow_other_users: a.allow_other_users,
        allow_remote: a.allow_remote,
    };
    let limits = Limits {
        max_connections: a.max_connections,
        ..Limits::default()
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        let bound = metadata::bind(a.listen, policy, limits).await?;
        let shutdown = on_termination()?;
        let local = bound.local_addr();
        let project = app_project(&app);
        let env_vars: serde_json::Map<String, serde_json::Value> =
            metadata::client_env(local, project.as_deref())
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
        // `listen` first, for people reading it.
        output::stdout(&format!(
            "{{\"listen\":{},\"env\":{}}}",
            serde_json::Value::from(local.to_string()),
            serde_json::Value::Object(env_vars)
        ));
        tracing::info!(
            listen = %local,
            service_account = %a.service.service_account,
            other_users = a.allow_other_users,
            remote = a.allow_remote,
            "metadata server ready"
        );
        bound.serve(app, shutdown, grace(&a.service)).await;
        tracing::info!("metadata server stopped");
        Ok(())
    });
    // Background refreshes are abandoned; nothing they hold outlives them.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The project the server shows, for the printed environment.
pub(super) fn app_project(app: &App) -> Option<String> {
    app.identity().project_id.clone()
}
