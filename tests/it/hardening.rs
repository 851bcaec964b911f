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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

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

/// Runs `args` like [`World::run`], but kills the child if it has not
/// finished within `limit` (a hang must fail the test, not stall it).
fn run_within(w: &World, args: &[&str], limit: Duration) -> Run {
    let mut child = w
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wif-helper starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = Run::from(child.wait_with_output().expect("output"));
    w.assert_no_secret_printed(&run);
    run
}

// ------------------------------------------------------------ 3. --log-file

/// What must still be true after a run: nothing was written through it.
type Unchanged = Box<dyn Fn()>;

/// The things another user (or a mistake) can leave at a log file's path:
/// what it is, the path, and what must be true of it after a run.
fn planted_log_files(w: &World) -> Vec<(&'static str, PathBuf, Unchanged)> {
    let d = w.dir.path().join("shared");
    std::fs::create_dir_all(&d).unwrap();
    let mut v: Vec<(&'static str, PathBuf, Unchanged)> = Vec::new();

    let fifo = d.join("fifo.log");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    v.push(("a FIFO", fifo, Box::new(|| {})));

    let target = d.join("notes.txt");
    std::fs::write(&target, "untouched\n").unwrap();
    let link = d.join("link.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    v.push((
        "a symlink to a file of the user",
        link,
        Box::new(move || assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n")),
    ));

    let absent = d.join("created-through-the-link");
    let dangling = d.join("dangling.log");
    std::os::unix::fs::symlink(&absent, &dangling).unwrap();
    v.push((
        "a dangling symlink",
        dangling,
        Box::new(move || assert!(!absent.exists(), "a file was created through the link")),
    ));

    let shared = d.join("shared.log");
    std::fs::write(&shared, "").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
    v.push((
        "a file everyone can write",
        shared.clone(),
        Box::new(move || assert_eq!(std::fs::read_to_string(&shared).unwrap(), "")),
    ));

    if euid() == 0 {
        let theirs = d.join("theirs.log");
        std::fs::write(&theirs, "").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o666)).unwrap();
        v.push((
            "a 0666 file of another user",
            theirs.clone(),
            Box::new(move || assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "")),
        ));
    } else {
        eprintln!("skipped the other user's log file: giving a file away needs root");
    }
    v
}

#[test]
fn executable_mode_answers_whatever_is_planted_at_the_log_file() {
    let w = World::new();
    let provider = w.oidc_provider();
    for (what, path, unchanged) in planted_log_files(&w) {
        let log = path.to_str().unwrap();
        let run = run_within(
            &w,
            &[
                "executable",
                "--provider",
                &provider,
                "--log-file",
                log,
                "--timeout-millis",
                "5000",
            ],
            Duration::from_secs(15),
        );
        let v = run.protocol();
        assert_eq!(v["success"], true, "{what}: {v}");
        unchanged();
    }
}

#[test]
fn print_commands_print_the_token_whatever_is_planted_at_the_log_file() {
    let w = World::new();
    for (what, path, unchanged) in planted_log_files(&w) {
        let log = path.to_str().unwrap();
        let run = run_within(
            &w,
            &[
                "print-access-token",
                "--provider",
                &w.aws_provider(),
                "--service-account",
                &w.emu.service_account(),
                "--token-url",
                &w.emu.token_url(),
                "--iam-credentials-url",
                &format!("{}/google/iamcredentials", w.emu.url()),
                "--log-file",
                log,
                "--no-cache",
            ],
            Duration::from_secs(15),
        );
        assert_eq!((run.status, run.stderr.as_str()), (0, ""), "{what}");
        assert!(printed_token(&run.stdout).is_some(), "{what}");
        unchanged();
        // With --verbose, diagnostics go to stderr: it says why not the file.
        let verbose = print_access_token(&w, &["--log-file", log, "--no-cache", "--verbose"]);
        assert_eq!(verbose.status, 0, "{what}: {}", verbose.stderr);
        assert!(
            verbose
                .stderr
                .contains(&format!("warning: not logging to --log-file {log}: ")),
            "{what}: {}",
            verbose.stderr
        );
        unchanged();
    }
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
    assert!(
        w.emu.stats().values().all(|n| *n == 0),
        "an upstream was called: {:?}",
        w.emu.stats()
    );
    // The default location, when it is the link, is not used either (the
    // call may fall back to another directory: settings::CacheSettings::open).
    std::fs::create_dir_all(w.home().join(".cache")).unwrap();
    std::os::unix::fs::symlink(&private, w.cache_dir()).unwrap();
    w.executable(&[]).protocol();
    print_access_token(&w, &[]);
    assert_eq!(names(&private), ["id_ed25519"]);
}
