//! Proxies: AWS metadata and container-credential endpoints never go through
//! one (a proxy in the way answers with the proxy host's role, boto#1146);
//! Google STS and IAM Credentials honour `HTTP_PROXY`/`HTTPS_PROXY` and
//! `NO_PROXY`, through a real (tiny, loopback) forwarding proxy
//! (`tests/it/common/relay.rs`).

use crate::common::relay::Relay;
use crate::common::*;
use std::net::TcpListener;

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A loopback port with nothing listening: bound, then released.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Every proxy variable set to `proxy`, and the harness's `NO_PROXY` cleared.
fn with_proxy(mut w: World, proxy: &str) -> World {
    for v in PROXY_VARS {
        w = w.env(v, proxy);
    }
    w.env("NO_PROXY", "").env("no_proxy", "")
}

fn print_access_token(w: &World) -> Run {
    let url = w.emu.url();
    let provider = w
        .emu
        .aws_audience()
        .trim_start_matches("//iam.googleapis.com/")
        .to_owned();
    w.run(&[
        "print-access-token",
        "--provider",
        &provider,
        "--service-account",
        &w.emu.service_account(),
        "--token-url",
        &w.emu.token_url(),
        "--iam-credentials-url",
        &format!("{url}/google/iamcredentials"),
        "--no-cache",
        "--timeout-millis",
        "5000",
    ])
}

#[test]
fn metadata_and_container_credentials_bypass_a_dead_proxy() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    for (source, op) in [
        (AwsSource::Imds, "imds:credentials"),
        (AwsSource::Container, "container:credentials"),
    ] {
        let w = with_proxy(World::new().source(source), &dead);
        let (jwt, _) = w.executable(&[]).success();
        assert_eq!(jwt_claims(&jwt)["sub"], WORKLOAD_ROLE, "{source:?}");
        assert!(w.emu.count(op) >= 1, "{source:?}: {:?}", w.emu.stats());
    }
}

#[test]
fn google_calls_go_through_the_proxy_and_aws_metadata_does_not() {
    let proxy = Relay::proxy();
    let w = with_proxy(World::new().source(AwsSource::Imds), &proxy.url);
    let run = print_access_token(&w);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        w.emu
            .issued_secrets()
            .contains(&run.stdout.trim_end().to_owned())
    );
    let seen = proxy.seen();
    let emu = w.emu.url();
    assert!(
        seen.contains(&format!("POST {emu}/google/sts/v1/token")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.starts_with(&format!("POST {emu}/google/iamcredentials/"))),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s.contains("/latest/")),
        "instance metadata went through the proxy: {seen:?}"
    );
    assert!(w.emu.count("imds:credentials") >= 1);
}

#[test]
fn aws_sts_goes_through_the_proxy() {
    let proxy = Relay::proxy();
    let w = with_proxy(World::new(), &proxy.url);
    let (jwt, _) = w.executable(&["--no-cache"]).success();
    assert_eq!(jwt_claims(&jwt)["aud"], w.emu.oidc_audience());
    let emu = w.emu.url();
    assert_eq!(proxy.seen(), vec![format!("POST {emu}/")]);
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
}

#[test]
fn no_proxy_exempts_aws_and_google_endpoints() {
    let proxy = Relay::proxy();
    let w = with_proxy(World::new(), &proxy.url).env("NO_PROXY", "127.0.0.1");
    let run = print_access_token(&w);
    assert_eq!(run.status, 0, "{}", run.stderr);
    w.executable(&["--no-cache"]).success();
    assert_eq!(proxy.seen(), Vec::<String>::new());
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
}

#[test]
fn a_dead_proxy_for_google_is_a_network_error() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let w = with_proxy(World::new(), &dead);
    let run = print_access_token(&w);
    assert_eq!(run.status, 3, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("wif-helper: NETWORK_ERROR: "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Google STS"), "{}", run.stderr);
    assert_eq!(w.emu.count("google:sts.token"), 0);
}
