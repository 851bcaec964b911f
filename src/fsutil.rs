//! Files that hold secrets: private directories, no-follow opens, atomic writes.
//!
//! Used by the cache, the executable protocol's `output_file` and
//! `generate-config`. A reader of a file written here sees the old content or
//! the new, never a torn one: data goes to a temporary file in the same
//! directory, is fsynced, then renamed over the target, and the directory is
//! fsynced so the rename survives a crash.

use crate::error::{Error, ErrorCode, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Creates `dir` (and missing parents) with mode 0700 and checks that it is
/// safe to keep secrets in: a directory, not a symbolic link to one, owned by
/// the current user, that no one else can write.
///
/// A symlink is refused (not followed) because whatever it points to, a
/// private directory such as `~/.ssh` included, would receive the cache's
/// files. The check is made on the directory opened with `O_NOFOLLOW`, not
/// by a second lookup of the path. Symlinks among the parents are followed:
/// only the last component is the cache's to judge.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(ErrorCode::CacheError, "cannot create directory", dir, &e))?;
    // `link/` (a trailing slash) would make the kernel follow `link`.
    let last: PathBuf = dir.components().collect();
    // Not O_DIRECTORY: Linux then reports a symlink as ENOTDIR. Whatever
    // else may have taken the name, opening it must not block (a FIFO) or
    // acquire a terminal.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&last)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::new(
                ErrorCode::CacheInsecure,
                format!(
                    "refusing directory {}: it is a symbolic link, and the cache is never \
                     written through one; remove the link or choose another --cache-dir \
                     (a real directory)",
                    dir.display()
                ),
            ),
            _ => io_error(ErrorCode::CacheError, "cannot open directory", dir, &e),
        })?;
    let meta = opened
        .metadata()
        .map_err(|e| io_error(ErrorCode::CacheError, "cannot inspect directory", dir, &e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorCode::CacheInsecure,
            format!("{} is not a directory", dir.display()),
        ));
    }
    check_owner_and_mode(dir, &meta, "directory")
}

/// Refuses a file or directory that another user owns or can write.
fn check_owner_and_mode(path: &Path, meta: &fs::Metadata, what: &str) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Error::new(
            ErrorCode::CacheInsecure,
            format!(
                "refusing {what} {}: owned by uid {}, not by the current user (uid {me}); \
                 remove it or choose another --cache-dir",
                path.display(),
                meta.uid()
            ),
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(Error::new(
            ErrorCode::CacheInsecure,
            format!(
                "refusing {what} {}: other users can write it (mode {:o}); \
                 run `chmod go-w {}` or choose another --cache-dir",
                path.display(),
                meta.permissions().mode() & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Opens `path` for reading without following a symlink and checks its owner
/// and mode. `Ok(None)` when it does not exist.
pub(crate) fn read_private_file(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, &e)),
    };
    check_opened_file(&file, path, "file")?;
    let mut buf = Vec::new();
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(ErrorCode::CacheError, "cannot read", path, &e))?;
    Ok(Some(buf))
}

/// Opens (creating if needed) a lock file with mode 0600, without following
/// a symlink.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| open_error(path, &e))?;
    check_opened_file(&file, path, "lock file")?;
    Ok(file)
}

/// Refuses an opened `file` that is not a regular file, or that another user
/// owns or can write.
fn check_opened_file(file: &File, path: &Path, what: &str) -> Result<()> {
    let meta = file
        .metadata()
        .map_err(|e| io_error(ErrorCode::CacheError, "cannot inspect", path, &e))?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorCode::CacheInsecure,
            format!("refusing {what} {}: not a regular file", path.display()),
        ));
    }
    check_owner_and_mode(path, &meta, what)
}

/// Writes `data` to `path` atomically with mode 0600: temp file in the same
/// directory, fsync, rename, fsync of the directory.
///
/// The temporary file is named [`temp_prefix`]`<pid>-<n>.tmp`, a short name
/// whatever the length of the target's: a target name near the 255-byte
/// limit must still be writable.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o600)
}

/// [`write_atomic`] with another file mode (0644 for a credential
/// configuration, which holds no secret and other users must read).
pub(crate) fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        "{}{}-{}.tmp",
        temp_prefix(path),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The umask may have cleared bits the caller asked for.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename durable; a failure here leaves a correct file.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok::<(), io::Error>(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(ErrorCode::CacheError, "cannot write", path, &e)
    })
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `.wif-<16 hex>-`: how the names of `path`'s temporary files begin. The hex
/// is the start of the SHA-256 of `path`'s file name, so the prefix is short
/// and names that one target (a collision needs 2^32 targets in a directory).
fn temp_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default();
    let digest = Sha256::digest(name.as_encoded_bytes());
    format!(".wif-{}-", hex::encode(digest.get(..8).unwrap_or_default()))
}

/// Whether `file` is a temporary file of the target named `target`: one
/// [`write_atomic`] makes, or one that earlier versions made
/// (`.<target>.<pid>.<n>.tmp`).
fn is_temp_of(file: &str, prefix: &str, target: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = file.strip_prefix(prefix) {
        return rest
            .strip_suffix(".tmp")
            .and_then(|r| r.split_once('-'))
            .is_some_and(|(pid, n)| digits(pid) && digits(n));
    }
    file.strip_prefix('.')
        .and_then(|r| r.strip_prefix(target))
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.strip_suffix(".tmp"))
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Removes the temporary files [`write_atomic`] left for `path` when its
/// writer died between creating and renaming them. Call it only while no
/// other writer of `path` can be running (the cache holds the entry's lock).
/// Best effort: failures are ignored, since a leftover costs only space.
pub(crate) fn remove_leftover_temps(path: &Path) {
    let Some(name) = path.file_name() else {
        return;
    };
    let target = name.to_string_lossy();
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let n = entry.file_name();
        if is_temp_of(&n.to_string_lossy(), &prefix, &target) {
            // remove_file never follows a symlink: it removes the link.
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn open_error(path: &Path, e: &io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        Error::new(
            ErrorCode::CacheInsecure,
            format!(
                "refusing {}: it is a symbolic link; remove it (wif-helper recreates it)",
                path.display()
            ),
        )
    } else {
        io_error(ErrorCode::CacheError, "cannot open", path, e)
    }
}

fn io_error(code: ErrorCode, what: &str, path: &Path, e: &io::Error) -> Error {
    Error::new(code, format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_0600() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one")?;
        write_atomic(&p, b"two")?;
        assert_eq!(read_private_file(&p, 100)?.as_deref(), Some(&b"two"[..]));
        let mode = fs::metadata(&p)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let leftovers = fs::read_dir(dir.path()).map(|r| r.count()).unwrap_or(0);
        assert_eq!(leftovers, 1, "temp files left behind");
        Ok(())
    }

    #[test]
    fn symlinks_are_refused_not_followed() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let target = dir.path().join("target");
        fs::write(&target, b"planted").map_err(|e| Error::invalid(e.to_string()))?;
        let link = dir.path().join("entry.json");
        std::os::unix::fs::symlink(&target, &link).map_err(|e| Error::invalid(e.to_string()))?;
        let err = read_private_file(&link, 100).err();
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::CacheInsecure));
        let err = open_lock_file(&link).err();
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::CacheInsecure));
        Ok(())
    }

    #[test]
    fn leftover_temps_of_one_file_are_removed_and_nothing_else() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let p = dir.path().join("jwt-abc.json");
        let keep = [
            "jwt-abc.json",
            "jwt-abc.lock",
            ".jwt-abcd.json.1.0.tmp",
            ".other.json.1.0.tmp",
        ];
        write_atomic(&p, b"entry")?;
        for n in &keep[1..] {
            fs::write(dir.path().join(n), b"x").map_err(|e| Error::invalid(e.to_string()))?;
        }
        for n in [".jwt-abc.json.4242.0.tmp", ".jwt-abc.json.4243.7.tmp"] {
            fs::write(dir.path().join(n), b"{\"half").map_err(|e| Error::invalid(e.to_string()))?;
        }
        remove_leftover_temps(&p);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .map_err(|e| Error::invalid(e.to_string()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = keep.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(left, want);
        Ok(())
    }

    /// Names of the files in `dir`, sorted.
    fn names(dir: &Path) -> Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map_err(|e| Error::invalid(e.to_string()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        Ok(v)
    }

    #[test]
    fn a_target_named_near_the_255_byte_limit_is_written_with_a_short_temporary_name() -> Result<()>
    {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let name = format!("{}.json", "n".repeat(250));
        assert_eq!(name.len(), 255);
        let p = dir.path().join(&name);
        write_atomic(&p, b"long")?;
        assert_eq!(read_private_file(&p, 100)?.as_deref(), Some(&b"long"[..]));
        assert_eq!(names(dir.path())?, [name]);
        let prefix = temp_prefix(&p);
        assert!(prefix.len() < 30, "{prefix}");
        Ok(())
    }

    #[test]
    fn leftover_temps_of_long_names_are_told_apart() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        // Two targets whose names share their first 245 bytes.
        let common = "c".repeat(245);
        let (one, two) = (
            dir.path().join(format!("{common}-1.json")),
            dir.path().join(format!("{common}-2.json")),
        );
        write_atomic(&one, b"1")?;
        write_atomic(&two, b"2")?;
        // What writers of each, killed before their rename, left behind.
        let leftover = |p: &Path, pid: u32, n: u32| {
            dir.path().join(format!("{}{pid}-{n}.tmp", temp_prefix(p)))
        };
        let (one_a, one_b, two_a) = (
            leftover(&one, 4242, 0),
            leftover(&one, 4243, 7),
            leftover(&two, 4242, 0),
        );
        for p in [&one_a, &one_b, &two_a] {
            assert!(
                p.file_name().is_some_and(|n| n.len() < 64),
                "{}",
                p.display()
            );
            fs::write(p, b"{\"half").map_err(|e| Error::invalid(e.to_string()))?;
        }
        // Not temporary files of `one`, though they start alike.
        let lookalikes = [
            format!("{}x.tmp", temp_prefix(&one)),
            format!("{}1-2.tmp.keep", temp_prefix(&one)),
            format!("{}1-2.tmp", temp_prefix(&one).trim_end_matches('-')),
        ];
        for n in &lookalikes {
            fs::write(dir.path().join(n), b"x").map_err(|e| Error::invalid(e.to_string()))?;
        }
        remove_leftover_temps(&one);
        assert!(!one_a.exists() && !one_b.exists());
        let mut want: Vec<String> = lookalikes.to_vec();
        for p in [&one, &two, &two_a] {
            want.push(
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        want.sort();
        assert_eq!(names(dir.path())?, want);
        remove_leftover_temps(&two);
        assert!(!two_a.exists());
        Ok(())
    }

    #[test]
    fn a_symlinked_directory_is_refused_and_nothing_is_created_through_it() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let private = dir.path().join("private");
        ensure_private_dir(&private)?;
        let link = dir.path().join("cache");
        std::os::unix::fs::symlink(&private, &link).map_err(|e| Error::invalid(e.to_string()))?;
        let mut spelled = link.clone().into_os_string();
        spelled.push("/");
        for d in [link.clone(), PathBuf::from(spelled), link.join(".")] {
            let err = ensure_private_dir(&d).err();
            assert_eq!(
                err.as_ref().map(|e| e.code()),
                Some(ErrorCode::CacheInsecure),
                "{}",
                d.display()
            );
            assert!(
                err.is_some_and(|e| e.message().contains("symbolic link")),
                "{}",
                d.display()
            );
        }
        // A dangling one is not created through either.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling)
            .map_err(|e| Error::invalid(e.to_string()))?;
        assert!(ensure_private_dir(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(names(&private)?, Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn directory_owned_by_another_user_is_refused() -> Result<()> {
        // Needs root to give a directory away; skipped otherwise.
        if rustix::process::geteuid().as_raw() != 0 {
            return Ok(());
        }
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let d = dir.path().join("cache");
        ensure_private_dir(&d)?;
        std::os::unix::fs::chown(&d, Some(65534), Some(65534))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let err = ensure_private_dir(&d).err();
        assert_eq!(
            err.as_ref().map(|e| e.code()),
            Some(ErrorCode::CacheInsecure)
        );
        assert!(err.is_some_and(|e| e.message().contains("owned by uid 65534")));
        Ok(())
    }

    #[test]
    fn world_writable_directory_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let d = dir.path().join("cache");
        ensure_private_dir(&d)?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let err = ensure_private_dir(&d).err();
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::CacheInsecure));
        Ok(())
    }
}
