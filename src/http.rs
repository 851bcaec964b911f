//! The HTTP client and the one retry policy for every Google call.
//!
//! [`client`] builds the `reqwest` client used for Google STS and IAM
//! Credentials: rustls with the platform's trust store, a 3 s connect
//! timeout, `wif-helper/<version>` as user agent, and `HTTPS_PROXY` /
//! `HTTP_PROXY` / `NO_PROXY` honoured (reqwest reads them by default).
//! It is built only on a cache miss, so a cache hit never sets up TLS.
//!
//! It never follows a redirect: a 307 or 308 would make it send the request
//! again, body and all (the subject token, a federated token), to wherever
//! the `Location` says. A 3xx is an error naming the service, its host and
//! the host it pointed to, and it is not retried.
//!
//! [`send_with_retry`] is the retry policy: 429, 500, 502, 503, 504,
//! connection failures and timeouts are retried with full-jitter exponential
//! backoff (100 ms base, doubling, capped at 2 s, at most [`MAX_ATTEMPTS`]
//! attempts); other statuses, including every other 4xx, are returned at
//! once for the caller to explain. Nothing sleeps or waits past the caller's
//! deadline. Error messages name the service and host, never a URL query,
//! header or body.

use crate::deadline::Deadline;
use crate::error::{Error, ErrorCode, Result};
use crate::text::{error_chain as chain, quote};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// TCP + TLS connection setup limit.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The `User-Agent` of every Google call.
pub(crate) const USER_AGENT: &str = concat!("wif-helper/", env!("CARGO_PKG_VERSION"));
/// Attempts per call, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// The first backoff ceiling.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The largest backoff ceiling.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// The largest upstream answer read, from Google or AWS: token, STS,
/// credential and metadata answers are a few kilobytes, so anything larger
/// is a broken or hostile server (or proxy) and is refused.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Don't start an attempt with less time than this left.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// Builds the client for Google calls; `request_timeout` bounds any single
/// request (each attempt of [`send_with_retry`] sets a tighter one).
pub(crate) fn client(request_timeout: Duration) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none());
    // The static binary resolves without the C library (`dns.rs`).
    #[cfg(feature = "static-dns")]
    let builder = builder.dns_resolver(std::sync::Arc::new(crate::dns::Resolver::default()));
    builder.build().map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!(
                "cannot set up the HTTPS client: {}",
                chain(&e.without_url())
            ),
        )
    })
}

/// A final HTTP answer: its status and body.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The body (may hold a token: never log it).
    pub(crate) body: Vec<u8>,
    /// How long the server asked to wait before a retry (`Retry-After`).
    pub(crate) retry_after: Option<Duration>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .finish()
    }
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// What went wrong below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportFailure {
    /// The request could not be built (a bad URL): a usage error, not retried.
    Invalid,
    /// Connect or response timeout: retried, [`ErrorCode::Timeout`].
    Timeout,
    /// Refused, reset, DNS, TLS, truncated body: retried, [`ErrorCode::NetworkError`].
    Network,
    /// A redirect loop or an undecodable answer: not retried.
    Fatal,
}

impl TransportFailure {
    /// Classifies a `reqwest` error.
    pub(crate) fn of(e: &reqwest::Error) -> Self {
        Self::from_flags(
            e.is_builder(),
            e.is_timeout(),
            e.is_redirect() || e.is_decode(),
        )
    }

    /// The classification table, separated from `reqwest` for tests.
    pub(crate) fn from_flags(builder: bool, timeout: bool, fatal: bool) -> Self {
        if builder {
            Self::Invalid
        } else if timeout {
            Self::Timeout
        } else if fatal {
            Self::Fatal
        } else {
            Self::Network
        }
    }

    /// Whether another attempt may succeed.
    pub(crate) fn is_retryable(self) -> bool {
        matches!(self, Self::Timeout | Self::Network)
    }
}

/// The backoff ceiling before retry number `retry` (0 for the first retry):
/// `BACKOFF_BASE * 2^retry`, at most [`BACKOFF_CAP`].
pub(crate) fn backoff_ceiling(retry: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

/// Full jitter: a pause uniformly drawn (by `random`) from
/// `0..=backoff_ceiling(retry)`, in whole milliseconds.
pub(crate) fn backoff(retry: u32, random: u64) -> Duration {
    let ceiling = u64::try_from(backoff_ceiling(retry).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(random % ceiling.saturating_add(1))
}

/// A random number for jitter: std's per-instance random hash keys, no crate.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Sends the request `make` builds, retrying as the module describes, and
/// returns the final status and body (a success, a non-retryable status, or
/// the last retryable status when attempts or time run out). `what` names
/// the service in messages, e.g. `Google STS`.
pub(crate) async fn send_with_retry(
    deadline: Deadline,
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Response> {
    let mut attempt: u32 = 0;
    loop {
        if deadline.left() < MIN_ATTEMPT {
            return Err(Error::new(
                ErrorCode::Timeout,
                format!("no time left to call {what} before the deadline (raise --timeout-millis)"),
            ));
        }
        let (client, request) = make().timeout(deadline.google_attempt()).build_split();
        let request = request.map_err(|e| {
            Error::invalid(format!(
                "cannot build the {what} request: {}",
                chain(&e.without_url())
            ))
        })?;
        let host = request.url().host_str().unwrap_or("?").to_owned();
        let started = Instant::now();
        let outcome = match client.execute(request).await {
            Ok(resp) if resp.status().is_redirection() => {
                tracing::debug!(
                    service = what,
                    host,
                    status = resp.status().as_u16(),
                    "redirect"
                );
                return Err(redirect_error(what, &host, &resp));
            }
            Ok(resp) => read_body(resp).await,
            Err(e) => Err(e),
        };
        attempt += 1;
        let retryable = match &outcome {
            Ok(r) => is_retryable_status(r.status),
            Err(e) => TransportFailure::of(e).is_retryable(),
        };
        tracing::debug!(
            service = what,
            host,
            attempt,
            status = outcome.as_ref().ok().map(|r| r.status),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "HTTP attempt"
        );
        // The server's Retry-After is a floor for the pause: retrying sooner
        // would be refused again. When it does not fit in the deadline, the
        // last answer is the answer.
        let asked = outcome.as_ref().ok().and_then(|r| r.retry_after);
        let pause = backoff(attempt - 1, random()).max(asked.unwrap_or_default());
        let room = deadline.left();
        if !retryable || attempt >= MAX_ATTEMPTS || pause + MIN_ATTEMPT >= room {
            if asked.is_some_and(|a| a + MIN_ATTEMPT >= room) {
                tracing::debug!(
                    service = what,
                    host,
                    "Retry-After does not fit in the deadline"
                );
            }
            return outcome.map_err(|e| transport_error(what, &host, &e, started.elapsed()));
        }
        if let Err(e) = &outcome {
            tracing::debug!(service = what, host, error = %describe(e), "retrying");
        }
        tokio::time::sleep(pause).await;
        if deadline.left() < MIN_ATTEMPT {
            // The pause ran long (a busy machine woke the task late): the
            // last answer is the answer, not a bare "no time left".
            return outcome.map_err(|e| transport_error(what, &host, &e, started.elapsed()));
        }
    }
}

/// A `reqwest` error without its URL: what happened and the causes.
fn describe(e: &reqwest::Error) -> String {
    let mut out = kind(e).to_owned();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn kind(e: &reqwest::Error) -> &'static str {
    match TransportFailure::of(e) {
        TransportFailure::Invalid => "invalid request",
        TransportFailure::Timeout => "timed out",
        TransportFailure::Fatal => "unusable response",
        TransportFailure::Network if e.is_connect() => "connection failed",
        TransportFailure::Network => "request failed",
    }
}

async fn read_body(mut resp: reqwest::Response) -> std::result::Result<Response, reqwest::Error> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            parse_retry_after(
                v,
                crate::clock::Clock::now_system(&crate::clock::SystemClock),
            )
        });
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(Response {
        status,
        body,
        retry_after,
    })
}

/// `Retry-After`: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3) from
/// which the wait is counted at `now`. Unparseable values are ignored.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A 3xx answer: never followed (the request would be re-sent with its
/// token), never retried. Names the host the `Location` points to, not its
/// path or query.
fn redirect_error(what: &str, host: &str, resp: &reqwest::Response) -> Error {
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| resp.url().join(l).ok())
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{}://{h}:{p}", u.scheme()),
                None => format!("{}://{h}", u.scheme()),
            })
        })
        .map(|to| format!(" to {}", quote(&to)))
        .unwrap_or_default();
    Error::new(
        ErrorCode::GoogleError,
        format!(
            "{what} at {host} answered with a redirect (HTTP {}){to}; wif-helper does not \
             follow redirects, so the request and its token were not sent on: check the \
             endpoint URL (--token-url, --iam-credentials-url) and any proxy in the way",
            resp.status().as_u16()
        ),
    )
}

fn transport_error(what: &str, host: &str, e: &reqwest::Error, took: Duration) -> Error {
    let detail = describe(e);
    match TransportFailure::of(e) {
        TransportFailure::Timeout => Error::new(
            ErrorCode::Timeout,
            format!(
                "{what} at {host} did not answer in time ({} ms; {detail}); check connectivity \
                 and HTTPS_PROXY/NO_PROXY, or raise --timeout-millis",
                took.as_millis()
            ),
        ),
        TransportFailure::Network => Error::new(
            ErrorCode::NetworkError,
            format!(
                "could not reach {what} at {host} ({detail}); check connectivity, DNS and HTTPS_PROXY/NO_PROXY"
            ),
        ),
        TransportFailure::Invalid => {
            Error::invalid(format!("cannot call {what} at {host}: {detail}"))
        }
        TransportFailure::Fatal => Error::new(
            ErrorCode::GoogleError,
            format!("{what} at {host} gave an unusable answer ({detail})"),
        ),
    }
}

/// A scripted HTTP/1.1 server on loopback for unit tests: answers each
/// connection with the next `(status, body)` and records the raw requests.
#[cfg(test)]
pub(crate) mod fake {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    pub(crate) struct FakeServer {
        pub url: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl FakeServer {
        pub(crate) fn start(script: Vec<(u16, String)>) -> Self {
            Self::with_headers(
                script
                    .into_iter()
                    .map(|(status, body)| (status, String::new(), body))
                    .collect(),
            )
        }

        /// Like [`FakeServer::start`], each answer with extra header lines
        /// (`name: value\r\n` each).
        pub(crate) fn with_headers(script: Vec<(u16, String, String)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            let url = format!(
                "http://{}",
                listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
            );
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            std::thread::spawn(move || {
                for (status, headers, body) in script {
                    let Ok((stream, _)) = listener.accept() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    let mut head = String::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut req_body = vec![0u8; len];
                    let _ = reader.read_exact(&mut req_body);
                    head.push_str(&String::from_utf8_lossy(&req_body));
                    if let Ok(mut v) = seen.lock() {
                        v.push(head);
                    }
                    let mut stream = reader.into_inner();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.flush();
                }
            });
            Self { url, requests }
        }

        pub(crate) fn requests(&self) -> Vec<String> {
            self.requests.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests;
