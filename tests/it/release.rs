//! The release artifacts that `scripts/release` built, used as users use
//! them (docs/release.md): the checksums verify, the tarball holds what it
//! should, and the static binary, the container image's filesystem and the
//! Lambda layer each run in an otherwise empty root against the emulator,
//! reached by a host name that only the root's own `/etc/hosts` defines — so
//! name resolution without the host's C library is exercised.
//!
//! The artifacts are slow to build (fat LTO), so these tests do not build
//! them: `scripts/test` runs `scripts/release --check --image`, then these
//! tests with `WIF_HELPER_DIST` (the dist directory) and `WIF_HELPER_IMAGE`
//! (the exported image) set. Without them each test says why it is skipped
//! and passes; so does an empty-root test when not run as root (chroot needs
//! it). `WIF_HELPER_RELEASE_STRICT=1` (set by `scripts/test` as root) turns
//! every skip into a failure.

mod roots;

use crate::common::World;
use roots::{
    ca_bundle, empty_root, files_under, in_root, root_env, runs_against_the_emulator_by_name,
    set_mode, write_hosts,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a test does not run: a failure in strict mode, else a note.
fn skip(why: &str) {
    if std::env::var("WIF_HELPER_RELEASE_STRICT").is_ok_and(|v| v == "1") {
        panic!("{why} (WIF_HELPER_RELEASE_STRICT=1: skipping is a failure)");
    }
    eprintln!("skipped: {why}");
}

/// `WIF_HELPER_DIST`, or `None` after saying why the test is skipped.
fn dist() -> Option<PathBuf> {
    match std::env::var_os("WIF_HELPER_DIST") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            skip("WIF_HELPER_DIST is not set (scripts/release --check builds the artifacts)");
            None
        }
    }
}

/// Whether chroot is possible, after saying why not.
fn can_chroot() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        skip("an empty root needs chroot, which needs root");
    }
    root
}

/// The one artifact in `dist` whose name starts and ends so.
fn artifact(dist: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dist)
        .unwrap_or_else(|e| panic!("{}: {e}", dist.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {prefix}*{suffix} in {}",
        dist.display()
    );
    found[0].clone()
}

/// Lambda's name for this machine's architecture.
fn lambda_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

fn tarball(dist: &Path) -> PathBuf {
    artifact(dist, "wif-helper-", ".tar.gz")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tarball unpacked: (the directory, the one top-level folder in it).
fn unpacked(dist: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball(dist))
            .arg("-C")
            .arg(dir.path()),
    );
    let top: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(top.len(), 1, "one top-level folder: {top:?}");
    let top = top[0].clone();
    (dir, top)
}

#[test]
fn sha256sums_verifies_and_covers_every_artifact() {
    let Some(dist) = dist() else { return };
    run_ok(
        Command::new("sha256sum")
            .args(["--strict", "-c", "SHA256SUMS"])
            .current_dir(&dist),
    );
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).expect("SHA256SUMS");
    let mut listed: Vec<String> = sums
        .lines()
        .map(|l| l.split_once("  ").expect("`sum  name` lines").1.to_owned())
        .collect();
    listed.sort();
    let mut present: Vec<String> = std::fs::read_dir(&dist)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    present.sort();
    assert_eq!(listed, present);
    let version = env!("CARGO_PKG_VERSION");
    let arch = std::env::consts::ARCH;
    assert_eq!(
        present,
        [
            format!("wif-helper-{version}-lambda-layer-{}.zip", lambda_arch()),
            format!("wif-helper-{version}-{arch}-unknown-linux-gnu.tar.gz"),
        ]
    );

    // A changed artifact fails the check.
    let copy = tempfile::tempdir().expect("tempdir");
    for n in &present {
        std::fs::copy(dist.join(n), copy.path().join(n)).expect("copy");
    }
    std::fs::copy(dist.join("SHA256SUMS"), copy.path().join("SHA256SUMS")).expect("copy");
    let mut bytes = std::fs::read(copy.path().join(&present[0])).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(copy.path().join(&present[0]), bytes).expect("write");
    let status = Command::new("sha256sum")
        .args(["--status", "-c", "SHA256SUMS"])
        .current_dir(copy.path())
        .status()
        .expect("sha256sum");
    assert!(!status.success(), "a changed artifact still verified");
}

#[test]
fn the_tarball_holds_a_static_binary_completions_the_manual_and_the_licences() {
    let Some(dist) = dist() else { return };
    let (_dir, top) = unpacked(&dist);
    let name = top
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        format!("{name}.tar.gz"),
        tarball(&dist)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        "the folder is named like the tarball"
    );
    let files = files_under(&top);
    assert_eq!(
        files,
        [
            "LICENSE",
            "README.md",
            "THIRD-PARTY-LICENSES.txt",
            "completions/_wif-helper",
            "completions/wif-helper.bash",
            "completions/wif-helper.fish",
            "man/wif-helper.1",
            "wif-helper",
        ]
    );

    let bin = top.join("wif-helper");
    let file = run_ok(Command::new("file").arg("-b").arg(&bin));
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file says: {file}"
    );
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
    let said =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd says: {said}"
    );

    let read = |p: &str| std::fs::read_to_string(top.join(p)).expect(p);
    assert!(read("man/wif-helper.1").contains(".TH wif-helper"));
    assert!(read("completions/wif-helper.bash").contains("print-access-token"));
    assert!(read("completions/_wif-helper").starts_with("#compdef wif-helper"));
    assert!(read("completions/wif-helper.fish").contains("complete -c wif-helper"));
    assert_eq!(read("LICENSE"), include_str!("../../LICENSE"));
    assert_eq!(read("README.md"), include_str!("../../README.md"));
    let third = read("THIRD-PARTY-LICENSES.txt");
    for needle in [
        "reqwest",
        "aws-sdk-sts",
        "hickory-resolver",
        "aws-lc-sys",
        "tokio",
        "Apache License",
        "Permission is hereby granted",
    ] {
        assert!(
            third.contains(needle),
            "{needle:?} not in THIRD-PARTY-LICENSES.txt"
        );
    }
    // Only what ships: no test-only crate.
    for absent in [
        "proptest",
        "jsonwebtoken",
        "wif-emulator",
        "google-cloud-auth",
    ] {
        assert!(
            !third.contains(&format!("* {absent} ")),
            "{absent} is not in the binary"
        );
    }
}

#[test]
fn the_static_binary_runs_in_an_empty_root_and_resolves_by_its_hosts_file() {
    let Some(dist) = dist() else { return };
    if !can_chroot() {
        return;
    }
    let (_dir, top) = unpacked(&dist);
    let root = empty_root(&[
        ("/wif-helper", &top.join("wif-helper")),
        ("/etc/ssl/certs/ca-certificates.crt", &ca_bundle()),
    ]);
    // Nothing else: no /lib, no /etc/nsswitch.conf, no /etc/resolv.conf, no HOME.
    let all = files_under(root.path());
    assert_eq!(
        all,
        [
            "etc/hosts",
            "etc/ssl/certs/ca-certificates.crt",
            "wif-helper"
        ]
    );
    runs_against_the_emulator_by_name(root.path(), "0:0", "/wif-helper", &[]);
}

#[test]
fn the_static_binary_does_not_resolve_a_name_its_root_does_not_define() {
    let Some(dist) = dist() else { return };
    if !can_chroot() {
        return;
    }
    let (_dir, top) = unpacked(&dist);
    let root = empty_root(&[
        ("/wif-helper", &top.join("wif-helper")),
        ("/etc/ssl/certs/ca-certificates.crt", &ca_bundle()),
    ]);
    // The same run with the name gone from /etc/hosts: it fails, so the
    // passing run above did resolve by that file. The root's resolv.conf
    // points at a loopback address where no name server listens.
    std::fs::write(root.path().join("etc/hosts"), "127.0.0.1 localhost\n").expect("hosts");
    std::fs::write(
        root.path().join("etc/resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .expect("resolv.conf");
    let w = World::new();
    let env = root_env(&w, &[]);
    let provider = w.oidc_provider();
    let run = in_root(
        &w,
        root.path(),
        "0:0",
        &env,
        "/wif-helper",
        &[
            "executable",
            "--provider",
            &provider,
            "--timeout-millis",
            "5000",
        ],
    );
    // No name server answers, so the lookups time out (a refusal would be
    // NETWORK_ERROR); either way an answer, no crash, and no request.
    let v = run.protocol();
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["code"] == "TIMEOUT" || v["code"] == "NETWORK_ERROR",
        "{v}"
    );
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 0);
}

#[test]
fn the_container_image_runs_as_its_non_root_user_in_an_empty_root() {
    if dist().is_none() || !can_chroot() {
        return;
    }
    let Some(image) = std::env::var_os("WIF_HELPER_IMAGE").map(PathBuf::from) else {
        skip(
            "WIF_HELPER_IMAGE is not set (scripts/release --check --image exports the image where podman builds it)",
        );
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    set_mode(root.path(), 0o755);
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(image.join("rootfs.tar"))
            .arg("-C")
            .arg(root.path()),
    );
    let user = std::fs::read_to_string(image.join("user")).expect("image user");
    let user = user.trim();
    assert_eq!(user, "65532:65532", "the image's user");
    for p in [
        "usr/local/bin/wif-helper",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "usr/share/doc/wif-helper/THIRD-PARTY-LICENSES.txt",
    ] {
        assert!(root.path().join(p).is_file(), "{p} in the image");
    }
    use std::os::unix::fs::MetadataExt;
    let owner_mode = |p: &str| {
        let m = std::fs::metadata(root.path().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        (m.uid(), m.mode() & 0o7777)
    };
    assert_eq!(owner_mode("home"), (0, 0o755));
    assert_eq!(owner_mode("home/wif"), (65532, 0o700));
    assert_eq!(owner_mode("usr/local/bin/wif-helper"), (0, 0o755));
    for absent in ["bin/sh", "lib", "usr/lib", "etc/nsswitch.conf"] {
        assert!(
            !root.path().join(absent).exists(),
            "{absent} in a FROM scratch image"
        );
    }
    // What a container runtime adds: /etc/hosts (and the image's ENV).
    write_hosts(root.path());
    let image_env = std::fs::read_to_string(image.join("env")).expect("image env");
    let image_env: Vec<(&str, &str)> = image_env
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    assert!(image_env.contains(&("HOME", "/home/wif")), "{image_env:?}");
    runs_against_the_emulator_by_name(root.path(), user, "/usr/local/bin/wif-helper", &image_env);

    // The user's cache, in its private home.
    assert_eq!(owner_mode("home/wif/.cache/wif-helper"), (65532, 0o700));
}

#[test]
fn the_lambda_layer_runs_from_opt_without_home() {
    let Some(dist) = dist() else { return };
    if !can_chroot() {
        return;
    }
    let zip = artifact(
        &dist,
        "wif-helper-",
        &format!("-lambda-layer-{}.zip", lambda_arch()),
    );
    // Lambda's filesystem, reduced: the layer at /opt, a CA bundle where
    // Amazon Linux keeps it, a writable /tmp; no HOME.
    let root = empty_root(&[("/etc/pki/tls/certs/ca-bundle.crt", &ca_bundle())]);
    std::fs::create_dir(root.path().join("opt")).expect("opt");
    run_ok(
        Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(root.path().join("opt")),
    );
    let bin = root.path().join("opt/bin/wif-helper");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bin)
        .expect("opt/bin/wif-helper")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable");
    std::fs::create_dir(root.path().join("tmp")).expect("tmp");
    set_mode(&root.path().join("tmp"), 0o1777);

    let w = World::new();
    // Lambda runs functions as an unprivileged user without a passwd entry.
    let user = "993:990";
    let env = root_env(
        &w,
        &[
            ("PATH", "/opt/bin:/usr/local/bin:/usr/bin:/bin"),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("AWS_LAMBDA_FUNCTION_NAME", "wif-test"),
        ],
    );
    assert!(!env.iter().any(|(k, _)| k == "HOME"));
    let provider = w.oidc_provider();
    let args = ["executable", "--provider", provider.as_str()];
    let first = in_root(&w, root.path(), user, &env, "/opt/bin/wif-helper", &args);
    let (jwt, _) = first.success();
    // The next invocation (a warm Lambda) is served from the cache in /tmp.
    let second = in_root(&w, root.path(), user, &env, "/opt/bin/wif-helper", &args);
    assert_eq!(second.success().0, jwt);
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);
    assert!(root.path().join("tmp/wif-helper-993").is_dir());
}
