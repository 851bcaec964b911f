//! `wif-helper metadata-server` over raw HTTP: the endpoints, the rules the
//! real metadata server enforces, who may connect, single flight, resource
//! isolation, upstream failures and shutdown. Real client libraries drive it
//! in `metadata_clients.rs`.

use crate::common::mds::{self, Mds, TOKEN_PATH, get, identity_path, mget};
use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use wif_emulator::Fault;

/// `n` access-token requests released at the same moment, their tokens.
fn tokens_at_once(m: &Mds, n: usize) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (addr, barrier) = (m.addr.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                mget(&addr, TOKEN_PATH)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| token_of(&t.join().expect("thread")))
        .collect()
}

fn token_of(r: &mds::Resp) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn prints_where_it_listens_and_what_to_export() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let port: u16 = m
        .addr
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert_ne!(port, 0, "{}", m.addr);
    let names: Vec<&str> = m.env.iter().map(|(k, _)| k.as_str()).collect();
    for n in [
        "GCE_METADATA_HOST",
        "GCE_METADATA_IP",
        "GCE_METADATA_ROOT",
        "METADATA_SERVER_DETECTION",
        "GOOGLE_CLOUD_PROJECT",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let get_env = |k: &str| m.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get_env("GCE_METADATA_HOST"), Some(m.addr.clone()));
    assert_eq!(
        get_env("METADATA_SERVER_DETECTION").as_deref(),
        Some("assume-present")
    );
    // The service account's project.
    assert_eq!(get_env("GOOGLE_CLOUD_PROJECT").as_deref(), Some("wif-demo"));
    // Nothing upstream before the first request.
    assert_eq!(w.emu.count("google:sts.token"), 0);
}

#[test]
fn a_non_loopback_address_needs_allow_remote() {
    let w = World::new();
    let mut args = vec!["metadata-server".to_owned()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    args.extend(["--listen".into(), "0.0.0.0:0".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = w.run(&refs);
    run.error(2, "INVALID_ARGUMENT", &["--allow-remote", "0.0.0.0:0"]);
}

#[test]
fn tokens_and_metadata_have_the_metadata_servers_shapes() {
    let w = World::new();
    let m = w.metadata_server(&["--project-number", "123456789012"]);
    let r = mget(&m.addr, TOKEN_PATH);
    assert_eq!(r.header("metadata-flavor"), Some("Google"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_i64().unwrap_or_default();
    assert!((3500..=3600).contains(&expires_in), "{v}");
    let token = token_of(&r);
    assert!(w.emu.issued_secrets().contains(&token));
    // The same token for the account's email and for `default`.
    let sa = w.emu.service_account();
    let by_email = mget(
        &m.addr,
        &format!("/computeMetadata/v1/instance/service-accounts/{sa}/token"),
    );
    assert_eq!(token_of(&by_email), token);
    // An ID token is text, not JSON, and is for the audience asked.
    let aud = "https://svc.example.com/path?x=1&y=2";
    let r = mget(&m.addr, &identity_path(aud));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let claims = w.verify_google_id_token(&r.body, aud);
    assert_eq!(claims["email"], sa);
    for (path, body) in [
        (
            "/computeMetadata/v1/project/project-id",
            "wif-demo".to_owned(),
        ),
        (
            "/computeMetadata/v1/project/numeric-project-id",
            "123456789012".into(),
        ),
        (
            "/computeMetadata/v1/universe/universe-domain",
            "googleapis.com".into(),
        ),
        (
            "/computeMetadata/v1/instance/service-accounts/default/email",
            sa.clone(),
        ),
    ] {
        let r = mget(&m.addr, path);
        assert_eq!((r.status, r.body.as_str()), (200, body.as_str()), "{path}");
    }
    // Detection probes: Python pings `/`, Node asks for `instance`.
    let r = get(&m.addr, "/", &[]);
    assert_eq!(
        (r.status, r.header("metadata-flavor")),
        (200, Some("Google"))
    );
    assert_eq!(mget(&m.addr, "/computeMetadata/v1/instance").status, 200);
    let info = mget(
        &m.addr,
        "/computeMetadata/v1/instance/service-accounts/default/?recursive=true",
    );
    assert_eq!(info.header("content-type"), Some("application/json"));
    assert_eq!(info.json()["email"], sa);
    assert_eq!(w.emu.count("google:sts.token"), 1);
}

#[test]
fn requests_without_the_header_through_a_proxy_or_for_another_host_are_refused() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 6] = [
        ("no header", &[], "Metadata-Flavor"),
        (
            "wrong value",
            &[("Metadata-Flavor", "google")],
            "Metadata-Flavor",
        ),
        (
            "forwarded",
            &[
                ("Metadata-Flavor", "Google"),
                ("X-Forwarded-For", "10.0.0.1"),
            ],
            "X-Forwarded-For",
        ),
        (
            "RFC 7239 Forwarded",
            &[("Metadata-Flavor", "Google"), ("Forwarded", "for=10.0.0.1")],
            "Forwarded",
        ),
        (
            "DNS rebinding",
            &[
                ("Metadata-Flavor", "Google"),
                ("Host", "attacker.example.com"),
            ],
            "Host",
        ),
        (
            "rebinding with the server's port",
            &[("Metadata-Flavor", "Google"), ("Host", "evil.test:8954")],
            "Host",
        ),
    ];
    for (why, headers, needle) in cases {
        let r = get(&m.addr, TOKEN_PATH, headers);
        assert_eq!(r.status, 403, "{why}: {r:?}");
        assert!(r.body.contains(needle), "{why}: {}", r.body);
        assert_eq!(r.header("metadata-flavor"), Some("Google"), "{why}");
    }
    // A request line naming another host (absolute form) is refused as well.
    let r = get(
        &m.addr,
        "http://attacker.example.com/computeMetadata/v1/instance/service-accounts/default/token",
        &[("Metadata-Flavor", "Google")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    // The names a real client uses are fine.
    for host in ["localhost", "metadata.google.internal", "127.0.0.1:1"] {
        let r = get(
            &m.addr,
            TOKEN_PATH,
            &[("Metadata-Flavor", "Google"), ("Host", host)],
        );
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
    assert_eq!(w.emu.count("google:sts.token"), 1);
}

#[test]
fn unknown_accounts_and_paths_are_404_and_cost_nothing() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    for path in [
        "/computeMetadata/v1/instance/service-accounts/someone-else@x.iam.gserviceaccount.com/token",
        "/computeMetadata/v1/instance/service-accounts/someone-else@x.iam.gserviceaccount.com/identity?audience=a",
        "/computeMetadata/v1/instance/hostname",
        "/computeMetadata/v1/project/numeric-project-id",
        "/latest/meta-data/iam/security-credentials/",
        "/computeMetadata/v1/instance/service-accounts/default/token/extra",
    ] {
        let r = mget(&m.addr, path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(r.header("metadata-flavor"), Some("Google"));
    }
    assert_eq!(w.emu.count("google:sts.token"), 0);
    assert_eq!(w.emu.count("google:generateAccessToken"), 0);
}

#[test]
fn five_hundred_concurrent_requests_on_a_cold_cache_make_one_exchange() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let n = 500;
    let tokens = tokens_at_once(&m, n);
    assert_eq!(tokens.len(), n);
    assert!(tokens.iter().all(|t| t == &tokens[0]), "different tokens");
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}

#[test]
fn twenty_audiences_share_one_exchange() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    let audiences: Vec<String> = (0..20)
        .map(|i| format!("https://svc-{i}.example.com"))
        .collect();
    let threads: Vec<_> = audiences
        .iter()
        .map(|aud| {
            let (addr, path) = (m.addr.clone(), identity_path(aud));
            std::thread::spawn(move || mget(&addr, &path))
        })
        .collect();
    for (t, aud) in threads.into_iter().zip(&audiences) {
        let r = t.join().expect("thread");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(w.verify_google_id_token(&r.body, aud)["aud"], aud.as_str());
    }
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateIdToken"), 20);
    // Asked again: from memory.
    assert_eq!(mget(&m.addr, &identity_path(&audiences[3])).status, 200);
    assert_eq!(w.emu.count("google:generateIdToken"), 20);
}

/// Runs a request as uid 65534 (`nobody`) with bash's /dev/tcp.
fn request_as_nobody(addr: &str) -> mds::Resp {
    use std::os::unix::process::CommandExt;
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {TOKEN_PATH} HTTP/1.1\\r\\nHost: {addr}\\r\\n\
         Metadata-Flavor: Google\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir("/")
        .env_clear()
        .uid(65534)
        .gid(65534)
        .output()
        .expect("bash runs as nobody");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    mds::parse_response(&out.stdout)
}

#[test]
fn another_user_is_refused_unless_allow_other_users() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: running a client as another user (nobody) needs root; CI runs as root");
        return;
    }
    let w = World::new();
    let m = w.metadata_server(&[]);
    let r = request_as_nobody(&m.addr);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("uid 65534"), "{}", r.body);
    assert!(r.body.contains("--allow-other-users"), "{}", r.body);
    // The same user is served.
    assert_eq!(mget(&m.addr, TOKEN_PATH).status, 200);
    drop(m);
    let m = w.metadata_server(&["--allow-other-users"]);
    let r = request_as_nobody(&m.addr);
    assert_eq!(token_of(&r), token_of(&mget(&m.addr, TOKEN_PATH)));
}

#[test]
fn a_slow_or_malformed_client_does_not_delay_others() {
    let w = World::new();
    let m = w.metadata_server(&[]);
    // Warm: this test is about the server, not the exchange.
    token_of(&mget(&m.addr, TOKEN_PATH));
    let addr = m.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).expect("connect");
        for b in b"GET / HT" {
            s.write_all(&[*b]).expect("one byte");
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Garbage and an oversized header on other connections meanwhile.
    let mut junk = TcpStream::connect(&m.addr).expect("connect");
    let _ = junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n");
    let big = "x".repeat(64 * 1024);
    let r = get(
        &m.addr,
        TOKEN_PATH,
        &[("Metadata-Flavor", "Google"), ("X-Big", &big)],
    );
    assert!(r.status == 431 || r.status == 400, "{r:?}");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..10 {
        let started = Instant::now();
        token_of(&mget(&m.addr, TOKEN_PATH));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "a request took {took:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    slow.join().expect("slow client");
}

#[test]
fn an_iam_that_keeps_failing_gives_a_5xx_and_the_first_request_after_it_recovers_succeeds() {
    let w = World::new();
    let m = w.metadata_server(&["--timeout-millis", "4000"]);
    w.emu.inject_fault(mds::iam_unavailable(1000));
    let r = mget(&m.addr, TOKEN_PATH);
    assert!((500..600).contains(&r.status), "{r:?}");
    assert!(
        r.body.contains("GOOGLE_ERROR") || r.body.contains("TIMEOUT"),
        "{}",
        r.body
    );
    assert!(w.emu.count("google:generateAccessToken") > 1, "retried");
    // Recovered: no failure was kept.
    w.emu.reset();
    let token = token_of(&mget(&m.addr, TOKEN_PATH));
    assert!(w.emu.issued_secrets().contains(&token));
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}

fn wait_exit(m: &mut Mds, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = m.child.try_wait().expect("try_wait") {
            return s;
        }
        assert!(
            started.elapsed() < within,
            "metadata-server did not exit; stderr: {}",
            m.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(m: &Mds, sig: rustix::process::Signal) {
    let pid =
        rustix::process::Pid::from_raw(i32::try_from(m.child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

#[test]
fn sigterm_during_a_request_finishes_it_and_exits_zero() {
    let w = World::new();
    let mut m = w.metadata_server(&[]);
    w.emu.inject_fault(Fault {
        operation: "google:generateAccessToken".into(),
        delay_ms: 1500,
        ..Fault::default()
    });
    let addr = m.addr.clone();
    let request = std::thread::spawn(move || mget(&addr, TOKEN_PATH));
    std::thread::sleep(Duration::from_millis(500));
    signal(&m, rustix::process::Signal::TERM);
    let r = request.join().expect("request");
    token_of(&r);
    let status = wait_exit(&mut m, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
    // It no longer listens.
    assert!(TcpStream::connect(&m.addr).is_err());
}

#[test]
fn sigint_ends_an_idle_server_with_exit_zero() {
    let w = World::new();
    let mut m = w.metadata_server(&[]);
    // An idle keep-alive connection does not hold the shutdown up.
    let _idle = TcpStream::connect(&m.addr).expect("connect");
    signal(&m, rustix::process::Signal::INT);
    let status = wait_exit(&mut m, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A token is refreshed before its slack while it is asked for, and not
/// when nobody asked since its last refresh. 20 s tokens: slack 10 s,
/// refreshed 5 s before it (at 15 s left, 5 s after issue).
#[test]
fn warm_tokens_are_refreshed_in_the_background_and_idle_ones_are_not() {
    let w = World::new();
    let m = w.metadata_server(&["--lifetime", "20"]);
    let first = token_of(&mget(&m.addr, TOKEN_PATH));
    std::thread::sleep(Duration::from_millis(1500));
    // Asked for again: the refresher will refresh it.
    assert_eq!(token_of(&mget(&m.addr, TOKEN_PATH)), first);
    std::thread::sleep(Duration::from_millis(5500));
    assert_eq!(
        w.emu.count("google:generateAccessToken"),
        2,
        "refreshed at ~5 s"
    );
    // Nobody asks until after the new token's refresh point (~10 s): no refresh.
    std::thread::sleep(Duration::from_millis(5000));
    assert_eq!(w.emu.count("google:generateAccessToken"), 2);
    // The refreshed token is served from memory, without waiting.
    let started = Instant::now();
    let second = token_of(&mget(&m.addr, TOKEN_PATH));
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_ne!(second, first);
    assert_eq!(w.emu.count("google:generateAccessToken"), 2);
}

/// Without the disk cache, whose lock would otherwise do it, concurrent
/// requests still make one exchange: the server's own single flight.
#[test]
fn without_the_disk_cache_concurrent_requests_still_make_one_exchange() {
    let w = World::new();
    let m = w.metadata_server(&["--no-cache"]);
    let tokens = tokens_at_once(&m, 100);
    assert!(tokens.iter().all(|t| t == &tokens[0]), "different tokens");
    assert_eq!(w.emu.count("google:sts.token"), 1);
    // Warm: from memory, no disk cache to answer it.
    assert_eq!(token_of(&mget(&m.addr, TOKEN_PATH)), tokens[0]);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}

/// A token held in memory never outlives the AWS identity it was minted
/// for: editing the profile under a running server drops it.
#[test]
fn an_identity_change_under_a_running_server_drops_the_tokens_it_holds() {
    let w = World::new().source(AwsSource::ProfileAssumeRole);
    let m = w.metadata_server(&[]);
    let first = token_of(&mget(&m.addr, TOKEN_PATH));
    assert_eq!(
        token_of(&mget(&m.addr, TOKEN_PATH)),
        first,
        "warm: from memory"
    );
    assert_eq!(w.emu.count("google:sts.token"), 1);
    w.profile_names_the_iam_user();
    std::thread::sleep(Duration::from_millis(1_200));
    let second = token_of(&mget(&m.addr, TOKEN_PATH));
    assert_ne!(second, first, "the old identity's token was served");
    assert_eq!(w.emu.count("google:sts.token"), 2);
}

/// Listening on every address (`--allow-remote`), a loopback client of the
/// same user is still found and served: its socket names the concrete
/// address it reached, not 0.0.0.0.
#[test]
fn on_an_unspecified_address_the_same_users_loopback_client_is_served() {
    let w = World::new();
    let m = w.metadata_server_on("0.0.0.0:0", &["--allow-remote"]);
    let port = m.addr.rsplit(':').next().unwrap_or_default().to_owned();
    let r = mget(&format!("127.0.0.1:{port}"), TOKEN_PATH);
    assert_eq!(r.status, 200, "{r:?}");
}

/// At most `--max-connections` at once: one more is answered 503 in the
/// metadata server's shape and closed; once one closes, the next is served.
#[test]
fn a_connection_over_the_cap_gets_a_503_and_a_freed_one_is_served_again() {
    let w = World::new();
    let m = w.metadata_server(&["--max-connections", "2"]);
    token_of(&mget(&m.addr, TOKEN_PATH));
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&m.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let r = mget(&m.addr, TOKEN_PATH);
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.body.contains("too many connections"), "{r:?}");
        assert_eq!(r.header("metadata-flavor"), Some("Google"));
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mget(&m.addr, TOKEN_PATH).status, 200);
}
