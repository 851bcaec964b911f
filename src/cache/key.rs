//! Cache keys: every key wif-helper uses is built here, from typed inputs.
//!
//! A key is a kind (`jwt`, `sts`, `access`, `id`, `executable`) and a hash of
//! everything that determines the token. Each kind's key covers the AWS
//! identity ([`AwsIdentity`]) and what the upstream was asked; the keys of
//! the direct path nest (`sts` ⊂ `access`/`id`), so one federated token
//! serves every scope and audience, and the OIDC direct path's `jwt` key is
//! the executable path's, so both share one AWS-issued JWT.

use crate::aws::AwsSettings;
use crate::env::Env;
use crate::settings::ServiceSettings;
use crate::subject::ProviderType;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Bump when the entry format or key derivation changes.
pub(super) const SCHEMA: u32 = 1;

/// Everything that determines a token, hashed into a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    kind: &'static str,
    pub(super) hex: String,
    /// What `wif-helper cache list` shows of the entry: the provider,
    /// service account, scopes or audience. Descriptive only, never hashed,
    /// never a secret.
    pub(super) about: BTreeMap<&'static str, String>,
}

impl CacheKey {
    /// A key from a kind and the name/value pairs that determine the token.
    /// Order does not matter.
    pub(crate) fn new<'a>(
        kind: &'static str,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let map: BTreeMap<&str, &str> = fields.into_iter().collect();
        let mut h = Sha256::new();
        h.update(format!("wif-helper-cache-v{SCHEMA}\0{kind}\0").as_bytes());
        for (k, v) in &map {
            // Length-prefixed so no two different maps hash the same bytes.
            h.update(format!("{}:{k}{}:{v}", k.len(), v.len()).as_bytes());
        }
        Self {
            kind,
            hex: hex::encode(h.finalize()),
            about: BTreeMap::new(),
        }
    }

    fn about<const N: usize>(mut self, pairs: [(&'static str, &str); N]) -> Self {
        self.about = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        self
    }

    /// The file name stem, e.g. `jwt-3f2a…`.
    pub(crate) fn stem(&self) -> String {
        format!("{}-{}", self.kind, self.hex.get(..40).unwrap_or(&self.hex))
    }

    /// The AWS-issued JWT for `audience`, `duration` seconds long: the
    /// executable path's answer and the OIDC direct path's subject token.
    pub(crate) fn jwt(identity: &AwsIdentity, audience: &str, duration: i64) -> Self {
        let duration = duration.to_string();
        let mut f = identity.fields();
        f.push(("audience", audience));
        f.push(("duration", &duration));
        Self::new("jwt", f).about([("provider", audience)])
    }

    /// The federated token from Google STS: the AWS identity and the exchange.
    pub(crate) fn sts(identity: &AwsIdentity, s: &ServiceSettings) -> Self {
        let audience = s.provider.audience();
        let jwt_duration = s.jwt_duration.to_string();
        Self::new(
            "sts",
            exchange_fields(identity, s, &audience, &jwt_duration),
        )
        .about([
            ("provider", &audience),
            ("provider_type", s.provider_type.as_str()),
        ])
    }

    /// A service-account access token: the exchange, the account, the
    /// scopes (in any order) and the lifetime.
    pub(crate) fn access(identity: &AwsIdentity, s: &ServiceSettings) -> Self {
        let audience = s.provider.audience();
        let jwt_duration = s.jwt_duration.to_string();
        let delegates = delegates(s);
        let mut scopes: Vec<&str> = s.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let scopes = scopes.join(" ");
        let lifetime = s.lifetime.to_string();
        let mut f = impersonation_fields(identity, s, &audience, &jwt_duration, &delegates);
        f.push(("scopes", &scopes));
        f.push(("lifetime", &lifetime));
        Self::new("access", f).about([
            ("provider", &audience),
            ("service_account", &s.service_account),
            ("scopes", &scopes),
        ])
    }

    /// A service-account ID token for `audience` (scopes and lifetime do not
    /// matter).
    pub(crate) fn id(
        identity: &AwsIdentity,
        s: &ServiceSettings,
        audience: &str,
        include_email: bool,
    ) -> Self {
        let provider_audience = s.provider.audience();
        let jwt_duration = s.jwt_duration.to_string();
        let delegates = delegates(s);
        let mut f =
            impersonation_fields(identity, s, &provider_audience, &jwt_duration, &delegates);
        f.push(("id_audience", audience));
        let email = if include_email { "true" } else { "false" };
        f.push(("include_email", email));
        Self::new("id", f).about([
            ("provider", &provider_audience),
            ("service_account", &s.service_account),
            ("audience", audience),
        ])
    }
}

fn delegates(s: &ServiceSettings) -> String {
    s.delegates
        .iter()
        .map(|d| crate::google::iam_credentials::delegate_resource(d))
        .collect::<Vec<_>>()
        .join(",")
}

fn exchange_fields<'a>(
    identity: &'a AwsIdentity,
    s: &'a ServiceSettings,
    audience: &'a str,
    jwt_duration: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut f = identity.fields();
    f.push(("audience", audience));
    f.push(("provider_type", s.provider_type.as_str()));
    if s.provider_type == ProviderType::Oidc {
        f.push(("jwt_duration", jwt_duration));
    }
    f.push(("token_url", &s.token_url));
    f
}

fn impersonation_fields<'a>(
    identity: &'a AwsIdentity,
    s: &'a ServiceSettings,
    audience: &'a str,
    jwt_duration: &'a str,
    delegates: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut f = exchange_fields(identity, s, audience, jwt_duration);
    f.push((
        "iam_credentials_url",
        s.iam_credentials_url.trim_end_matches('/'),
    ));
    f.push(("service_account", &s.service_account));
    f.push(("delegates", delegates));
    f
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
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Secrets that can change the identity behind an unchanged key ID or
/// endpoint: only their digests go into keys.
const IDENTITY_SECRETS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Larger files are not AWS configuration; their size stands for them.
const MAX_HASHED_FILE: u64 = 1024 * 1024;

/// What decides the AWS identity, as far as it is known without a network
/// call: the explicit AWS settings; the environment that steers the default
/// chain (the same [`Env`] the chain is loaded from), secrets as digests;
/// the content of the AWS config and credentials files (profiles, roles,
/// SSO settings, `credential_process` commands, static keys); the content
/// of the container authorization token file; and the identity (device,
/// inode, size, modification time) of the web identity token file, which
/// rotates. What a credential source decides at run time (the EC2 instance
/// role, what a `credential_process` command prints) cannot be known without
/// asking it: `docs/security.md` says so.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AwsIdentity {
    values: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for AwsIdentity {
    // Holds only selectors (names, paths, key IDs), but print none of them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsIdentity").finish_non_exhaustive()
    }
}

impl AwsIdentity {
    /// The identity `aws` and `env` select.
    pub(crate) fn new(aws: &AwsSettings, env: &Env) -> Self {
        let mut values: Vec<(&'static str, String)> = IDENTITY_VARS
            .iter()
            .map(|v| (*v, env.get(v).unwrap_or("").to_owned()))
            .collect();
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        values.push(("region", opt(&aws.region)));
        values.push(("profile", opt(&aws.profile)));
        values.push(("assume_role_arn", opt(&aws.assume_role_arn)));
        values.push(("home", env.get("HOME").unwrap_or("").to_owned()));
        for name in IDENTITY_SECRETS {
            values.push((name, env.get(name).map(digest).unwrap_or_default()));
        }
        let home_file = |rel: &str| {
            env.get("HOME")
                .map(|h| std::path::Path::new(h).join(".aws").join(rel))
        };
        let config = env
            .get("AWS_CONFIG_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| home_file("config"));
        let credentials = env
            .get("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| home_file("credentials"));
        values.push(("config_file", content_digest(config.as_deref())));
        values.push(("credentials_file", content_digest(credentials.as_deref())));
        values.push((
            "container_token_file",
            content_digest(
                env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                    .map(std::path::Path::new),
            ),
        ));
        values.push((
            "web_identity_token_file",
            file_identity(
                env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
                    .map(std::path::Path::new),
            ),
        ));
        Self { values }
    }

    fn fields(&self) -> Vec<(&str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// One value that changes whenever the identity does: what a holder of
    /// tokens in memory (the metadata server) compares.
    pub(crate) fn digest(&self) -> String {
        CacheKey::new("identity", self.fields()).hex
    }
}

fn digest(value: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(value.as_ref()))
}

/// The digest of a file's content; `absent`, or the error kind, otherwise.
fn content_digest(path: Option<&std::path::Path>) -> String {
    use std::io::Read;
    let Some(path) = path else {
        return "unset".into();
    };
    let read = std::fs::File::open(path).and_then(|f| {
        let mut bytes = Vec::new();
        f.take(MAX_HASHED_FILE + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    match read {
        Ok(bytes) if bytes.len() as u64 > MAX_HASHED_FILE => {
            format!("large:{}", file_identity(Some(path)))
        }
        Ok(bytes) => digest(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent".into(),
        Err(e) => format!("unreadable:{:?}", e.kind()),
    }
}

/// Device, inode, size and modification time of a file (followed through
/// symlinks, as the SDK reads it).
fn file_identity(path: Option<&std::path::Path>) -> String {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = path else {
        return "unset".into();
    };
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{}:{}:{}:{}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ),
        Err(e) => format!("unreadable:{:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_order_independent_and_field_sensitive() {
        let a = CacheKey::new("jwt", [("a", "1"), ("b", "2")]);
        let b = CacheKey::new("jwt", [("b", "2"), ("a", "1")]);
        let c = CacheKey::new("jwt", [("a", "1"), ("b", "3")]);
        let d = CacheKey::new("id", [("a", "1"), ("b", "2")]);
        let e = CacheKey::new("jwt", [("a", "12"), ("b", "")]);
        assert_eq!(a, b);
        assert_ne!(a.hex, c.hex);
        assert_ne!(a.hex, d.hex);
        assert_ne!(a.hex, e.hex);
    }

    #[test]
    fn jwt_keys_follow_the_identity_the_audience_and_the_duration() {
        let aws = AwsSettings::default();
        let dev = AwsIdentity::new(&aws, &Env::from_pairs([("AWS_PROFILE", "dev")]));
        let prod = AwsIdentity::new(&aws, &Env::from_pairs([("AWS_PROFILE", "prod")]));
        let k = CacheKey::jwt(&dev, "//aud", 3600);
        assert_eq!(k, CacheKey::jwt(&dev, "//aud", 3600));
        assert_ne!(k, CacheKey::jwt(&prod, "//aud", 3600));
        assert_ne!(k, CacheKey::jwt(&dev, "//other", 3600));
        assert_ne!(k, CacheKey::jwt(&dev, "//aud", 900));
        assert!(k.stem().starts_with("jwt-"));
        let role = AwsSettings {
            assume_role_arn: Some("arn:aws:iam::1:role/r".into()),
            ..AwsSettings::default()
        };
        let env = Env::from_pairs([("AWS_PROFILE", "dev")]);
        assert_ne!(
            k,
            CacheKey::jwt(&AwsIdentity::new(&role, &env), "//aud", 3600)
        );
        assert!(!format!("{dev:?}").contains("dev"));
    }

    #[test]
    fn what_decides_the_identity_without_a_network_call_is_in_the_key() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = d.path().join("config");
        let token_file = d.path().join("token");
        let write = |p: &std::path::Path, text: &str| {
            std::fs::write(p, text).unwrap_or_else(|e| panic!("{e}"));
        };
        write(
            &config,
            "[profile app]\nrole_arn = arn:aws:iam::1:role/tenant-a\n",
        );
        write(&token_file, "jwt-1");
        let c = config.to_string_lossy().into_owned();
        let t = token_file.to_string_lossy().into_owned();
        let env = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("AWS_PROFILE", "app"),
                ("AWS_CONFIG_FILE", c.as_str()),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", t.as_str()),
            ];
            pairs.extend_from_slice(extra);
            AwsIdentity::new(&AwsSettings::default(), &Env::from_pairs(pairs))
        };
        let key = |id: &AwsIdentity| CacheKey::jwt(id, "//aud", 3600);
        let base = key(&env(&[]));
        assert_eq!(base, key(&env(&[])), "stable");
        // The profile now names another role: another identity.
        write(
            &config,
            "[profile app]\nrole_arn = arn:aws:iam::1:role/tenant-b\n",
        );
        let edited = key(&env(&[]));
        assert_ne!(base, edited);
        // Another session token, container token, or token file.
        assert_ne!(edited, key(&env(&[("AWS_SESSION_TOKEN", "s2")])));
        assert_ne!(
            key(&env(&[("AWS_SESSION_TOKEN", "s1")])),
            key(&env(&[("AWS_SESSION_TOKEN", "s2")]))
        );
        assert_ne!(
            key(&env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "a")])),
            key(&env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "b")]))
        );
        std::fs::remove_file(&token_file).unwrap_or_else(|e| panic!("{e}"));
        write(&token_file, "jwt-2, rotated");
        assert_ne!(edited, key(&env(&[])));
        // Secrets go in as digests only.
        let id = env(&[("AWS_SESSION_TOKEN", "very-secret-session")]);
        assert!(id.values.iter().all(|(_, v)| !v.contains("very-secret")));
    }
}
