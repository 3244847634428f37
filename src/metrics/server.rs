//! The HTTP side: one hyper 1 HTTP/1 server on `--metrics-addr`, bound before the run starts
//! (a bind failure is a configuration error, exit 2, naming the address) and aborted when the
//! [`Server`] is dropped at the end of the process's work.
//!
//! It answers `GET` only (405 otherwise), never reads a request body, caps the request head
//! (hyper's smallest read buffer, 8 KiB), gives a client 10 s to send it, and keeps at most
//! [`MAX_CONNECTIONS`] connections open: it never stops accepting, and a new connection past
//! the limit closes the oldest one, so that slow or idle clients (a slowloris, a flood) cost a
//! bounded memory and can never lock the probes out (the kubelet would kill a healthy run).
//! Its bodies quote counters and verdicts, never the target or a credential.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::exposition::{self, RunInfo};
use super::{health, now_ms, MetricsArgs};
use crate::error::{Error, Result};
use crate::progress::Stats;

/// Connections kept open at once (a scraper and two probes need three); the oldest gives way
/// to a new one.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running server; dropping it stops accepting.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a request is answered from.
struct State {
    stats: Arc<Stats>,
    registry: Registry,
    stall_limit_s: u64,
    follows: bool,
}

/// Start serving when `--metrics-addr` is given. `follows`: the run follows the stream
/// (`/readyz` then waits for the follower to catch up).
pub async fn serve(
    args: &MetricsArgs,
    stats: Arc<Stats>,
    info: RunInfo,
    follows: bool,
) -> Result<Option<Server>> {
    let Some(addr) = args.metrics_addr.as_deref() else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(format!("--metrics-addr {addr}: cannot listen there: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::config(format!("--metrics-addr {addr}: {e}")))?;
    let state = Arc::new(State {
        registry: exposition::registry(stats.clone(), info, args.stall_limit),
        stats,
        stall_limit_s: args.stall_limit,
        follows,
    });
    tracing::info!("serving /metrics, /healthz and /readyz on {bound}");
    let task = tokio::spawn(accept(listener, state));
    Ok(Some(Server { addr: bound, task }))
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    let mut open: VecDeque<JoinHandle<()>> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("metrics server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.retain(|c| !c.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
            }
        }
        open.push_back(tokio::spawn(connection(stream, state.clone())));
    }
}

/// Serve one connection until the client closes it or stalls.
async fn connection(stream: tokio::net::TcpStream, state: Arc<State>) {
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&state, &req)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(8192)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("metrics server: {e}");
    }
}

fn answer(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let (body, content_type) = exposition::encode(&state.registry, openmetrics);
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        "/healthz" => verdict(health::liveness(
            &state.stats,
            state.stall_limit_s,
            now_ms(),
        )),
        "/readyz" => verdict(health::readiness(&state.stats, state.follows)),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz and /readyz are served\n".into(),
        ),
    }
}

fn verdict(v: std::result::Result<(), String>) -> Response<Full<Bytes>> {
    match v {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use super::*;

    /// GET `path` with a deadline: the status line, or why not.
    fn probe(
        addr: SocketAddr,
        path: &str,
        within: Duration,
    ) -> std::result::Result<String, String> {
        let mut s = TcpStream::connect_timeout(&addr, within).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(within))
            .map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out.lines().next().unwrap_or("").to_string())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn slow_and_idle_clients_never_lock_the_probes_out() {
        let args = MetricsArgs {
            metrics_addr: Some("127.0.0.1:0".into()),
            stall_limit: 600,
        };
        let server = serve(&args, Arc::new(Stats::default()), RunInfo::default(), false)
            .await
            .unwrap()
            .unwrap();
        let addr = server.addr;
        tokio::task::spawn_blocking(move || {
            // Slowloris: more clients than the server serves at once, each holding a
            // connection with half a request head; and as many idle keep-alive ones.
            let mut held = Vec::new();
            for i in 0..2 * MAX_CONNECTIONS + 8 {
                let mut s = TcpStream::connect(addr).unwrap();
                let head: &[u8] = if i % 2 == 0 {
                    b"GET /healthz HTTP/1.1\r\nHo"
                } else {
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                };
                s.write_all(head).unwrap();
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(200));
            for path in ["/healthz", "/readyz", "/metrics"] {
                let t0 = Instant::now();
                let got = probe(addr, path, Duration::from_secs(3));
                assert!(
                    got.as_deref().is_ok_and(|l| l.starts_with("HTTP/1.1 ")),
                    "{path} with {} clients holding connections: {got:?} after {:?}",
                    held.len(),
                    t0.elapsed()
                );
            }
        })
        .await
        .unwrap();
    }
}
