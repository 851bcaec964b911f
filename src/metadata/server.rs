//! The listener: HTTP/1.1 with hyper, one task per connection.
//!
//! * **Who may ask** is decided once per connection, as it is accepted
//!   ([`super::peer`]); a refused connection gets 403 and is closed.
//! * **Bounded**: at most [`Limits::max_connections`] connections (one more
//!   is answered 503 and closed, by one of at most [`MAX_TURNING_AWAY`]
//!   short tasks; past those, closed unanswered); a connection must send a request's
//!   headers within [`Limits::header_timeout`] (which also closes idle
//!   keep-alive connections), at most [`Limits::max_header_bytes`] of them;
//!   bodies are refused. A slow or malformed client only ever holds its own
//!   task.
//! * **Shutdown**: when `shutdown` resolves the listener closes, requests in
//!   flight are answered, idle connections are closed, and [`Bound::serve`]
//!   returns once all are done (or after `grace`).

use super::peer::{self, Policy, Verdict};
use super::routes::{App, Ask, Reply};
use crate::error::{Error, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Resource limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Time to send a request's headers (and the longest idle keep-alive).
    pub(crate) header_timeout: Duration,
    /// Bytes of request line and headers.
    pub(crate) max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub(crate) struct Bound {
    listener: TcpListener,
    local: SocketAddr,
    policy: Policy,
    limits: Limits,
}

/// Binds `addr`. A non-loopback address needs `policy.allow_remote`.
pub(crate) async fn bind(addr: SocketAddr, policy: Policy, limits: Limits) -> Result<Bound> {
    if !addr.ip().is_loopback() && !policy.allow_remote {
        return Err(Error::invalid(format!(
            "--listen {addr} is not a loopback address: other hosts could ask it for tokens; pass \
             --allow-remote if that is what you want (docs/security.md), or listen on 127.0.0.1"
        )));
    }
    if limits.max_connections == 0 {
        return Err(Error::invalid("--max-connections must be at least 1"));
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::invalid(format!(
            "cannot listen on {addr}: {e}; choose another --listen address or port (port 0 picks a free one)"
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::invalid(format!("cannot listen on {addr}: {e}")))?;
    Ok(Bound {
        listener,
        local,
        policy,
        limits,
    })
}

/// Connections being turned away at once (over the cap): each is answered
/// and drained in a task of its own for at most half a second; past this
/// many more, one is closed unanswered.
const MAX_TURNING_AWAY: usize = 64;

/// Answers a connection that will not be served (`status`, `body`, in the
/// metadata server's shape) and closes it, reading and dropping a little of
/// what it sent meanwhile: closing with its request unread would reset the
/// connection before the client read the answer. Bounded in time and bytes.
async fn turn_away(mut stream: tokio::net::TcpStream, status: &str, body: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = format!(
        "HTTP/1.1 {status}\r\nmetadata-flavor: Google\r\ncontent-type: text/plain; \
         charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    let (mut unread, mut sink) = ((&mut stream).take(16 * 1024), tokio::io::sink());
    let drain = tokio::io::copy(&mut unread, &mut sink);
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

impl Bound {
    /// The address it listens on (the port picked when 0 was asked).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves `app` until `shutdown` resolves, then drains (up to `grace`).
    pub(crate) async fn serve(
        self,
        app: Arc<App>,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) {
        let Self {
            listener,
            local,
            policy,
            limits,
        } = self;
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let turning_away = Arc::new(Semaphore::new(MAX_TURNING_AWAY));
        let graceful = GracefulShutdown::new();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8 * 1024))
            .max_headers(64)
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, don't spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many connections");
                if let Ok(turning) = Arc::clone(&turning_away).try_acquire_owned() {
                    tokio::spawn(async move {
                        turn_away(stream, "503 Service Unavailable", "too many connections\n")
                            .await;
                        drop(turning);
                    });
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            // The address this connection reached: the listener's, unless it
            // listens on 0.0.0.0 or [::], where the peer's socket row names
            // the concrete address (127.0.0.1, say).
            let here = stream.local_addr().unwrap_or(local);
            let app = Arc::clone(&app);
            let serving = http.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // Decided before a byte is read: a refused peer is answered
                // and let go at once, and cannot sit on a permit until the
                // header timeout to starve the user it is not.
                if let Verdict::Refused(why) = peer::verdict(policy, here, peer).await {
                    tracing::warn!(%peer, why = why.as_str(), "connection refused");
                    turn_away(stream, "403 Forbidden", &format!("{why}\n")).await;
                    drop(permit);
                    return;
                }
                let remote = !peer::unmapped(peer).ip().is_loopback();
                let service = service_fn(move |req: Request<Incoming>| {
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(respond(&app, remote, &req).await) }
                });
                let conn = watcher.watch(serving.serve_connection(TokioIo::new(stream), service));
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("shutting down: finishing requests in flight");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX), "connections still open after the grace period; closing them");
            }
        }
    }
}

/// Answers one request of a connection the peer check let in; `remote`
/// when it comes from another host.
async fn respond(app: &App, remote: bool, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let h = req.headers();
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let ask = Ask {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        flavor: h.get("metadata-flavor").map(HeaderValue::as_bytes),
        forwarded: h.contains_key("x-forwarded-for") || h.contains_key(header::FORWARDED),
        // An absolute-form request line (`GET http://name/…`) names the
        // host itself, and wins over the header (RFC 9112 §3.2.2).
        host: req
            .uri()
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| h.get(header::HOST).map(HeaderValue::as_bytes)),
        has_body,
        remote,
    };
    let reply = app.answer(&ask).await;
    tracing::debug!(
        method = %req.method(),
        path = req.uri().path(),
        status = reply.status,
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "metadata request"
    );
    to_response(reply)
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.reserve(7);
    h.insert("metadata-flavor", HeaderValue::from_static("Google"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    h.insert(header::SERVER, HeaderValue::from_static("wif-helper"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if reply.status == 405 {
        h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if reply.close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
