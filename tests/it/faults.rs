//! Upstream faults, injected with the emulator: transient ones ride through
//! inside the caller's deadline, permanent ones fail fast (one call, no
//! retry) with a stable code and a message that names the fix.
//!
//! The AWS side is `GetWebIdentityToken` through the AWS SDK (its standard
//! retry mode: throttling, 5xx, timeouts and connection failures, 3 attempts),
//! exercised both in executable mode (exit 0, code in the JSON) and through
//! `print-access-token --provider-type oidc` (exit status 1 or 3, code on
//! stderr). The Google side is STS and IAM Credentials through
//! `http::send_with_retry`. Connections hung up on without an answer come
//! from `tests/it/common/relay.rs`; stalls of the credential sources (container
//! endpoint, IMDS) end inside the deadline too.

use crate::common::relay::Relay;
use crate::common::*;
use std::time::{Duration, Instant};
use wif_emulator::Fault;

const WEB_IDENTITY: &str = "sts:GetWebIdentityToken";
const GOOGLE_STS: &str = "google:sts.token";
const GENERATE_ACCESS_TOKEN: &str = "google:generateAccessToken";

fn fault(operation: &str, count: u32, status: u16, body: &str, delay_ms: u64) -> Fault {
    Fault {
        operation: operation.into(),
        count,
        status,
        body: body.into(),
        delay_ms,
    }
}

fn aws_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    )
}

/// A loopback port with nothing listening: bound, then released.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// How a test reaches AWS `GetWebIdentityToken`.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `wif-helper executable`: exit 0, the code in the protocol JSON.
    Executable,
    /// `print-access-token --provider-type oidc`: the code on stderr, exit 1 or 3.
    Print,
}

/// The outcome of one run: `Ok(token)` or `Err((code, message))`, with the
/// exit status checked against the mode's contract.
fn outcome(
    w: &World,
    mode: Mode,
    extra: &[&str],
    want_exit: i32,
) -> Result<String, (String, String)> {
    match mode {
        Mode::Executable => {
            let v = w.executable(extra).protocol();
            if v["success"] == true {
                Ok(v["id_token"].as_str().unwrap_or_default().to_owned())
            } else {
                Err((
                    v["code"].as_str().unwrap_or_default().to_owned(),
                    v["message"].as_str().unwrap_or_default().to_owned(),
                ))
            }
        }
        Mode::Print => {
            let mut args = vec!["--provider-type", "oidc"];
            args.extend_from_slice(extra);
            let run = print_access(w, &w.oidc_provider(), &w.emu.token_url(), &args);
            assert_eq!(run.status, want_exit, "exit status; stderr {}", run.stderr);
            print_outcome(&run)
        }
    }
}

fn print_outcome(run: &Run) -> Result<String, (String, String)> {
    if run.status == 0 {
        assert_eq!(run.stderr, "");
        return Ok(run.stdout.trim_end().to_owned());
    }
    assert_eq!(run.stdout, "", "a failure printed something on stdout");
    let line = run.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{line}");
    let rest = line
        .strip_prefix("wif-helper: ")
        .unwrap_or_else(|| panic!("unexpected stderr {line:?}"));
    let (code, message) = rest.split_once(": ").unwrap_or((rest, ""));
    Err((code.to_owned(), message.to_owned()))
}

fn expect_error(r: Result<String, (String, String)>, code: &str) -> String {
    match r {
        Ok(_) => panic!("expected {code}, got a token"),
        Err((c, m)) => {
            assert_eq!(c, code, "{m}");
            m
        }
    }
}

const MODES: [(Mode, i32); 2] = [(Mode::Executable, 0), (Mode::Print, 0)];

/// The exit status a failure of `status` has in `mode`.
fn exit_for(mode: Mode, print_status: i32) -> i32 {
    match mode {
        Mode::Executable => 0,
        Mode::Print => print_status,
    }
}

// ---------------------------------------------------------------- AWS side

#[test]
fn aws_throttling_429_then_success_is_retried() {
    for (mode, ok) in MODES {
        let w = World::new();
        w.emu.inject_fault(fault(
            WEB_IDENTITY,
            1,
            429,
            &aws_error("Throttling", "Rate exceeded"),
            0,
        ));
        let token = outcome(&w, mode, &["--timeout-millis", "10000"], ok)
            .unwrap_or_else(|e| panic!("{mode:?}: {e:?}"));
        assert!(w.emu.issued_secrets().contains(&token), "{mode:?}");
        assert_eq!(w.emu.count(WEB_IDENTITY), 2, "{mode:?}");
    }
}

#[test]
fn aws_503_twice_then_success_is_retried() {
    for (mode, ok) in MODES {
        let w = World::new();
        w.emu.inject_fault(fault(
            WEB_IDENTITY,
            2,
            503,
            &aws_error("ServiceUnavailable", "try again"),
            0,
        ));
        let token = outcome(&w, mode, &["--timeout-millis", "10000"], ok)
            .unwrap_or_else(|e| panic!("{mode:?}: {e:?}"));
        assert!(w.emu.issued_secrets().contains(&token), "{mode:?}");
        assert_eq!(w.emu.count(WEB_IDENTITY), 3, "{mode:?}");
    }
}

#[test]
fn aws_20s_stall_against_a_5s_deadline_is_a_timeout_inside_the_deadline() {
    for mode in [Mode::Executable, Mode::Print] {
        let w = World::new();
        w.emu.inject_fault(fault(WEB_IDENTITY, 10, 0, "", 20_000));
        let started = Instant::now();
        let r = outcome(&w, mode, &["--timeout-millis", "5000"], exit_for(mode, 3));
        let took = started.elapsed();
        let msg = expect_error(r, "TIMEOUT");
        assert!(
            took < Duration::from_millis(5_900),
            "{mode:?} took {took:?}"
        );
        assert!(msg.contains("--timeout-millis"), "{mode:?}: {msg}");
        assert!(w.emu.count(WEB_IDENTITY) >= 1);
    }
}

#[test]
fn aws_one_stalled_attempt_is_abandoned_and_retried_inside_the_deadline() {
    let w = World::new();
    w.emu.inject_fault(fault(WEB_IDENTITY, 1, 0, "", 20_000));
    let started = Instant::now();
    let (jwt, _) = w.executable(&["--timeout-millis", "5000"]).success();
    assert!(started.elapsed() < Duration::from_millis(5_000));
    assert_eq!(jwt_claims(&jwt)["aud"], w.emu.oidc_audience());
    assert_eq!(w.emu.count(WEB_IDENTITY), 2);
}

/// The direct path bounds its AWS calls with the AWS attempt policy (60 % of
/// what is left, at least 1 s), not the Google one (at least 5 s), so under
/// a 5 s budget a stalled first AWS STS attempt is cut and retried in time.
#[test]
fn direct_path_one_stalled_aws_sts_attempt_is_abandoned_and_retried_inside_the_deadline() {
    let id_args = ["--audience", "https://a.run.app"];
    for (command, extra) in [
        ("print-access-token", &[][..]),
        ("print-identity-token", &id_args[..]),
    ] {
        // OIDC provider: the stalled call is GetWebIdentityToken.
        // AWS provider with --assume-role-arn: the stalled call is AssumeRole.
        let assume = ["--assume-role-arn", ASSUMED_ROLE];
        for (operation, provider_type, more) in [
            (WEB_IDENTITY, "oidc", &[][..]),
            ("sts:AssumeRole", "aws", &assume[..]),
        ] {
            let w = World::new();
            w.emu.inject_fault(fault(operation, 1, 0, "", 4_000));
            let provider = match provider_type {
                "oidc" => w.oidc_provider(),
                _ => w.aws_provider(),
            };
            let mut args: Vec<String> = vec![command.into()];
            args.extend(w.direct_flags(&provider, &w.emu.service_account()));
            for a in ["--provider-type", provider_type, "--timeout-millis", "5000"]
                .iter()
                .chain(extra)
                .chain(more)
            {
                args.push((*a).to_owned());
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let started = Instant::now();
            let run = w.run(&refs);
            let took = started.elapsed();
            assert_eq!(run.status, 0, "{command} {operation}: {}", run.stderr);
            assert!(
                took < Duration::from_millis(5_000),
                "{command} {operation} took {took:?}"
            );
            assert_eq!(w.emu.count(operation), 2, "{command} {operation}");
        }
    }
}

#[test]
fn aws_connection_refused_is_a_network_error() {
    for mode in [Mode::Executable, Mode::Print] {
        let w = World::new().env(
            "AWS_ENDPOINT_URL_STS",
            &format!("http://127.0.0.1:{}", dead_port()),
        );
        let started = Instant::now();
        let r = outcome(&w, mode, &["--timeout-millis", "5000"], exit_for(mode, 3));
        let msg = expect_error(r, "NETWORK_ERROR");
        assert!(started.elapsed() < Duration::from_millis(5_000));
        assert!(msg.contains("could not reach AWS STS"), "{mode:?}: {msg}");
    }
}

#[test]
fn aws_403_and_400_are_not_retried() {
    let cases = [
        (
            403,
            aws_error(
                "AccessDenied",
                "User is not authorized to perform: sts:GetWebIdentityToken",
            ),
            "AWS_ACCESS_DENIED",
            "\"Action\":\"sts:GetWebIdentityToken\"",
        ),
        (
            400,
            aws_error(
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            "AWS_EXPIRED_TOKEN",
            "aws sso login",
        ),
        (
            400,
            aws_error("ValidationError", "1 validation error detected"),
            "AWS_ERROR",
            "ValidationError",
        ),
    ];
    for mode in [Mode::Executable, Mode::Print] {
        for (status, body, code, hint) in &cases {
            let w = World::new();
            w.emu.inject_fault(fault(WEB_IDENTITY, 5, *status, body, 0));
            let msg = expect_error(outcome(&w, mode, &[], exit_for(mode, 1)), code);
            assert!(msg.contains(hint), "{mode:?} {code}: {msg}");
            assert_eq!(w.emu.count(WEB_IDENTITY), 1, "{mode:?} {code} was retried");
        }
    }
}

// ------------------------------------------------------------- Google side

/// `print-access-token` for `provider` with Google STS at `token_url`.
fn print_access(w: &World, provider: &str, token_url: &str, extra: &[&str]) -> Run {
    let iam = format!("{}/google/iamcredentials", w.emu.url());
    let sa = w.emu.service_account();
    let mut args = vec![
        "print-access-token",
        "--provider",
        provider,
        "--service-account",
        &sa,
        "--token-url",
        token_url,
        "--iam-credentials-url",
        &iam,
    ];
    args.extend_from_slice(extra);
    w.run(&args)
}

/// `print-access-token` through the emulator's AWS provider.
fn print(w: &World, extra: &[&str]) -> Run {
    print_access(w, &w.aws_provider(), &w.emu.token_url(), extra)
}

#[test]
fn google_429_then_success_is_retried() {
    for op in [GOOGLE_STS, GENERATE_ACCESS_TOKEN] {
        let w = World::new();
        w.emu.inject_fault(fault(
            op,
            1,
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
            0,
        ));
        let run = print(&w, &["--timeout-millis", "10000"]);
        let token = print_outcome(&run).unwrap_or_else(|e| panic!("{op}: {e:?}"));
        assert!(w.emu.issued_secrets().contains(&token));
        assert_eq!(w.emu.count(op), 2, "{op}");
    }
}

#[test]
fn google_503_twice_then_success_is_retried() {
    for op in [GOOGLE_STS, GENERATE_ACCESS_TOKEN] {
        let w = World::new();
        w.emu
            .inject_fault(fault(op, 2, 503, "<html>unavailable</html>", 0));
        let run = print(&w, &["--timeout-millis", "10000"]);
        let token = print_outcome(&run).unwrap_or_else(|e| panic!("{op}: {e:?}"));
        assert!(w.emu.issued_secrets().contains(&token));
        assert_eq!(w.emu.count(op), 3, "{op}");
    }
}

#[test]
fn google_20s_stall_against_a_5s_deadline_is_a_timeout_inside_the_deadline() {
    for op in [GOOGLE_STS, GENERATE_ACCESS_TOKEN] {
        let w = World::new();
        w.emu.inject_fault(fault(op, 10, 0, "", 20_000));
        let started = Instant::now();
        let run = print(&w, &["--timeout-millis", "5000"]);
        let took = started.elapsed();
        assert_eq!(run.status, 3, "{op}: {}", run.stderr);
        let msg = expect_error(print_outcome(&run), "TIMEOUT");
        assert!(took < Duration::from_millis(5_900), "{op} took {took:?}");
        assert!(msg.contains("--timeout-millis"), "{op}: {msg}");
    }
}

#[test]
fn google_connection_refused_is_a_network_error() {
    let w = World::new();
    let dead = format!("http://127.0.0.1:{}/v1/token", dead_port());
    let started = Instant::now();
    let run = print_access(&w, &w.aws_provider(), &dead, &["--timeout-millis", "5000"]);
    assert_eq!(run.status, 3, "{}", run.stderr);
    let msg = expect_error(print_outcome(&run), "NETWORK_ERROR");
    assert!(started.elapsed() < Duration::from_millis(5_000));
    assert!(
        msg.contains("Google STS") && msg.contains("127.0.0.1"),
        "{msg}"
    );
}

#[test]
fn google_403_and_400_are_not_retried() {
    let denied = r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#;
    let grant = r#"{"error":"invalid_grant","error_description":"The audience in ID Token [//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q] does not match the expected audience."}"#;
    let bad_scope =
        r#"{"error":{"code":400,"message":"Invalid scope","status":"INVALID_ARGUMENT"}}"#;
    let cases = [
        (
            GENERATE_ACCESS_TOKEN,
            403,
            denied,
            "GOOGLE_PERMISSION_DENIED",
            "roles/iam.workloadIdentityUser",
        ),
        (GOOGLE_STS, 400, grant, "GOOGLE_INVALID_GRANT", "audience"),
        (
            GOOGLE_STS,
            403,
            r#"{"error":"access_denied"}"#,
            "GOOGLE_INVALID_GRANT",
            "access_denied",
        ),
        (
            GENERATE_ACCESS_TOKEN,
            400,
            bad_scope,
            "GOOGLE_ERROR",
            "--scopes",
        ),
    ];
    for (op, status, body, code, hint) in cases {
        let w = World::new();
        w.emu.inject_fault(fault(op, 5, status, body, 0));
        let run = print(&w, &[]);
        assert_eq!(run.status, 1, "{op} {status}: {}", run.stderr);
        let msg = expect_error(print_outcome(&run), code);
        assert!(msg.contains(hint), "{op} {status}: {msg}");
        assert_eq!(w.emu.count(op), 1, "{op} {status} was retried");
    }
}

#[test]
fn aws_bare_429_from_a_proxy_is_retried() {
    let w = World::new();
    w.emu
        .inject_fault(fault(WEB_IDENTITY, 1, 429, "Too Many Requests", 0));
    let (jwt, _) = w.executable(&["--timeout-millis", "10000"]).success();
    assert_eq!(jwt_claims(&jwt)["aud"], w.emu.oidc_audience());
    assert_eq!(w.emu.count(WEB_IDENTITY), 2);
}

#[test]
fn federation_disabled_is_not_retried() {
    for mode in [Mode::Executable, Mode::Print] {
        let w = World::new();
        w.emu.set_outbound_federation(false);
        let r = outcome(&w, mode, &[], exit_for(mode, 1));
        let msg = expect_error(r, "AWS_OUTBOUND_FEDERATION_DISABLED");
        assert!(
            msg.contains("aws iam enable-outbound-web-identity-federation"),
            "{msg}"
        );
        assert_eq!(w.emu.count(WEB_IDENTITY), 1, "{mode:?} was retried");
    }
}

#[test]
fn persistent_5xx_fails_as_transient_after_bounded_attempts() {
    // AWS: the SDK's standard mode, 3 attempts.
    let w = World::new();
    w.emu.inject_fault(fault(
        WEB_IDENTITY,
        10,
        503,
        &aws_error("ServiceUnavailable", "down"),
        0,
    ));
    let r = outcome(&w, Mode::Print, &["--timeout-millis", "10000"], 3);
    let msg = expect_error(r, "AWS_ERROR");
    assert!(msg.contains("ServiceUnavailable"), "{msg}");
    assert_eq!(w.emu.count(WEB_IDENTITY), 3);
    // Google: 5 attempts.
    let w = World::new();
    w.emu.inject_fault(fault(GOOGLE_STS, 10, 503, "{}", 0));
    let run = print(&w, &["--timeout-millis", "10000"]);
    assert_eq!(run.status, 3, "{}", run.stderr);
    let msg = expect_error(print_outcome(&run), "GOOGLE_ERROR");
    assert!(
        msg.contains("HTTP 503") && msg.contains("retry later"),
        "{msg}"
    );
    assert_eq!(w.emu.count(GOOGLE_STS), 5);
}

#[test]
fn a_stalled_credential_source_fails_clearly_inside_the_deadline() {
    for (source, op) in [
        (AwsSource::Container, "container:credentials"),
        (AwsSource::Imds, "imds:credentials"),
    ] {
        let w = World::new().source(source);
        w.emu.inject_fault(fault(op, 10, 0, "", 20_000));
        let started = Instant::now();
        let v = w.executable(&["--timeout-millis", "5000"]).protocol();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(5_900),
            "{source:?} took {took:?}"
        );
        assert_eq!(v["code"], "TIMEOUT", "{source:?}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("--timeout-millis") || msg.contains("hop limit"),
            "{msg}"
        );
    }
}

#[test]
fn connections_dropped_without_an_answer_are_retried() {
    // AWS: the first connection to STS is hung up on; the SDK retries.
    let w = World::new();
    let relay = Relay::flaky(&w.emu.url(), 1);
    let w = w.env("AWS_ENDPOINT_URL_STS", &relay.url);
    let (jwt, _) = w.executable(&["--timeout-millis", "10000"]).success();
    assert_eq!(jwt_claims(&jwt)["aud"], w.emu.oidc_audience());
    assert_eq!(relay.connections(), 2);
    assert_eq!(w.emu.count(WEB_IDENTITY), 1);

    // Google: the first two connections to STS are hung up on.
    let w = World::new();
    let relay = Relay::flaky(&w.emu.url(), 2);
    let token_url = format!("{}/google/sts/v1/token", relay.url);
    let run = print_access(
        &w,
        &w.aws_provider(),
        &token_url,
        &["--timeout-millis", "10000"],
    );
    let token = print_outcome(&run).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(w.emu.issued_secrets().contains(&token));
    assert_eq!(relay.connections(), 3);
    assert_eq!(w.emu.count(GOOGLE_STS), 1);

    // Every connection hung up on: a transient NETWORK_ERROR, bounded attempts.
    let w = World::new();
    let relay = Relay::flaky(&w.emu.url(), usize::MAX);
    let w = w.env("AWS_ENDPOINT_URL_STS", &relay.url);
    let r = outcome(&w, Mode::Print, &["--timeout-millis", "10000"], 3);
    let msg = expect_error(r, "NETWORK_ERROR");
    assert!(msg.contains("could not reach AWS STS"), "{msg}");
    assert_eq!(relay.connections(), 3, "the SDK makes 3 attempts");
}
