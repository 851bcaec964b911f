//! The direct path's walk (`print-access-token`, `print-identity-token`):
//! the flags, the AWS identity, outbound federation (OIDC providers), the
//! exchange, the impersonation, the ID token, the cache.

use super::steps::{AWS_CREDENTIALS, FEDERATION, IMPERSONATION, SETTINGS, STS, Target, Walk};
use super::{DoctorArgs, Report};
use crate::aws::AwsSettings;
use crate::env::Env;
use crate::error::Result;
use crate::provider::Provider;
use crate::settings::validate;
use crate::subject::ProviderType;

/// The direct path's target from the flags; records `settings`. `None`
/// when there is nothing to diagnose upstream of AWS.
fn direct_target(r: &mut Report, a: &DoctorArgs) -> Option<Target> {
    let Some(provider) = &a.provider else {
        r.fail(
            SETTINGS,
            "nothing to diagnose beyond AWS: no --provider (WIF_HELPER_PROVIDER) and no credential \
             configuration (--config, WIF_HELPER_CONFIG or GOOGLE_APPLICATION_CREDENTIALS)",
            "pass what print-access-token takes: wif-helper doctor --provider \
             projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER \
             --service-account SA@PROJECT_ID.iam.gserviceaccount.com; or, for client libraries, \
             --config credential_config.json",
        );
        return None;
    };
    let target = (|| -> Result<Target> {
        let provider: Provider = provider.parse()?;
        if let Some(sa) = &a.service_account {
            validate::service_account("--service-account", sa)?;
        }
        validate::delegates("--delegates", &a.delegates)?;
        validate::url("--token-url", &a.google.token_url)?;
        validate::url("--iam-credentials-url", &a.google.iam_credentials_url)?;
        validate::jwt_duration("--duration", a.duration.seconds)?;
        if let Some(aud) = &a.audience {
            validate::id_audience("--audience", aud)?;
        }
        Ok(Target {
            provider,
            provider_type: a.provider_type,
            service_account: a.service_account.clone(),
            delegates: a.delegates.clone(),
            token_url: a.google.token_url.clone(),
            iam_root: a.google.iam_credentials_url.clone(),
            jwt_duration: a.duration.seconds,
            id_audience: a.audience.clone(),
        })
    })();
    match target {
        Ok(t) => {
            match &t.service_account {
                Some(sa) => r.ok(
                    SETTINGS,
                    format!(
                        "provider {} (--provider-type {}), service account {sa}",
                        t.provider.resource(),
                        t.provider_type
                    ),
                ),
                None => r.fail(
                    SETTINGS,
                    "no --service-account (WIF_HELPER_SERVICE_ACCOUNT): print-access-token needs one",
                    "pass --service-account SA@PROJECT_ID.iam.gserviceaccount.com",
                ),
            }
            Some(t)
        }
        Err(e) => {
            r.error(SETTINGS, &e, "correct the flag the detail names");
            None
        }
    }
}

/// The direct path's walk (`print-access-token`, `print-identity-token`).
pub(super) fn walk(r: &mut Report, a: &DoctorArgs, env: &Env) {
    let target = direct_target(r, a);
    let oidc = target
        .as_ref()
        .is_some_and(|t| t.provider_type == ProviderType::Oidc);
    let aws_settings = a.aws.settings();
    let mut walk = Walk::new(r, env, target.as_ref(), a.timeout());
    match &aws_settings {
        Ok(settings) => upstream(&mut walk, settings, oidc),
        Err(e) => {
            walk.failed(AWS_CREDENTIALS, e);
            let why = "needs valid AWS settings (aws_credentials)";
            let later: &[&str] = if oidc {
                &[FEDERATION, STS, IMPERSONATION]
            } else {
                &[STS, IMPERSONATION]
            };
            walk.skip_all(later, why);
        }
    }
    walk.cache(&a.cache.settings());
}

/// The upstream steps of the direct path.
fn upstream(walk: &mut Walk<'_>, settings: &AwsSettings, oidc: bool) {
    walk.with_aws(settings, async |walk, aws| {
        let aws_ok = walk.aws_identity(aws).await;
        let not_ready = if oidc {
            (!walk.federation(aws).await)
                .then_some("needs the AWS-issued token (outbound_federation)")
        } else {
            (!aws_ok).then_some("needs working AWS credentials (aws_credentials)")
        };
        walk.exchange(aws, not_ready).await;
        walk.impersonate().await;
        walk.id_token().await;
    });
}
