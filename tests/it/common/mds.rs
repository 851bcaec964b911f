//! A running `wif-helper metadata-server` and a raw HTTP/1.1 client for it.
//!
//! The client writes requests byte for byte (no library adds or fixes a
//! header), so tests control `Host`, `Metadata-Flavor` and
//! `X-Forwarded-For` exactly.

use super::World;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;
use wif_emulator::Fault;

/// The metadata server, killed when dropped.
pub struct Mds {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The printed `env` object, in order.
    pub env: Vec<(String, String)>,
    pub stderr_path: std::path::PathBuf,
}

impl Mds {
    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Mds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl World {
    /// The flags every metadata-server test needs: the AWS provider, the
    /// emulator's service account and Google URLs, the address to listen on.
    fn mds_flags(&self, listen: &str) -> Vec<String> {
        let mut f = self.direct_flags(&self.aws_provider(), &self.emu.service_account());
        f.extend(["--listen".into(), listen.to_owned()]);
        f
    }

    /// Starts `wif-helper metadata-server` on a free loopback port with
    /// `extra`, and waits for its JSON line.
    pub fn metadata_server(&self, extra: &[&str]) -> Mds {
        self.metadata_server_on("127.0.0.1:0", extra)
    }

    /// [`World::metadata_server`] listening on `listen`.
    pub fn metadata_server_on(&self, listen: &str, extra: &[&str]) -> Mds {
        let mut args: Vec<String> = vec!["metadata-server".into()];
        args.extend(self.mds_flags(listen));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr_path = self.dir.path().join(format!(
            "mds-{}.stderr",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = self
            .command(&refs)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("metadata-server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "metadata-server printed {line:?}; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        let addr = v["listen"].as_str().expect("listen").to_owned();
        let env = v["env"]
            .as_object()
            .expect("env")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        Mds {
            child,
            addr,
            env,
            stderr_path,
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
    }
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Sends `GET path` with exactly these headers (plus `Host: addr` unless one
/// is given, and `Connection: close`) and reads the answer.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    parse_response(&raw)
}

/// `GET path` with `Metadata-Flavor: Google`.
pub fn mget(addr: &str, path: &str) -> Resp {
    get(addr, path, &[("Metadata-Flavor", "Google")])
}

pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The identity path for `audience` (URL-encoded, as Python sends it).
pub fn identity_path(audience: &str) -> String {
    let enc: String = audience
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience={enc}&format=full"
    )
}

/// IAM Credentials answering 503 to the next `count` token requests.
pub fn iam_unavailable(count: u32) -> Fault {
    Fault {
        operation: "google:generateAccessToken".into(),
        count,
        status: 503,
        body: r#"{"error":{"code":503,"message":"unavailable","status":"UNAVAILABLE"}}"#.into(),
        ..Fault::default()
    }
}
