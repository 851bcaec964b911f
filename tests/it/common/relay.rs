//! A tiny loopback HTTP/1.1 relay, one request per connection, recording
//! the request line of everything it forwards:
//!
//! * [`Relay::proxy`]: a forward proxy for plain-http absolute-form requests
//!   (what clients send to `HTTP_PROXY`);
//! * [`Relay::flaky`]: a reverse proxy in front of one upstream that first
//!   drops `drops` connections without answering (the client sees the
//!   connection closed, as on a reset), then forwards.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct Relay {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl Relay {
    pub fn proxy() -> Self {
        Self::start(None, 0)
    }

    /// In front of `upstream` (`http://host:port`), dropping the first `drops` connections.
    pub fn flaky(upstream: &str, drops: usize) -> Self {
        let authority = upstream.trim_start_matches("http://").to_owned();
        Self::start(Some(authority), drops)
    }

    fn start(upstream: Option<String>, drops: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < drops {
                    // Read the request, then hang up without a word.
                    let mut buf = [0u8; 1024];
                    let _ = (&conn).read(&mut buf);
                    drop(conn);
                    continue;
                }
                let (log, upstream) = (log.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = forward(conn, upstream.as_deref(), &log);
                });
            }
        });
        Self {
            url,
            seen,
            connections,
        }
    }

    /// Request lines forwarded so far (`METHOD target`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Connections accepted so far, dropped ones included.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn forward(
    client: TcpStream,
    upstream: Option<&str>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (authority, path) = match upstream {
        Some(a) => (a.to_owned(), target.to_owned()),
        None => {
            let rest = target.strip_prefix("http://").unwrap_or_default();
            let (a, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (
                a.to_owned(),
                if p.is_empty() { "/".into() } else { p.into() },
            )
        }
    };
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !(lower.starts_with("proxy-") || lower.starts_with("connection:")) {
            headers.push(line);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    log.lock()
        .map(|mut l| l.push(format!("{method} {target}")))
        .ok();
    let mut up = TcpStream::connect(&authority)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let mut client = client;
    client.write_all(&response)?;
    client.flush()
}
