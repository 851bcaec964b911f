//! What `wif-helper cache list` and `cache clear` do to a cache directory:
//! describe the entries (never their tokens) and forget them, safely while
//! other processes use the cache.

use super::{Cache, Entry, SCHEMA, is_stem};
use crate::error::{Error, ErrorCode, Result};
use crate::fsutil;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One entry as `cache list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Listed {
    /// `jwt`, `sts`, `access` or `id`.
    pub(crate) kind: String,
    /// Provider, service account, scopes or audience, as far as recorded.
    pub(crate) about: BTreeMap<String, String>,
    /// Expiry, Unix seconds UTC; `None` for an unreadable entry.
    pub(crate) expires_at: Option<i64>,
}

impl Cache {
    fn entry_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let read = std::fs::read_dir(self.dir()).map_err(|e| {
            Error::new(
                ErrorCode::CacheError,
                format!("cannot list {}: {e}", self.dir().display()),
            )
        })?;
        let mut out: Vec<(String, PathBuf)> = read
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".json").filter(|s| is_stem(s))?;
                Some((stem.to_owned(), e.path()))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every entry, sorted by file name, described without its token.
    pub(crate) fn list(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for (stem, path) in self.entry_files()? {
            let kind = stem.rsplit_once('-').map(|(k, _)| k).unwrap_or(&stem);
            let entry = fsutil::read_private_file(&path, super::MAX_ENTRY_BYTES)?
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
                .filter(|e| e.schema == SCHEMA);
            out.push(Listed {
                kind: kind.to_owned(),
                about: entry.as_ref().map(|e| e.about.clone()).unwrap_or_default(),
                expires_at: entry.map(|e| e.token.expires_at),
            });
        }
        Ok(out)
    }

    /// Removes every entry; returns how many. Safe while other processes
    /// use the cache: an entry disappears atomically (a reader sees it or a
    /// miss, and refreshes), a refresher in progress writes its new entry
    /// after, and lock files are removed only while this process holds them.
    pub(crate) fn clear(&self) -> Result<usize> {
        let mut removed = 0;
        for (stem, path) in self.entry_files()? {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::new(
                        ErrorCode::CacheError,
                        format!("cannot remove {}: {e}", path.display()),
                    ));
                }
            }
            super::remove_with_lock(self.dir(), &stem, None);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsSettings;
    use crate::cache::{AwsIdentity, CacheKey, Source};
    use crate::clock::{Clock, FixedClock};
    use crate::deadline::Deadline;
    use crate::env::Env;
    use crate::secret::Secret;
    use crate::settings::ServiceSettings;
    use crate::token::IssuedToken;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn list_describes_entries_without_tokens_and_clear_forgets_them() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let cache = Cache::open(d.path().join("c"))?;
        let provider = "projects/1/locations/global/workloadIdentityPools/p/providers/q"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let s = ServiceSettings::new(provider, "app@p.iam.gserviceaccount.com");
        let id = AwsIdentity::new(&AwsSettings::default(), &Env::default());
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(1000));
        let deadline = Deadline::after(Duration::from_secs(5));
        for key in [
            CacheKey::access(&id, &s),
            CacheKey::id(&id, &s, "https://a.run.app", false),
        ] {
            let (_, src) =
                deadline.block_on(cache.get_or_fetch(&key, &clock, deadline, || async {
                    Ok(IssuedToken {
                        token: Secret::new("ya29.secret-token"),
                        expires_at: 4600,
                        issued_at: 1000,
                    })
                }))?;
            assert_eq!(src, Source::Upstream);
        }
        let listed = cache.list()?;
        assert_eq!(listed.len(), 2);
        let text = format!(
            "{listed:?}{}",
            serde_json::to_string(&listed).unwrap_or_default()
        );
        assert!(!text.contains("ya29"), "{text}");
        let access = listed
            .iter()
            .find(|l| l.kind == "access")
            .unwrap_or_else(|| panic!("access"));
        assert_eq!(
            access.about["service_account"],
            "app@p.iam.gserviceaccount.com"
        );
        assert!(access.about["scopes"].contains("cloud-platform"));
        assert_eq!(access.expires_at, Some(4600));
        let id_entry = listed
            .iter()
            .find(|l| l.kind == "id")
            .unwrap_or_else(|| panic!("id"));
        assert_eq!(id_entry.about["audience"], "https://a.run.app");
        assert_eq!(cache.clear()?, 2);
        assert!(cache.list()?.is_empty());
        Ok(())
    }
}
