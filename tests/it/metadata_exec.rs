//! `wif-helper exec -- COMMAND`: the child's environment and token file, its
//! exit status, and signals forwarded to it. Real libraries run under it in
//! `metadata_clients.rs`.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `exec <flags> <direct flags> -- argv...`: wif-helper's arguments.
fn exec_args(w: &World, flags: &[&str], argv: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["exec".into()];
    args.extend(flags.iter().map(|s| (*s).to_owned()));
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    args.push("--".into());
    args.extend(argv.iter().map(|s| (*s).to_owned()));
    args
}

/// `wif-helper exec <flags> <direct flags> -- argv...`, not run yet.
fn exec_with(w: &World, flags: &[&str], argv: &[&str]) -> Command {
    let args = exec_args(w, flags, argv);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    w.command(&refs)
}

/// `wif-helper exec <direct flags> -- argv...`, not run yet.
fn exec(w: &World, argv: &[&str]) -> Command {
    exec_with(w, &[], argv)
}

/// A child script printing `a=` the token file, then after `pause` seconds
/// `b=` the token file again.
fn read_the_token_file_twice(pause: u32) -> String {
    format!(
        r#"echo "a=$(cat "$CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")"; sleep {pause}; echo "b=$(cat "$CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")""#
    )
}

/// The two reads of [`read_the_token_file_twice`] in its output.
fn the_two_reads(stdout: &str) -> (String, String) {
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_default()
            .to_owned()
    };
    (field("a="), field("b="))
}

#[test]
fn exec_passes_the_childs_exit_status() {
    let w = World::new();
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 143)] {
        let out = exec(&w, &["sh", "-c", script]).output().expect("runs");
        assert_eq!(out.status.code(), Some(code), "{script}: {out:?}");
    }
    // One exchange for all three children: the cache is shared.
    assert_eq!(w.emu.count("google:sts.token"), 1);
    let out = exec(&w, &["/nonexistent/program"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/program"));
}

#[test]
fn exec_points_the_child_at_its_server_and_keeps_a_private_token_file() {
    let w = World::new().env(
        "GOOGLE_APPLICATION_CREDENTIALS",
        "/etc/wif/should-not-be-seen.json",
    );
    let script = r#"
        echo "host=$GCE_METADATA_HOST"; echo "ip=$GCE_METADATA_IP"; echo "root=$GCE_METADATA_ROOT"
        echo "detection=$METADATA_SERVER_DETECTION"; echo "project=$GOOGLE_CLOUD_PROJECT"
        echo "gac=${GOOGLE_APPLICATION_CREDENTIALS-unset}"
        echo "file=$CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"
        echo "mode=$(stat -c %a "$CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")"
        echo "dirmode=$(stat -c %a "$(dirname "$CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")")"
        echo "token=$(cat "$CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")"
        exec 3<>"/dev/tcp/${GCE_METADATA_HOST%:*}/${GCE_METADATA_HOST#*:}"
        printf 'GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1\r\nHost: %s\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n' "$GCE_METADATA_HOST" >&3
        echo "server=$(tail -n 1 <&3)"
    "#;
    let out = exec(&w, &["bash", "-c", script]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {:?}", out.stderr);
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} not in {stdout}"))
            .to_owned()
    };
    let host = field("host");
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    assert_eq!(field("ip"), host);
    assert_eq!(field("root"), host);
    assert_eq!(field("detection"), "assume-present");
    assert_eq!(field("project"), "wif-demo");
    assert_eq!(field("gac"), "unset");
    assert_eq!(field("mode"), "600");
    assert_eq!(field("dirmode"), "700");
    let token = field("token");
    assert!(w.emu.issued_secrets().contains(&token));
    let served: serde_json::Value = serde_json::from_str(&field("server")).expect("JSON");
    assert_eq!(served["access_token"], token.as_str());
    // Removed when the child is done.
    let file = std::path::PathBuf::from(field("file"));
    assert!(!file.exists(), "{}", file.display());
    assert!(!file.parent().expect("dir").exists());
    assert_eq!(w.emu.count("google:generateAccessToken"), 1);
}

#[test]
fn exec_forwards_sigterm_to_the_child_and_exits_with_its_status() {
    let w = World::new();
    let script = r#"trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"#;
    let mut child = exec(&w, &["sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "exec did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(42), "{status:?}");
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("got-term")
    );
}

#[test]
fn exec_runs_no_child_when_there_is_no_token() {
    let w = World::new();
    w.emu.set_outbound_federation(false);
    let marker = w.dir.path().join("ran");
    let mut args: Vec<String> = vec!["exec".into()];
    // An OIDC provider needs outbound federation, which is off.
    args.extend(w.direct_flags(&w.oidc_provider(), &w.emu.service_account()));
    args.extend([
        "--provider-type".into(),
        "oidc".into(),
        "--".into(),
        "touch".into(),
    ]);
    args.push(marker.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = w.run(&refs);
    run.error(
        1,
        "AWS_OUTBOUND_FEDERATION_DISABLED",
        &["enable-outbound-web-identity-federation"],
    );
    assert!(!marker.exists());
}

#[test]
fn exec_needs_a_command_after_the_separator() {
    let w = World::new();
    let mut args: Vec<String> = vec!["exec".into()];
    args.extend(w.direct_flags(&w.aws_provider(), &w.emu.service_account()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = w.run(&refs);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("COMMAND"), "{}", run.stderr);
}

/// 20 s tokens are refreshed 5 s after they are issued; the file follows.
#[test]
fn exec_keeps_the_token_file_fresh_for_as_long_as_the_child_runs() {
    let w = World::new();
    let script = read_the_token_file_twice(9);
    let out = exec_with(&w, &["--lifetime", "20"], &["sh", "-c", &script])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let (a, b) = the_two_reads(&stdout);
    let issued = w.emu.issued_secrets();
    assert!(issued.contains(&a) && issued.contains(&b), "{stdout}");
    assert_ne!(a, b, "the token file was not refreshed");
    assert_eq!(w.emu.count("google:generateAccessToken"), 2);
}

/// When the background refresh gives up (IAM failing until the token went
/// stale), the token file is still rewritten once IAM recovers: exec then
/// fetches in the foreground and follows the new refresher.
#[test]
fn exec_rewrites_the_token_file_once_a_failing_upstream_recovers() {
    let w = World::new();
    let script = read_the_token_file_twice(18);
    let flags = ["--lifetime", "20", "--timeout-millis", "5000"];
    let child = exec_with(&w, &flags, &["sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    // A 20 s token is refreshed 5 s in and stale 10 s in: IAM fails from
    // 3 s to 12 s, so the background refresh fails until the token is stale.
    std::thread::sleep(Duration::from_secs(3));
    w.emu.inject_fault(mds::iam_unavailable(100_000));
    std::thread::sleep(Duration::from_secs(9));
    w.emu.reset();
    let out = child.wait_with_output().expect("exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let (a, b) = the_two_reads(&stdout);
    let issued = w.emu.issued_secrets();
    assert!(issued.contains(&a) && issued.contains(&b), "{stdout}");
    assert_ne!(a, b, "the token file was not rewritten after IAM recovered");
}

/// The token file follows the AWS identity like the server's answers: an
/// edited profile puts the new identity's token in the file within about a
/// second, with no request to the server.
#[test]
fn an_identity_change_under_exec_rewrites_the_token_file() {
    let w = World::new().source(AwsSource::ProfileAssumeRole);
    let script = read_the_token_file_twice(4);
    let mut child = exec(&w, &["sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The first read, then another identity behind the same profile.
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    w.profile_names_the_iam_user();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let (a, b) = the_two_reads(&format!("{first}\n{second}"));
    assert_eq!(child.wait().expect("exits").code(), Some(0));
    let issued = w.emu.issued_secrets();
    assert!(issued.contains(&a) && issued.contains(&b), "a={a} b={b}");
    assert_ne!(a, b, "the token file kept the old identity's token");
    assert_eq!(w.emu.count("google:sts.token"), 2);
}

/// A Ctrl-C typed at the terminal reaches the child once: the terminal
/// signals the whole foreground group, and exec does not send it again
/// (a second SIGINT makes Terraform, among others, stop at once). Run under
/// `script`, which gives exec a terminal of its own.
#[test]
fn a_ctrl_c_at_the_terminal_reaches_the_child_once() {
    let w = World::new();
    let child = "trap 'echo got-int; exit 42' INT; echo ready; i=0; \
                 while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 9";
    // `exec BIN exec …`: the shell script(1) starts becomes wif-helper.
    let mut words: Vec<String> = vec!["exec".into(), BIN.into()];
    words.extend(exec_args(&w, &[], &["sh", "-c", child]));
    let line = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-qfec", &line, "/dev/null"])
        .env_clear()
        .envs(w.env_vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("script runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = out.by_ref().find_map(|l| {
        l.ok()
            .filter(|l| l.trim_end() == "ready" || l.contains("error"))
    });
    assert_eq!(ready.as_deref().map(str::trim_end), Some("ready"));
    std::io::Write::write_all(&mut stdin, b"\x03").expect("Ctrl-C");
    let status = child.wait().expect("wait");
    let rest: Vec<String> = out.map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(42), "{rest:?}");
    assert_eq!(
        rest.iter().filter(|l| l.contains("got-int")).count(),
        1,
        "{rest:?}"
    );
    let log = std::fs::read_to_string(w.log_file()).unwrap_or_default();
    assert!(
        log.contains("SIGINT from the terminal"),
        "exec did not see the terminal's SIGINT"
    );
    assert!(
        !log.contains("forwarding a signal to the child"),
        "exec sent the child a second SIGINT"
    );
}
