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
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A hostile HTTP/1.1 server on 127.0.0.1: reads each request, records it,
/// and lets `answer` write whatever it likes, counting the bytes the
/// client accepted.
struct Hostile {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    written: Arc<AtomicU64>,
}

impl Hostile {
    /// `answer` writes to the stream and adds what was accepted to the counter.
    fn start(answer: impl Fn(&mut TcpStream, &AtomicU64) + Send + Sync + 'static) -> Self {
        let answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (r, c, n) = (requests.clone(), connections.clone(), written.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let (r, n, answer) = (r.clone(), n.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut stream = stream;
                    if let Some(request) = read_request(&stream) {
                        r.lock().unwrap().push(request);
                        answer(&mut stream, &n);
                    }
                });
            }
        });
        Self {
            url,
            requests,
            connections,
            written,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

/// The request head and body, as text.
fn read_request(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    head.push_str(&String::from_utf8_lossy(&body));
    Some(head)
}

/// Writes `bytes`, counting them; `false` once the client has gone.
fn send(stream: &mut TcpStream, counter: &AtomicU64, bytes: &[u8]) -> bool {
    let ok = stream.write_all(bytes).is_ok();
    if ok {
        counter.fetch_add(bytes.len() as u64, Ordering::SeqCst);
    }
    ok
}

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

/// `print-access-token` through the emulator's AWS provider, plus `extra`;
/// a flag of [`World::direct_flags`] given in `extra` takes its place.
fn print_access_token(w: &World, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["print-access-token".into()];
    for pair in w
        .direct_flags(&w.aws_provider(), &w.emu.service_account())
        .chunks(2)
    {
        if !extra.contains(&pair[0].as_str()) {
            args.extend_from_slice(pair);
        }
    }
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

// ----------------------------------------------------- 1. huge AWS answers

const HUGE: u64 = 200 * 1024 * 1024;

/// Answers 200 with a 200 MiB body, streamed (never allocated): with a
/// `Content-Length`, or chunked with none. Stops when the client hangs up.
fn huge_answer(chunked: bool) -> impl Fn(&mut TcpStream, &AtomicU64) + Send + Sync + 'static {
    move |s, n| {
        let head: &[u8] = if chunked {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 209715200\r\n\r\n"
        };
        if !send(s, n, head) {
            return;
        }
        let block = vec![b'<'; 64 * 1024];
        let mut sent = 0;
        while sent < HUGE {
            let ok = if chunked {
                send(s, n, format!("{:x}\r\n", block.len()).as_bytes())
                    && send(s, n, &block)
                    && send(s, n, b"\r\n")
            } else {
                send(s, n, &block)
            };
            if !ok {
                return;
            }
            sent += block.len() as u64;
        }
        if chunked {
            send(s, n, b"0\r\n\r\n");
        }
    }
}

/// Runs `wif-helper executable` for `w` under GNU time, when the machine has
/// it: the protocol JSON, and the peak RSS in KiB (`None` without GNU time).
fn executable_with_peak_rss(w: &World) -> (serde_json::Value, Option<u64>) {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("peak RSS not measured: /usr/bin/time (GNU time) is not installed");
        return (
            w.executable(&["--timeout-millis", "20000"]).protocol(),
            None,
        );
    }
    let report = w.dir.path().join("time.txt");
    let provider = w.oidc_provider();
    let mut c = std::process::Command::new(time);
    c.args(["-f", "%M", "-o"])
        .arg(&report)
        .args([BIN, "executable", "--provider", &provider])
        .args(["--timeout-millis", "20000"])
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (k, v) in w.env_vars() {
        c.env(k, v);
    }
    let run = Run::from(c.output().expect("time runs"));
    w.assert_no_secret_printed(&run);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    // The last line is %M; GNU time may put a line about the status first.
    let kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    assert!(kib.is_some(), "unexpected GNU time report {text:?}");
    (run.protocol(), kib)
}

#[test]
fn a_200_mib_answer_from_aws_fails_clearly_and_is_not_buffered() {
    for chunked in [false, true] {
        for target in ["AWS STS", "container credentials", "instance metadata"] {
            let hostile = Hostile::start(huge_answer(chunked));
            let w = match target {
                "AWS STS" => World::new().env("AWS_ENDPOINT_URL_STS", &hostile.url),
                "container credentials" => World::new()
                    .source(AwsSource::None)
                    .env(
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        &format!("{}/v2/credentials", hostile.url),
                    )
                    .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-auth"),
                _ => World::new()
                    .source(AwsSource::Imds)
                    .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &hostile.url),
            };
            let case = format!("{target}, chunked: {chunked}");
            let started = Instant::now();
            let (v, peak_kib) = executable_with_peak_rss(&w);
            eprintln!(
                "{case}: {} bytes sent before the client hung up, peak RSS {peak_kib:?} KiB",
                hostile.written()
            );
            assert_eq!(v["success"], false, "{case}: {v}");
            let (code, msg) = (v["code"].as_str().unwrap(), v["message"].as_str().unwrap());
            assert!(
                msg.contains(&format!(
                    "the answer from {} is larger than 1048576 bytes",
                    hostile.url.trim_start_matches("http://")
                )),
                "{case}: {code}: {msg}"
            );
            // A broken or hostile endpoint, not the network (exit 1, not 3).
            assert_eq!(code, "AWS_ERROR", "{target} {case}: {msg}");
            assert!(started.elapsed() < Duration::from_secs(15), "{case}");
            // Nothing the client did not read can have been buffered, and a
            // connection takes at most a few MiB of socket buffers.
            assert_eq!(hostile.connections(), 1, "{case}: retried");
            let asked = match target {
                "AWS STS" => "Action=GetWebIdentityToken",
                "container credentials" => "GET /v2/credentials",
                _ => "PUT /latest/api/token",
            };
            assert!(hostile.requests()[0].contains(asked), "{case}");
            assert!(
                hostile.written() < 32 * 1024 * 1024,
                "{case}: the client read {} bytes",
                hostile.written()
            );
            if let Some(kib) = peak_kib {
                assert!(kib < 100 * 1024, "{case}: peak RSS {kib} KiB");
            }
        }
    }
}

// ------------------------------------------------------------ 2. redirects

/// A server that redirects every request to a recording server, and that one.
fn redirector() -> (Hostile, Hostile) {
    let elsewhere = Hostile::start(|s, n| {
        send(s, n, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    });
    let to = format!("{}/collect", elsewhere.url);
    let redirecting = Hostile::start(move |s, n| {
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        send(s, n, answer.as_bytes());
    });
    (redirecting, elsewhere)
}

#[test]
fn a_google_endpoint_answering_307_gets_no_token_re_sent_elsewhere() {
    for endpoint in ["--token-url", "--iam-credentials-url"] {
        let w = World::new();
        let (redirecting, elsewhere) = redirector();
        let url = match endpoint {
            "--token-url" => format!("{}/v1/token", redirecting.url),
            _ => redirecting.url.clone(),
        };
        let run = print_access_token(&w, &[endpoint, &url, "--no-cache"]);
        assert_eq!(run.stdout, "", "{endpoint}");
        run.error(
            1,
            "GOOGLE_ERROR",
            &[
                "redirect (HTTP 307)",
                &format!("to {}", elsewhere.url),
                "127.0.0.1",
                "does not follow redirects",
                endpoint,
            ],
        );
        // What the redirect asked to have re-sent.
        let asked = redirecting.requests();
        assert_eq!(asked.len(), 1, "{endpoint}: retried");
        let secret = match endpoint {
            "--token-url" => "subject_token=",
            _ => "Bearer ",
        };
        assert!(asked[0].contains(secret), "{endpoint}: {}", asked[0]);
        assert_eq!(
            elsewhere.connections(),
            0,
            "{endpoint}: the redirect was followed"
        );
    }
}

#[test]
fn an_aws_sts_endpoint_answering_307_gets_no_request_re_sent_elsewhere() {
    let (redirecting, elsewhere) = redirector();
    let w = World::new().env("AWS_ENDPOINT_URL_STS", &redirecting.url);
    let msg = w.executable(&[]).failure("AWS_ERROR");
    assert!(msg.contains("HTTP 307"), "{msg}");
    assert_eq!(redirecting.connections(), 1, "retried");
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");
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
                .contains(&format!("not logging to --log-file {log}: ")),
            "{what}: {}",
            verbose.stderr
        );
        unchanged();
    }
}

// ----------------------------------------- 4. what a credential_process says

#[test]
fn what_a_failing_credential_process_prints_never_reaches_a_message_or_the_log() {
    let secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYHARDENING1";
    assert_eq!(secret_key.len(), 40, "shaped like an AWS secret access key");
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJoYXJkZW5pbmcifQ.c2lnbmF0dXJlLWhhcmRlbmluZw";
    let long_line = "L".repeat(20_000);
    let w = World::new()
        .source(AwsSource::None)
        .env("AWS_PROFILE", "proc");
    let script = w.dir.path().join("credential-process.sh");
    let printed = format!(
        "aws_secret_access_key = {secret_key}\nsession token {jwt}\n{long_line}\n\
         password hunter2-hardening\n"
    );
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >&2 <<'EOF'\n{printed}EOF\n\
             echo '{{\"Version\": 1, \"AccessKeyId\": \"AKIAHARDENING\", \
             \"SecretAccessKey\": \"{secret_key}\"}}'\n{long_line}\nexit 1\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(w.home().join(".aws")).unwrap();
    std::fs::write(
        w.home().join(".aws/config"),
        format!(
            "[profile proc]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    let leaked = |text: &str| {
        [secret_key, "eyJzdWIi", "LLLLLLLLLL", "hunter2"]
            .into_iter()
            .filter(|s| text.contains(s))
            .collect::<Vec<_>>()
    };

    let msg = w.executable(&[]).failure("AWS_ERROR");
    assert_eq!(leaked(&msg), Vec::<&str>::new(), "{msg}");
    assert!(msg.len() < 1500, "{} characters: {msg}", msg.len());
    assert!(
        msg.contains("exit status: 1") && msg.contains("run the profile's credential_process"),
        "{msg}"
    );

    let run = w.run(&[
        "print-access-token",
        "--provider",
        &w.oidc_provider(),
        "--provider-type",
        "oidc",
        "--service-account",
        &w.emu.service_account(),
    ]);
    let stderr = run.error(1, "AWS_ERROR", &["run the profile's credential_process"]);
    assert_eq!(leaked(stderr), Vec::<&str>::new(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let log = std::fs::read_to_string(w.log_file()).unwrap();
    assert!(log.contains("executable mode failed"), "{log}");
    assert_eq!(leaked(&log), Vec::<&str>::new(), "{log}");
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
