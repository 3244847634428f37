//! The HTTP side: one hyper 1 HTTP/1 server on `--metrics-addr`, bound before the run starts
//! (a bind failure is a configuration error, exit 2, naming the address) and aborted when the
//! [`Server`] is dropped at the end of the process's work.
//!
//! It answers `GET` only (405 otherwise), never reads a request body, caps the request head
//! (hyper's smallest read buffer, 8 KiB), gives a client 10 s to send it, and serves at most
//! [`MAX_CONNECTIONS`] connections at once. Its bodies quote counters and verdicts, never the
//! target or a credential.

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
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::exposition::{self, RunInfo};
use super::{health, now_ms, MetricsArgs};
use crate::error::{Error, Result};
use crate::progress::Stats;

/// Connections served at once (a scraper and two probes need three).
pub const MAX_CONNECTIONS: usize = 16;
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("metrics server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
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
            drop(permit);
        });
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
