//! `wif-helper doctor`: walks the path a command would take, one step at a
//! time, and says for each step ok / warn / fail / skip and, for a failure,
//! the fix.
//!
//! Two walks, chosen by what there is to diagnose:
//!
//! * **a credential configuration** (`--config`, else
//!   `GOOGLE_APPLICATION_CREDENTIALS`): the file, its command, the variable
//!   libraries need, its provider and service account against the flags, the
//!   AWS identity its command runs as, the command's answer, then what a
//!   client library does with it (the STS exchange, the impersonation);
//! * **the direct path** (`--provider`, the flags of `print-access-token`):
//!   the AWS identity, outbound federation (OIDC providers), the STS
//!   exchange, the impersonation, optionally an ID token.
//!
//! Both end with the cache directory. The steps are the pipeline's own
//! pieces (`crate::aws`, `crate::subject`, `crate::google`) called one by
//! one and never through the cache, so what doctor sees is what the
//! upstreams answer now. A step whose input failed is skipped, saying why.
//! No token is printed: only ARNs, audiences, the JWT's `sub` and `iss`.

mod config;
mod direct;
mod fix;
mod steps;

use super::{AwsArgs, CacheArgs, Format, GoogleUrlArgs, JwtDurationArg, LogArgs, TimeoutArg};
use crate::env::Env;
use crate::error::Error;
use crate::logging::{self, Sink};
use crate::output;
use crate::subject::ProviderType;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub(super) struct DoctorArgs {
    /// The credential configuration to diagnose (the executable path client libraries take);
    /// default: GOOGLE_APPLICATION_CREDENTIALS when set
    #[arg(long, env = "WIF_HELPER_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Workload identity pool provider of the direct path (print-access-token):
    /// projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROV
    #[arg(long, env = "WIF_HELPER_PROVIDER", value_name = "RESOURCE")]
    pub(super) provider: Option<String>,
    /// Service account to impersonate (email or unique ID)
    #[arg(long, env = "WIF_HELPER_SERVICE_ACCOUNT", value_name = "EMAIL")]
    pub(super) service_account: Option<String>,
    /// Provider type of --provider: `aws` (signed GetCallerIdentity) or `oidc` (AWS-issued JWT)
    #[arg(
        long,
        env = "WIF_HELPER_PROVIDER_TYPE",
        value_name = "TYPE",
        default_value = "aws"
    )]
    pub(super) provider_type: ProviderType,
    /// Service accounts in the delegation chain, comma-separated
    #[arg(
        long,
        env = "WIF_HELPER_DELEGATES",
        value_name = "EMAILS",
        value_delimiter = ','
    )]
    pub(super) delegates: Vec<String>,
    /// Also get an ID token for this audience (what print-identity-token --audience asks for)
    #[arg(long, env = "WIF_HELPER_AUDIENCE", value_name = "AUDIENCE")]
    pub(super) audience: Option<String>,
    /// Output: one line per check, or {"checks":[{"name","status","detail","fix"}]}
    #[arg(long, env = "WIF_HELPER_FORMAT", value_enum, default_value_t = Format::Text)]
    pub(super) format: Format,
    /// Log diagnostics (secrets redacted) to stderr
    #[arg(short, long, env = "WIF_HELPER_VERBOSE", value_parser = clap::builder::BoolishValueParser::new())]
    pub(super) verbose: bool,
    #[command(flatten)]
    pub(super) aws: AwsArgs,
    #[command(flatten)]
    pub(super) cache: CacheArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
    #[command(flatten)]
    pub(super) timeout: TimeoutArg,
    #[command(flatten)]
    pub(super) duration: JwtDurationArg,
    #[command(flatten)]
    pub(super) google: GoogleUrlArgs,
}

impl DoctorArgs {
    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout.timeout_millis))
    }
}

/// The longest detail or fix a report line carries (the longest fixes,
/// an IAM policy or a binding with its note, are well under this).
const MAX_LINE: usize = 2000;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// One step's outcome. `detail` and `fix` are redacted when recorded.
#[derive(Debug)]
pub(super) struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

/// The checks so far, in order.
#[derive(Debug, Default)]
pub(super) struct Report {
    checks: Vec<Check>,
}

impl Report {
    /// Every line is redacted, flattened to one line and bounded: details
    /// quote what a configuration, a command or an upstream said.
    fn push(&mut self, name: &'static str, status: Status, detail: &str, fix: Option<&str>) {
        self.checks.push(Check {
            name,
            status,
            detail: crate::text::quote_at_most(detail, MAX_LINE),
            fix: fix.map(|f| crate::text::quote_at_most(f, MAX_LINE)),
        });
    }

    pub(super) fn ok(&mut self, name: &'static str, detail: impl AsRef<str>) {
        self.push(name, Status::Ok, detail.as_ref(), None);
    }

    pub(super) fn warn(
        &mut self,
        name: &'static str,
        detail: impl AsRef<str>,
        fix: impl AsRef<str>,
    ) {
        self.push(name, Status::Warn, detail.as_ref(), Some(fix.as_ref()));
    }

    pub(super) fn fail(
        &mut self,
        name: &'static str,
        detail: impl AsRef<str>,
        fix: impl AsRef<str>,
    ) {
        self.push(name, Status::Fail, detail.as_ref(), Some(fix.as_ref()));
    }

    /// A failure whose detail is the pipeline's own error (code and message).
    pub(super) fn error(&mut self, name: &'static str, e: &Error, fix: impl AsRef<str>) {
        self.fail(name, e.to_string(), fix);
    }

    pub(super) fn skip(&mut self, name: &'static str, why: impl AsRef<str>) {
        self.push(
            name,
            Status::Skip,
            &format!("skipped: {}", why.as_ref()),
            None,
        );
    }

    /// Whether `name` was checked and passed (ok or warn).
    pub(super) fn passed(&self, name: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == name && matches!(c.status, Status::Ok | Status::Warn))
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    fn json(&self) -> String {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "status": c.status.as_str(),
                    "detail": c.detail,
                    "fix": c.fix,
                })
            })
            .collect();
        serde_json::json!({ "checks": checks }).to_string()
    }

    fn text(&self, heading: &str) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = format!("wif-helper doctor: {heading}\n");
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                c.status.as_str(),
                c.name,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
            }
        }
        let (failed, warned, skipped) = (
            self.count(Status::Fail),
            self.count(Status::Warn),
            self.count(Status::Skip),
        );
        if failed == 0 {
            out.push_str(&format!(
                "no check failed ({} ok, {warned} warning(s), {skipped} skipped)",
                self.count(Status::Ok)
            ));
        } else {
            out.push_str(&format!(
                "{failed} check(s) failed, {skipped} skipped: apply the first fix, then run \
                 `wif-helper doctor` again"
            ));
        }
        out
    }
}

/// Runs the checks, prints them, exits 0 when none failed and 1 otherwise.
pub(super) fn main(a: &DoctorArgs, env: &Env) -> ExitCode {
    let sink = if a.verbose { Sink::Stderr } else { Sink::None };
    if let Err(e) = logging::init(a.log.log_file.as_deref(), a.log.log_level.as_deref(), sink) {
        output::stderr(&format!("wif-helper: {e}"));
        return ExitCode::from(e.exit_code());
    }
    if let Err(e) = crate::settings::validate::timeout(
        "--timeout-millis",
        a.timeout(),
        &crate::settings::SERVICE_TIMEOUT_RANGE,
    ) {
        output::stderr(&format!("wif-helper: {e}"));
        return ExitCode::from(e.exit_code());
    }
    let mut report = Report::default();
    let config = a
        .config
        .clone()
        .or_else(|| env.get("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from));
    let heading = match &config {
        Some(path) => {
            config::walk(&mut report, a, env, path);
            format!(
                "the credential configuration {} (client libraries; `wif-helper executable`)",
                path.display()
            )
        }
        None => {
            direct::walk(&mut report, a, env);
            match &a.provider {
                Some(p) => format!("the direct path (print-access-token) for {p}"),
                None => "no provider and no credential configuration".to_owned(),
            }
        }
    };
    match a.format {
        Format::Json => output::stdout(&report.json()),
        Format::Text => output::stdout(&report.text(&heading)),
    }
    if report.count(Status::Fail) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_redacts_renders_and_counts() {
        crate::secret::remember("doctor-secret-only-this-test-knows");
        let mut r = Report::default();
        r.ok("a", "fine");
        r.fail(
            "b",
            "key doctor-secret-only-this-test-knows refused",
            "do x",
        );
        r.skip("c", "needs b");
        assert!(r.passed("a") && !r.passed("b") && !r.passed("c"));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap_or_default();
        assert_eq!(v["checks"][1]["status"], "fail");
        assert_eq!(v["checks"][1]["detail"], "key [redacted] refused");
        assert_eq!(v["checks"][1]["fix"], "do x");
        assert_eq!(v["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(v["checks"][2]["detail"], "skipped: needs b");
        let t = r.text("h");
        assert!(t.contains("fail  b  key [redacted] refused"), "{t}");
        assert!(t.contains("fix: do x"), "{t}");
        assert!(t.ends_with("1 check(s) failed, 1 skipped: apply the first fix, then run `wif-helper doctor` again"), "{t}");
    }
}
