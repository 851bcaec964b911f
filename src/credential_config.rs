//! `generate-config`: the `credential_config.json` Google libraries load.
//!
//! The file is an `external_account` configuration whose
//! `credential_source.executable.command` runs `wif-helper executable` with
//! every setting it needs spelled out as arguments, because the Rust client
//! library passes no `GOOGLE_EXTERNAL_ACCOUNT_*` variables. The command is
//! an absolute path and single-space-separated arguments with no quotes and
//! no shell metacharacters: Go and Rust split on whitespace, Java on single
//! spaces, Python with shlex, PHP and Ruby through a shell.

use crate::error::{Error, ErrorCode, Result};
use crate::google::iam_credentials::Impersonation as IamTarget;
use crate::provider::Provider;
use crate::settings::{CONFIG_TIMEOUT_MILLIS_RANGE, validate};
use crate::subject::JWT_TOKEN_TYPE;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to put in the file (checked by [`ConfigSpec::validate`]).
#[derive(Debug, Clone)]
pub(crate) struct ConfigSpec {
    /// The pool provider.
    pub(crate) provider: Provider,
    /// The service account to impersonate, if any.
    pub(crate) service_account: Option<String>,
    /// `service_account_impersonation.token_lifetime_seconds`.
    pub(crate) lifetime: Option<u32>,
    /// STS token URL.
    pub(crate) token_url: String,
    /// IAM Credentials root URL.
    pub(crate) iam_credentials_url: String,
    /// `credential_source.executable.timeout_millis`.
    pub(crate) timeout_millis: u32,
    /// `credential_source.executable.output_file`, when asked for (see
    /// `docs/executable-protocol.md`: by default there is none, because a
    /// library reads it before running wif-helper, whoever it runs as).
    pub(crate) executable_output_file: Option<PathBuf>,
    /// The full command (see [`command_line`]).
    pub(crate) command: String,
}

#[derive(Serialize)]
struct CredentialConfig<'a> {
    universe_domain: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    audience: String,
    subject_token_type: &'a str,
    token_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account_impersonation_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account_impersonation: Option<Impersonation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_info_url: Option<String>,
    credential_source: CredentialSource<'a>,
}

#[derive(Serialize)]
struct Impersonation {
    token_lifetime_seconds: u32,
}

#[derive(Serialize)]
struct CredentialSource<'a> {
    executable: ExecutableSource<'a>,
}

#[derive(Serialize)]
struct ExecutableSource<'a> {
    command: &'a str,
    timeout_millis: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_file: Option<String>,
}

impl ConfigSpec {
    /// Checks every field with the validators every command uses.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(l) = self.lifetime {
            if self.service_account.is_none() {
                return Err(Error::invalid(
                    "--lifetime needs --service-account (it is the service-account token's lifetime)",
                ));
            }
            validate::config_lifetime("--lifetime", l)?;
        }
        if let Some(sa) = &self.service_account {
            validate::service_account("--service-account", sa)?;
        }
        validate::url("--token-url", &self.token_url)?;
        validate::url("--iam-credentials-url", &self.iam_credentials_url)?;
        if !CONFIG_TIMEOUT_MILLIS_RANGE.contains(&self.timeout_millis) {
            return Err(Error::invalid(format!(
                "--executable-timeout-millis {}: Google libraries accept 5000..=120000",
                self.timeout_millis
            )));
        }
        Ok(())
    }
}

/// Renders the configuration as pretty JSON with a trailing newline.
pub(crate) fn render(spec: &ConfigSpec) -> Result<String> {
    spec.validate()?;
    let token_info_url = spec
        .service_account
        .is_none()
        .then(|| spec.token_url.replace("/v1/token", "/v1/introspect"));
    let config = CredentialConfig {
        universe_domain: "googleapis.com",
        kind: "external_account",
        audience: spec.provider.audience(),
        subject_token_type: JWT_TOKEN_TYPE,
        token_url: &spec.token_url,
        service_account_impersonation_url: spec.service_account.as_deref().map(|sa| {
            IamTarget {
                iam_root: &spec.iam_credentials_url,
                service_account: sa,
                delegates: &[],
            }
            .endpoint("generateAccessToken")
        }),
        service_account_impersonation: spec.lifetime.map(|s| Impersonation {
            token_lifetime_seconds: s,
        }),
        token_info_url,
        credential_source: CredentialSource {
            executable: ExecutableSource {
                command: &spec.command,
                timeout_millis: spec.timeout_millis,
                output_file: spec
                    .executable_output_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            },
        },
    };
    let mut text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot encode config: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// Joins an absolute program path and arguments into a command every client
/// library splits the same way, refusing anything it would split differently.
pub(crate) fn command_line(program: &Path, args: &[String]) -> Result<String> {
    let program_str = program.to_str().unwrap_or_default();
    if !program.is_absolute() || program_str.is_empty() {
        return Err(Error::invalid(format!(
            "the command must start with an absolute path, got `{}`",
            program.display()
        )));
    }
    if !is_portable(program_str) {
        return Err(Error::invalid(format!(
            "the path of wif-helper `{}` contains a space, quote or shell character, which \
             Google client libraries split or interpret differently. Install or link wif-helper \
             at a plain path (e.g. `ln -s \"{}\" /usr/local/bin/wif-helper`) and pass \
             --executable-path /usr/local/bin/wif-helper",
            program.display(),
            program.display()
        )));
    }
    let mut parts = vec![program_str.to_owned()];
    for a in args {
        if !is_portable(a) {
            return Err(Error::invalid(format!(
                "the argument `{a}` would appear in the generated command, but it contains a \
                 space, quote or shell character that Google client libraries split or interpret \
                 differently; choose a value (e.g. a path) without them"
            )));
        }
        parts.push(a.clone());
    }
    Ok(parts.join(" "))
}

/// Characters that mean the same to `strings.Fields`, Java's single-space
/// split, shlex and `sh`.
fn is_portable(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,=%".contains(&b))
}

/// A credential configuration read back from disk (for `doctor`): the
/// fields that decide what a client library does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedConfig {
    /// `audience`: the pool provider, `//iam.googleapis.com/…`.
    pub(crate) audience: String,
    /// `subject_token_type`.
    pub(crate) subject_token_type: String,
    /// `token_url` (Google STS).
    pub(crate) token_url: String,
    /// `service_account_impersonation_url`, when the config impersonates.
    pub(crate) impersonation_url: Option<String>,
    /// `credential_source.executable.command`.
    pub(crate) command: String,
    /// `credential_source.executable.timeout_millis` (libraries default to 30000).
    pub(crate) timeout_millis: u64,
    /// `credential_source.executable.output_file`.
    pub(crate) output_file: Option<PathBuf>,
}

impl LoadedConfig {
    /// The command's program and arguments, split on whitespace as client
    /// libraries split it (the program is `""` when the command is empty).
    pub(crate) fn command_words(&self) -> (&str, std::str::SplitWhitespace<'_>) {
        let mut words = self.command.split_whitespace();
        (words.next().unwrap_or_default(), words)
    }
}

#[derive(Deserialize)]
struct WireConfig {
    #[serde(rename = "type")]
    kind: Option<String>,
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    credential_source: Option<WireSource>,
}

#[derive(Deserialize)]
struct WireSource {
    executable: Option<WireExecutable>,
    environment_id: Option<String>,
}

#[derive(Deserialize)]
struct WireExecutable {
    command: Option<String>,
    timeout_millis: Option<u64>,
    output_file: Option<String>,
}

/// Reads a credential configuration as Google client libraries do, refusing
/// one that would not run wif-helper, with what to do instead.
pub(crate) fn parse(text: &str) -> Result<LoadedConfig> {
    let regenerate = "regenerate it with `wif-helper generate-config`";
    let wire: WireConfig = serde_json::from_str(text).map_err(|e| {
        Error::invalid(format!(
            "not a JSON credential configuration ({e}); {regenerate}"
        ))
    })?;
    let kind = wire.kind.unwrap_or_default();
    if kind != "external_account" {
        return Err(Error::invalid(format!(
            "its type is `{}`, not external_account (a workload identity federation config); {regenerate}",
            crate::text::quote(&kind)
        )));
    }
    let source = wire
        .credential_source
        .ok_or_else(|| Error::invalid(format!("it has no credential_source; {regenerate}")))?;
    let Some(executable) = source.executable else {
        let which = if source.environment_id.is_some() {
            "Google's built-in AWS source (environment_id), which reads only environment keys and \
             EC2 metadata and never runs wif-helper"
        } else {
            "a file or URL source, which never runs wif-helper"
        };
        return Err(Error::invalid(format!(
            "its credential_source is {which}; {regenerate}"
        )));
    };
    let missing = |field: &str| Error::invalid(format!("it has no {field}; {regenerate}"));
    Ok(LoadedConfig {
        audience: wire.audience.ok_or_else(|| missing("audience"))?,
        subject_token_type: wire
            .subject_token_type
            .ok_or_else(|| missing("subject_token_type"))?,
        token_url: wire
            .token_url
            .unwrap_or_else(|| crate::settings::DEFAULT_TOKEN_URL.to_owned()),
        impersonation_url: wire.service_account_impersonation_url,
        command: executable
            .command
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| missing("credential_source.executable.command"))?,
        timeout_millis: executable.timeout_millis.unwrap_or(30_000),
        output_file: executable.output_file.map(PathBuf::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{DEFAULT_IAM_CREDENTIALS_URL, DEFAULT_TOKEN_URL};
    use serde_json::Value;

    fn spec(sa: Option<&str>) -> ConfigSpec {
        ConfigSpec {
            provider: "projects/1/locations/global/workloadIdentityPools/p/providers/q"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            service_account: sa.map(str::to_owned),
            lifetime: sa.map(|_| 7200),
            token_url: DEFAULT_TOKEN_URL.into(),
            iam_credentials_url: DEFAULT_IAM_CREDENTIALS_URL.into(),
            timeout_millis: 30_000,
            executable_output_file: sa.map(|_| PathBuf::from("/c/out.json")),
            command: "/usr/bin/wif-helper executable".into(),
        }
    }

    #[test]
    fn config_has_what_every_library_needs() {
        let v: Value = serde_json::from_str(
            &render(&spec(Some("sa@p.iam.gserviceaccount.com"))).unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(v["type"], "external_account");
        assert_eq!(
            v["audience"],
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q"
        );
        assert_eq!(v["subject_token_type"], JWT_TOKEN_TYPE);
        assert_eq!(v["token_url"], DEFAULT_TOKEN_URL);
        assert_eq!(
            v["service_account_impersonation_url"],
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
        );
        assert_eq!(
            v["service_account_impersonation"]["token_lifetime_seconds"],
            7200
        );
        assert_eq!(
            v["credential_source"]["executable"]["timeout_millis"],
            30_000
        );
        assert_eq!(
            v["credential_source"]["executable"]["output_file"],
            "/c/out.json"
        );
        assert!(v.get("token_info_url").is_none());
    }

    #[test]
    fn without_a_service_account_it_names_the_introspection_url() {
        let v: Value =
            serde_json::from_str(&render(&spec(None)).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            v["token_info_url"],
            "https://sts.googleapis.com/v1/introspect"
        );
        assert!(v.get("service_account_impersonation_url").is_none());
        assert!(
            v["credential_source"]["executable"]
                .get("output_file")
                .is_none()
        );
    }

    #[test]
    fn timeout_outside_library_bounds_is_refused() {
        for t in [4_999, 120_001] {
            let mut s = spec(None);
            s.timeout_millis = t;
            assert!(render(&s).is_err(), "{t}");
        }
    }

    #[test]
    fn command_is_absolute_single_spaced_and_unquoted() {
        let cmd = command_line(
            Path::new("/opt/bin/wif-helper"),
            &[
                "executable".into(),
                "--provider".into(),
                "projects/1".into(),
            ],
        );
        assert_eq!(
            cmd.ok().as_deref(),
            Some("/opt/bin/wif-helper executable --provider projects/1")
        );
        assert!(command_line(Path::new("bin/wif-helper"), &[]).is_err());
        let e = command_line(Path::new("/My Tools/wif-helper"), &[]).err();
        assert!(e.is_some_and(|e| e.message().contains("--executable-path")));
        for bad in ["a b", "a\"b", "a'b", "a;b", "a$b", "a\\b", ""] {
            assert!(
                command_line(Path::new("/x"), &[bad.into()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_rendered_config_reads_back_and_foreign_ones_say_why_not() {
        let text = render(&spec(Some("sa@p.iam.gserviceaccount.com"))).unwrap_or_default();
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.command, "/usr/bin/wif-helper executable");
        assert_eq!(c.subject_token_type, JWT_TOKEN_TYPE);
        assert_eq!(c.timeout_millis, 30_000);
        assert_eq!(c.output_file, Some(PathBuf::from("/c/out.json")));
        assert!(
            c.impersonation_url
                .is_some_and(|u| u.ends_with(":generateAccessToken"))
        );
        let aws1 = r#"{"type":"external_account","audience":"a","subject_token_type":"t",
            "credential_source":{"environment_id":"aws1"}}"#;
        let e = parse(aws1)
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(
            e.contains("environment_id") && e.contains("generate-config"),
            "{e}"
        );
        for bad in [
            "",
            "[]",
            r#"{"type":"service_account"}"#,
            r#"{"type":"external_account"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
