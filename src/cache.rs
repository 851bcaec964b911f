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

mod key;

pub(crate) use key::{AwsIdentity, CacheKey};

use crate::clock::Clock;
use crate::deadline::Deadline;
use crate::error::{Error, ErrorCode, Result};
use crate::fsutil;
use crate::token::IssuedToken;
use key::SCHEMA;
use serde::{Deserialize, Serialize};
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
pub(crate) async fn through<F, Fut>(
    cache: Option<&Cache>,
    key: &CacheKey,
    clock: &Arc<dyn Clock>,
    deadline: Deadline,
    fetch: F,
) -> Result<(IssuedToken, Source)>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<IssuedToken>>,
{
    match cache {
        Some(cache) => cache.get_or_fetch(key, clock, deadline, fetch).await,
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
    pub(crate) fn remove(&self, key: &CacheKey) -> Result<()> {
        match std::fs::remove_file(self.entry_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::new(
                ErrorCode::CacheError,
                format!("cannot remove a cache entry in {}: {e}", self.dir.display()),
            )),
            _ => Ok(()),
        }
    }

    /// Serves a fresh entry, or fetches and stores it under the key's lock
    /// so that concurrent processes make one upstream call between them.
    /// The lock is waited for on the blocking pool.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: &CacheKey,
        clock: &Arc<dyn Clock>,
        deadline: Deadline,
        fetch: F,
    ) -> Result<(IssuedToken, Source)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken>>,
    {
        let (cache, owned_key, lock_clock) = (self.clone(), key.clone(), Arc::clone(clock));
        let locked = tokio::task::spawn_blocking(move || {
            cache.lock(&owned_key, lock_clock.as_ref(), deadline)
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
            Locked::Held(lock) => {
                let token = fetch().await?;
                lock.store(&token);
                Ok((token, Source::Upstream))
            }
        }
    }

    /// The fresh entry for `key`, or the key's exclusive lock when it must be
    /// refreshed. Blocks (polling, so a fresh entry written meanwhile is seen
    /// at once) until one of the two, or fails with [`ErrorCode::Timeout`] at
    /// `deadline`.
    pub(crate) fn lock(
        &self,
        key: &CacheKey,
        clock: &dyn Clock,
        deadline: Deadline,
    ) -> Result<Locked> {
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
pub(crate) enum Locked {
    /// A fresh entry: use it; no lock is held.
    Fresh(IssuedToken),
    /// The exclusive right to refresh the entry; store the result with
    /// [`CacheLock::store`] or drop it to give up.
    Held(CacheLock),
}

/// An exclusive lock on one cache entry, released on drop (and by the kernel
/// if the process dies).
#[derive(Debug)]
pub(crate) struct CacheLock {
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
    pub(crate) fn store(self, token: &IssuedToken) {
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
mod tests;
