//! The on-disk token cache shared by every wif-helper process of a user.
//!
//! One JSON file per [`CacheKey`] in a private directory (0700, entries
//! 0600). The hit path takes no lock and builds nothing: read one small file,
//! check its key and expiry, done. A miss takes an exclusive kernel lock
//! (`std::fs::File::lock`, an advisory `flock`; chosen over the `fs2` crate
//! because std has offered it since Rust 1.89 and fs2 is unmaintained) on
//! `<entry>.lock`, re-reads the entry (another process may have refreshed it
//! meanwhile), refreshes only if still needed, writes atomically and unlocks.
//! So N processes arriving together on a cold cache cost one upstream call.
//! A holder killed with SIGKILL releases the lock with its file descriptor;
//! a waiter gives up at its own deadline with [`ErrorCode::Timeout`].
//!
//! Errors are never cached: a failed refresh leaves the old entry in place.

use crate::clock::Clock;
use crate::error::{Error, ErrorCode, Result};
use crate::fsutil;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::TryLockError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Refresh this long before expiry (the product's promise: 300 s).
pub const REFRESH_SLACK_SECS: i64 = 300;
/// No token wif-helper handles lives longer (Google's longest is 12 h); a
/// longer claimed lifetime means a broken clock or a forged answer.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 7 * 24 * 3600;
/// 9999-12-31T23:59:59Z: the last instant every expiry must be before.
const MAX_UNIX_SECS: i64 = 253_402_300_799;
/// Entries are small; anything larger is not ours.
const MAX_ENTRY_BYTES: u64 = 64 * 1024;
/// Bump when the entry format or key derivation changes.
const SCHEMA: u32 = 1;

/// Everything that determines a token, hashed into a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    kind: &'static str,
    hex: String,
}

impl CacheKey {
    /// Builds a key from a kind (`jwt`, `sts`, `access`, `id`) and the
    /// name/value pairs that determine the token. Order does not matter.
    pub fn new<'a>(
        kind: &'static str,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let map: BTreeMap<&str, &str> = fields.into_iter().collect();
        let mut h = Sha256::new();
        h.update(format!("wif-helper-cache-v{SCHEMA}\0{kind}\0").as_bytes());
        for (k, v) in &map {
            // Length-prefixed so no two different maps hash the same bytes.
            h.update(format!("{}:{k}{}:{v}", k.len(), v.len()).as_bytes());
        }
        Self {
            kind,
            hex: hex::encode(h.finalize()),
        }
    }

    /// The file name stem, e.g. `jwt-3f2a…`.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.kind, self.hex.get(..40).unwrap_or(&self.hex))
    }
}

/// A token with its wall-clock expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    /// The token.
    pub token: Secret,
    /// When it stops working, Unix seconds UTC.
    pub expires_at: i64,
    /// When it was obtained, Unix seconds UTC.
    pub issued_at: i64,
}

impl CachedToken {
    /// Whether the token can still be served at `now`: more than
    /// [`REFRESH_SLACK_SECS`] left, or, for tokens shorter-lived than twice
    /// the slack, more than half their lifetime left.
    pub fn is_fresh(&self, now: i64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.issued_at);
        let slack = REFRESH_SLACK_SECS.min(lifetime / 2);
        self.expires_at.saturating_sub(now) > slack
    }

    /// Checks what every token wif-helper stores or prints must be: one
    /// non-empty run of printable ASCII without spaces (so it fits on one
    /// line, in an HTTP header and in JSON unescaped), issued before it
    /// expires, living at most [`MAX_TOKEN_LIFETIME_SECS`], expiring before
    /// the year 10000. The error says what is wrong, never the token.
    pub fn validate(&self) -> Result<(), String> {
        let t = self.token.expose();
        if t.is_empty() {
            return Err("the token is empty".into());
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token has spaces, control or non-ASCII characters".into());
        }
        if !(0..=MAX_UNIX_SECS).contains(&self.issued_at)
            || !(0..=MAX_UNIX_SECS).contains(&self.expires_at)
        {
            return Err(format!(
                "the expiry ({}) or issue time ({}) is not a plausible Unix time",
                self.expires_at, self.issued_at
            ));
        }
        if self.expires_at.saturating_sub(self.issued_at) > MAX_TOKEN_LIFETIME_SECS {
            return Err(format!(
                "the token claims to live {} s, more than {MAX_TOKEN_LIFETIME_SECS} s; check the system clock",
                self.expires_at.saturating_sub(self.issued_at)
            ));
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    schema: u32,
    key: String,
    #[serde(flatten)]
    token: CachedToken,
}

/// Where an answer came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from disk.
    Cache,
    /// Fetched upstream by this process.
    Upstream,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating) a private cache directory, refusing an unsafe one.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fsutil::ensure_private_dir(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.stem()))
    }

    /// The entry for `key` if it is intact, made for this key and fresh at
    /// `now`. A missing, corrupt, truncated, future-schema, foreign or
    /// implausible ([`CachedToken::validate`]) entry is a miss; an unsafe one
    /// (symlink, wrong owner, writable by others) is an error.
    pub fn get_fresh(&self, key: &CacheKey, now: i64) -> Result<Option<CachedToken>> {
        let Some(bytes) = fsutil::read_private_file(&self.entry_path(key), MAX_ENTRY_BYTES)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e)
                if e.schema == SCHEMA
                    && e.key == key.hex
                    && e.token.validate().is_ok()
                    && e.token.is_fresh(now) =>
            {
                Ok(Some(e.token))
            }
            Ok(_) => Ok(None),
            Err(err) => {
                tracing::debug!(entry = %key.stem(), %err, "unreadable cache entry is a miss");
                Ok(None)
            }
        }
    }

    /// Forgets the entry for `key` (an upstream refused it before its
    /// expiry). Readers see the old entry or none; a missing one is fine.
    pub fn remove(&self, key: &CacheKey) -> Result<()> {
        match std::fs::remove_file(self.entry_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::new(
                ErrorCode::CacheError,
                format!("cannot remove a cache entry in {}: {e}", self.dir.display()),
            )),
            _ => Ok(()),
        }
    }

    /// Serves a fresh entry, or refreshes it under the key's lock so that
    /// concurrent processes make one upstream call between them.
    pub fn get_or_refresh(
        &self,
        key: &CacheKey,
        clock: &dyn Clock,
        deadline: Instant,
        refresh: impl FnOnce() -> Result<CachedToken>,
    ) -> Result<(CachedToken, Source)> {
        match self.lock(key, clock, deadline)? {
            Locked::Fresh(t) => Ok((t, Source::Cache)),
            Locked::Held(lock) => {
                let token = refresh()?;
                lock.store(&token);
                Ok((token, Source::Upstream))
            }
        }
    }

    /// The fresh entry for `key`, or the key's exclusive lock when it must be
    /// refreshed. Blocks (polling, so a fresh entry written meanwhile is seen
    /// at once) until one of the two, or fails with [`ErrorCode::Timeout`] at
    /// `deadline`. Async callers run this in `spawn_blocking`.
    pub fn lock(&self, key: &CacheKey, clock: &dyn Clock, deadline: Instant) -> Result<Locked> {
        if let Some(t) = self.get_fresh(key, clock.now_unix())? {
            return Ok(Locked::Fresh(t));
        }
        let file = fsutil::open_lock_file(&self.dir.join(format!("{}.lock", key.stem())))?;
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(Error::new(
                        ErrorCode::CacheError,
                        format!("cannot lock cache entry: {e}"),
                    ));
                }
            }
            // Someone else is refreshing; their result is what we want.
            if let Some(t) = self.get_fresh(key, clock.now_unix())? {
                return Ok(Locked::Fresh(t));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorCode::Timeout,
                    "timed out waiting for another wif-helper process to refresh the cached token",
                ));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(25));
        }
        // Locked: re-read, since the previous holder may have just written it.
        if let Some(t) = self.get_fresh(key, clock.now_unix())? {
            return Ok(Locked::Fresh(t));
        }
        Ok(Locked::Held(CacheLock {
            _file: file,
            path: self.entry_path(key),
            key_hex: key.hex.clone(),
        }))
    }
}

/// The outcome of [`Cache::lock`].
#[derive(Debug)]
pub enum Locked {
    /// A fresh entry: use it; no lock is held.
    Fresh(CachedToken),
    /// The exclusive right to refresh the entry; store the result with
    /// [`CacheLock::store`] or drop it to give up.
    Held(CacheLock),
}

/// An exclusive lock on one cache entry, released on drop (and by the kernel
/// if the process dies).
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
    path: PathBuf,
    key_hex: String,
}

impl CacheLock {
    /// Writes the refreshed token atomically and releases the lock. A write
    /// failure is logged, not returned: the caller's token is good, and a
    /// cache that cannot be written only costs a later refresh. Temporary
    /// files a killed writer of this entry left behind are removed first:
    /// every writer of an entry holds its lock, so none of them is live.
    pub fn store(self, token: &CachedToken) {
        fsutil::remove_leftover_temps(&self.path);
        let entry = Entry {
            schema: SCHEMA,
            key: self.key_hex.clone(),
            token: token.clone(),
        };
        match serde_json::to_vec(&entry) {
            Ok(bytes) => {
                if let Err(e) = fsutil::write_atomic(&self.path, &bytes) {
                    tracing::warn!(error = %e, "could not write cache entry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode cache entry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn token(now: i64, life: i64) -> CachedToken {
        CachedToken {
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

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn key_is_order_independent_and_field_sensitive() {
        let a = CacheKey::new("jwt", [("a", "1"), ("b", "2")]);
        let b = CacheKey::new("jwt", [("b", "2"), ("a", "1")]);
        let c = CacheKey::new("jwt", [("a", "1"), ("b", "3")]);
        let d = CacheKey::new("id", [("a", "1"), ("b", "2")]);
        let e = CacheKey::new("jwt", [("a", "12"), ("b", "")]);
        assert_eq!(a, b);
        assert_ne!(a.hex, c.hex);
        assert_ne!(a.hex, d.hex);
        assert_ne!(a.hex, e.hex);
    }

    #[test]
    fn freshness_uses_the_300s_slack_or_half_a_short_lifetime() {
        let t = token(1000, 3600);
        assert!(t.is_fresh(1000 + 3600 - 301));
        assert!(!t.is_fresh(1000 + 3600 - 300));
        let short = token(1000, 120);
        assert!(short.is_fresh(1059));
        assert!(!short.is_fresh(1060));
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
        })
        .map_err(|e| Error::invalid(e.to_string()))?;
        let foreign = serde_json::to_vec(&Entry {
            schema: SCHEMA,
            key: other.hex.clone(),
            token: token(1000, 3600),
        })
        .map_err(|e| Error::invalid(e.to_string()))?;
        let future = serde_json::to_vec(&Entry {
            schema: SCHEMA + 1,
            key: key.hex.clone(),
            token: token(1000, 3600),
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
                token: CachedToken {
                    token: Secret::new(token),
                    expires_at,
                    issued_at,
                },
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
        std::fs::write(&leftover, b"{\"schema\":1,\"ke")
            .map_err(|e| Error::invalid(e.to_string()))?;
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
    fn waiter_gives_up_at_its_deadline() -> Result<()> {
        let (_d, cache) = tmp();
        let key = CacheKey::new("jwt", [("aud", "x")]);
        let lock = fsutil::open_lock_file(&cache.dir.join(format!("{}.lock", key.stem())))?;
        lock.lock().map_err(|e| Error::invalid(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_millis(100);
        let err = cache.get_or_refresh(&key, &FixedClock(1000), deadline, || Ok(token(1000, 3600)));
        assert_eq!(err.err().map(|e| e.code()), Some(ErrorCode::Timeout));
        Ok(())
    }
}
