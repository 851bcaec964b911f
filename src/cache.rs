//! The on-disk token cache shared by every wif-helper process of a user.
//!
//! One JSON file per [`CacheKey`] in a private directory (0700, entries
//! 0600). The hit path ([`Cache::get_fresh`]) takes no lock and builds
//! nothing: read one small file, check its key and expiry, done. Every miss
//! goes through [`through`] / [`Cache::get_or_fetch`], the one way the cache
//! is driven: an exclusive kernel lock (`std::fs::File::lock`, an advisory
//! `flock`; chosen over the `fs2` crate because std has offered it since
//! Rust 1.89 and fs2 is unmaintained) on `<entry>.lock`, taken on the
//! blocking pool; a re-read (another process may have refreshed it
//! meanwhile); the fetch only if still needed; an atomic write; the unlock.
//! So N processes arriving together on a cold cache cost one upstream call.
//! A holder killed with SIGKILL releases the lock with its file descriptor;
//! a waiter gives up at its own deadline with [`ErrorCode::Timeout`].
//!
//! Errors are never cached: a failed refresh leaves the old entry in place.

mod admin;
mod key;

pub(crate) use key::{AwsIdentity, CacheKey};

use crate::clock::Clock;
use crate::deadline::Deadline;
use crate::error::{Error, ErrorCode, Result};
use crate::fsutil;
use crate::token::IssuedToken;
use key::SCHEMA;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::TryLockError;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries are small; anything larger is not ours.
const MAX_ENTRY_BYTES: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Entry {
    schema: u32,
    key: String,
    #[serde(flatten)]
    token: IssuedToken,
    /// What the entry is for, as `cache list` shows it (see `CacheKey`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    about: BTreeMap<String, String>,
}

/// Where an answer came from, for logs and the retry of a refused token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Served from disk.
    Cache,
    /// Fetched upstream by this process.
    Upstream,
}

/// The token for `key` from `cache`, or from `fetch` (stored under the
/// key's lock) when it is missing or stale; with no cache, from `fetch`.
///
/// Not an `async fn`: it returns [`through_ahead`]'s future itself, so the
/// direct path's deeply nested walk gains no layer.
pub(crate) fn through<F, Fut>(
    cache: Option<&Cache>,
    key: &CacheKey,
    clock: &Arc<dyn Clock>,
    deadline: Deadline,
    fetch: F,
) -> impl Future<Output = Result<(IssuedToken, Source)>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<IssuedToken>>,
{
    through_ahead(cache, key, clock, deadline, 0, fetch)
}

/// [`through`], counting an entry as stale `ahead` seconds before its slack
/// ([`IssuedToken::is_fresh_ahead`]): a refresh before anyone needs one.
pub(crate) async fn through_ahead<F, Fut>(
    cache: Option<&Cache>,
    key: &CacheKey,
    clock: &Arc<dyn Clock>,
    deadline: Deadline,
    ahead: i64,
    fetch: F,
) -> Result<(IssuedToken, Source)>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<IssuedToken>>,
{
    match cache {
        Some(cache) => {
            cache
                .get_or_fetch_ahead(key, clock, deadline, ahead, fetch)
                .await
        }
        None => Ok((fetch().await?, Source::Upstream)),
    }
}

/// A cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating) a private cache directory, refusing an unsafe one.
    pub(crate) fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fsutil::ensure_private_dir(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.stem()))
    }

    /// The entry for `key` if it is intact, made for this key and fresh at
    /// `now`. A missing, corrupt, truncated, future-schema, foreign or
    /// implausible ([`IssuedToken::validate`]) entry is a miss; an unsafe one
    /// (symlink, wrong owner, writable by others) is an error.
    pub(crate) fn get_fresh(&self, key: &CacheKey, now: i64) -> Result<Option<IssuedToken>> {
        self.get_fresh_ahead(key, now, 0)
    }

    /// [`get_fresh`](Self::get_fresh) with `ahead` more seconds of life required.
    pub(crate) fn get_fresh_ahead(
        &self,
        key: &CacheKey,
        now: i64,
        ahead: i64,
    ) -> Result<Option<IssuedToken>> {
        let Some(bytes) = fsutil::read_private_file(&self.entry_path(key), MAX_ENTRY_BYTES)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e)
                if e.schema == SCHEMA
                    && e.key == key.hex
                    && e.token.validate().is_ok()
                    && e.token.is_fresh_ahead(now, ahead) =>
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
    pub(crate) fn remove(&self, key: &CacheKey) -> Result<()> {
        match std::fs::remove_file(self.entry_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::new(
                ErrorCode::CacheError,
                format!("cannot remove a cache entry in {}: {e}", self.dir.display()),
            )),
            _ => Ok(()),
        }
    }

    /// [`get_or_fetch_ahead`](Self::get_or_fetch_ahead) with no lead (tests).
    #[cfg(test)]
    pub(crate) fn get_or_fetch<F, Fut>(
        &self,
        key: &CacheKey,
        clock: &Arc<dyn Clock>,
        deadline: Deadline,
        fetch: F,
    ) -> impl Future<Output = Result<(IssuedToken, Source)>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken>>,
    {
        self.get_or_fetch_ahead(key, clock, deadline, 0, fetch)
    }

    /// Serves a fresh entry, or fetches and stores it under the key's lock
    /// so that concurrent processes make one upstream call between them;
    /// an entry counts as stale `ahead` seconds before its slack. The lock
    /// is waited for on the blocking pool.
    pub(crate) async fn get_or_fetch_ahead<F, Fut>(
        &self,
        key: &CacheKey,
        clock: &Arc<dyn Clock>,
        deadline: Deadline,
        ahead: i64,
        fetch: F,
    ) -> Result<(IssuedToken, Source)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken>>,
    {
        let (cache, owned_key, lock_clock) = (self.clone(), key.clone(), Arc::clone(clock));
        let locked = tokio::task::spawn_blocking(move || {
            cache.lock_ahead(&owned_key, lock_clock.as_ref(), deadline, ahead)
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("the cache lock task failed: {e}"),
            )
        })??;
        match locked {
            Locked::Fresh(t) => Ok((t, Source::Cache)),
            Locked::Held(lock) | Locked::Bypassed(lock) => {
                let token = fetch().await?;
                lock.store(&token);
                Ok((token, Source::Upstream))
            }
        }
    }

    /// [`lock_ahead`](Self::lock_ahead) with no lead (tests).
    #[cfg(test)]
    pub(crate) fn lock(
        &self,
        key: &CacheKey,
        clock: &dyn Clock,
        deadline: Deadline,
    ) -> Result<Locked> {
        self.lock_ahead(key, clock, deadline, 0)
    }

    /// The fresh entry for `key`, or the key's exclusive lock when it must be
    /// refreshed. Blocks (polling, so a fresh entry written meanwhile is seen
    /// at once) until one of the two. A holder that makes no progress (stopped,
    /// or stuck on a dead upstream) for half of what was left of `deadline`
    /// is given up on: the answer is then [`Locked::Bypassed`], the right to
    /// refresh without the lock, so the waiter still finishes inside its
    /// deadline. An entry with no more than `ahead` seconds past its slack
    /// left counts as stale ([`IssuedToken::is_fresh_ahead`]).
    pub(crate) fn lock_ahead(
        &self,
        key: &CacheKey,
        clock: &dyn Clock,
        deadline: Deadline,
        ahead: i64,
    ) -> Result<Locked> {
        if let Some(t) = self.get_fresh_ahead(key, clock.now_unix(), ahead)? {
            return Ok(Locked::Fresh(t));
        }
        let file = fsutil::open_lock_file(&self.dir.join(format!("{}.lock", key.stem())))?;
        let started = Instant::now();
        let patience = deadline.left() / 2;
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
            if let Some(t) = self.get_fresh_ahead(key, clock.now_unix(), ahead)? {
                return Ok(Locked::Fresh(t));
            }
            if started.elapsed() >= patience {
                tracing::warn!(
                    entry = %key.stem(),
                    waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "the process refreshing this entry made no progress; refreshing without it"
                );
                return Ok(Locked::Bypassed(CacheLock {
                    file: None,
                    dir: self.dir.clone(),
                    path: self.entry_path(key),
                    key_hex: key.hex.clone(),
                    about: about(key),
                }));
            }
            let now = Instant::now();
            if now >= deadline.instant() {
                return Err(Error::new(
                    ErrorCode::Timeout,
                    "timed out waiting for another wif-helper process to refresh the cached token",
                ));
            }
            std::thread::sleep(pause.min(deadline.instant() - now));
            pause = (pause * 2).min(Duration::from_millis(25));
        }
        // Locked: re-read, since the previous holder may have just written it.
        if let Some(t) = self.get_fresh_ahead(key, clock.now_unix(), ahead)? {
            return Ok(Locked::Fresh(t));
        }
        Ok(Locked::Held(CacheLock {
            file: Some(file),
            dir: self.dir.clone(),
            path: self.entry_path(key),
            key_hex: key.hex.clone(),
            about: about(key),
        }))
    }
}

/// The outcome of [`Cache::lock_ahead`].
#[derive(Debug)]
pub(crate) enum Locked {
    /// A fresh entry: use it; no lock is held.
    Fresh(IssuedToken),
    /// The exclusive right to refresh the entry; store the result with
    /// [`CacheLock::store`] or drop it to give up.
    Held(CacheLock),
    /// The holder of the lock made no progress: refresh without the lock.
    /// The entry is still replaced atomically, so readers see one whole
    /// token or the other.
    Bypassed(CacheLock),
}

/// The right to write one cache entry: normally its exclusive lock,
/// released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub(crate) struct CacheLock {
    /// `None` when the lock was bypassed.
    file: Option<std::fs::File>,
    dir: PathBuf,
    path: PathBuf,
    key_hex: String,
    about: BTreeMap<String, String>,
}

impl CacheLock {
    /// Writes the refreshed token atomically and releases the lock. A write
    /// failure is logged, not returned: the caller's token is good, and a
    /// cache that cannot be written only costs a later refresh. Under the
    /// lock, temporary files a killed writer of this entry left behind are
    /// removed first (every writer that holds the lock is this one), and the
    /// directory is swept of entries long expired ([`sweep`]).
    pub(crate) fn store(self, token: &IssuedToken) {
        if self.file.is_some() {
            fsutil::remove_leftover_temps(&self.path);
            sweep(&self.dir, token.issued_at);
        }
        let entry = Entry {
            schema: SCHEMA,
            key: self.key_hex.clone(),
            token: token.clone(),
            about: self.about.clone(),
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

fn about(key: &CacheKey) -> BTreeMap<String, String> {
    key.about
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Entries (and their locks) this long past their expiry, and temporary
/// files this old, are removed by the next refresh.
const SWEEP_AFTER_SECS: i64 = 24 * 3600;

/// Removes what nobody will use again from `dir` at `now`: entries that
/// expired more than [`SWEEP_AFTER_SECS`] ago (or unreadable ones that old)
/// with their lock files, lock files that old without an entry, and
/// temporary files that old. A lock file is removed only while this process
/// holds it, so no refresher in progress loses its lock. Failures are
/// ignored: sweeping is housekeeping.
fn sweep(dir: &Path, now: i64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let cutoff = now.saturating_sub(SWEEP_AFTER_SECS);
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .unwrap_or(now);
        if name.starts_with('.') && name.ends_with(".tmp") {
            if mtime < cutoff {
                let _ = std::fs::remove_file(e.path());
            }
        } else if let Some(stem) = name.strip_suffix(".json").filter(|s| is_stem(s)) {
            let expires_at = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
                .map_or(mtime, |entry| entry.token.expires_at);
            if expires_at < cutoff {
                remove_with_lock(dir, stem, Some(&e.path()));
            }
        } else if let Some(stem) = name.strip_suffix(".lock").filter(|s| is_stem(s))
            && mtime < cutoff
            && !dir.join(format!("{stem}.json")).exists()
        {
            remove_with_lock(dir, stem, None);
        }
    }
}

/// `kind-<40 hex>`: a name this cache made.
fn is_stem(stem: &str) -> bool {
    stem.rsplit_once('-').is_some_and(|(kind, hex)| {
        !kind.is_empty()
            && kind.bytes().all(|b| b.is_ascii_lowercase())
            && hex.len() == 40
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Removes `stem`'s entry (if given) and lock file, holding the lock while
/// doing so; a lock someone holds is left alone, and so is its entry.
fn remove_with_lock(dir: &Path, stem: &str, entry: Option<&Path>) {
    let lock_path = dir.join(format!("{stem}.lock"));
    match fsutil::open_lock_file(&lock_path) {
        Ok(lock) if lock.try_lock().is_ok() => {
            if let Some(entry) = entry {
                let _ = std::fs::remove_file(entry);
            }
            let _ = std::fs::remove_file(&lock_path);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
