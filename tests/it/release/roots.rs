//! Empty roots for the release tests: what goes into them, the environment
//! a process in them gets, and running wif-helper inside with chroot.

use crate::common::{Run, World};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The emulator's host name inside the roots; `.test` is reserved (RFC 2606).
pub(super) const HOST: &str = "emulator.wif.test";

/// The files under `dir`, as paths relative to it, sorted.
pub(super) fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p.strip_prefix(dir).expect("inside").display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// A CA bundle of this machine to put into a root.
pub(super) fn ca_bundle() -> PathBuf {
    let p = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    assert!(
        p.is_file(),
        "no CA bundle at {} (ca-certificates)",
        p.display()
    );
    p
}

/// An empty root: `files` (path in the root, source) copied in, and an
/// `/etc/hosts` that alone says where [`HOST`] is.
pub(super) fn empty_root(files: &[(&str, &Path)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for (to, from) in files {
        let to = root.path().join(to.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    write_hosts(root.path());
    // tempdir makes it 0700; the root of a filesystem is 0755.
    set_mode(root.path(), 0o755);
    root
}

pub(super) fn write_hosts(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::write(
        root.join("etc/hosts"),
        format!("127.0.0.1 localhost\n127.0.0.1 {HOST}\n"),
    )
    .expect("hosts");
}

pub(super) fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// What a process in a root needs to reach the emulator by [`HOST`]:
/// static AWS keys, the STS endpoint by name, proxies that lead nowhere for
/// anything else (`NO_PROXY` names only the emulator), and `extra`.
pub(super) fn root_env(w: &World, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let (akid, secret) = w.emu.static_credentials();
    let mut e: Vec<(String, String)> = vec![
        ("AWS_ACCESS_KEY_ID".into(), akid),
        ("AWS_SECRET_ACCESS_KEY".into(), secret),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ENDPOINT_URL_STS".into(), url(w)),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    for v in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        e.push((v.into(), "http://127.0.0.1:9".into()));
    }
    for v in ["NO_PROXY", "no_proxy"] {
        e.push((v.into(), format!("{HOST},localhost")));
    }
    e.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    e
}

/// The emulator's URL by host name: [`HOST`], or `localhost` for the
/// Google URLs, where wif-helper takes plain http only for a loopback name.
pub(super) fn url_by(w: &World, name: &str) -> String {
    let u = w.emu.url();
    assert!(u.starts_with("http://127.0.0.1:"), "{u}");
    u.replacen("127.0.0.1", name, 1)
}

pub(super) fn url(w: &World) -> String {
    url_by(w, HOST)
}

/// The chroot program (found before the child's environment is cleared).
pub(super) fn chroot() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils)")
}

/// `program args` run in `root` by chroot as `user` (`uid:gid`), with
/// exactly `env`.
pub(super) fn in_root(
    w: &World,
    root: &Path,
    user: &str,
    env: &[(String, String)],
    program: &str,
    args: &[&str],
) -> Run {
    let out = Command::new(chroot())
        .arg(format!("--userspec={user}"))
        .arg(root)
        .arg(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("chroot runs");
    let run: Run = out.into();
    w.assert_no_secret_printed(&run);
    run
}

/// `--version`, then `executable` and `print-access-token` (OIDC provider:
/// AWS STS by [`HOST`], Google by `localhost`, both names from the root's
/// `/etc/hosts`), in `root`.
pub(super) fn runs_against_the_emulator_by_name(
    root: &Path,
    user: &str,
    program: &str,
    extra_env: &[(&str, &str)],
) {
    let w = World::new();
    let env = root_env(&w, extra_env);
    let v = in_root(&w, root, user, &env, program, &["--version"]);
    assert_eq!(v.status, 0, "--version: {}", v.stderr);
    assert!(
        v.stdout.contains(env!("CARGO_PKG_VERSION")) && v.stdout.contains("linux"),
        "{}",
        v.stdout
    );

    let provider = w.oidc_provider();
    let run = in_root(
        &w,
        root,
        user,
        &env,
        program,
        &["executable", "--provider", &provider],
    );
    let (jwt, _) = run.success();
    assert_eq!(
        crate::common::jwt_claims(&jwt)["aud"],
        w.emu.oidc_audience()
    );
    assert_eq!(w.emu.count("sts:GetWebIdentityToken"), 1);

    let google = url_by(&w, "localhost");
    let token_url = format!("{google}/google/sts/v1/token");
    let iam_url = format!("{google}/google/iamcredentials");
    let sa = w.emu.service_account();
    let run = in_root(
        &w,
        root,
        user,
        &env,
        program,
        &[
            "print-access-token",
            "--provider",
            &provider,
            "--provider-type",
            "oidc",
            "--service-account",
            &sa,
            "--token-url",
            &token_url,
            "--iam-credentials-url",
            &iam_url,
        ],
    );
    assert_eq!(run.status, 0, "print-access-token: {}", run.stderr);
    let token = run.stdout.trim();
    assert!(
        w.emu.issued_secrets().iter().any(|s| s == token),
        "print-access-token printed {token:?}, not a token the emulator issued"
    );
    assert_eq!(w.emu.count("google:sts.token"), 1);
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}
