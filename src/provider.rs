//! The workload identity pool provider a token is for.
//!
//! Users write the provider as gcloud prints it
//! (`projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROV`)
//! or as the audience Google STS expects (the same with a
//! `//iam.googleapis.com/` or `https://iam.googleapis.com/` prefix). Both are
//! parsed into one [`Provider`] whose [`Provider::audience`] is the canonical
//! `//iam.googleapis.com/...` form used in `GetWebIdentityToken`, the
//! `x-goog-cloud-target-resource` header and the STS exchange.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A validated workload identity pool provider resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider {
    project_number: String,
    location: String,
    pool: String,
    provider: String,
}

impl Provider {
    /// The audience: `//iam.googleapis.com/projects/NUM/locations/LOC/workloadIdentityPools/POOL/providers/PROV`.
    pub fn audience(&self) -> String {
        format!("//iam.googleapis.com/{}", self.resource())
    }

    /// The resource name without a prefix.
    pub fn resource(&self) -> String {
        format!(
            "projects/{}/locations/{}/workloadIdentityPools/{}/providers/{}",
            self.project_number, self.location, self.pool, self.provider
        )
    }

    /// The pool's resource name, the root of `principal://` and `principalSet://` members.
    pub fn pool_resource(&self) -> String {
        format!(
            "projects/{}/locations/{}/workloadIdentityPools/{}",
            self.project_number, self.location, self.pool
        )
    }

    /// The project number.
    pub fn project_number(&self) -> &str {
        &self.project_number
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.audience())
    }
}

const EXPECTED: &str = "expected projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL_ID/providers/PROVIDER_ID (optionally prefixed with //iam.googleapis.com/)";

impl FromStr for Provider {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("--provider `{s}`: {why}; {EXPECTED}"));
        let rest = s
            .strip_prefix("//iam.googleapis.com/")
            .or_else(|| s.strip_prefix("https://iam.googleapis.com/"))
            .unwrap_or(s);
        let parts: Vec<&str> = rest.split('/').collect();
        let [
            "projects",
            number,
            "locations",
            location,
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] = parts.as_slice()
        else {
            return Err(bad("not a provider resource name"));
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!(
                "`{number}` is not a project number (use the number, not the project ID: \
                 gcloud projects describe PROJECT_ID --format='value(projectNumber)')"
            )));
        }
        for (what, id) in [
            ("location", location),
            ("pool", pool),
            ("provider", provider),
        ] {
            if !is_id(id) {
                return Err(bad(&format!(
                    "{what} `{id}` must be lower-case letters, digits and hyphens"
                )));
            }
        }
        Ok(Self {
            project_number: (*number).to_owned(),
            location: (*location).to_owned(),
            pool: (*pool).to_owned(),
            provider: (*provider).to_owned(),
        })
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/wif-pool/providers/aws-oidc";

    #[test]
    fn accepts_every_spelling_gcloud_users_write() {
        for s in [
            RES.to_owned(),
            format!("//iam.googleapis.com/{RES}"),
            format!("https://iam.googleapis.com/{RES}"),
        ] {
            let p: Provider = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(p.audience(), format!("//iam.googleapis.com/{RES}"));
            assert_eq!(p.project_number(), "123456789012");
        }
    }

    #[test]
    fn refuses_project_ids_and_garbage_with_a_hint() {
        let e = "projects/my-project/locations/global/workloadIdentityPools/p/providers/q"
            .parse::<Provider>()
            .err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.message().contains("projectNumber")),
            "{e:?}"
        );
        for bad in [
            "",
            "projects/1",
            "projects/1/locations/global/workloadIdentityPools/P/providers/q",
            "projects/1/locations/global/workloadIdentityPools/p/providers/q/extra",
            "projects/1/locations/global/workloadIdentityPools/p p/providers/q",
        ] {
            assert!(bad.parse::<Provider>().is_err(), "{bad}");
        }
    }
}
