//! `fixed-body-server [--port N]`: the limit the metadata-server benchmark
//! compares against (`bench/metadata_bench.py`): an HTTP/1.1 server on
//! 127.0.0.1 built like `wif-helper metadata-server` (hyper, a multi-thread
//! tokio runtime with one worker per CPU up to 4) that answers every request
//! with the same fixed body, the size of a metadata-server token answer,
//! and does nothing else. Prints `{"listen":"127.0.0.1:PORT"}` when ready.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;

/// As long as a token answer: `{"access_token":"ya29…","expires_in":…,"token_type":"Bearer"}`.
const BODY: &[u8] = br#"{"access_token":"ya29.c.fixed-body-server-0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000","expires_in":3599,"token_type":"Bearer"}"#;

fn main() -> std::process::ExitCode {
    let port: u16 = std::env::args()
        .skip_while(|a| a != "--port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fixed-body-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fixed-body-server: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{{\"listen\":\"{addr}\"}}");
        let _ = out.flush();
        drop(out);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
