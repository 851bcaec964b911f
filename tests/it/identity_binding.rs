//! A token only ever reaches the AWS identity it was made for, and stale or
//! stuck state never wins (issue 10's findings 1–3, 8, 9, 11, as attacks).

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use wif_emulator::Fault;

const WEB_IDENTITY: &str = "sts:GetWebIdentityToken";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Finding 2: the cache key covers the content of the AWS config file, so
/// editing the profile `AWS_PROFILE` names is another identity.
#[test]
fn editing_the_profile_is_another_identity() {
    let w = World::new().source(AwsSource::ProfileAssumeRole);
    // `World` rewrites its own files on every run: point AWS_CONFIG_FILE at
    // a copy, then edit the same profile to use the IAM user's keys.
    let config = w.home().join("edited-config");
    w.env_vars(); // writes the profile files
    let original = std::fs::read_to_string(w.home().join(".aws/config")).unwrap_or_default();
    write(&config, &original);
    let w = w.env("AWS_CONFIG_FILE", config.to_str().unwrap_or_default());
    let (role, _) = w.executable(&[]).success();
    assert_eq!(jwt_claims(&role)["sub"], ASSUMED_ROLE);
    let (again, _) = w.executable(&[]).success();
    assert_eq!(again, role, "an unchanged profile is served from the cache");
    let calls = w.emu.count(WEB_IDENTITY);
    let (akid, secret) = w.emu.static_credentials();
    write(
        &config,
        &format!("[profile app]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"),
    );
    let (user, _) = w.executable(&[]).success();
    assert_eq!(
        jwt_claims(&user)["sub"],
        format!("arn:aws:iam::{ACCOUNT}:user/wif-user")
    );
    assert_eq!(w.emu.count(WEB_IDENTITY), calls + 1);
    // And back: the role's own entry answers again, never the user's.
    write(&config, &original);
    let (back, _) = w.executable(&[]).success();
    assert_eq!(back, role);
    assert_eq!(w.emu.count(WEB_IDENTITY), calls + 1);
}

/// Finding 3: an output file in a directory others can write (a sticky
/// `/tmp`-like one, where an attacker pre-creates a forged answer) is
/// refused in the protocol JSON and by generate-config; the forged file is
/// left alone, and nothing is fetched.
#[test]
fn an_output_file_others_could_forge_is_refused_in_the_protocol_json() {
    let w = World::new();
    let shared = w.dir.path().join("tmp");
    std::fs::create_dir(&shared).unwrap_or_default();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap_or_default();
    let out = shared.join("wif-response.json");
    let forged = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"forged","expiration_time":4102444800}"#;
    write(&out, forged);
    let msg = w
        .executable(&["--output-file", out.to_str().unwrap_or_default()])
        .failure("CACHE_INSECURE");
    assert!(msg.contains("writable by others"), "{msg}");
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), forged);
    assert_eq!(w.emu.count(WEB_IDENTITY), 0);
    let run = w.run(&[
        "generate-config",
        "--provider",
        &w.oidc_provider(),
        "--output-file",
        w.dir
            .path()
            .join("config.json")
            .to_str()
            .unwrap_or_default(),
        "--executable-output-file",
        out.to_str().unwrap_or_default(),
    ]);
    run.error(1, "CACHE_INSECURE", &["writable by others"]);
}

/// Finding 3, second half: a failed write of the output file is a failure
/// in the protocol JSON, not a warning in a log nobody reads.
#[test]
fn a_failed_output_file_write_is_reported_in_the_protocol_json() {
    let w = World::new();
    let dir = w.dir.path().join("ro");
    std::fs::create_dir(&dir).unwrap_or_default();
    // A directory where the file should be: the rename cannot replace it.
    let out = dir.join("response.json");
    std::fs::create_dir(&out).unwrap_or_default();
    let v = w
        .executable(&["--output-file", out.to_str().unwrap_or_default()])
        .protocol();
    assert_eq!(v["success"], serde_json::Value::Bool(false), "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("output file")),
        "{v}"
    );
}

/// Finding 8: an entry "issued" a day in the future with a six-day life (a
/// clock that was wrong, or a forgery) is a miss, and is replaced.
#[test]
fn an_entry_from_the_future_is_a_miss() {
    let w = World::new();
    w.executable(&[]).success();
    let entry = std::fs::read_dir(w.cache_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("jwt-") && name.ends_with(".json")
        })
        .unwrap_or_else(|| panic!("no entry"));
    let mut v = read_json(&entry);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    v["issued_at"] = (now + 86_400).into();
    v["expires_at"] = (now + 6 * 86_400).into();
    write(&entry, &v.to_string());
    let (jwt, exp) = w.executable(&[]).success();
    assert_eq!(w.emu.count(WEB_IDENTITY), 2);
    assert!(exp <= now + 3_600, "announced {exp}");
    assert!(jwt_claims(&jwt)["exp"].as_i64().unwrap_or_default() <= now + 3_700);
}

/// Finding 9: a refresher stopped with SIGSTOP while it holds the lock does
/// not make everyone else fail: each waiter gives up on it after about half
/// its deadline and refreshes by itself, inside its deadline.
#[test]
fn a_stopped_lock_holder_does_not_block_the_others() {
    for direct in [false, true] {
        let w = World::new();
        // The first exchange hangs, so the first process holds the lock.
        let (op, args): (&str, Vec<String>) = if direct {
            let mut a: Vec<String> = vec!["print-access-token".into()];
            a.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
            ("google:sts.token", a)
        } else {
            let p = w.oidc_provider();
            (
                WEB_IDENTITY,
                vec!["executable".into(), "--provider".into(), p],
            )
        };
        w.emu.inject_fault(Fault {
            operation: op.into(),
            count: 1,
            status: 0,
            body: String::new(),
            delay_ms: 30_000,
        });
        let mut holder_args = args.clone();
        holder_args.extend(["--timeout-millis".into(), "60000".into()]);
        let refs: Vec<&str> = holder_args.iter().map(String::as_str).collect();
        let mut holder = w
            .command(&refs)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        while w.emu.count(op) == 0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(w.emu.count(op), 1, "the holder never called upstream");
        let pid = i32::try_from(holder.id()).unwrap_or_default();
        // SAFETY-free: rustix wraps kill(2).
        let stop = |sig| {
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap_or_else(|| panic!("pid")),
                sig,
            )
        };
        stop(rustix::process::Signal::STOP).unwrap_or_else(|e| panic!("{e}"));
        let mut argsets = Vec::new();
        for _ in 0..3 {
            let mut a = args.clone();
            a.extend(["--timeout-millis".into(), "5000".into()]);
            argsets.push(a);
        }
        let started = Instant::now();
        let runs = w.spawn_all(&argsets);
        let took = started.elapsed();
        let _ = stop(rustix::process::Signal::KILL);
        let _ = holder.wait();
        for r in &runs {
            assert_eq!(r.status, 0, "direct={direct}: {} {}", r.stdout, r.stderr);
            if !direct {
                assert_eq!(r.protocol()["success"], true, "{}", r.stdout);
            }
        }
        assert!(
            took < Duration::from_millis(5_500),
            "direct={direct}: {took:?}"
        );
    }
}

/// Finding 11: plain http is refused for a host that is not loopback,
/// before anything is sent.
#[test]
fn plain_http_to_a_non_loopback_host_is_refused() {
    let w = World::new();
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    let i = args.iter().position(|a| a == "--token-url").unwrap_or(0) + 1;
    args[i] = "http://sts.googleapis.com/v1/token".into();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs).error(
        2,
        "INVALID_ARGUMENT",
        &["--token-url", "https://", "loopback"],
    );
    assert_eq!(w.emu.count("google:sts.token"), 0);
}
