//! Every validator, once. Each takes the flag it reports (`--region`,
//! `--service-account`…) so commands and the Rust API refuse the same value
//! with the same message, naming what to fix.

use crate::aws::AwsSettings;
use crate::error::{Error, Result};
use std::ops::RangeInclusive;
use std::time::Duration;

/// The longest service-account token lifetime Google allows (and only with
/// the org policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension`).
pub const MAX_LIFETIME: u32 = 43_200;
/// The lifetimes a credential configuration may carry: Java's library
/// refuses `token_lifetime_seconds` below 600.
pub(crate) const CONFIG_LIFETIME_RANGE: RangeInclusive<u32> = 600..=MAX_LIFETIME;

/// A service account as IAM Credentials takes it in a URL path: an email
/// `NAME@DOMAIN` whose domain is a service-account domain
/// (`PROJECT.iam.gserviceaccount.com`, `developer.gserviceaccount.com`,
/// `appspot.gserviceaccount.com`…), or the account's numeric unique ID.
/// Nothing that could change the path (`/`, `..`, `?`, `#`, `%`).
pub(crate) fn service_account(flag: &str, account: &str) -> Result<()> {
    let unique_id =
        (1..=32).contains(&account.len()) && account.bytes().all(|b| b.is_ascii_digit());
    let email = account.split_once('@').is_some_and(|(name, domain)| {
        let name_ok = (1..=100).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !name.starts_with('-');
        let domain_ok = domain.len() <= 253
            && (domain == "gserviceaccount.com" || domain.ends_with(".gserviceaccount.com"))
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        name_ok && domain_ok
    });
    if unique_id || email {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} `{}`: expected a service account email such as \
             app@my-project.iam.gserviceaccount.com, or its numeric unique ID",
            account.escape_debug()
        )))
    }
}

/// Delegates: service accounts, bare or as `projects/-/serviceAccounts/EMAIL`.
pub(crate) fn delegates(flag: &str, delegates: &[String]) -> Result<()> {
    for d in delegates {
        let email = d.strip_prefix("projects/-/serviceAccounts/").unwrap_or(d);
        service_account(flag, email)?;
    }
    Ok(())
}

/// OAuth scopes: at least one, each without spaces or control characters.
pub(crate) fn scopes(flag: &str, scopes: &[String]) -> Result<()> {
    if scopes.is_empty() {
        return Err(Error::invalid(format!(
            "{flag}: at least one scope is required"
        )));
    }
    for s in scopes {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(format!(
                "{flag}: `{}` is not a scope",
                s.escape_debug()
            )));
        }
    }
    Ok(())
}

/// A service-account token lifetime, 1..=43200 seconds.
pub(crate) fn lifetime(flag: &str, seconds: u32) -> Result<()> {
    if (1..=MAX_LIFETIME).contains(&seconds) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{flag} {seconds}: Google accepts up to {MAX_LIFETIME} seconds (above 3600 only where the \
         organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension allows it)"
    )))
}

/// A lifetime written into a credential configuration: also at least 600 s.
pub(crate) fn config_lifetime(flag: &str, seconds: u32) -> Result<()> {
    lifetime(flag, seconds)?;
    if CONFIG_LIFETIME_RANGE.contains(&seconds) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{flag} {seconds}: Google accepts 600..=43200 seconds in a credential configuration"
    )))
}

/// An `https` URL with a host; plain `http` only for a loopback host (an
/// emulator on this machine), where nothing crosses a network.
pub(crate) fn url(flag: &str, url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).ok();
    let Some(u) = parsed.filter(|u| u.host_str().is_some_and(|h| !h.is_empty())) else {
        return Err(Error::invalid(format!(
            "{flag} `{url}`: expected an http(s) URL"
        )));
    };
    let host = u.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(Error::invalid(format!(
            "{flag} `{url}`: plain http would send tokens unencrypted; use https:// \
             (http:// is accepted only for loopback hosts such as 127.0.0.1, e.g. an emulator)"
        ))),
        _ => Err(Error::invalid(format!(
            "{flag} `{url}`: expected an http(s) URL"
        ))),
    }
}

/// An AWS region name as used in endpoints: lower-case letters, digits and
/// hyphens (e.g. `us-east-2`, `eu-central-1`, `us-gov-west-1`).
pub(crate) fn region(flag: &str, region: &str) -> Result<()> {
    let ok = !region.is_empty()
        && region.len() <= 63
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} `{region}`: expected an AWS region such as us-east-1 (lower-case letters, digits and hyphens)"
        )))
    }
}

/// An IAM role ARN to assume.
pub(crate) fn role_arn(flag: &str, arn: &str) -> Result<()> {
    let ok = arn.starts_with("arn:aws")
        && arn.contains(":iam::")
        && arn.contains(":role/")
        && !arn.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} `{}`: expected arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME",
            arn.escape_debug()
        )))
    }
}

/// The AWS settings: region and role.
pub(crate) fn aws(settings: &AwsSettings) -> Result<()> {
    if let Some(arn) = &settings.assume_role_arn {
        role_arn("--assume-role-arn", arn)?;
    }
    if let Some(r) = &settings.region {
        region("--region", r)?;
    }
    Ok(())
}

/// The lifetime of an AWS-issued JWT: what `GetWebIdentityToken` accepts.
pub(crate) fn jwt_duration(flag: &str, seconds: i64) -> Result<()> {
    if crate::aws::web_identity::DURATION_RANGE.contains(&seconds) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{flag} {seconds}: AWS accepts 60..=3600 seconds"
    )))
}

/// A timeout within `range`.
pub(crate) fn timeout(
    flag: &str,
    timeout: Duration,
    range: &RangeInclusive<Duration>,
) -> Result<()> {
    if range.contains(&timeout) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{flag} {}: expected {}..={}",
        timeout.as_millis(),
        range.start().as_millis(),
        range.end().as_millis()
    )))
}

/// The audience of an ID token: the receiving service's URL or client ID.
pub(crate) fn id_audience(flag: &str, audience: &str) -> Result<()> {
    if audience.trim().is_empty() || audience.len() > 2048 || audience.chars().any(char::is_control)
    {
        return Err(Error::invalid(format!(
            "{flag} `{}`: expected the URL of the receiving service, e.g. https://my-service-abc123-uc.a.run.app",
            audience.escape_debug()
        )));
    }
    Ok(())
}

/// A project ID as clients are told it: printable ASCII without spaces.
/// Looser than Google's own rule (6–30 of `a-z0-9-`), which legacy
/// domain-scoped IDs such as `example.com:my-project` do not follow.
pub(crate) fn project_id(flag: &str, project: &str) -> Result<()> {
    if project.is_empty() || !project.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(format!(
            "{flag} `{}`: expected a project ID such as my-project",
            project.escape_debug()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_printable_words() {
        for ok in ["my-project", "example.com:my-project", "p-123456"] {
            assert!(project_id("--project-id", ok).is_ok(), "{ok}");
        }
        for bad in ["", "my project", "p\n", "projét"] {
            let e = project_id("--project-id", bad).err();
            assert!(
                e.as_ref()
                    .is_some_and(|e| e.message().contains("--project-id")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn service_accounts_are_emails_of_service_account_domains_or_unique_ids() {
        for ok in [
            "app@my-project.iam.gserviceaccount.com",
            "123456789012-compute@developer.gserviceaccount.com",
            "my-project@appspot.gserviceaccount.com",
            "service-123@gcp-sa-foo.iam.gserviceaccount.com",
            "123456789012345678901",
        ] {
            assert!(service_account("--service-account", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "not-an-email",
            "a@b/../x",
            "app@p.iam.gserviceaccount.com/../x",
            "app@p.iam.gserviceaccount.com:generateIdToken?x",
            "../app@p.iam.gserviceaccount.com",
            "app@p.iam.gserviceaccount.com%2F..",
            "app@gmail.com",
            "app@evil.com#.gserviceaccount.com",
            "a b@p.iam.gserviceaccount.com",
            "@p.iam.gserviceaccount.com",
            "app@",
            "12a",
        ] {
            let e = service_account("--service-account", bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.message().starts_with("--service-account `"), "{e}");
        }
    }

    #[test]
    fn regions_are_validated() {
        for ok in [
            "us-east-1",
            "eu-central-1",
            "us-gov-west-1",
            "ap-southeast-4",
        ] {
            assert!(region("--region", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "US-EAST-1",
            "us_east_1",
            "us-east-1.evil.com",
            "us-east-1/x",
            "-us",
            "a b",
        ] {
            assert!(region("--region", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_for_loopback_hosts_only() {
        for ok in [
            "https://sts.googleapis.com/v1/token",
            "http://127.0.0.1:8080/v1/token",
            "http://127.1.2.3/x",
            "http://[::1]:9/x",
            "http://localhost:1/x",
        ] {
            assert!(url("--token-url", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://sts.googleapis.com/v1/token",
            "http://10.0.0.1/x",
            "http://localhost.evil.com/x",
            "http://127.0.0.1.nip.io/x",
            "ftp://127.0.0.1/x",
            "sts.googleapis.com",
        ] {
            let e = url("--token-url", bad)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert!(e.message().starts_with("--token-url `"), "{e}");
        }
    }

    #[test]
    fn lifetimes_for_configs_start_at_600() {
        assert!(lifetime("--lifetime", 1).is_ok());
        assert!(config_lifetime("--lifetime", 599).is_err());
        assert!(config_lifetime("--lifetime", 600).is_ok());
        assert!(config_lifetime("--lifetime", 43_201).is_err());
    }
}
