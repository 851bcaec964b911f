//! The direct path: AWS identity → Google STS → IAM Credentials → a
//! service-account access token or ID token, through the shared cache.
//!
//! [`TokenService`] is the public Rust API and what `print-access-token` and
//! `print-identity-token` call. On a miss it
//!
//! 1. takes the cache lock of the wanted token (kind `access` or `id`) in a
//!    blocking task, so N processes asking for the same token make one
//!    upstream call between them;
//! 2. gets the federated STS token from its own cache entry (kind `sts`),
//!    which on its own miss loads AWS (`aws::load`), builds the subject
//!    token (a signed `GetCallerIdentity` for an AWS provider, or a
//!    `GetWebIdentityToken` JWT for an OIDC provider) and exchanges it. The
//!    STS entry does not depend on the service account's scopes or the ID
//!    token's audience, so 20 processes asking for 20 audiences make one
//!    exchange;
//! 3. calls `generateAccessToken` / `generateIdToken` and stores the result.
//!
//! Locks are always taken in that order (token, then STS), so processes
//! never deadlock. One deadline (`ServiceSettings::timeout`) bounds all of
//! it, waits for other processes' locks included. The synchronous
//! [`TokenService::cached_access_token`] / [`TokenService::cached_id_token`]
//! read the cache only: no runtime, TLS or AWS configuration.

use crate::aws::{self, AwsSettings, caller_identity, web_identity};
use crate::cache::{Cache, CacheKey, CachedToken, Locked};
use crate::clock::{Clock, SystemClock};
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::flow::{CacheSettings, aws_key_fields, within};
use crate::generate_config::{DEFAULT_IAM_CREDENTIALS_URL, DEFAULT_TOKEN_URL};
use crate::google::CLOUD_PLATFORM_SCOPE;
use crate::google::iam_credentials::{self, Impersonation};
use crate::google::sts::{self, Exchange};
use crate::http;
use crate::provider::Provider;
use crate::secret::Secret;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use crate::google::ProviderType;

/// Default service-account token lifetime, seconds.
pub const DEFAULT_LIFETIME: u32 = 3600;
/// The longest lifetime Google allows (and only with the org policy
/// `constraints/iam.allowServiceAccountCredentialLifetimeExtension`).
pub const MAX_LIFETIME: u32 = 43_200;
/// Default overall deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest overall deadline accepted (one hour).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default lifetime of the AWS-issued JWT (OIDC providers), seconds.
pub const DEFAULT_JWT_DURATION: i64 = 3600;

/// Everything that determines the tokens a [`TokenService`] hands out.
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
        validate_account("--service-account", &self.service_account)?;
        for d in &self.delegates {
            let email = d.strip_prefix("projects/-/serviceAccounts/").unwrap_or(d);
            validate_account("--delegates", email)?;
        }
        if self.scopes.is_empty() {
            return Err(Error::invalid("--scopes: at least one scope is required"));
        }
        for s in &self.scopes {
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(format!(
                    "--scopes: `{}` is not a scope",
                    s.escape_debug()
                )));
            }
        }
        if !(1..=MAX_LIFETIME).contains(&self.lifetime) {
            return Err(Error::invalid(format!(
                "--lifetime {}: Google accepts up to {MAX_LIFETIME} seconds (above 3600 only where the \
                 organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension allows it)",
                self.lifetime
            )));
        }
        validate_url("--token-url", &self.token_url)?;
        validate_url("--iam-credentials-url", &self.iam_credentials_url)?;
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(Error::invalid(format!(
                "--timeout-millis {} (ServiceSettings::timeout): expected 1..={}",
                self.timeout.as_millis(),
                MAX_TIMEOUT.as_millis()
            )));
        }
        if self.provider_type == ProviderType::Oidc
            && !web_identity::DURATION_RANGE.contains(&self.jwt_duration)
        {
            return Err(Error::invalid(format!(
                "--duration {}: AWS accepts 60..=3600 seconds",
                self.jwt_duration
            )));
        }
        if let Some(r) = &self.aws.region {
            caller_identity::validate_region(r)
                .map_err(|e| Error::invalid(format!("--region: {}", e.message())))?;
        }
        Ok(())
    }
}

fn validate_account(flag: &str, account: &str) -> Result<()> {
    let unique_id = !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit());
    let email = account.contains('@')
        && !account.starts_with('@')
        && !account.ends_with('@')
        && !account
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#:%".contains(c));
    if unique_id || email {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} `{}`: expected a service account email such as app@my-project.iam.gserviceaccount.com",
            account.escape_debug()
        )))
    }
}

fn validate_url(flag: &str, url: &str) -> Result<()> {
    match reqwest::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "https" | "http")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(format!(
            "{flag} `{url}`: expected an http(s) URL"
        ))),
    }
}

/// A token and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token (redacted in `Debug`).
    pub token: Secret,
    /// Its expiry, UTC.
    pub expires_at: time::OffsetDateTime,
}

impl Token {
    /// The expiry as Unix seconds (what the Python original returned).
    pub fn expires_at_unix(&self) -> i64 {
        self.expires_at.unix_timestamp()
    }

    fn from_cached(t: CachedToken) -> Result<Self> {
        let expires_at = time::OffsetDateTime::from_unix_timestamp(t.expires_at).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("token expiry {} out of range: {e}", t.expires_at),
            )
        })?;
        Ok(Self {
            token: t.token,
            expires_at,
        })
    }
}

/// Hands out Google access tokens and ID tokens for a service account,
/// obtained with the AWS identity the process already has, cached on disk
/// and shared with every other wif-helper process of the user.
///
/// ```no_run
/// use wif_helper::env::Env;
/// use wif_helper::service::{ServiceSettings, TokenService};
///
/// # async fn example() -> wif_helper::error::Result<()> {
/// let provider = "projects/123456789012/locations/global/workloadIdentityPools/my-pool/providers/my-aws"
///     .parse()?;
/// let settings = ServiceSettings::new(provider, "app@my-project.iam.gserviceaccount.com");
/// let service = TokenService::new(settings, Env::from_process())?;
///
/// // An OAuth access token (cloud-platform scope, one hour) ...
/// let access = service.access_token().await?;
/// let header = format!("Bearer {}", access.token.expose());
/// let unix_expiry = access.expires_at_unix();
///
/// // ... and an ID token for Cloud Run, Cloud Functions or IAP.
/// let id = service.id_token("https://my-service-abc123-uc.a.run.app", true).await?;
/// assert!(id.expires_at > time::OffsetDateTime::now_utc());
/// # let _ = (header, unix_expiry);
/// # Ok(())
/// # }
/// ```
///
/// The async methods need a Tokio runtime (with time enabled). Errors carry
/// a stable [`ErrorCode`] and a message that names the fix.
#[derive(Clone)]
pub struct TokenService {
    settings: Arc<ServiceSettings>,
    env: Arc<Env>,
    cache: Option<Cache>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenService {
    // The environment may hold AWS secrets: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("settings", &self.settings)
            .field("cache_dir", &self.cache.as_ref().map(Cache::dir))
            .finish_non_exhaustive()
    }
}

/// Which token a call wants.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    Access,
    Id {
        audience: &'a str,
        include_email: bool,
    },
}

impl TokenService {
    /// Validates the settings and opens the cache (unless disabled). `env`
    /// steers the cache location and keys; AWS itself reads the process
    /// environment, as every AWS SDK does.
    pub fn new(settings: ServiceSettings, env: Env) -> Result<Self> {
        crate::secret::remember_env(&env);
        settings.validate()?;
        let cache = settings.cache.open(&env)?;
        Ok(Self {
            settings: Arc::new(settings),
            env: Arc::new(env),
            cache,
            clock: Arc::new(SystemClock),
        })
    }

    /// Replaces the wall clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// A service-account access token, from the cache when one has more than
    /// 300 s left, else from Google (one refresh across processes).
    pub async fn access_token(&self) -> Result<Token> {
        self.get(Want::Access).await
    }

    /// A Google-signed ID token whose `aud` is `audience`, with the
    /// `email` claim when `include_email`.
    pub async fn id_token(&self, audience: &str, include_email: bool) -> Result<Token> {
        validate_id_audience(audience)?;
        self.get(Want::Id {
            audience,
            include_email,
        })
        .await
    }

    /// The cached access token if it is fresh; never touches the network.
    pub fn cached_access_token(&self) -> Result<Option<Token>> {
        self.cached(Want::Access)
    }

    /// The cached ID token for `audience` if it is fresh; never touches the network.
    pub fn cached_id_token(&self, audience: &str, include_email: bool) -> Result<Option<Token>> {
        validate_id_audience(audience)?;
        self.cached(Want::Id {
            audience,
            include_email,
        })
    }

    fn cached(&self, want: Want<'_>) -> Result<Option<Token>> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        match cache.get_fresh(&self.key(want), self.clock.now_unix())? {
            Some(t) => Token::from_cached(t).map(Some),
            None => Ok(None),
        }
    }

    async fn get(&self, want: Want<'_>) -> Result<Token> {
        let deadline = Instant::now() + self.settings.timeout;
        let work = async {
            let lock = match &self.cache {
                None => None,
                Some(cache) => match self.lock(cache, self.key(want), deadline).await? {
                    Locked::Fresh(t) => {
                        tracing::debug!(expires_at = t.expires_at, "token served from the cache");
                        return Ok(t);
                    }
                    Locked::Held(lock) => Some(lock),
                },
            };
            let client = http::client(self.settings.timeout)?;
            let (mut federated, subject, cached) = self.federated_token(&client, deadline).await?;
            let s = &self.settings;
            let target = Impersonation {
                iam_root: &s.iam_credentials_url,
                service_account: &s.service_account,
                delegates: &s.delegates,
                provider: &s.provider,
                provider_type: s.provider_type,
                subject: subject.as_deref(),
            };
            let mut result = self
                .impersonate(&client, &target, &federated, want, deadline)
                .await;
            // IAM refused a cached federated token before its expiry (revoked,
            // or another universe): forget it, exchange again, retry once.
            if cached
                && let (Some(cache), Err(e)) = (&self.cache, &result)
                && e.code() == ErrorCode::GoogleInvalidGrant
            {
                tracing::debug!("IAM refused the cached federated token; exchanging again");
                cache.remove(&self.sts_key())?;
                federated = self.federated_token(&client, deadline).await?.0;
                result = self
                    .impersonate(&client, &target, &federated, want, deadline)
                    .await;
            }
            let token = match result {
                // Name the exact member to bind: ask AWS who the caller is.
                Err(e)
                    if e.code() == ErrorCode::GooglePermissionDenied
                        && s.provider_type == ProviderType::Aws
                        && subject.is_none() =>
                {
                    return Err(match self.caller_aws_role(deadline).await {
                        Some(role) => iam_credentials::with_aws_role(e, &target, &role),
                        None => e,
                    });
                }
                r => r?,
            };
            if let Some(lock) = lock {
                lock.store(&token);
            }
            tracing::debug!(expires_at = token.expires_at, "token obtained from Google");
            Ok(token)
        };
        Token::from_cached(within(deadline, work).await?)
    }

    /// `generateAccessToken` or `generateIdToken` with the federated token.
    async fn impersonate(
        &self,
        client: &reqwest::Client,
        target: &Impersonation<'_>,
        federated: &Secret,
        want: Want<'_>,
        deadline: Instant,
    ) -> Result<CachedToken> {
        let now = self.clock.now_unix();
        match want {
            Want::Access => {
                let s = &self.settings;
                iam_credentials::generate_access_token(
                    client, target, federated, &s.scopes, s.lifetime, deadline, now,
                )
                .await
            }
            Want::Id {
                audience,
                include_email,
            } => {
                iam_credentials::generate_id_token(
                    client,
                    target,
                    federated,
                    audience,
                    include_email,
                    deadline,
                    now,
                )
                .await
            }
        }
    }

    /// The federated STS token (from its cache entry or a fresh exchange) and,
    /// when known, the federated subject for error hints; `true` when it came
    /// from the cache.
    async fn federated_token(
        &self,
        client: &reqwest::Client,
        deadline: Instant,
    ) -> Result<(Secret, Option<String>, bool)> {
        let lock = match &self.cache {
            None => None,
            Some(cache) => match self.lock(cache, self.sts_key(), deadline).await? {
                Locked::Fresh(t) => return Ok((t.token, None, true)),
                Locked::Held(lock) => Some(lock),
            },
        };
        let (token, subject) = self.exchange(client, deadline).await?;
        if let Some(lock) = lock {
            lock.store(&token);
        }
        Ok((token.token, subject, false))
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        deadline: Instant,
    ) -> Result<(CachedToken, Option<String>)> {
        let s = &self.settings;
        let left = deadline.saturating_duration_since(Instant::now());
        let aws = aws::load(&s.aws, http::attempt_timeout(left)).await?;
        let audience = s.provider.audience();
        let (subject_token, subject) = match s.provider_type {
            ProviderType::Aws => (
                caller_identity::subject_token(
                    &aws.credentials,
                    &aws.region,
                    &audience,
                    SystemTime::now(),
                )?,
                None,
            ),
            ProviderType::Oidc => {
                let jwt = web_identity::get_web_identity_token(
                    &aws,
                    &audience,
                    s.jwt_duration,
                    self.clock.now_unix(),
                )
                .await?;
                let sub = iam_credentials::jwt_claims(jwt.token.expose())
                    .ok()
                    .and_then(|c| c.get("sub").and_then(|v| v.as_str()).map(str::to_owned));
                (jwt.token, sub)
            }
        };
        let ex = Exchange {
            token_url: &s.token_url,
            provider: &s.provider,
            provider_type: s.provider_type,
            subject_token: &subject_token,
            scope: CLOUD_PLATFORM_SCOPE,
        };
        let token = sts::exchange(client, &ex, deadline, self.clock.now_unix()).await?;
        tracing::debug!(
            expires_at = token.expires_at,
            "federated token from Google STS"
        );
        Ok((token, subject))
    }

    /// The caller's `attribute.aws_role` (from `GetCallerIdentity`), for a
    /// PERMISSION_DENIED hint; `None` if AWS does not say.
    async fn caller_aws_role(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let aws = aws::load(&self.settings.aws, http::attempt_timeout(left))
            .await
            .ok()?;
        let arn = caller_identity::caller_arn(&aws).await?;
        Some(caller_identity::aws_role_attribute(&arn))
    }

    /// `Cache::lock` may sleep while another process refreshes: run it on
    /// the blocking pool.
    async fn lock(&self, cache: &Cache, key: CacheKey, deadline: Instant) -> Result<Locked> {
        let cache = cache.clone();
        let clock = Arc::clone(&self.clock);
        tokio::task::spawn_blocking(move || cache.lock(&key, clock.as_ref(), deadline))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::Internal,
                    format!("the cache lock task failed: {e}"),
                )
            })?
    }

    /// Key of the federated token: the AWS identity and the exchange.
    fn sts_key(&self) -> CacheKey {
        let s = &self.settings;
        let audience = s.provider.audience();
        let jwt_duration = s.jwt_duration.to_string();
        let mut f = self.exchange_fields(&audience, &jwt_duration);
        f.push(("token_url", &s.token_url));
        CacheKey::new("sts", f)
    }

    /// Key of a service-account token: the exchange plus the IAM request.
    fn key(&self, want: Want<'_>) -> CacheKey {
        let s = &self.settings;
        let audience = s.provider.audience();
        let jwt_duration = s.jwt_duration.to_string();
        let delegates = s
            .delegates
            .iter()
            .map(|d| iam_credentials::delegate_resource(d))
            .collect::<Vec<_>>()
            .join(",");
        let mut f = self.exchange_fields(&audience, &jwt_duration);
        f.push(("token_url", &s.token_url));
        f.push((
            "iam_credentials_url",
            s.iam_credentials_url.trim_end_matches('/'),
        ));
        f.push(("service_account", &s.service_account));
        f.push(("delegates", &delegates));
        match want {
            Want::Access => {
                let mut scopes: Vec<&str> = s.scopes.iter().map(String::as_str).collect();
                scopes.sort_unstable();
                scopes.dedup();
                let scopes = scopes.join(" ");
                let lifetime = s.lifetime.to_string();
                f.push(("scopes", &scopes));
                f.push(("lifetime", &lifetime));
                CacheKey::new("access", f)
            }
            Want::Id {
                audience,
                include_email,
            } => {
                f.push(("id_audience", audience));
                f.push((
                    "include_email",
                    if include_email { "true" } else { "false" },
                ));
                CacheKey::new("id", f)
            }
        }
    }

    fn exchange_fields<'a>(
        &'a self,
        audience: &'a str,
        jwt_duration: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let s = &self.settings;
        let mut f = aws_key_fields(&s.aws, &self.env);
        f.push(("audience", audience));
        f.push(("provider_type", s.provider_type.as_str()));
        if s.provider_type == ProviderType::Oidc {
            f.push(("jwt_duration", jwt_duration));
        }
        f
    }
}

fn validate_id_audience(audience: &str) -> Result<()> {
    if audience.is_empty() || audience.len() > 2048 || audience.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "--audience `{}`: expected the URL of the receiving service, e.g. https://my-service-abc123-uc.a.run.app",
            audience.escape_debug()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::secret::Secret;

    const RES: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/pool/providers/prov";
    const SA: &str = "app@my-project.iam.gserviceaccount.com";

    fn settings(dir: &std::path::Path) -> ServiceSettings {
        let mut s = ServiceSettings::new(RES.parse().unwrap_or_else(|e| panic!("{e}")), SA);
        s.cache.dir = Some(dir.join("cache"));
        s
    }

    fn service(s: ServiceSettings) -> TokenService {
        TokenService::new(
            s,
            Env::from_pairs([("HOME", "/home/u"), ("AWS_PROFILE", "dev")]),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .with_clock(Arc::new(FixedClock(1_000_000)))
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

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
    fn validation_names_the_flag() {
        let d = tmp();
        type Change = Box<dyn Fn(&mut ServiceSettings)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "--service-account",
                Box::new(|s| s.service_account = "not-an-email".into()),
            ),
            (
                "--service-account",
                Box::new(|s| s.service_account = "a@b/../x".into()),
            ),
            (
                "--delegates",
                Box::new(|s| s.delegates = vec!["x y".into()]),
            ),
            ("--scopes", Box::new(|s| s.scopes.clear())),
            ("--timeout-millis", Box::new(|s| s.timeout = Duration::ZERO)),
            ("--timeout-millis", Box::new(|s| s.timeout = Duration::MAX)),
            ("--scopes", Box::new(|s| s.scopes = vec!["a b".into()])),
            ("--lifetime", Box::new(|s| s.lifetime = 0)),
            ("--lifetime", Box::new(|s| s.lifetime = 43_201)),
            (
                "--token-url",
                Box::new(|s| s.token_url = "sts.googleapis.com".into()),
            ),
            (
                "--iam-credentials-url",
                Box::new(|s| s.iam_credentials_url = "ftp://x".into()),
            ),
            (
                "--region",
                Box::new(|s| s.aws.region = Some("Evil.com".into())),
            ),
            (
                "--duration",
                Box::new(|s| {
                    s.provider_type = ProviderType::Oidc;
                    s.jwt_duration = 10;
                }),
            ),
        ];
        for (flag, change) in cases {
            let mut s = settings(d.path());
            change(&mut s);
            let e = TokenService::new(s, Env::default())
                .err()
                .unwrap_or_else(|| panic!("{flag} accepted"));
            assert_eq!(e.code(), ErrorCode::InvalidArgument);
            assert!(e.message().contains(flag), "{flag}: {e}");
        }
        let mut s = settings(d.path());
        s.service_account = "123456789012345678901".into();
        s.delegates = vec!["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com".into()];
        s.lifetime = 43_200;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn keys_share_the_sts_entry_across_audiences_and_scopes() {
        let d = tmp();
        let a = service(settings(d.path()));
        let mut s = settings(d.path());
        s.scopes = vec![
            "https://www.googleapis.com/auth/userinfo.email".into(),
            CLOUD_PLATFORM_SCOPE.into(),
        ];
        s.lifetime = 600;
        let b = service(s);
        let id1 = Want::Id {
            audience: "https://a.run.app",
            include_email: false,
        };
        let id2 = Want::Id {
            audience: "https://b.run.app",
            include_email: false,
        };
        let id1e = Want::Id {
            audience: "https://a.run.app",
            include_email: true,
        };
        assert_eq!(a.sts_key(), b.sts_key());
        assert_ne!(a.key(Want::Access), b.key(Want::Access));
        assert_ne!(a.key(id1), a.key(id2));
        assert_ne!(a.key(id1), a.key(id1e));
        assert_eq!(
            a.key(id1),
            b.key(id1),
            "scopes and lifetime do not matter for ID tokens"
        );
        assert!(a.key(Want::Access).stem().starts_with("access-"));
        assert!(a.key(id1).stem().starts_with("id-"));
        assert!(a.sts_key().stem().starts_with("sts-"));
    }

    #[test]
    fn scope_order_does_not_matter_but_identity_and_provider_type_do() {
        let d = tmp();
        let mut s1 = settings(d.path());
        s1.scopes = vec!["b".into(), "a".into()];
        let mut s2 = settings(d.path());
        s2.scopes = vec!["a".into(), "b".into()];
        assert_eq!(
            service(s1).key(Want::Access),
            service(s2.clone()).key(Want::Access)
        );
        let other_profile = TokenService::new(
            s2.clone(),
            Env::from_pairs([("HOME", "/home/u"), ("AWS_PROFILE", "prod")]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            other_profile.key(Want::Access),
            service(s2.clone()).key(Want::Access)
        );
        assert_ne!(other_profile.sts_key(), service(s2.clone()).sts_key());
        let mut s3 = s2.clone();
        s3.provider_type = ProviderType::Oidc;
        assert_ne!(service(s3.clone()).sts_key(), service(s2.clone()).sts_key());
        assert_ne!(service(s3).key(Want::Access), service(s2).key(Want::Access));
    }

    #[test]
    fn cached_lookups_read_the_disk_only() -> Result<()> {
        let d = tmp();
        let svc = service(settings(d.path()));
        assert_eq!(svc.cached_access_token()?, None);
        let cache = svc.cache.clone().unwrap_or_else(|| panic!("cache"));
        let put = |key: CacheKey, tok: &str, exp: i64| -> Result<()> {
            match cache.lock(
                &key,
                &FixedClock(1_000_000),
                Instant::now() + Duration::from_secs(5),
            )? {
                Locked::Held(l) => {
                    l.store(&CachedToken {
                        token: Secret::new(tok),
                        expires_at: exp,
                        issued_at: 1_000_000,
                    });
                    Ok(())
                }
                Locked::Fresh(_) => Err(Error::invalid("unexpected fresh entry")),
            }
        };
        put(svc.key(Want::Access), "ya29.cached", 1_003_600)?;
        let t = svc.cached_access_token()?.unwrap_or_else(|| panic!("miss"));
        assert_eq!(t.token.expose(), "ya29.cached");
        assert_eq!(t.expires_at_unix(), 1_003_600);
        assert_eq!(t.expires_at.offset(), time::UtcOffset::UTC);
        assert!(!format!("{t:?}").contains("ya29"));
        // Within the 300 s slack it is not served.
        let late = svc.clone().with_clock(Arc::new(FixedClock(1_003_300)));
        assert_eq!(late.cached_access_token()?, None);
        // ID tokens are per audience and include_email.
        put(
            svc.key(Want::Id {
                audience: "https://a.run.app",
                include_email: true,
            }),
            "id.a",
            1_003_600,
        )?;
        assert!(svc.cached_id_token("https://a.run.app", true)?.is_some());
        assert!(svc.cached_id_token("https://a.run.app", false)?.is_none());
        assert!(svc.cached_id_token("https://b.run.app", true)?.is_none());
        assert!(svc.cached_id_token("", true).is_err());
        Ok(())
    }

    #[test]
    fn no_cache_means_no_cached_answers_and_no_directory() -> Result<()> {
        let d = tmp();
        let mut s = settings(d.path());
        s.cache.disabled = true;
        let svc = service(s);
        assert_eq!(svc.cached_access_token()?, None);
        assert!(!d.path().join("cache").exists());
        Ok(())
    }

    #[test]
    fn debug_never_prints_the_environment() {
        let d = tmp();
        let svc = TokenService::new(
            settings(d.path()),
            Env::from_pairs([("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-very-secret")]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let dbg = format!("{svc:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(dbg.contains(SA));
    }

    #[tokio::test]
    async fn a_cache_hit_needs_no_network() -> Result<()> {
        let d = tmp();
        let mut s = settings(d.path());
        // Unreachable endpoints: a hit must not touch them.
        s.token_url = "http://127.0.0.1:9/v1/token".into();
        s.iam_credentials_url = "http://127.0.0.1:9".into();
        let svc = service(s);
        let cache = svc.cache.clone().unwrap_or_else(|| panic!("cache"));
        if let Locked::Held(l) = cache.lock(
            &svc.key(Want::Access),
            &FixedClock(1_000_000),
            Instant::now() + Duration::from_secs(5),
        )? {
            l.store(&CachedToken {
                token: Secret::new("ya29.hit"),
                expires_at: 1_003_600,
                issued_at: 1_000_000,
            });
        }
        let t = svc.access_token().await?;
        assert_eq!(t.token.expose(), "ya29.hit");
        Ok(())
    }

    #[tokio::test]
    async fn the_deadline_bounds_waiting_for_another_process() -> Result<()> {
        let d = tmp();
        let mut s = settings(d.path());
        s.timeout = Duration::from_millis(300);
        let svc = service(s);
        let cache = svc.cache.clone().unwrap_or_else(|| panic!("cache"));
        // Another "process" holds the lock and never finishes.
        let held = cache.lock(
            &svc.key(Want::Access),
            &FixedClock(1_000_000),
            Instant::now() + Duration::from_secs(5),
        )?;
        let started = Instant::now();
        let e = svc
            .access_token()
            .await
            .err()
            .unwrap_or_else(|| panic!("expected a timeout"));
        assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(held);
        Ok(())
    }
}
