//! The settings layer: what each path is asked to do, validated once.
//!
//! Commands parse flags into these types; the Rust API builds them directly.
//! Either way [`ServiceSettings::validate`], [`JwtSettings::validate`] and the
//! validators in [`validate`] are the only checks, so a value is accepted or
//! refused the same way, with the same message, everywhere.

pub(crate) mod validate;

use crate::aws::AwsSettings;
use crate::cache::Cache;
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::provider::Provider;
use crate::subject::ProviderType;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

pub use validate::MAX_LIFETIME;

/// Google's STS token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
/// The IAM Credentials API root.
pub const DEFAULT_IAM_CREDENTIALS_URL: &str = "https://iamcredentials.googleapis.com";
/// The default scope of access tokens and of the STS exchange.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Default service-account token lifetime, seconds.
pub const DEFAULT_LIFETIME: u32 = 3600;
/// Default overall deadline of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest overall deadline accepted (one hour).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default lifetime of the AWS-issued JWT, seconds.
pub const DEFAULT_JWT_DURATION: i64 = 3600;
/// The deadlines a direct-path call accepts.
pub(crate) const SERVICE_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=MAX_TIMEOUT;
/// The deadlines `executable` accepts: libraries allow a command at most 120 s.
pub(crate) const EXECUTABLE_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1_000)..=Duration::from_millis(120_000);
/// The bounds every library enforces on a config's `timeout_millis`.
pub(crate) const CONFIG_TIMEOUT_MILLIS_RANGE: RangeInclusive<u32> = 5_000..=120_000;

/// Where (and whether) to cache.
#[derive(Debug, Clone, Default)]
pub struct CacheSettings {
    /// `--cache-dir`; otherwise the XDG cache directory.
    pub dir: Option<PathBuf>,
    /// `--no-cache`.
    pub disabled: bool,
}

impl CacheSettings {
    /// Opens the cache, or `None` when disabled. An explicit `--cache-dir`
    /// that is unusable or unsafe is an error, and so is an unsafe default
    /// one (`CACHE_INSECURE`: tampering). The default location is otherwise
    /// only a preference: when it cannot be used (no `HOME`, a read-only
    /// one as on Lambda or in a pod with a read-only root filesystem), the
    /// cache falls back to a private directory under `$XDG_RUNTIME_DIR`, then
    /// under the temporary directory, then to no cache, saying so in the log;
    /// the call itself never fails for it.
    pub(crate) fn open(&self, env: &Env) -> Result<Option<Cache>> {
        if self.disabled {
            return Ok(None);
        }
        if let Some(dir) = &self.dir {
            return Cache::open(dir.clone()).map(Some).map_err(|e| {
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
            });
        }
        for (i, dir) in fallback_dirs(env).into_iter().enumerate() {
            match Cache::open(dir.clone()) {
                Ok(cache) => return Ok(Some(cache)),
                // Unsafe is not the same as unusable: a usual cache directory
                // that others can write, own or have replaced by a symlink
                // means someone tampered with it, and is refused, not quietly
                // avoided. A squatted fallback in a shared /tmp is skipped.
                Err(e) if i == 0 && e.code() == ErrorCode::CacheInsecure => return Err(e),
                Err(e) => tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cache directory unusable; trying the next one"
                ),
            }
        }
        tracing::warn!("no usable cache directory: caching is off for this run");
        Ok(None)
    }
}

/// Where the cache may live when no `--cache-dir` is given, best first:
/// the XDG cache directory, `$XDG_RUNTIME_DIR/wif-helper`, and
/// `$TMPDIR/wif-helper-<uid>` (created 0700; one squatted by another user
/// is refused like any unsafe directory).
fn fallback_dirs(env: &Env) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env.default_cache_dir().into_iter().collect();
    if let Some(run) = env.get("XDG_RUNTIME_DIR").map(PathBuf::from)
        && run.is_absolute()
    {
        dirs.push(run.join("wif-helper"));
    }
    let tmp = env
        .get("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let uid = rustix::process::geteuid().as_raw();
    dirs.push(tmp.join(format!("wif-helper-{uid}")));
    dirs
}

/// Everything that determines the tokens a [`crate::TokenService`] hands out.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The workload identity pool provider.
    pub provider: Provider,
    /// Whether it is an AWS provider or an OIDC provider trusting the AWS
    /// account's issuer (default [`ProviderType::Aws`]).
    pub provider_type: ProviderType,
    /// The service account to impersonate (email or unique ID).
    pub service_account: String,
    /// Access-token scopes (default `https://www.googleapis.com/auth/cloud-platform`).
    pub scopes: Vec<String>,
    /// Access-token lifetime in seconds, 1..=43200 (default 3600; above 3600
    /// needs the organization policy).
    pub lifetime: u32,
    /// Delegation chain (emails or `projects/-/serviceAccounts/EMAIL`).
    pub delegates: Vec<String>,
    /// Google STS endpoint (default `https://sts.googleapis.com/v1/token`).
    pub token_url: String,
    /// IAM Credentials API root (default `https://iamcredentials.googleapis.com`).
    pub iam_credentials_url: String,
    /// AWS region, profile and assume-role.
    pub aws: AwsSettings,
    /// Cache directory, or no cache.
    pub cache: CacheSettings,
    /// Overall deadline of one `access_token` / `id_token` call (default 30 s).
    pub timeout: Duration,
    /// Lifetime of the AWS-issued JWT for OIDC providers, 60..=3600 s.
    pub jwt_duration: i64,
}

impl ServiceSettings {
    /// The documented defaults for `provider` and `service_account`.
    pub fn new(provider: Provider, service_account: impl Into<String>) -> Self {
        Self {
            provider,
            provider_type: ProviderType::Aws,
            service_account: service_account.into(),
            scopes: vec![CLOUD_PLATFORM_SCOPE.to_owned()],
            lifetime: DEFAULT_LIFETIME,
            delegates: Vec::new(),
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            iam_credentials_url: DEFAULT_IAM_CREDENTIALS_URL.to_owned(),
            aws: AwsSettings::default(),
            cache: CacheSettings::default(),
            timeout: DEFAULT_TIMEOUT,
            jwt_duration: DEFAULT_JWT_DURATION,
        }
    }

    /// Checks every field, with messages naming the flag to fix.
    pub fn validate(&self) -> Result<()> {
        validate::service_account("--service-account", &self.service_account)?;
        validate::delegates("--delegates", &self.delegates)?;
        validate::scopes("--scopes", &self.scopes)?;
        validate::lifetime("--lifetime", self.lifetime)?;
        validate::url("--token-url", &self.token_url)?;
        validate::url("--iam-credentials-url", &self.iam_credentials_url)?;
        validate::timeout(
            "--timeout-millis (ServiceSettings::timeout)",
            self.timeout,
            &SERVICE_TIMEOUT_RANGE,
        )?;
        if self.provider_type == ProviderType::Oidc {
            validate::jwt_duration("--duration", self.jwt_duration)?;
        }
        validate::aws(&self.aws)
    }
}

/// Settings of the executable path: an AWS-issued JWT for a provider.
#[derive(Debug, Clone)]
pub(crate) struct JwtSettings {
    /// The pool provider (the JWT's audience).
    pub(crate) provider: Provider,
    /// AWS credential settings.
    pub(crate) aws: AwsSettings,
    /// Requested JWT lifetime in seconds (60..=3600).
    pub(crate) duration: i64,
}

impl JwtSettings {
    /// Checks the duration and the AWS settings.
    pub(crate) fn validate(&self) -> Result<()> {
        validate::jwt_duration("--duration", self.duration)?;
        validate::aws(&self.aws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/pool/providers/prov";
    const SA: &str = "app@my-project.iam.gserviceaccount.com";

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = ServiceSettings::new(RES.parse().unwrap_or_else(|e| panic!("{e}")), SA);
        assert_eq!(s.scopes, ["https://www.googleapis.com/auth/cloud-platform"]);
        assert_eq!(s.lifetime, 3600);
        assert_eq!(s.provider_type, ProviderType::Aws);
        assert_eq!(s.token_url, "https://sts.googleapis.com/v1/token");
        assert_eq!(
            s.iam_credentials_url,
            "https://iamcredentials.googleapis.com"
        );
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert!(!s.cache.disabled);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn an_unusable_default_cache_falls_back_and_an_explicit_one_is_an_error() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tmp = d.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap_or_else(|e| panic!("{e}"));
        let tmp_str = tmp.to_string_lossy().into_owned();
        // No HOME at all: the temporary directory.
        let env = Env::from_pairs([("TMPDIR", tmp_str.as_str())]);
        let cache = CacheSettings::default().open(&env).ok().flatten();
        let dir = cache.map(|c| c.dir().to_path_buf()).unwrap_or_default();
        assert!(dir.starts_with(&tmp), "{}", dir.display());
        // HOME is a file, so ~/.cache cannot be made: the runtime directory.
        let home = d.path().join("home-file");
        std::fs::write(&home, b"").unwrap_or_else(|e| panic!("{e}"));
        let run = d.path().join("run");
        std::fs::create_dir(&run).unwrap_or_else(|e| panic!("{e}"));
        let (h, r) = (home.to_string_lossy(), run.to_string_lossy());
        let env = Env::from_pairs([("HOME", h.as_ref()), ("XDG_RUNTIME_DIR", r.as_ref())]);
        let cache = CacheSettings::default().open(&env).ok().flatten();
        assert_eq!(
            cache.map(|c| c.dir().to_path_buf()),
            Some(run.join("wif-helper"))
        );
        // Nothing usable at all: no cache, and no error.
        let env = Env::from_pairs([("HOME", h.as_ref()), ("TMPDIR", h.as_ref())]);
        assert!(matches!(CacheSettings::default().open(&env), Ok(None)));
        // An explicit directory that cannot be used is an error.
        let explicit = CacheSettings {
            dir: Some(home.join("cache")),
            disabled: false,
        };
        assert!(explicit.open(&env).is_err());
    }

    #[test]
    fn jwt_settings_check_the_duration() {
        let mut j = JwtSettings {
            provider: RES.parse().unwrap_or_else(|e| panic!("{e}")),
            aws: AwsSettings::default(),
            duration: 900,
        };
        assert!(j.validate().is_ok());
        j.duration = 10;
        assert!(j.validate().is_err());
    }
}
