//! The direct path, and the public Rust API: AWS identity → Google STS →
//! IAM Credentials → a service-account access token or ID token, through
//! the shared cache.
//!
//! [`TokenService`] is what `print-access-token` and `print-identity-token`
//! call. One call is one straight walk, each step cached under its own key
//! (`crate::cache::CacheKey`) and driven the one way the cache is driven
//! (`crate::cache::through`):
//!
//! 1. **token** (`access` or `id`): a fresh entry ends the walk; on a miss
//!    the key's lock is held while the rest runs, so N processes asking for
//!    the same token make one upstream call between them;
//! 2. **federated token** (`sts`): shared by every scope and audience;
//!    on its own miss:
//! 3. **subject token** (`crate::subject`): a signed `GetCallerIdentity`
//!    built from the AWS credentials (AWS provider), or the AWS-issued JWT
//!    under the executable path's `jwt` key (OIDC provider), then the STS
//!    exchange;
//! 4. `generateAccessToken` / `generateIdToken` with the federated token.
//!
//! AWS is loaded at most once per call, only when a step needs it
//! (`crate::aws::AwsSession`). Locks are taken in that order (token, STS,
//! JWT), so processes never deadlock. One [`Deadline`] bounds all of it,
//! waits for other processes' locks included. After a failure,
//! `crate::hints` adds the fix from facts the walk already has.
//!
//! The synchronous [`TokenService::cached_access_token`] /
//! [`TokenService::cached_id_token`] read the cache only: no runtime, TLS
//! or AWS configuration.

use crate::aws::{AwsSession, caller_identity};
use crate::cache::{self, AwsIdentity, Cache, CacheKey, Source};
use crate::clock::{Clock, SystemClock};
use crate::deadline::Deadline;
use crate::env::Env;
use crate::error::{Error, ErrorCode, Result};
use crate::google::iam_credentials::{self, Impersonation};
use crate::google::sts::{self, Exchange};
use crate::hints::{self, Facts};
use crate::http;
use crate::secret::Secret;
use crate::settings::{CLOUD_PLATFORM_SCOPE, validate};
use crate::subject::{self, JwtRequest, SubjectToken};
use crate::token::IssuedToken;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

pub use crate::settings::ServiceSettings;
pub use crate::subject::ProviderType;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

    fn from_issued(t: IssuedToken) -> Result<Self> {
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
    /// One HTTP client for Google, built on the first miss (a hit never sets up TLS).
    client: Arc<OnceLock<reqwest::Client>>,
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
pub(crate) enum Want<'a> {
    Access,
    Id {
        audience: &'a str,
        include_email: bool,
    },
}

impl TokenService {
    /// Validates the settings and opens the cache (unless disabled). `env`
    /// is the environment everything reads: the cache location, and the AWS
    /// default chain (so the AWS identity and the cache keys agree).
    pub fn new(settings: ServiceSettings, env: Env) -> Result<Self> {
        crate::secret::remember_env(&env);
        settings.validate()?;
        let cache = settings.cache.open(&env)?;
        Ok(Self {
            settings: Arc::new(settings),
            env: Arc::new(env),
            cache,
            clock: Arc::new(SystemClock),
            client: Arc::new(OnceLock::new()),
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
        validate::id_audience("--audience", audience)?;
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
        validate::id_audience("--audience", audience)?;
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
            Some(t) => Token::from_issued(t).map(Some),
            None => Ok(None),
        }
    }

    /// What decides the AWS identity now: read on every call, because a
    /// profile or a token file can change under a long-lived service.
    fn identity(&self) -> AwsIdentity {
        AwsIdentity::new(&self.settings.aws, &self.env)
    }

    /// A digest of [`identity`](Self::identity): it changes when the AWS
    /// identity behind this service does.
    pub(crate) fn identity_digest(&self) -> String {
        self.identity().digest()
    }

    fn key(&self, want: Want<'_>) -> CacheKey {
        Self::key_for(&self.settings, &self.identity(), want)
    }

    fn key_for(s: &ServiceSettings, identity: &AwsIdentity, want: Want<'_>) -> CacheKey {
        match want {
            Want::Access => CacheKey::access(identity, s),
            Want::Id {
                audience,
                include_email,
            } => CacheKey::id(identity, s, audience, include_email),
        }
    }

    #[cfg(test)]
    fn sts_key(&self) -> CacheKey {
        CacheKey::sts(&self.identity(), &self.settings)
    }

    async fn get(&self, want: Want<'_>) -> Result<Token> {
        Token::from_issued(self.issued(want, 0).await?)
    }

    /// The token `want` names, as the cache stores it, counting a cached one
    /// as stale `ahead` seconds before its slack (the metadata server
    /// refreshes before anyone needs a new one). The ID-token audience is
    /// not validated here: callers do that first.
    pub(crate) fn issued<'a>(
        &'a self,
        want: Want<'a>,
        ahead: i64,
    ) -> BoxFuture<'a, Result<IssuedToken>> {
        // Boxed: callers that spawn it would otherwise need the whole walk's type.
        Box::pin(self.issued_walk(want, ahead))
    }

    async fn issued_walk(&self, want: Want<'_>, ahead: i64) -> Result<IssuedToken> {
        let deadline = Deadline::after(self.settings.timeout);
        // Read once per call: every key of the walk is made from it.
        let identity = self.identity();
        let key = Self::key_for(&self.settings, &identity, want);
        let walk = async {
            // Boxed: the walk's nested futures are otherwise too deep a type.
            let mint = || -> BoxFuture<'_, Result<IssuedToken>> {
                Box::pin(self.mint(want, &identity, deadline))
            };
            let (token, source) = cache::through_ahead(
                self.cache.as_ref(),
                &key,
                &self.clock,
                deadline,
                ahead,
                mint,
            )
            .await?;
            match source {
                Source::Cache => {
                    tracing::debug!(expires_at = token.expires_at, "token served from the cache");
                }
                Source::Upstream => {
                    tracing::debug!(expires_at = token.expires_at, "token obtained from Google");
                }
            }
            Ok(token)
        };
        deadline.within(walk).await
    }

    /// The same service with other access-token scopes (validated): what a
    /// metadata-server client asks for with `?scopes=`. It shares this
    /// service's cache directory, clock and HTTP client.
    pub(crate) fn with_scopes(&self, scopes: Vec<String>) -> Result<Self> {
        validate::scopes("scopes", &scopes)?;
        let mut settings = (*self.settings).clone();
        settings.scopes = scopes;
        Ok(Self {
            settings: Arc::new(settings),
            ..self.clone()
        })
    }

    /// The clock the service reads.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Steps 2–4 of the walk, and the hint after a failure.
    async fn mint(
        &self,
        want: Want<'_>,
        identity: &AwsIdentity,
        deadline: Deadline,
    ) -> Result<IssuedToken> {
        let client = self.client()?;
        let aws = AwsSession::new(&self.settings.aws, &self.env, deadline);
        let mut subject = None;
        let (mut federated, source) = self
            .federated_token(&client, &aws, identity, deadline, &mut subject)
            .await?;
        let mut result = self.impersonate(&client, &federated, want, deadline).await;
        // IAM refused a cached federated token before its expiry (revoked,
        // or another universe): forget it, exchange again, retry once.
        if source == Source::Cache
            && let (Some(cache), Err(e)) = (&self.cache, &result)
            && e.code() == ErrorCode::GoogleInvalidGrant
        {
            tracing::debug!("IAM refused the cached federated token; exchanging again");
            cache.remove(&CacheKey::sts(identity, &self.settings))?;
            federated = self
                .federated_token(&client, &aws, identity, deadline, &mut subject)
                .await?
                .0;
            result = self.impersonate(&client, &federated, want, deadline).await;
        }
        match result {
            Err(e) if e.code() == ErrorCode::GooglePermissionDenied => {
                let who = self.who(&aws, subject.as_deref()).await;
                let s = &self.settings;
                Err(hints::explain(
                    e,
                    &Facts {
                        provider: &s.provider,
                        provider_type: s.provider_type,
                        service_account: &s.service_account,
                        subject: who.as_deref(),
                    },
                ))
            }
            r => r,
        }
    }

    /// The federated token, from its cache entry or an exchange of a fresh
    /// subject token; `subject` learns the JWT's `sub` when one was made.
    async fn federated_token(
        &self,
        client: &reqwest::Client,
        aws: &AwsSession<'_>,
        identity: &AwsIdentity,
        deadline: Deadline,
        subject: &mut Option<String>,
    ) -> Result<(IssuedToken, Source)> {
        let s = &self.settings;
        let audience = s.provider.audience();
        let jwt = JwtRequest {
            audience: &audience,
            duration: s.jwt_duration,
            identity,
            cache: self.cache.as_ref(),
        };
        let made = std::sync::Mutex::new(None);
        let result = cache::through(
            self.cache.as_ref(),
            &CacheKey::sts(identity, s),
            &self.clock,
            deadline,
            || async {
                let SubjectToken { token, sub } =
                    subject::subject_token(s.provider_type, &jwt, aws, &self.clock, deadline)
                        .await?;
                if let Ok(mut m) = made.lock() {
                    *m = sub;
                }
                let exchange = Exchange {
                    token_url: &s.token_url,
                    provider: &s.provider,
                    provider_type: s.provider_type,
                    subject_token: &token,
                    scope: CLOUD_PLATFORM_SCOPE,
                };
                sts::exchange(client, &exchange, deadline, self.clock.now_unix()).await
            },
        )
        .await;
        if let Some(sub) = made.into_inner().ok().flatten() {
            *subject = Some(sub);
        }
        let (token, source) = result?;
        tracing::debug!(?source, expires_at = token.expires_at, "federated token");
        Ok((token, source))
    }

    /// `generateAccessToken` or `generateIdToken` with the federated token.
    async fn impersonate(
        &self,
        client: &reqwest::Client,
        federated: &IssuedToken,
        want: Want<'_>,
        deadline: Deadline,
    ) -> Result<IssuedToken> {
        let s = &self.settings;
        let target = Impersonation {
            iam_root: &s.iam_credentials_url,
            service_account: &s.service_account,
            delegates: &s.delegates,
        };
        let now = self.clock.now_unix();
        match want {
            Want::Access => {
                iam_credentials::generate_access_token(
                    client,
                    &target,
                    &federated.token,
                    &s.scopes,
                    s.lifetime,
                    deadline,
                    now,
                )
                .await
            }
            Want::Id {
                audience,
                include_email,
            } => {
                iam_credentials::generate_id_token(
                    client,
                    &target,
                    &federated.token,
                    audience,
                    include_email,
                    deadline,
                    now,
                )
                .await
            }
        }
    }

    /// Who the federated identity is, from facts at hand, for a hint: the
    /// JWT's `sub` (OIDC provider); the role this call assumed, or the
    /// caller behind the AWS context it already loaded (AWS provider).
    /// Never loads AWS for it.
    async fn who(&self, aws: &AwsSession<'_>, jwt_sub: Option<&str>) -> Option<String> {
        match self.settings.provider_type {
            ProviderType::Oidc => jwt_sub.map(str::to_owned),
            ProviderType::Aws => {
                if let Some(arn) = &aws.settings().assume_role_arn {
                    return hints::assumed_role_attribute(arn);
                }
                let ctx = aws.loaded()?;
                let arn = caller_identity::caller_arn(ctx).await?;
                Some(hints::aws_role_attribute(&arn))
            }
        }
    }

    fn client(&self) -> Result<reqwest::Client> {
        if let Some(c) = self.client.get() {
            return Ok(c.clone());
        }
        let c = http::client(self.settings.timeout)?;
        Ok(self.client.get_or_init(|| c).clone())
    }
}

#[cfg(test)]
mod tests;
