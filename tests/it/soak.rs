//! Soak: 2,000 invocations of the real binary, 8 at a time, sharing one
//! cache, with random faults injected upstream (503s, 429s, stalls, 403s)
//! and tokens short-lived enough to be refreshed concurrently all the time.
//!
//! * zero crashes: every run prints valid protocol JSON (executable) or one
//!   token line or one coded error line (print commands), never a panic;
//! * zero wrong tokens: every printed token is one the emulator issued, for
//!   the identity, audience, `include_email` and scope set asked for (a
//!   token printed for two different requests is a cache mix-up);
//! * zero torn cache entries: a reader thread parses every cache entry and
//!   output file over and over while the writers run.
//!
//! `WIF_HELPER_SOAK_RUNS` and `WIF_HELPER_SOAK_SEED` override the run count
//! and the random seed (printed, so a failure can be replayed).

use crate::common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wif_emulator::Fault;

const BATCH: usize = 8;
const AUDIENCES: [&str; 4] = [
    "https://a.run.app",
    "https://b.run.app",
    "https://c.example",
    "32555940559.apps.googleusercontent.com",
];
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/userinfo.email",
];

/// xorshift64*: small, seedable, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What one invocation asks for; two runs that print the same token must ask
/// for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Want {
    Jwt {
        assumed_role: bool,
        duration: u32,
    },
    Access {
        scopes: usize,
        lifetime: u32,
    },
    Id {
        audience: usize,
        include_email: bool,
    },
}

fn args(w: &World, want: &Want, no_cache: bool, out_dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let google = |a: &mut Vec<String>| {
        a.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    };
    match want {
        Want::Jwt {
            assumed_role,
            duration,
        } => {
            a.extend(["executable".into(), "--provider".into(), w.oidc_provider()]);
            a.extend(["--duration".into(), duration.to_string()]);
            if *assumed_role {
                a.extend(["--assume-role-arn".into(), ASSUMED_ROLE.into()]);
            }
            let out = out_dir.join(format!("out-{assumed_role}-{duration}.json"));
            a.extend(["--output-file".into(), out.display().to_string()]);
        }
        Want::Access { scopes, lifetime } => {
            a.push("print-access-token".into());
            google(&mut a);
            a.extend(["--scopes".into(), SCOPES[*scopes].into()]);
            a.extend(["--lifetime".into(), lifetime.to_string()]);
        }
        Want::Id {
            audience,
            include_email,
        } => {
            a.push("print-identity-token".into());
            google(&mut a);
            a.extend(["--audience".into(), AUDIENCES[*audience].into()]);
            if *include_email {
                a.push("--include-email".into());
            }
        }
    }
    if no_cache {
        a.push("--no-cache".into());
    }
    a.extend(["--timeout-millis".into(), "10000".into()]);
    a
}

fn pick(rng: &mut Rng) -> Want {
    match rng.below(3) {
        0 => Want::Jwt {
            assumed_role: rng.chance(40),
            duration: if rng.chance(50) { 60 } else { 3600 },
        },
        1 => Want::Access {
            scopes: rng.below(2) as usize,
            lifetime: if rng.chance(50) { 20 } else { 3600 },
        },
        _ => Want::Id {
            audience: rng.below(4) as usize,
            include_email: rng.chance(50),
        },
    }
}

fn random_fault(rng: &mut Rng) -> Fault {
    let ops = [
        "sts:GetWebIdentityToken",
        "google:sts.token",
        "google:generateAccessToken",
        "google:generateIdToken",
    ];
    let operation = ops[rng.below(4) as usize];
    let aws = operation.starts_with("sts:");
    let (status, body, delay_ms, count) = match rng.below(5) {
        0 | 1 => (503, "unavailable".to_owned(), 0, 1 + rng.below(2) as u32),
        2 => (429, aws_throttling(aws), 0, 1),
        3 => (
            0,
            String::new(),
            100 + rng.below(500),
            1 + rng.below(3) as u32,
        ),
        _ => (403, denied(aws), 0, 1),
    };
    Fault {
        operation: operation.into(),
        count,
        status,
        body,
        delay_ms,
    }
}

fn aws_throttling(aws: bool) -> String {
    if aws {
        "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into()
    } else {
        r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#.into()
    }
}

fn denied(aws: bool) -> String {
    if aws {
        "<ErrorResponse><Error><Code>AccessDenied</Code><Message>not authorized</Message></Error></ErrorResponse>".into()
    } else {
        r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#
            .into()
    }
}

/// Parses every cache entry and output file until told to stop; returns
/// (files parsed, torn files seen).
fn watch(dirs: Vec<PathBuf>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let mut parsed = 0;
        let mut torn = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for dir in &dirs {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || !name.ends_with(".json") {
                        continue;
                    }
                    let bytes = std::fs::read(e.path()).unwrap_or_default();
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) if v.is_object() => parsed += 1,
                        _ => torn.push(format!("{name}: {:?}", String::from_utf8_lossy(&bytes))),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (parsed, torn)
    })
}

/// Checks one run; returns the printed token, if any.
fn check(w: &World, want: &Want, run: &Run) -> Option<String> {
    assert!(
        !run.stdout.contains("panicked") && !run.stderr.contains("panicked"),
        "{want:?}: {}",
        run.stderr
    );
    if let Want::Jwt { assumed_role, .. } = want {
        let v = run.protocol();
        if v["success"] != true {
            let code = v["code"].as_str().unwrap_or_default();
            assert!(
                ["AWS_ACCESS_DENIED", "AWS_ERROR", "TIMEOUT", "NETWORK_ERROR"].contains(&code),
                "{want:?}: {v}"
            );
            return None;
        }
        let jwt = v["id_token"].as_str().unwrap_or_default().to_owned();
        let c = jwt_claims(&jwt);
        assert_eq!(c["aud"], w.emu.oidc_audience(), "{want:?}");
        let sub = if *assumed_role {
            ASSUMED_ROLE
        } else {
            "arn:aws:iam::111122223333:user/wif-user"
        };
        assert_eq!(c["sub"], sub, "{want:?}: a token of another identity");
        return Some(jwt);
    }
    if run.status != 0 {
        assert!(
            matches!(run.status, 1 | 3),
            "{want:?}: exit {} {}",
            run.status,
            run.stderr
        );
        assert_eq!(run.stdout, "", "{want:?}");
        let line = run.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{want:?}: {line}");
        let code = line
            .strip_prefix("wif-helper: ")
            .and_then(|r| r.split(':').next())
            .unwrap_or_default();
        assert!(
            [
                "GOOGLE_ERROR",
                "GOOGLE_PERMISSION_DENIED",
                "GOOGLE_INVALID_GRANT",
                "AWS_ERROR",
                "AWS_ACCESS_DENIED",
                "TIMEOUT",
                "NETWORK_ERROR"
            ]
            .contains(&code),
            "{want:?}: {line}"
        );
        return None;
    }
    assert_eq!(run.stderr, "", "{want:?}");
    let token = run.stdout.trim_end().to_owned();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{want:?}: {:?}",
        run.stdout
    );
    if let Want::Id {
        audience,
        include_email,
    } = want
    {
        let c = jwt_claims(&token);
        assert_eq!(
            c["aud"], AUDIENCES[*audience],
            "{want:?}: a token for another audience"
        );
        let email = c.get("email").and_then(Value::as_str);
        assert_eq!(email.is_some(), *include_email, "{want:?}");
    }
    Some(token)
}

#[test]
fn two_thousand_invocations_with_faults_and_concurrent_refreshes() {
    let runs: usize = std::env::var("WIF_HELPER_SOAK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("WIF_HELPER_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("soak: {runs} runs, WIF_HELPER_SOAK_SEED={seed}");
    let mut rng = Rng(seed);
    let w = World::new();
    let out_dir = w.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(vec![w.cache_dir(), out_dir.clone()], stop.clone());
    let started = Instant::now();
    let mut printed: HashMap<String, Want> = HashMap::new();
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut done = 0;
    while done < runs {
        if rng.chance(30) {
            w.emu.inject_fault(random_fault(&mut rng));
        }
        let n = BATCH.min(runs - done);
        let batch: Vec<(Want, Vec<String>)> = (0..n)
            .map(|_| {
                let want = pick(&mut rng);
                let a = args(&w, &want, rng.chance(15), &out_dir);
                (want, a)
            })
            .collect();
        let argsets: Vec<Vec<String>> = batch.iter().map(|(_, a)| a.clone()).collect();
        for ((want, _), run) in batch.iter().zip(w.spawn_all(&argsets)) {
            match check(&w, want, &run) {
                Some(token) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(before) = printed.insert(token, want.clone()) {
                        assert_eq!(
                            &before, want,
                            "one token printed for two different requests"
                        );
                    }
                }
                None => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        done += n;
    }
    stop.store(true, Ordering::Relaxed);
    let (parsed, torn) = watcher.join().unwrap_or_default();
    let issued: HashSet<String> = w.emu.issued_secrets().into_iter().collect();
    let foreign: Vec<&String> = printed.keys().filter(|t| !issued.contains(*t)).collect();
    assert!(
        foreign.is_empty(),
        "{} printed tokens were never issued",
        foreign.len()
    );
    assert!(torn.is_empty(), "torn files seen: {torn:?}");
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    eprintln!(
        "soak: {ok} tokens ({} distinct), {failed} coded failures, {parsed} cache/output reads, {:?}; {:?}",
        printed.len(),
        started.elapsed(),
        w.emu.stats()
    );
    assert!(
        ok >= (runs as u64) * 8 / 10,
        "too many failures: {failed} of {runs}"
    );
    assert!(parsed > 0, "the watcher read nothing");
}
