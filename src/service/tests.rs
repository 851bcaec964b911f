//! Unit tests of the public API: settings, keys, cached lookups, deadlines.

use super::*;
use crate::cache::Locked;
use crate::clock::FixedClock;
use std::time::{Duration, Instant};

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
            Deadline::after(Duration::from_secs(5)),
        )? {
            Locked::Held(l) | Locked::Bypassed(l) => {
                l.store(&IssuedToken {
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
        Deadline::after(Duration::from_secs(5)),
    )? {
        l.store(&IssuedToken {
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
async fn a_stuck_lock_holder_is_given_up_on_inside_the_deadline() -> Result<()> {
    let d = tmp();
    let mut s = settings(d.path());
    s.timeout = Duration::from_millis(600);
    // Unreachable loopback endpoints and environment keys: the bypassing
    // refresh signs locally and fails fast, never leaving the machine.
    s.token_url = "http://127.0.0.1:9/v1/token".into();
    s.iam_credentials_url = "http://127.0.0.1:9".into();
    s.aws.region = Some("us-east-1".into());
    let svc = TokenService::new(
        s,
        Env::from_pairs([
            ("HOME", "/nonexistent"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]),
    )?;
    let cache = svc.cache.clone().unwrap_or_else(|| panic!("cache"));
    // Another "process" holds the lock and never finishes.
    let held = cache.lock(
        &svc.key(Want::Access),
        &FixedClock(1_000_000),
        Deadline::after(Duration::from_secs(5)),
    )?;
    let started = Instant::now();
    let e = svc
        .access_token()
        .await
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    // It went to Google itself (and found nothing there) instead of
    // waiting out its deadline behind the stuck holder.
    assert!(
        matches!(e.code(), ErrorCode::NetworkError | ErrorCode::Timeout),
        "{e}"
    );
    assert!(e.message().contains("127.0.0.1"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
    Ok(())
}
