//! Executable mode (the command Google client libraries run), end to end
//! against the emulator: one JSON object on stdout, nothing on stderr, exit 0.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use wif_emulator::Fault;

#[test]
fn success_prints_an_aws_issued_jwt_for_the_provider() {
    let w = World::new();
    let out = w.executable(&[]);
    let (jwt, expiration_time) = out.success();
    let claims = jwt_claims(&jwt);
    assert_eq!(claims["aud"], w.emu.oidc_audience());
    assert_eq!(claims["iss"], w.emu.issuer());
    assert_eq!(claims["sub"], "arn:aws:iam::111122223333:user/wif-user");
    let exp = claims["exp"].as_i64().unwrap_or_default();
    // Announced 300 s before the real expiry; the default duration is one hour.
    assert_eq!(expiration_time, exp - 300);
    assert_eq!(exp - claims["iat"].as_i64().unwrap_or_default(), 3600);
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
}

#[test]
fn every_aws_credential_source_works() {
    let cases = [
        (
            AwsSource::EnvKeys,
            "arn:aws:iam::111122223333:user/wif-user",
            "",
        ),
        (AwsSource::ProfileAssumeRole, ASSUMED_ROLE, "sts:AssumeRole"),
        (
            AwsSource::WebIdentity,
            WORKLOAD_ROLE,
            "sts:AssumeRoleWithWebIdentity",
        ),
        (AwsSource::Container, WORKLOAD_ROLE, "container:credentials"),
        (AwsSource::Imds, WORKLOAD_ROLE, "imds:credentials"),
    ];
    for (source, sub, op) in cases {
        let w = World::new().source(source);
        let out = w.executable(&[]);
        let (jwt, _) = out.success();
        assert_eq!(jwt_claims(&jwt)["sub"], sub, "{source:?}");
        if !op.is_empty() {
            assert!(
                w.emu.count(op) >= 1,
                "{source:?} did not use {op}: {:?}",
                w.emu.stats()
            );
        }
    }
}

#[test]
fn region_comes_from_instance_metadata_when_not_set() {
    let mut w = World::new().source(AwsSource::Imds);
    w.region = None;
    w.executable(&[]).success();
    assert!(w.emu.count("imds:region") >= 1, "{:?}", w.emu.stats());
}

#[test]
fn assume_role_arn_is_assumed_after_the_chain() {
    let w = World::new();
    let (jwt, _) = w.executable(&["--assume-role-arn", ASSUMED_ROLE]).success();
    assert_eq!(jwt_claims(&jwt)["sub"], ASSUMED_ROLE);
    assert_eq!(w.emu.count("sts:AssumeRole"), 1);
}

#[test]
fn output_file_is_written_atomically_with_expiration_time() {
    let w = World::new();
    let file = w.dir.path().join("out/response.json");
    let out = w.executable(&["--output-file", file.to_str().unwrap_or_default()]);
    let printed = out.protocol();
    let written = read_json(&file);
    assert_eq!(written, printed);
    assert!(written["expiration_time"].is_i64());
    let mode = std::fs::metadata(&file)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap_or(w.dir.path()))
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
}

#[test]
fn output_file_also_comes_from_the_library_variable() {
    let w = World::new();
    let file = w.dir.path().join("from-env.json");
    let w = w.env(
        "GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE",
        file.to_str().unwrap_or_default(),
    );
    w.executable(&[]).success();
    assert_eq!(read_json(&file)["success"], Value::Bool(true));
}

#[test]
fn audience_falls_back_to_the_library_variable() {
    let w = World::new();
    let aud = w.emu.oidc_audience();
    let w = w.env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", &aud);
    let (jwt, _) = w.run(&["executable"]).success();
    assert_eq!(jwt_claims(&jwt)["aud"], aud);
}

#[test]
fn cache_serves_the_second_call_and_no_cache_bypasses_it() {
    let w = World::new();
    let (a, _) = w.executable(&[]).success();
    let (b, _) = w.executable(&[]).success();
    assert_eq!(a, b);
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
    let (c, _) = w.executable(&["--no-cache"]).success();
    assert_ne!(a, c);
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 2);
    // A different duration is a different token.
    w.executable(&["--duration", "900"]).success();
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 3);
}

#[test]
fn fifty_processes_on_a_cold_cache_make_one_upstream_call() {
    let w = World::new();
    let provider = w.oidc_provider();
    let round = || -> Vec<String> {
        let argsets = vec![
            vec![
                "executable".to_owned(),
                "--provider".to_owned(),
                provider.clone()
            ];
            50
        ];
        w.spawn_all(&argsets)
            .iter()
            .map(|r| r.success().0)
            .collect()
    };
    let first = round();
    assert_eq!(
        w.emu.count("sts:GetWebIdentityToken"),
        1,
        "{:?}",
        w.emu.stats()
    );
    assert!(
        first.windows(2).all(|p| p[0] == p[1]),
        "processes printed different tokens"
    );
    let second = round();
    assert_eq!(
        w.emu.count("sts:GetWebIdentityToken"),
        1,
        "second round went upstream"
    );
    assert_eq!(first[0], second[0]);
}

#[test]
fn failures_carry_stable_codes_and_say_how_to_fix() {
    // No credentials anywhere.
    let w = World::new().source(AwsSource::None);
    let msg = w.executable(&[]).failure("AWS_CREDENTIALS_NOT_FOUND");
    assert!(msg.contains("AWS_PROFILE"), "{msg}");

    // No region.
    let mut w = World::new();
    w.region = None;
    let msg = w.executable(&[]).failure("AWS_REGION_MISSING");
    assert!(msg.contains("--region"), "{msg}");

    // Outbound federation not enabled in the account.
    let w = World::new();
    w.emu.set_outbound_federation(false);
    let msg = w
        .executable(&[])
        .failure("AWS_OUTBOUND_FEDERATION_DISABLED");
    assert!(
        msg.contains("aws iam enable-outbound-web-identity-federation"),
        "{msg}"
    );

    // Access denied: the policy statement to grant is in the message.
    let w = World::new();
    w.emu.inject_fault(Fault {
        operation: "sts:GetWebIdentityToken".into(),
        count: 1,
        status: 403,
        body: access_denied_xml(),
        delay_ms: 0,
    });
    let msg = w.executable(&[]).failure("AWS_ACCESS_DENIED");
    assert!(msg.contains("sts:GetWebIdentityToken"), "{msg}");

    // Nothing listening.
    let w = World::new().env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9");
    w.executable(&["--timeout-millis", "5000"])
        .failure("NETWORK_ERROR");

    // Bad arguments, a missing provider, a malformed provider.
    let w = World::new();
    w.run(&["executable", "--no-such-flag"])
        .failure("INVALID_ARGUMENT");
    w.run(&["executable"]).failure("INVALID_ARGUMENT");
    w.run(&["executable", "--provider", "projects/my-project/x"])
        .failure("INVALID_ARGUMENT");
    w.executable(&["--duration", "5"])
        .failure("INVALID_ARGUMENT");
    let msg = w
        .env(
            "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE",
            "urn:ietf:params:aws:token-type:aws4_request",
        )
        .executable(&[])
        .failure("INVALID_ARGUMENT");
    assert!(msg.contains("generate-config"), "{msg}");
}

#[test]
fn a_panic_still_answers_in_protocol_json_and_nothing_on_stderr() {
    let w = World::new().env("WIF_HELPER_TEST_PANIC", "1");
    let msg = w.executable(&[]).failure("INTERNAL");
    assert!(msg.contains("report"), "{msg}");
}

#[test]
fn unsafe_cache_directory_is_refused() {
    let w = World::new();
    let dir = w.cache_dir();
    std::fs::create_dir_all(&dir).unwrap_or_default();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap_or_default();
    let msg = w.executable(&[]).failure("CACHE_INSECURE");
    assert!(msg.contains("chmod"), "{msg}");
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 0);
}

#[test]
fn debug_log_goes_to_the_file_and_holds_no_secret() {
    let w = World::new();
    let log = w.dir.path().join("wif.log");
    let out = w.executable(&[
        "--log-file",
        log.to_str().unwrap_or_default(),
        "--log-level",
        "trace",
    ]);
    out.success();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("executable mode answered"), "{text}");
    for secret in w.emu.issued_secrets() {
        assert!(!text.contains(&secret), "log leaks a secret");
    }
    let (_, secret_key) = w.emu.static_credentials();
    assert!(!text.contains(&secret_key));
}

#[test]
fn expiry_is_wall_clock_whatever_the_time_zone() {
    for tz in ["America/New_York", "Asia/Tokyo", "Pacific/Kiritimati"] {
        let w = World::new().env("TZ", tz);
        let (jwt, expiration_time) = w.executable(&[]).success();
        assert_eq!(
            expiration_time,
            jwt_claims(&jwt)["exp"].as_i64().unwrap_or_default() - 300,
            "{tz}"
        );
    }
}

fn access_denied_xml() -> String {
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
     <Code>AccessDenied</Code><Message>User is not authorized to perform: sts:GetWebIdentityToken</Message>\
     </Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        .into()
}

#[test]
fn session_credentials_without_a_known_expiry_get_a_token_that_fits_the_session() {
    // Lambda-style environment keys of a session that ends in 20 minutes:
    // AWS refuses a one-hour token (SessionDurationEscalation), so wif-helper
    // asks for shorter ones until one fits.
    let mut config = wif_emulator::EmulatorConfig::default();
    let ends = time::OffsetDateTime::now_utc() + time::Duration::minutes(20);
    config
        .aws
        .static_credentials
        .push(wif_emulator::config::StaticCredential {
            access_key_id: "ASIAWIFLAMBDA0000001".into(),
            secret_access_key: "lambdaSessionSecretKey/NotReal+0000001".into(),
            session_token: Some("IQoJb3JpZ2luX2VjLambdaSessionToken0000001".into()),
            principal: "arn:aws:sts::111122223333:assumed-role/wif-workload/my-function".into(),
            expiration: Some(ends),
        });
    let w = World::with(config, AwsSource::None)
        .env("AWS_ACCESS_KEY_ID", "ASIAWIFLAMBDA0000001")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "lambdaSessionSecretKey/NotReal+0000001",
        )
        .env(
            "AWS_SESSION_TOKEN",
            "IQoJb3JpZ2luX2VjLambdaSessionToken0000001",
        );
    let (jwt, _) = w.executable(&[]).success();
    let claims = jwt_claims(&jwt);
    assert!(
        claims["exp"].as_i64().unwrap_or(i64::MAX) <= ends.unix_timestamp(),
        "{claims}"
    );
    assert_eq!(claims["sub"], WORKLOAD_ROLE);
    // 3600 and 1800 refused, 900 accepted.
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 3);
}
