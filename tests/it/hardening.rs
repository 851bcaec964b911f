//! Hardening (issue 10): each test reproduces an attack and shows it fails.
//!
//! * AWS answers are capped: a 200 MiB answer from AWS STS or the container
//!   credentials endpoint fails clearly, and is neither buffered nor read.
//! * No HTTP client follows a redirect: a token endpoint answering 307 never
//!   gets the subject token re-sent elsewhere.
//! * `--log-file` is opened without following a symlink or blocking on a
//!   FIFO, and only a regular file of the user that no one else can write is
//!   used; otherwise logging is skipped and the token is still answered.
//! * What a `credential_process` prints never reaches a message.
//! * An `output_file` with a long name is written.
//! * A symlinked cache directory is refused, never written through.
//!
//! The hostile servers here are plain threads on 127.0.0.1.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The names in `dir`, sorted (empty when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `print-access-token` through the emulator's AWS provider, plus `extra`.
fn print_access_token(w: &World, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["print-access-token".into()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(&refs)
}

// ------------------------------------------------- 5. long output_file names

#[test]
fn an_output_file_with_a_245_character_name_is_written() {
    let w = World::new();
    let name = format!("{}.json", "o".repeat(245));
    let file = w.dir.path().join("out").join(&name);
    let printed = w
        .executable(&["--output-file", file.to_str().unwrap_or_default()])
        .protocol();
    assert_eq!(printed["success"], true, "{printed}");
    assert_eq!(read_json(&file), printed);
    assert_eq!(
        names(&w.dir.path().join("out")),
        [name],
        "temporary files left"
    );
}

// ------------------------------------------- 6. a symlinked cache directory

#[test]
fn a_symlinked_cache_directory_is_refused_and_nothing_is_written_through_it() {
    let w = World::new();
    // A private directory of the user, as `~/.ssh` is.
    let private = w.home().join(".ssh");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(private.join("id_ed25519"), "private key").unwrap();
    let link = w.dir.path().join("cache");
    std::os::unix::fs::symlink(&private, &link).unwrap();
    for spelled in [link.display().to_string(), format!("{}/", link.display())] {
        let run = print_access_token(&w, &["--cache-dir", &spelled]);
        assert_eq!(run.stdout, "");
        run.error(1, "CACHE_INSECURE", &["symbolic link", "--cache-dir"]);
        let msg = w
            .executable(&["--cache-dir", &spelled])
            .failure("CACHE_INSECURE");
        assert!(msg.contains("symbolic link"), "{msg}");
    }
    // The default cache directory, when it is the link.
    std::fs::create_dir_all(w.home().join(".cache")).unwrap();
    std::os::unix::fs::symlink(&private, w.cache_dir()).unwrap();
    w.executable(&[]).failure("CACHE_INSECURE");
    assert_eq!(names(&private), ["id_ed25519"]);
    assert!(
        w.emu.stats().values().all(|n| *n == 0),
        "an upstream was called: {:?}",
        w.emu.stats()
    );
}
