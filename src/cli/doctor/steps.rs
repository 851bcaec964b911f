//! The steps both walks take, each one piece of the pipeline called on its
//! own (never through the cache), recording its check.

use super::Report;
use super::fix::{self, Known};
use crate::aws::{AwsSession, AwsSettings, caller_identity};
use crate::cache::AwsIdentity;
use crate::clock::{Clock, SystemClock};
use crate::deadline::Deadline;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::google::iam_credentials::{self, Impersonation};
use crate::google::sts::{self, Exchange};
use crate::provider::Provider;
use crate::secret::Secret;
use crate::settings::{CLOUD_PLATFORM_SCOPE, CacheSettings, DEFAULT_LIFETIME};
use crate::subject::{self, JwtRequest, ProviderType};
use crate::token::IssuedToken;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(super) const SETTINGS: &str = "settings";
pub(super) const AWS_REGION: &str = "aws_region";
pub(super) const AWS_CREDENTIALS: &str = "aws_credentials";
pub(super) const FEDERATION: &str = "outbound_federation";
pub(super) const STS: &str = "google_sts";
pub(super) const IMPERSONATION: &str = "impersonation";
pub(super) const ID_TOKEN: &str = "id_token";
pub(super) const CACHE: &str = "cache_dir";

/// What a walk diagnoses, from the flags or from a credential configuration.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) provider: Provider,
    pub(super) provider_type: ProviderType,
    pub(super) service_account: Option<String>,
    pub(super) delegates: Vec<String>,
    pub(super) token_url: String,
    pub(super) iam_root: String,
    pub(super) jwt_duration: i64,
    pub(super) id_audience: Option<String>,
}

/// One walk's state: the report, what it diagnoses, what it learned.
pub(super) struct Walk<'a> {
    pub(super) report: &'a mut Report,
    env: &'a Env,
    target: Option<&'a Target>,
    deadline: Deadline,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    client: Option<reqwest::Client>,
    caller_arn: Option<String>,
    /// The AWS-issued JWT (outbound federation, or the command's answer).
    pub(super) jwt: Option<Secret>,
    jwt_sub: Option<String>,
    federated: Option<IssuedToken>,
    pub(super) cache_dir: Option<PathBuf>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(
        report: &'a mut Report,
        env: &'a Env,
        target: Option<&'a Target>,
        timeout: Duration,
    ) -> Self {
        Self {
            report,
            env,
            target,
            deadline: Deadline::after(timeout),
            timeout,
            clock: Arc::new(SystemClock),
            client: None,
            caller_arn: None,
            jwt: None,
            jwt_sub: None,
            federated: None,
            cache_dir: None,
        }
    }

    /// A fresh deadline for the steps after a child process ran.
    pub(super) fn restart(&mut self) {
        self.deadline = Deadline::after(self.timeout);
    }

    /// Runs `steps` with an AWS session from `settings`, on the walk's
    /// deadline. The steps honour that deadline themselves; the runtime is
    /// bounded a second past it, and running out fails the `deadline` check.
    pub(super) fn with_aws(
        &mut self,
        settings: &AwsSettings,
        steps: impl AsyncFnOnce(&mut Self, &AwsSession),
    ) {
        let (env, deadline) = (self.env, self.deadline);
        let done = Deadline::after(self.timeout + Duration::from_secs(1)).block_on(async {
            let aws = AwsSession::new(settings, env, deadline);
            steps(self, &aws).await;
            Ok(())
        });
        if let Err(e) = done {
            self.failed("deadline", &e);
        }
    }

    fn known(&self) -> Known<'_> {
        Known {
            provider: self.target.map(|t| &t.provider),
            provider_type: self.target.map_or(ProviderType::Aws, |t| t.provider_type),
            service_account: self.target.and_then(|t| t.service_account.as_deref()),
            caller_arn: self.caller_arn.as_deref(),
            jwt_sub: self.jwt_sub.as_deref(),
            cache_dir: self.cache_dir.as_deref(),
        }
    }

    /// Records `e` as the failure of `name`, with its fix.
    pub(super) fn failed(&mut self, name: &'static str, e: &Error) {
        let fix = fix::for_error(e.code().as_str(), e.message(), &self.known());
        self.report.error(name, e, fix);
    }

    /// A failure reported by a child process (`code`, `message`).
    pub(super) fn failed_code(&mut self, name: &'static str, code: &str, message: &str) {
        let fix = fix::for_error(code, message, &self.known());
        self.report.fail(name, format!("{code}: {message}"), fix);
    }

    /// Records every step of `names` as skipped for `why`, and the ID token
    /// after them when one is asked for (it needs every one of them).
    pub(super) fn skip_all(&mut self, names: &[&'static str], why: &str) {
        for name in names {
            self.report.skip(name, why);
        }
        if self.target.is_some_and(|t| t.id_audience.is_some()) {
            self.report.skip(ID_TOKEN, why);
        }
    }

    /// The AWS-issued JWT and its `sub`, from the command's answer.
    pub(super) fn learn_jwt(&mut self, jwt: Secret) {
        self.jwt_sub = crate::jwt::string_claim(jwt.expose(), "sub");
        self.jwt = Some(jwt);
    }

    /// `aws_region`, then `aws_credentials`: the provider that won the
    /// chain and the caller's ARN from `GetCallerIdentity`.
    pub(super) async fn aws_identity(&mut self, aws: &AwsSession<'_>) -> bool {
        match aws.region().await {
            Ok(region) => {
                let from = region_source(aws.settings(), self.env);
                self.report
                    .ok(AWS_REGION, format!("{region} (from {from})"));
            }
            Err(e) => {
                self.failed(AWS_REGION, &e);
                self.report
                    .skip(AWS_CREDENTIALS, "the AWS chain needs a region (aws_region)");
                return false;
            }
        }
        let ctx = match aws.context().await {
            Ok(ctx) => ctx,
            Err(e) => {
                self.failed(AWS_CREDENTIALS, &e);
                return false;
            }
        };
        let profile = aws
            .settings()
            .profile
            .as_deref()
            .or_else(|| self.env.get("AWS_PROFILE"));
        let source = describe_source(&ctx.provider_name(), aws.settings(), profile);
        match caller_identity::caller(ctx).await {
            Ok(arn) => {
                self.report.ok(
                    AWS_CREDENTIALS,
                    format!("{source}; GetCallerIdentity: {arn}"),
                );
                self.caller_arn = Some(arn);
                true
            }
            Err(e) => {
                let fix = fix::for_error(e.code().as_str(), e.message(), &self.known());
                self.report.fail(
                    AWS_CREDENTIALS,
                    format!("{source}, but AWS refused them: {e}"),
                    fix,
                );
                false
            }
        }
    }

    /// `outbound_federation`: `GetWebIdentityToken` for the provider, which
    /// fails with `OutboundWebIdentityFederationDisabled` until enabled.
    pub(super) async fn federation(&mut self, aws: &AwsSession<'_>) -> bool {
        let Some(t) = self.target else {
            self.report
                .skip(FEDERATION, "no provider to ask a token for");
            return false;
        };
        if !self.report.passed(AWS_CREDENTIALS) {
            self.report.skip(
                FEDERATION,
                "needs working AWS credentials (aws_credentials)",
            );
            return false;
        }
        let audience = t.provider.audience();
        let identity = AwsIdentity::new(aws.settings(), self.env);
        let req = JwtRequest {
            audience: &audience,
            duration: t.jwt_duration,
            identity: &identity,
            cache: None,
        };
        match subject::subject_token(ProviderType::Oidc, &req, aws, &self.clock, self.deadline)
            .await
        {
            Ok(s) => {
                let iss = crate::jwt::string_claim(s.token.expose(), "iss");
                self.report.ok(
                    FEDERATION,
                    format!(
                        "enabled: AWS issued a token for {audience} (iss {}, sub {})",
                        iss.as_deref().unwrap_or("?"),
                        s.sub.as_deref().unwrap_or("?")
                    ),
                );
                self.jwt_sub = s.sub;
                self.jwt = Some(s.token);
                true
            }
            Err(e) => {
                self.failed(FEDERATION, &e);
                false
            }
        }
    }

    fn client(&mut self) -> Result<reqwest::Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = crate::http::client(self.timeout)?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// `google_sts`: exchanges the AWS-issued JWT (OIDC provider) or a
    /// signed `GetCallerIdentity` (AWS provider); `not_ready` says why not.
    pub(super) async fn exchange(&mut self, aws: &AwsSession<'_>, not_ready: Option<&str>) {
        let Some(t) = self.target else {
            self.report.skip(STS, "no provider to exchange a token at");
            return;
        };
        if let Some(why) = not_ready {
            self.report.skip(STS, why);
            return;
        }
        let subject = match (t.provider_type, &self.jwt) {
            (ProviderType::Oidc, Some(jwt)) => jwt.clone(),
            (ProviderType::Oidc, None) => {
                self.report.skip(STS, "no AWS-issued token to exchange");
                return;
            }
            (ProviderType::Aws, _) => {
                let audience = t.provider.audience();
                let identity = AwsIdentity::new(aws.settings(), self.env);
                let req = JwtRequest {
                    audience: &audience,
                    duration: t.jwt_duration,
                    identity: &identity,
                    cache: None,
                };
                match subject::subject_token(
                    ProviderType::Aws,
                    &req,
                    aws,
                    &self.clock,
                    self.deadline,
                )
                .await
                {
                    Ok(s) => s.token,
                    Err(e) => return self.failed(STS, &e),
                }
            }
        };
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return self.failed(STS, &e),
        };
        let ex = Exchange {
            token_url: &t.token_url,
            provider: &t.provider,
            provider_type: t.provider_type,
            subject_token: &subject,
            scope: CLOUD_PLATFORM_SCOPE,
        };
        let now = self.clock.now_unix();
        match sts::exchange(&client, &ex, self.deadline, now).await {
            Ok(token) => {
                let what = match t.provider_type {
                    ProviderType::Aws => "signed GetCallerIdentity (AWS provider)",
                    ProviderType::Oidc => "AWS-issued JWT (OIDC provider)",
                };
                self.report.ok(
                    STS,
                    format!(
                        "{} accepted the {what} for {}; the federated token is valid {} s",
                        t.token_url,
                        t.provider.audience(),
                        token.expires_at.saturating_sub(now)
                    ),
                );
                self.federated = Some(token);
            }
            Err(e) => self.failed(STS, &e),
        }
    }

    fn impersonation_target(&self) -> std::result::Result<(&'a Target, &'a str), &'static str> {
        let t = self.target.ok_or("no provider")?;
        let sa = t
            .service_account
            .as_deref()
            .ok_or("no service account to impersonate (--service-account)")?;
        Ok((t, sa))
    }

    /// `impersonation`: `generateAccessToken` (cloud-platform, one hour).
    pub(super) async fn impersonate(&mut self) {
        let (t, sa) = match self.impersonation_target() {
            Ok(x) => x,
            Err(why) => return self.report.skip(IMPERSONATION, why),
        };
        let (Some(federated), Ok(client)) = (self.federated.clone(), self.client()) else {
            return self
                .report
                .skip(IMPERSONATION, "needs the Google STS exchange (google_sts)");
        };
        let target = Impersonation {
            iam_root: &t.iam_root,
            service_account: sa,
            delegates: &t.delegates,
        };
        let now = self.clock.now_unix();
        let scopes = [CLOUD_PLATFORM_SCOPE.to_owned()];
        let got = iam_credentials::generate_access_token(
            &client,
            &target,
            &federated.token,
            &scopes,
            DEFAULT_LIFETIME,
            self.deadline,
            now,
        )
        .await;
        match got {
            Ok(token) => {
                let who = fix::member(&self.known()).unwrap_or_default();
                self.report.ok(
                    IMPERSONATION,
                    format!(
                        "{sa} accepts the federated identity ({who}): an access token \
                         (cloud-platform scope) valid {} s",
                        token.expires_at.saturating_sub(now)
                    ),
                );
            }
            Err(e) => self.failed(IMPERSONATION, &e),
        }
    }

    /// `id_token`, when an audience was given: `generateIdToken`.
    pub(super) async fn id_token(&mut self) {
        let Some(audience) = self.target.and_then(|t| t.id_audience.as_deref()) else {
            return;
        };
        let (t, sa) = match self.impersonation_target() {
            Ok(x) => x,
            Err(why) => return self.report.skip(ID_TOKEN, why),
        };
        let (Some(federated), true, Ok(client)) = (
            self.federated.clone(),
            self.report.passed(IMPERSONATION),
            self.client(),
        ) else {
            return self
                .report
                .skip(ID_TOKEN, "needs the impersonation to work (impersonation)");
        };
        let target = Impersonation {
            iam_root: &t.iam_root,
            service_account: sa,
            delegates: &t.delegates,
        };
        let now = self.clock.now_unix();
        let got = iam_credentials::generate_id_token(
            &client,
            &target,
            &federated.token,
            audience,
            false,
            self.deadline,
            now,
        )
        .await;
        match got {
            Ok(_) => self
                .report
                .ok(ID_TOKEN, format!("{sa} signs ID tokens for {audience}")),
            Err(e) => self.failed(ID_TOKEN, &e),
        }
    }

    /// `cache_dir`: the directory opens as private (owned by this user,
    /// writable by no one else), or the cache is off.
    pub(super) fn cache(&mut self, settings: &CacheSettings) {
        if settings.disabled {
            return self.report.warn(
                CACHE,
                "the cache is off (--no-cache): every call goes to AWS and Google",
                "drop --no-cache (WIF_HELPER_NO_CACHE) unless no directory can be used",
            );
        }
        self.cache_dir = settings
            .dir
            .clone()
            .or_else(|| self.env.default_cache_dir());
        match settings.open(self.env) {
            Ok(Some(c)) => self.report.ok(
                CACHE,
                format!(
                    "{} is private (owned by this user, writable by no one else)",
                    c.dir().display()
                ),
            ),
            Ok(None) => self.report.ok(CACHE, "the cache is off"),
            Err(e) => self.failed(CACHE, &e),
        }
    }
}

/// Where the region came from, as the AWS chain looks for it.
fn region_source(settings: &AwsSettings, env: &Env) -> &'static str {
    if settings.region.is_some() {
        "--region"
    } else if env.get("AWS_REGION").is_some() {
        "AWS_REGION"
    } else if env.get("AWS_DEFAULT_REGION").is_some() {
        "AWS_DEFAULT_REGION"
    } else {
        "the AWS profile or EC2 instance metadata"
    }
}

/// The credential source, in words, from aws-config's provider name.
fn describe_source(provider: &str, settings: &AwsSettings, profile: Option<&str>) -> String {
    let what = match provider {
        "EnvironmentVariable" => "environment variables (AWS_ACCESS_KEY_ID)",
        "ProfileFile" => "the shared profile",
        "AssumeRoleProvider" if settings.assume_role_arn.is_some() => "--assume-role-arn",
        "AssumeRoleProvider" => "the profile's role_arn (assumed role)",
        "WebIdentityToken" => "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, EKS IRSA)",
        "EcsContainer" => "the container endpoint (ECS task role, EKS Pod Identity)",
        "IMDSv2" => "EC2 instance metadata (IMDSv2)",
        "SSO" => "IAM Identity Center (SSO)",
        "CredentialProcess" => "the profile's credential_process",
        _ => "the AWS credential chain",
    };
    match profile {
        Some(p) => format!("credentials from {what} [{provider}], profile {p}"),
        None => format!("credentials from {what} [{provider}]"),
    }
}
