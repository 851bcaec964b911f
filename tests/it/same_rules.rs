//! One settings layer: every command and the Rust API accept or refuse a
//! value the same way, with the same message.

use crate::common::*;
use wif_helper::{Env, ErrorCode, ServiceSettings, TokenService};

/// `wif-helper: INVALID_ARGUMENT: <message>` → the message, with exit 2.
fn usage_message(run: &Run) -> String {
    assert_eq!(run.status, 2, "exit status; stderr {}", run.stderr);
    assert_eq!(run.stdout, "");
    run.stderr
        .trim_end()
        .strip_prefix("wif-helper: INVALID_ARGUMENT: ")
        .unwrap_or_else(|| panic!("unexpected stderr {:?}", run.stderr))
        .to_owned()
}

#[test]
fn every_command_and_the_api_refuse_a_service_account_that_is_not_one_with_one_message() {
    let w = World::new();
    let provider = w.aws_provider();
    for bad in [
        "app@wif-demo.iam.gserviceaccount.com/../x",
        "app@wif-demo.iam.gserviceaccount.com:generateIdToken?x=",
        "../../v1/projects/-/serviceAccounts/app@wif-demo.iam.gserviceaccount.com",
        "not-an-email",
        "app@gmail.com",
    ] {
        let api = TokenService::new(
            ServiceSettings::new(provider.parse().expect("provider"), bad),
            Env::from_pairs([("HOME", "/nonexistent")]),
        )
        .err()
        .unwrap_or_else(|| panic!("the API accepted {bad}"));
        assert_eq!(api.code(), ErrorCode::InvalidArgument);
        let want = api.message().to_owned();
        assert!(want.starts_with("--service-account `"), "{want}");

        let mut runs = Vec::new();
        for cmd in ["print-access-token", "print-identity-token"] {
            let mut args: Vec<String> = vec![cmd.into()];
            args.extend(w.direct_flags(&provider, bad));
            args.extend(["--audience".into(), "https://a.run.app".into()]);
            if cmd == "print-access-token" {
                args.truncate(args.len() - 2);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            runs.push((cmd, w.run(&refs)));
        }
        let out = w.home().join("credential_config.json");
        let out = out.to_str().expect("utf-8 path");
        runs.push((
            "generate-config",
            w.run(&[
                "generate-config",
                "--provider",
                &w.oidc_provider(),
                "--service-account",
                bad,
                "--output-file",
                out,
            ]),
        ));
        for (cmd, run) in &runs {
            assert_eq!(usage_message(run), want, "{cmd} {bad}");
        }
        assert!(
            !std::path::Path::new(out).exists(),
            "generate-config wrote a config for {bad}"
        );
        // Refused before any upstream call.
        assert_eq!(w.emu.count("google:sts.token"), 0);
    }
}
