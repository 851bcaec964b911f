//! Attacks on the on-disk cache, end to end with the real binary: planted
//! symlinks, directories others can write or own, entries of another
//! identity, truncated and expired entries, refreshers killed with SIGKILL.
//! Each is refused with a clear error (nothing read or written through it)
//! or is a miss that is refreshed; nothing is lost and no temporary file is
//! left behind.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use wif_emulator::Fault;

const WEB_IDENTITY: &str = "sts:GetWebIdentityToken";

/// Files in the cache directory with this suffix, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

/// The one `jwt-*` entry (or lock) in the cache directory.
fn only(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let v: Vec<PathBuf> = files(dir, suffix)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    assert_eq!(v.len(), 1, "{prefix}*{suffix}: {v:?}");
    v[0].clone()
}

/// Every entry parses, no temporary file is left, nothing else is there.
fn assert_clean(dir: &Path) {
    for p in files(dir, "") {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".lock")),
            "unexpected file {name} in the cache"
        );
        if name.ends_with(".json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap_or_default())
                .unwrap_or_else(|e| panic!("torn entry {name}: {e}"));
            assert!(
                v["token"].is_string() && v["expires_at"].is_i64(),
                "{name}: {v}"
            );
            let mode = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600), "{name}");
        }
    }
}

fn fault(operation: &str, status: u16, delay_ms: u64) -> Fault {
    Fault {
        operation: operation.into(),
        count: 1,
        status,
        body: String::new(),
        delay_ms,
    }
}

fn print_args(w: &World, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn print(w: &World, extra: &[&str]) -> Run {
    let args = print_args(w, extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs)
}

#[test]
fn a_symlink_planted_at_an_entry_is_refused_and_not_followed() {
    let w = World::new();
    let (real, _) = w.executable(&[]).success();
    let dir = w.cache_dir();
    let entry = only(&dir, "jwt-", ".json");
    // The attacker's file: a well-formed entry with a forged token.
    let mut forged: Value =
        serde_json::from_slice(&std::fs::read(&entry).unwrap_or_default()).unwrap_or_default();
    forged["token"] = Value::from("eyJhbGciOiJub25lIn0.eyJmb3JnZWQiOnRydWV9.");
    let target = w.dir.path().join("attacker-entry.json");
    std::fs::write(&target, forged.to_string()).unwrap_or_default();
    std::fs::remove_file(&entry).unwrap_or_default();
    std::os::unix::fs::symlink(&target, &entry).unwrap_or_default();

    let msg = w.executable(&[]).failure("CACHE_INSECURE");
    assert!(
        msg.contains("symbolic link") && msg.contains("remove it"),
        "{msg}"
    );
    assert!(!msg.contains(&real) && !msg.contains("forged"), "{msg}");
    assert_eq!(
        w.emu.count(WEB_IDENTITY),
        1,
        "went upstream past a planted symlink"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap_or_default(),
        forged.to_string(),
        "the symlink's target was modified"
    );
    // A dangling link: still refused, and its target is not created.
    let dangling = w.dir.path().join("would-be-created.json");
    std::fs::remove_file(&entry).unwrap_or_default();
    std::os::unix::fs::symlink(&dangling, &entry).unwrap_or_default();
    w.executable(&[]).failure("CACHE_INSECURE");
    assert!(!dangling.exists());
    // Once the link is removed, the cache works again.
    std::fs::remove_file(&entry).unwrap_or_default();
    w.executable(&[]).success();
    assert_clean(&dir);
}

#[test]
fn a_symlink_planted_at_a_lock_is_refused_and_nothing_is_written_through_it() {
    let w = World::new();
    w.executable(&[]).success();
    let dir = w.cache_dir();
    let entry = only(&dir, "jwt-", ".json");
    let lock = only(&dir, "jwt-", ".lock");
    std::fs::remove_file(&entry).unwrap_or_default();
    for victim_exists in [true, false] {
        let victim = w.dir.path().join(format!("victim-{victim_exists}"));
        if victim_exists {
            std::fs::write(&victim, "precious").unwrap_or_default();
        }
        std::fs::remove_file(&lock).unwrap_or_default();
        std::os::unix::fs::symlink(&victim, &lock).unwrap_or_default();
        let msg = w.executable(&[]).failure("CACHE_INSECURE");
        assert!(msg.contains("symbolic link"), "{msg}");
        if victim_exists {
            assert_eq!(
                std::fs::read_to_string(&victim).unwrap_or_default(),
                "precious"
            );
        } else {
            assert!(!victim.exists(), "a lock was created through a symlink");
        }
    }
    assert_eq!(w.emu.count(WEB_IDENTITY), 1);
    assert!(!entry.exists(), "an entry was written despite the refusal");
}

#[test]
fn a_cache_directory_others_can_write_is_refused_in_every_mode() {
    for mode in [0o770, 0o703, 0o1777] {
        let w = World::new();
        let dir = w.cache_dir();
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap_or_default();
        let run = print(&w, &[]);
        assert_eq!(run.status, 1, "{mode:o}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("wif-helper: CACHE_INSECURE: ")
                && run.stderr.contains("chmod go-w"),
            "{mode:o}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
        w.executable(&[]).failure("CACHE_INSECURE");
        assert!(
            w.emu.stats().values().all(|n| *n == 0),
            "{:?}",
            w.emu.stats()
        );
    }
}

#[test]
fn a_cache_directory_or_entry_owned_by_another_user_is_refused() {
    if rustix_uid() != 0 {
        eprintln!("skipped: giving a file to another user needs root");
        return;
    }
    let w = World::new();
    w.executable(&[]).success();
    let dir = w.cache_dir();
    let entry = only(&dir, "jwt-", ".json");
    std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap_or_default();
    let msg = w.executable(&[]).failure("CACHE_INSECURE");
    assert!(msg.contains("owned by uid 65534"), "{msg}");
    std::os::unix::fs::chown(&entry, Some(0), Some(0)).unwrap_or_default();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap_or_default();
    let msg = w.executable(&[]).failure("CACHE_INSECURE");
    assert!(
        msg.contains("owned by uid 65534") && msg.contains("--cache-dir"),
        "{msg}"
    );
    assert_eq!(w.emu.count(WEB_IDENTITY), 1);
}

fn rustix_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[test]
fn an_entry_made_for_another_identity_is_never_served() {
    let w = World::new();
    let (user_jwt, _) = w.executable(&[]).success();
    let dir = w.cache_dir();
    let user_entry = only(&dir, "jwt-", ".json");
    let (role_jwt, _) = w.executable(&["--assume-role-arn", ASSUMED_ROLE]).success();
    assert_eq!(jwt_claims(&role_jwt)["sub"], ASSUMED_ROLE);
    let role_entry = files(&dir, ".json")
        .into_iter()
        .find(|p| *p != user_entry)
        .unwrap_or_else(|| panic!("no second entry"));
    // Plant the IAM user's entry where the role's belongs.
    std::fs::copy(&user_entry, &role_entry).unwrap_or_default();
    let (again, _) = w.executable(&["--assume-role-arn", ASSUMED_ROLE]).success();
    assert_ne!(
        again, user_jwt,
        "the IAM user's token was served to the role"
    );
    assert_eq!(jwt_claims(&again)["sub"], ASSUMED_ROLE);
    assert_eq!(w.emu.count(WEB_IDENTITY), 3);
    // The same for service-account tokens: another scope set is another entry.
    let a = print(&w, &[]);
    let before = files(&dir, ".json");
    let b = print(
        &w,
        &["--scopes", "https://www.googleapis.com/auth/userinfo.email"],
    );
    let (ta, tb) = (a.stdout.trim_end(), b.stdout.trim_end());
    assert!(
        a.status == 0 && b.status == 0 && ta != tb,
        "{} {}",
        a.stderr,
        b.stderr
    );
    let access: Vec<PathBuf> = files(&dir, ".json")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/access-"))
        .collect();
    assert_eq!(access.len(), 2, "{access:?}");
    let new_one = access
        .iter()
        .find(|p| !before.contains(p))
        .cloned()
        .unwrap_or_default();
    let old_one = access
        .iter()
        .find(|p| before.contains(p))
        .cloned()
        .unwrap_or_default();
    std::fs::copy(&old_one, &new_one).unwrap_or_default();
    let b2 = print(
        &w,
        &["--scopes", "https://www.googleapis.com/auth/userinfo.email"],
    );
    assert_eq!(b2.status, 0, "{}", b2.stderr);
    assert_ne!(
        b2.stdout.trim_end(),
        ta,
        "a token for other scopes was served"
    );
    assert_eq!(w.emu.count("google:generateAccessToken"), 3);
    assert_clean(&dir);
}

#[test]
fn truncated_empty_and_expired_entries_are_misses_and_are_rewritten() {
    let w = World::new();
    let (first, _) = w.executable(&[]).success();
    let dir = w.cache_dir();
    let entry = only(&dir, "jwt-", ".json");
    let bytes = std::fs::read(&entry).unwrap_or_default();
    let mut expired: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    expired["issued_at"] = Value::from(now - 3_610);
    expired["expires_at"] = Value::from(now - 10);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("expired", expired.to_string().into_bytes()),
    ];
    let mut seen = vec![first];
    for (i, (what, content)) in cases.into_iter().enumerate() {
        std::fs::write(&entry, content).unwrap_or_default();
        let (jwt, _) = w.executable(&[]).success();
        assert!(!seen.contains(&jwt), "{what}: an old token was served");
        assert_eq!(w.emu.count(WEB_IDENTITY), i as u64 + 2, "{what}");
        let v: Value = serde_json::from_slice(&std::fs::read(&entry).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{what}: not rewritten: {e}"));
        assert!(
            v["expires_at"].as_i64().unwrap_or_default() > now,
            "{what}: {v}"
        );
        seen.push(jwt);
    }
    assert_clean(&dir);
}

/// Starts `n` copies of `args`, waits until `op` has been called once (the
/// lock holder is inside the upstream call), then SIGKILLs all of them.
fn kill_mid_refresh(w: &World, args: &[String], op: &str) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            w.command(&refs)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn: {e}"))
        })
        .collect();
    let started = Instant::now();
    while w.emu.count(op) < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{op} never called"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn refreshers_killed_mid_refresh_leave_the_cache_usable() {
    // Executable mode: the holder is inside GetWebIdentityToken.
    let w = World::new();
    w.emu.inject_fault(fault(WEB_IDENTITY, 0, 10_000));
    let provider = w.oidc_provider();
    let args: Vec<String> = ["executable", "--provider", &provider]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    kill_mid_refresh(&w, &args, WEB_IDENTITY);
    // What a writer killed between its temporary file and the rename leaves.
    let dir = w.cache_dir();
    let lock = only(&dir, "jwt-", ".lock");
    let stem = lock
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let leftover = dir.join(format!(".{stem}.json.99999.0.tmp"));
    std::fs::write(&leftover, "{\"schema\":1,\"ke").unwrap_or_default();
    let started = Instant::now();
    let (jwt, _) = w.executable(&["--timeout-millis", "5000"]).success();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for a dead holder"
    );
    assert_eq!(jwt_claims(&jwt)["aud"], w.emu.oidc_audience());
    assert_eq!(w.emu.count(WEB_IDENTITY), 2);
    assert!(!leftover.exists());
    assert_clean(&dir);
    assert_eq!(
        w.executable(&[]).success().0,
        jwt,
        "the new entry is served"
    );

    // Print mode: the holder holds the access-token lock and the STS lock.
    let w = World::new();
    w.emu
        .inject_fault(fault("google:generateAccessToken", 0, 10_000));
    kill_mid_refresh(&w, &print_args(&w, &[]), "google:generateAccessToken");
    let run = print(&w, &["--timeout-millis", "5000"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        w.emu
            .issued_secrets()
            .contains(&run.stdout.trim_end().to_owned())
    );
    assert_eq!(w.emu.count("google:generateAccessToken"), 2);
    assert_clean(&w.cache_dir());
}
