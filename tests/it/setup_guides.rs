//! The setup guides paste and run: every `sh` block of `docs/setup-oidc.md`
//! and `docs/setup-aws-provider.md` uses only variables the guide defined
//! before (each defined once), and the blocks, run in order as one script
//! under `set -euo pipefail` against stand-ins for `gcloud`, `aws`,
//! `wif-helper`, `curl` and `python3` that only record their arguments (no
//! network), make the calls a blank project and account need, with every
//! value filled in. Every wif-helper flag a guide uses is one the real
//! binary's `--help` lists.

use crate::common::BIN;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Variables a guide may use without defining them.
const STANDARD: [&str; 4] = ["HOME", "PATH", "PWD", "USER"];
const PROJECT_NUMBER: &str = "123456789012";
const ACCOUNT: &str = "111122223333";
const ISSUER: &str = "https://abc123-def456.tokens.sts.global.api.aws";

fn guide(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `sh` blocks of a Markdown text, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated sh block");
    blocks
}

/// The variables a line expands: `$NAME` and `${NAME…}`.
fn uses(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let body = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            found.push(name);
        }
    }
    found
}

/// The variable a line assigns (`NAME=…` or `export NAME=…`), if any.
fn defines(line: &str) -> Option<String> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (name, _) = line.split_once('=')?;
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    .then(|| name.to_owned())
}

/// Problems with a guide's variables: used before defined, defined twice.
fn variable_problems(markdown: &str) -> Vec<String> {
    let mut defined: Vec<String> = STANDARD.iter().map(|s| (*s).to_owned()).collect();
    let mut problems = Vec::new();
    for block in sh_blocks(markdown) {
        for line in block.lines() {
            for name in uses(line) {
                if !defined.contains(&name) {
                    problems.push(format!("${name} used before it is defined: {line}"));
                }
            }
            if let Some(name) = defines(line) {
                if defined.contains(&name) {
                    problems.push(format!("{name} defined twice: {line}"));
                }
                defined.push(name);
            }
        }
    }
    problems
}

#[test]
fn the_checker_finds_undefined_and_redefined_variables() {
    let md = "```sh\nA=1\necho \"$A ${B}\" $(date) $1\nA=2\n```\n```text\n$C\n```\n";
    assert_eq!(
        variable_problems(md),
        [
            "$B used before it is defined: echo \"$A ${B}\" $(date) $1",
            "A defined twice: A=2"
        ]
    );
}

#[test]
fn every_variable_of_the_setup_guides_is_defined_once_before_it_is_used() {
    for name in ["setup-oidc.md", "setup-aws-provider.md"] {
        let text = guide(name);
        assert!(sh_blocks(&text).len() >= 8, "{name}: too few sh blocks");
        assert_eq!(variable_problems(&text), Vec::<String>::new(), "{name}");
    }
}

/// A stand-in that records its name and arguments (one line, fields
/// separated by 0x1f) and answers the few questions the guides ask.
fn stand_in(dir: &Path, name: &str) {
    let script = format!(
        "#!/bin/sh\n\
         {{ printf '%s' '{name}'; for a in \"$@\"; do printf '\\037%s' \"$a\"; done; printf '\\n'; }} >> \"$STUB_LOG\"\n\
         case \"{name} $*\" in\n\
         'gcloud projects describe'*) echo {PROJECT_NUMBER} ;;\n\
         'aws sts get-caller-identity'*) echo {ACCOUNT} ;;\n\
         'aws iam get-outbound-web-identity-federation-info'*) echo {ISSUER} ;;\n\
         'wif-helper print-access-token'*) echo ya29.stand-in ;;\n\
         esac\n"
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("stand-in");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Runs a guide's blocks as one script; returns the calls and the directory.
fn run_guide(name: &str) -> (Vec<Vec<String>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    for tool in ["gcloud", "aws", "wif-helper", "curl", "python3"] {
        stand_in(&bin, tool);
    }
    let script = format!("set -euo pipefail\n{}", sh_blocks(&guide(name)).join("\n"));
    let log = dir.path().join("calls.log");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", dir.path())
        .env("STUB_LOG", &log)
        .current_dir(dir.path())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log)
        .expect("calls")
        .lines()
        .map(|l| l.split('\u{1f}').map(str::to_owned).collect())
        .collect();
    (calls, dir)
}

/// The calls whose first words are `prefix`.
fn calls<'a>(all: &'a [Vec<String>], prefix: &[&str]) -> Vec<&'a Vec<String>> {
    all.iter()
        .filter(|c| c.len() >= prefix.len() && c.iter().zip(prefix).all(|(a, b)| a == b))
        .collect()
}

fn has(call: &[String], arg: &str) -> bool {
    call.iter().any(|a| a == arg)
}

/// Checks shared by both guides: the APIs, the service account and its
/// role, no placeholder or unexpanded variable anywhere, real wif-helper flags.
fn common_checks(all: &[Vec<String>], name: &str) {
    let enable = calls(all, &["gcloud", "services", "enable"]);
    assert_eq!(enable.len(), 1, "{name}");
    for api in [
        "sts.googleapis.com",
        "iamcredentials.googleapis.com",
        "iam.googleapis.com",
    ] {
        assert!(has(enable[0], api), "{name}: {api} not enabled");
    }
    let sa = calls(all, &["gcloud", "iam", "service-accounts", "create"]);
    assert_eq!(sa.len(), 1, "{name}");
    let grant = calls(
        all,
        &["gcloud", "storage", "buckets", "add-iam-policy-binding"],
    );
    assert!(
        grant.iter().any(|c| has(
            c,
            "--member=serviceAccount:wif-app@my-project.iam.gserviceaccount.com"
        )),
        "{name}: no role granted on a resource"
    );
    for call in all {
        for arg in call {
            assert!(!arg.contains('$'), "{name}: unexpanded in {call:?}");
            for placeholder in ["PROJECT_NUMBER", "ACCOUNT_ID", "ROLE_NAME", "POOL_ID"] {
                assert!(
                    !arg.contains(placeholder),
                    "{name}: placeholder in {call:?}"
                );
            }
        }
    }
    let mut help: HashMap<String, String> = HashMap::new();
    for call in calls(all, &["wif-helper"]) {
        let sub = call.get(1).expect("a subcommand").clone();
        let text = help.entry(sub.clone()).or_insert_with(|| {
            let out = Command::new(BIN)
                .args([&sub, "--help"])
                .output()
                .expect("help");
            assert!(
                out.status.success(),
                "{name}: `wif-helper {sub}` is not a command"
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        });
        for flag in call.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or_default();
            assert!(
                names_flag(text, flag),
                "{name}: wif-helper {sub} has no {flag}"
            );
        }
    }
}

/// Whether `help` lists `flag` itself, not only a longer flag that begins
/// with it (`--audience` inside `--audiences`).
fn names_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        help[at + flag.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

#[test]
fn a_flag_is_found_whole_not_as_the_start_of_another() {
    let help = "  --audiences <AUD>  ...\n  --region <R>\n      --no-cache\n";
    assert!(names_flag(help, "--region"));
    assert!(names_flag(help, "--no-cache"));
    assert!(!names_flag(help, "--audience"));
    assert!(!names_flag(help, "--no"));
}

fn json_file(dir: &Path, file: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

#[test]
fn the_oidc_guide_runs_against_stand_ins_with_every_value_filled_in() {
    let (all, dir) = run_guide("setup-oidc.md");
    common_checks(&all, "setup-oidc.md");
    let pool = format!("projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/aws-pool");
    let audience = format!("//iam.googleapis.com/{pool}/providers/aws-oidc");
    assert_eq!(
        calls(
            &all,
            &["aws", "iam", "enable-outbound-web-identity-federation"]
        )
        .len(),
        1
    );
    let policy = json_file(dir.path(), "policy.json");
    let condition = &policy["Statement"][0]["Condition"];
    assert_eq!(
        condition["ForAnyValue:StringEquals"]["sts:IdentityTokenAudience"],
        audience
    );
    assert_eq!(policy["Statement"][0]["Action"], "sts:GetWebIdentityToken");
    let trust = json_file(dir.path(), "trust.json");
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    let put = calls(&all, &["aws", "iam", "put-role-policy"]);
    assert!(
        put.len() == 1 && has(put[0], "file://policy.json"),
        "{put:?}"
    );
    let provider = calls(
        &all,
        &[
            "gcloud",
            "iam",
            "workload-identity-pools",
            "providers",
            "create-oidc",
        ],
    );
    assert!(
        provider.len() == 1 && has(provider[0], &format!("--issuer-uri={ISSUER}")),
        "{provider:?}"
    );
    let member = format!(
        "--member=principal://iam.googleapis.com/{pool}/subject/arn:aws:iam::{ACCOUNT}:role/wif-workload"
    );
    let bind = calls(
        &all,
        &[
            "gcloud",
            "iam",
            "service-accounts",
            "add-iam-policy-binding",
        ],
    );
    assert!(bind.iter().any(|c| has(c, &member)), "{bind:?}");
    let generate = calls(&all, &["wif-helper", "generate-config"]);
    assert!(
        generate
            .iter()
            .all(|c| has(c, &format!("{pool}/providers/aws-oidc"))),
        "{generate:?}"
    );
    let doctor = calls(&all, &["wif-helper", "doctor"]);
    assert_eq!(
        doctor.len(),
        2,
        "doctor is how the guide checks: {doctor:?}"
    );
    let issuer_allowed = calls(
        &all,
        &["gcloud", "resource-manager", "org-policies", "allow"],
    );
    assert!(
        issuer_allowed.iter().any(|c| has(c, ISSUER)),
        "{issuer_allowed:?}"
    );
}

#[test]
fn the_aws_provider_guide_runs_against_stand_ins_with_every_value_filled_in() {
    let (all, _dir) = run_guide("setup-aws-provider.md");
    common_checks(&all, "setup-aws-provider.md");
    let pool = format!("projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/aws-pool");
    let provider = calls(
        &all,
        &[
            "gcloud",
            "iam",
            "workload-identity-pools",
            "providers",
            "create-aws",
        ],
    );
    assert!(
        provider.len() == 1 && has(provider[0], &format!("--account-id={ACCOUNT}")),
        "{provider:?}"
    );
    let set = format!("--member=principalSet://iam.googleapis.com/{pool}/attribute.aws_role/");
    let bind = calls(
        &all,
        &[
            "gcloud",
            "iam",
            "service-accounts",
            "add-iam-policy-binding",
        ],
    );
    for who in [
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/wif-workload"),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_ReadOnly_0123456789abcdef"),
        format!("arn:aws:iam::{ACCOUNT}:user/wif-ci"),
    ] {
        assert!(
            bind.iter().any(|c| has(c, &format!("{set}{who}"))),
            "{who}: {bind:?}"
        );
    }
    let org = calls(
        &all,
        &["gcloud", "resource-manager", "org-policies", "allow"],
    );
    assert!(
        org.iter()
            .any(|c| has(c, "constraints/iam.workloadIdentityPoolAwsAccounts") && has(c, ACCOUNT)),
        "{org:?}"
    );
    let doctor = calls(&all, &["wif-helper", "doctor"]);
    assert_eq!(doctor.len(), 1, "{doctor:?}");
    assert!(calls(&all, &["wif-helper", "print-access-token"]).len() == 1);
}
