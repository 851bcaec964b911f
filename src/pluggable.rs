//! The executable-sourced credential protocol ("Pluggable Auth") response.
//!
//! What a Google client library reads from the command in
//! `credential_source.executable` (AIP-4117; per-library facts in
//! `docs/executable-protocol.md`):
//!
//! * success: `{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":JWT,"expiration_time":SECONDS}`
//! * failure: `{"version":1,"success":false,"token_type":…,"code":CODE,"message":TEXT}`
//!   (`token_type` too, because the Rust library requires it even on failure).
//!
//! `expiration_time` is always present and sits the cache's refresh slack
//! before the JWT's real `exp`, because no library subtracts clock skew.
//! The same success JSON is written atomically to `output_file` when one is
//! configured; failures are never written there.

use crate::error::{Error, ErrorCode, Result};
use crate::fsutil;
use crate::subject::JWT_TOKEN_TYPE;
use crate::token::IssuedToken;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct Success<'a> {
    version: u8,
    success: bool,
    token_type: &'static str,
    id_token: &'a str,
    expiration_time: i64,
}

#[derive(Serialize)]
struct Failure<'a> {
    version: u8,
    success: bool,
    token_type: &'static str,
    code: &'a str,
    message: &'a str,
}

/// The `expiration_time` to announce for a token: its expiry less the same
/// slack the cache uses, so a library stops reusing it when wif-helper would
/// stop serving it.
pub(crate) fn announced_expiry(token: &IssuedToken) -> i64 {
    token.expires_at.saturating_sub(token.slack())
}

/// The success response for a JWT.
pub(crate) fn success_json(token: &IssuedToken) -> String {
    serde_json::to_string(&Success {
        version: 1,
        success: true,
        token_type: JWT_TOKEN_TYPE,
        id_token: token.token.expose(),
        expiration_time: announced_expiry(token),
    })
    .unwrap_or_default()
}

/// The failure response for an error.
pub(crate) fn failure_json(error: &Error) -> String {
    failure_json_parts(error.code().as_str(), error.message())
}

/// The failure response from raw parts (used by the panic hook).
pub(crate) fn failure_json_parts(code: &str, message: &str) -> String {
    serde_json::to_string(&Failure {
        version: 1,
        success: false,
        token_type: JWT_TOKEN_TYPE,
        code,
        message,
    })
    .unwrap_or_default()
}

/// Refuses an `output_file` someone else could plant or replace: its
/// directory must be owned by this user (or root) and writable by no one
/// else, and an existing file must be a regular file (not a symlink) of
/// this user that no one else can write. Client libraries read the file
/// before they run wif-helper, so a forged one would be believed.
pub(crate) fn check_output_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_file = |what: String| {
        Error::new(
            ErrorCode::CacheInsecure,
            format!(
                "output file {}: {what}; a forged answer placed there would be handed to the client \
                 library. Use a file in a directory only you can write (the default config has none; \
                 or e.g. ~/.cache/wif-helper)",
                path.display()
            ),
        )
    };
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    match std::fs::symlink_metadata(&parent) {
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            if !m.is_dir() {
                return Err(unsafe_file(format!(
                    "{} is not a directory",
                    parent.display()
                )));
            }
            if m.uid() != me && m.uid() != 0 {
                return Err(unsafe_file(format!(
                    "its directory {} belongs to another user (uid {})",
                    parent.display(),
                    m.uid()
                )));
            }
            if mode & 0o022 != 0 {
                return Err(unsafe_file(format!(
                    "its directory {} is writable by others (mode {mode:04o})",
                    parent.display()
                )));
            }
        }
        // Created private by write_output_file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unsafe_file(format!("cannot inspect its directory: {e}"))),
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(unsafe_file("it is a symlink".into())),
        Ok(m) if !m.is_file() => Err(unsafe_file("it is not a regular file".into())),
        Ok(m) if m.uid() != me => Err(unsafe_file(format!(
            "it belongs to another user (uid {})",
            m.uid()
        ))),
        Ok(m) if m.mode() & 0o022 != 0 => Err(unsafe_file(format!(
            "it is writable by others (mode {:04o})",
            m.mode() & 0o7777
        ))),
        _ => Ok(()),
    }
}

/// Writes the success response to the `output_file` atomically, creating a
/// missing parent directory with mode 0700.
pub(crate) fn write_output_file(path: &Path, json: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        fsutil::ensure_private_dir(parent)?;
    }
    fsutil::write_atomic(path, json.as_bytes()).map_err(|e| {
        Error::new(
            e.code(),
            format!("cannot write the executable output file: {}", e.message()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use serde_json::Value;

    #[test]
    fn success_has_every_field_with_the_types_libraries_require() {
        let t = IssuedToken {
            token: Secret::new("h.p.s"),
            expires_at: 5000,
            issued_at: 1400,
        };
        let v: Value = serde_json::from_str(&success_json(&t)).unwrap_or_default();
        assert_eq!(v["version"], Value::from(1));
        assert_eq!(v["success"], Value::Bool(true));
        assert_eq!(v["token_type"], JWT_TOKEN_TYPE);
        assert_eq!(v["id_token"], "h.p.s");
        assert_eq!(v["expiration_time"], Value::from(4700));
        assert!(v["expiration_time"].is_i64());
    }

    #[test]
    fn short_tokens_announce_half_their_life() {
        let t = IssuedToken {
            token: Secret::new("x"),
            expires_at: 1120,
            issued_at: 1000,
        };
        assert_eq!(announced_expiry(&t), 1060);
    }

    #[test]
    fn output_files_others_could_plant_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let private = d.path().join("private");
        std::fs::create_dir(&private).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(check_output_file(&private.join("out.json")).is_ok());
        assert!(check_output_file(&d.path().join("new-dir/out.json")).is_ok());
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = check_output_file(&shared.join("out.json")).err();
        assert_eq!(e.as_ref().map(Error::code), Some(ErrorCode::CacheInsecure));
        assert!(e.is_some_and(|e| e.message().contains("writable by others")));
        let link = private.join("link.json");
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &link)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(check_output_file(&link).is_err());
    }

    #[test]
    fn failure_carries_code_message_and_token_type() {
        let e = Error::new(ErrorCode::AwsAccessDenied, "grant it");
        let v: Value = serde_json::from_str(&failure_json(&e)).unwrap_or_default();
        assert_eq!(v["success"], Value::Bool(false));
        assert_eq!(v["code"], "AWS_ACCESS_DENIED");
        assert_eq!(v["message"], "grant it");
        assert_eq!(v["token_type"], JWT_TOKEN_TYPE);
        assert_eq!(v["version"], Value::from(1));
    }
}
