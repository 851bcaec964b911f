//! Orchestration: settings in, token out, through the cache.
//!
//! Each mode is `key → cache → (on a miss) async upstream work`. The async
//! runtime, TLS and the AWS configuration are built only inside the refresh
//! closure, so a cache hit costs a file read.

use crate::aws::{self, AwsSettings};
use crate::cache::{Cache, CacheKey, CachedToken};
use crate::clock::Clock;
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::provider::Provider;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where (and whether) to cache.
#[derive(Debug, Clone, Default)]
pub struct CacheSettings {
    /// `--cache-dir`; otherwise the XDG cache directory.
    pub dir: Option<PathBuf>,
    /// `--no-cache`.
    pub disabled: bool,
}

impl CacheSettings {
    /// Opens the cache, or `None` when disabled.
    pub fn open(&self, env: &Env) -> Result<Option<Cache>> {
        if self.disabled {
            return Ok(None);
        }
        let dir = match &self.dir {
            Some(d) => d.clone(),
            None => env.default_cache_dir().ok_or_else(|| {
                Error::invalid("no cache directory: set --cache-dir (WIF_HELPER_CACHE_DIR), XDG_CACHE_HOME or HOME, or pass --no-cache")
            })?,
        };
        Cache::open(dir).map(Some).map_err(|e| {
            if e.code() == ErrorCode::CacheError {
                Error::new(
                    e.code(),
                    format!(
                        "{}; choose another --cache-dir (WIF_HELPER_CACHE_DIR) or pass --no-cache",
                        e.message()
                    ),
                )
            } else {
                e
            }
        })
    }
}

/// Settings of the executable mode (an AWS-issued JWT for a provider).
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The pool provider (the JWT's audience).
    pub provider: Provider,
    /// AWS credential settings.
    pub aws: AwsSettings,
    /// Requested JWT lifetime in seconds (60..=3600).
    pub duration: i64,
}

/// The environment variables that select which AWS identity the default
/// chain resolves to. They go into cache keys so an entry made for one
/// identity is never served to another.
const IDENTITY_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
];

/// Cache-key fields for an AWS identity: explicit settings plus the
/// environment that steers the default chain.
pub fn aws_key_fields<'a>(aws: &'a AwsSettings, env: &'a Env) -> Vec<(&'a str, &'a str)> {
    let mut f: Vec<(&str, &str)> = IDENTITY_VARS
        .iter()
        .map(|v| (*v, env.get(v).unwrap_or("")))
        .collect();
    f.push(("region", aws.region.as_deref().unwrap_or("")));
    f.push(("profile", aws.profile.as_deref().unwrap_or("")));
    f.push((
        "assume_role_arn",
        aws.assume_role_arn.as_deref().unwrap_or(""),
    ));
    f.push(("home", env.get("HOME").unwrap_or("")));
    f
}

/// The AWS-issued JWT for `settings.provider`, from the cache or STS.
pub fn web_identity_jwt(
    settings: &JwtSettings,
    cache: Option<&Cache>,
    env: &Env,
    clock: &dyn Clock,
    deadline: Instant,
) -> Result<CachedToken> {
    let audience = settings.provider.audience();
    let fetch = || {
        block_on(deadline, async {
            let ctx = aws::load(&settings.aws, attempt_timeout(deadline)).await?;
            aws::web_identity::get_web_identity_token(
                &ctx,
                &audience,
                settings.duration,
                clock.now_unix(),
            )
            .await
        })
    };
    let Some(cache) = cache else {
        return fetch();
    };
    let duration = settings.duration.to_string();
    let mut fields = aws_key_fields(&settings.aws, env);
    fields.push(("audience", &audience));
    fields.push(("duration", &duration));
    let key = CacheKey::new("jwt", fields);
    cache
        .get_or_refresh(&key, clock, deadline, fetch)
        .map(|(token, source)| {
            tracing::debug!(?source, expires_at = token.expires_at, "web identity token");
            token
        })
}

/// One upstream attempt may use at most this much of what is left (60 %, at
/// least 1 s), so the SDK can abandon a stalled attempt and retry even under a
/// 5 s budget. Unlike `http::attempt_timeout` there is no 5 s floor: that one
/// bounds Google calls, whose retry loop checks the deadline itself.
fn attempt_timeout(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .mul_f32(0.6)
        .max(Duration::from_secs(1))
}

/// Runs `fut` on a fresh single-threaded runtime, failing with
/// [`ErrorCode::Timeout`] at `deadline`.
pub fn block_on<T>(deadline: Instant, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    rt.block_on(within(deadline, fut))
}

/// Runs `work` until `deadline`, failing with [`ErrorCode::Timeout`].
pub async fn within<T>(deadline: Instant, work: impl Future<Output = Result<T>>) -> Result<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorCode::Timeout,
            format!(
                "gave up after the {} ms deadline; AWS, Google STS or IAM Credentials did not answer in \
                 time, or another wif-helper process held the cache lock (raise --timeout-millis, or check \
                 connectivity)",
                left.as_millis()
            ),
        )),
    }
}
