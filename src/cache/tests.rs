//! Unit tests of the cache: freshness, corruption, concurrency, deadlines.

use super::*;
use crate::clock::FixedClock;
use crate::secret::Secret;
use crate::token::MAX_TOKEN_LIFETIME_SECS;
use std::sync::atomic::{AtomicUsize, Ordering};

impl Cache {
    /// [`Cache::get_or_fetch`] for synchronous tests.
    fn get_or_refresh(
        &self,
        key: &CacheKey,
        clock: &FixedClock,
        deadline: Deadline,
        refresh: impl FnOnce() -> Result<IssuedToken>,
    ) -> Result<(IssuedToken, Source)> {
        let clock: Arc<dyn Clock> = Arc::new(*clock);
        deadline.block_on(self.get_or_fetch(key, &clock, deadline, || async { refresh() }))
    }
}

fn token(now: i64, life: i64) -> IssuedToken {
    IssuedToken {
        token: Secret::new(format!("tok-{now}")),
        expires_at: now + life,
        issued_at: now,
    }
}

fn tmp() -> (tempfile::TempDir, Cache) {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let c = Cache::open(d.path().join("c")).unwrap_or_else(|e| panic!("{e}"));
    (d, c)
}

fn later() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

#[test]
fn hit_skips_refresh_and_stale_refreshes() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let (t1, s1) =
        cache.get_or_refresh(&key, &FixedClock(1000), later(), || Ok(token(1000, 3600)))?;
    assert_eq!(s1, Source::Upstream);
    let (t2, s2) = cache.get_or_refresh(&key, &FixedClock(2000), later(), || {
        Err(Error::invalid("must not refresh"))
    })?;
    assert_eq!((t2, s2), (t1, Source::Cache));
    let (t3, s3) =
        cache.get_or_refresh(&key, &FixedClock(4400), later(), || Ok(token(4400, 3600)))?;
    assert_eq!(s3, Source::Upstream);
    assert_eq!(t3.expires_at, 8000);
    Ok(())
}

#[test]
fn failed_refresh_keeps_the_old_entry_and_is_not_cached() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    cache.get_or_refresh(&key, &FixedClock(1000), later(), || Ok(token(1000, 3600)))?;
    let err = cache.get_or_refresh(&key, &FixedClock(4400), later(), || {
        Err(Error::new(ErrorCode::NetworkError, "down"))
    });
    assert!(err.is_err());
    // Still readable at a time it is fresh; the failure left nothing behind.
    assert!(cache.get_fresh(&key, 1500)?.is_some());
    Ok(())
}

#[test]
fn corrupt_truncated_foreign_and_future_entries_are_misses() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let other = CacheKey::new("jwt", [("aud", "y")]);
    let path = cache.entry_path(&key);
    let good = serde_json::to_vec(&Entry {
        schema: SCHEMA,
        key: key.hex.clone(),
        token: token(1000, 3600),
        about: BTreeMap::new(),
    })
    .map_err(|e| Error::invalid(e.to_string()))?;
    let foreign = serde_json::to_vec(&Entry {
        schema: SCHEMA,
        key: other.hex.clone(),
        token: token(1000, 3600),
        about: BTreeMap::new(),
    })
    .map_err(|e| Error::invalid(e.to_string()))?;
    let future = serde_json::to_vec(&Entry {
        schema: SCHEMA + 1,
        key: key.hex.clone(),
        token: token(1000, 3600),
        about: BTreeMap::new(),
    })
    .map_err(|e| Error::invalid(e.to_string()))?;
    for bad in [
        &b""[..],
        &b"{not json"[..],
        &good[..good.len() / 2],
        &foreign[..],
        &future[..],
    ] {
        fsutil::write_atomic(&path, bad)?;
        assert_eq!(cache.get_fresh(&key, 1500)?, None);
    }
    // And a refresh overwrites the bad entry.
    let (_, s) =
        cache.get_or_refresh(&key, &FixedClock(1500), later(), || Ok(token(1500, 3600)))?;
    assert_eq!(s, Source::Upstream);
    assert!(cache.get_fresh(&key, 1600)?.is_some());
    Ok(())
}

#[test]
fn implausible_entries_are_misses_and_never_served() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let path = cache.entry_path(&key);
    let entry = |token: &str, issued_at: i64, expires_at: i64| {
        serde_json::to_vec(&Entry {
            schema: SCHEMA,
            key: key.hex.clone(),
            token: IssuedToken {
                token: Secret::new(token),
                expires_at,
                issued_at,
            },
            about: BTreeMap::new(),
        })
        .unwrap_or_default()
    };
    let week = MAX_TOKEN_LIFETIME_SECS;
    for (bytes, why) in [
        (entry("", 1000, 4600), "empty token"),
        (entry("two words", 1000, 4600), "space"),
        (entry("line\nbreak", 1000, 4600), "newline"),
        (entry("tök", 1000, 4600), "non-ASCII"),
        (entry("t", 1000, 1000 + week + 1), "lifetime above a week"),
        (entry("t", 1000, i64::MAX), "expiry past 9999"),
        (entry("t", -5, 4600), "negative issue time"),
        (entry("t", 1000, 900), "expired before issued"),
    ] {
        fsutil::write_atomic(&path, &bytes)?;
        assert_eq!(cache.get_fresh(&key, 1500)?, None, "{why}");
    }
    fsutil::write_atomic(&path, &entry("t", 1000, 1000 + week))?;
    assert!(cache.get_fresh(&key, 1500)?.is_some());
    Ok(())
}

#[test]
fn a_refresh_removes_what_a_killed_writer_left() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let name = format!("{}.json", key.stem());
    let leftover = cache.dir.join(format!(".{name}.999999.0.tmp"));
    std::fs::write(&leftover, b"{\"schema\":1,\"ke").map_err(|e| Error::invalid(e.to_string()))?;
    cache.get_or_refresh(&key, &FixedClock(1000), later(), || Ok(token(1000, 3600)))?;
    assert!(!leftover.exists(), "leftover temp file survived a refresh");
    assert!(cache.get_fresh(&key, 1500)?.is_some());
    Ok(())
}

#[test]
fn concurrent_threads_refresh_once() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (cache, key, calls) = (cache.clone(), key.clone(), calls.clone());
            std::thread::spawn(move || {
                cache.get_or_refresh(&key, &FixedClock(1000), later(), || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    Ok(token(1000, 3600))
                })
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for h in handles {
        let (t, _) = h.join().map_err(|_| Error::invalid("thread panicked"))??;
        tokens.push(t);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    Ok(())
}

#[test]
fn a_waiter_never_waits_past_its_deadline() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let lock = fsutil::open_lock_file(&cache.dir.join(format!("{}.lock", key.stem())))?;
    lock.lock().map_err(|e| Error::invalid(e.to_string()))?;
    let deadline = Deadline::after(Duration::from_millis(100));
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(1000));
    // The holder is stuck, and so is the waiter's own refresh.
    let err = deadline.block_on(cache.get_or_fetch(&key, &clock, deadline, || {
        std::future::pending::<Result<IssuedToken>>()
    }));
    assert_eq!(err.err().map(|e| e.code()), Some(ErrorCode::Timeout));
    assert!(deadline.left().is_zero());
    Ok(())
}

#[test]
fn a_holder_that_makes_no_progress_is_bypassed_after_half_the_deadline() -> Result<()> {
    let (_d, cache) = tmp();
    let key = CacheKey::new("jwt", [("aud", "x")]);
    let lock = fsutil::open_lock_file(&cache.dir.join(format!("{}.lock", key.stem())))?;
    lock.lock().map_err(|e| Error::invalid(e.to_string()))?;
    let started = std::time::Instant::now();
    let deadline = Deadline::after(Duration::from_millis(400));
    let (t, s) =
        cache.get_or_refresh(&key, &FixedClock(1000), deadline, || Ok(token(1000, 3600)))?;
    let waited = started.elapsed();
    assert_eq!(s, Source::Upstream);
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_millis(400), "{waited:?}");
    // Stored for everyone else, although the lock was never taken.
    assert_eq!(cache.get_fresh(&key, 1500)?, Some(t));
    Ok(())
}

#[test]
fn a_refresh_sweeps_entries_long_expired_and_keeps_the_rest() -> Result<()> {
    let (_d, cache) = tmp();
    let now = 10_000_000;
    let old = CacheKey::new("jwt", [("aud", "old")]);
    let recent = CacheKey::new("jwt", [("aud", "recent")]);
    let busy = CacheKey::new("jwt", [("aud", "busy")]);
    for (k, issued) in [
        (&old, now - 2 * 86_400),
        (&recent, now - 3_600),
        (&busy, now - 2 * 86_400),
    ] {
        cache.get_or_refresh(k, &FixedClock(issued), later(), || Ok(token(issued, 3600)))?;
    }
    // Someone is refreshing `busy` right now: its lock is held.
    let held = fsutil::open_lock_file(&cache.dir.join(format!("{}.lock", busy.stem())))?;
    held.lock().map_err(|e| Error::invalid(e.to_string()))?;
    let unrelated = cache.dir.join("notes.txt");
    std::fs::write(&unrelated, b"keep").map_err(|e| Error::invalid(e.to_string()))?;
    let fresh = CacheKey::new("jwt", [("aud", "now")]);
    cache.get_or_refresh(&fresh, &FixedClock(now), later(), || Ok(token(now, 3600)))?;
    let exists = |k: &CacheKey, ext: &str| cache.dir.join(format!("{}.{ext}", k.stem())).exists();
    assert!(
        !exists(&old, "json") && !exists(&old, "lock"),
        "old entry kept"
    );
    assert!(exists(&recent, "json") && exists(&recent, "lock"));
    assert!(
        exists(&busy, "json") && exists(&busy, "lock"),
        "a held lock was removed"
    );
    assert!(exists(&fresh, "json"));
    assert!(unrelated.exists());
    Ok(())
}
