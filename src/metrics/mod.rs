//! Metrics and health probes over HTTP (`--metrics-addr HOST:PORT`, `migrate` and `verify`).
//!
//! **What is measured** lives where it happens: the run's counters are the atomics of
//! [`Stats`] (shared by every stage), and a stage that may wedge (the writer's batch commit,
//! the reader's DynamoDB call) marks itself busy with an [`Activity`] guard: one counter of
//! calls in flight and the time of the last start or end, two relaxed atomics per call. The
//! batch commit time goes into a [`CommitTimes`] histogram (one observation per committed
//! page). Nothing else is paid on the hot path: the exposition is made at scrape time.
//!
//! **What is served** ([`server`]): a small hyper 1 HTTP/1 server, started before anything
//! else runs (a bind failure exits 2 naming the address) and kept for the process's life:
//! - `GET /metrics`: the Prometheus exposition ([`exposition`]), encoded by the
//!   `prometheus-client` crate from a collector that reads [`Stats`] on each scrape; the
//!   classic text format (0.0.4), or OpenMetrics when the scraper asks for it.
//! - `GET /healthz`: 200 while alive; 503 with a one-line reason when the writer or the
//!   reader has had a call in flight and no progress for longer than `--stall-limit`
//!   ([`health::liveness`]). Idle is healthy.
//! - `GET /readyz`: 200 once the load is done and, when following, the follower is caught
//!   up; 503 with the reason otherwise ([`health::readiness`]).
//!
//! Labels are bounded: `op` and `kind` are fixed sets, `shard` lists only the shards being
//! read now (a closed shard's series disappears), and nothing quotes the target, a key or a
//! credential.

pub mod exposition;
pub mod health;
pub mod server;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::metrics::histogram::Histogram;

pub use server::{serve, Server};

/// Default of `--stall-limit`: far above the longest single call of a healthy run (a large
/// batch commit, a DynamoDB call the SDK retries while throttled), while a call that hangs
/// without an error (a half-open connection, a stopped server) is reported within ten minutes.
/// Retries through a PostgreSQL outage count as progress ([`Activity::touch`]).
pub const DEFAULT_STALL_LIMIT_S: u64 = 600;

/// The flags of the metrics server, shared by `migrate` and `verify`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (/metrics) and health probes (/healthz, /readyz) on this
    /// address, e.g. 0.0.0.0:9185 (off by default)
    #[arg(long, value_name = "HOST:PORT", env = "DDB2PG_METRICS_ADDR")]
    pub metrics_addr: Option<String>,

    /// /healthz fails when the writer or the reader has had a call in flight and made no
    /// progress for longer than SECS (with --metrics-addr)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_STALL_LIMIT_S,
          value_parser = clap::value_parser!(u64).range(1..), requires = "metrics_addr")]
    pub stall_limit: u64,
}

/// The run's phase, as `ddb2pg_phase{phase=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Load = 1,
    Follow = 2,
    Done = 3,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Starting, Phase::Load, Phase::Follow, Phase::Done];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Load => "load",
            Phase::Follow => "follow",
            Phase::Done => "done",
        }
    }

    pub fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Load,
            2 => Phase::Follow,
            3 => Phase::Done,
            _ => Phase::Starting,
        }
    }
}

/// Milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One stage's calls that may wedge: how many are in flight, and when one last started or
/// ended (epoch ms).
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicU64,
    progress_ms: AtomicI64,
}

/// A call in flight; its end (drop) counts as progress.
#[must_use]
pub struct Busy<'a>(&'a Activity);

impl Activity {
    /// Mark a call in flight until the guard is dropped.
    pub fn begin(&self) -> Busy<'_> {
        self.progress_ms.store(now_ms(), Ordering::Relaxed);
        // Release: whoever sees the call in flight sees its start time too.
        self.in_flight.fetch_add(1, Ordering::Release);
        Busy(self)
    }

    /// Count as progress without ending the call: an attempt of it failed and is retried
    /// (a PostgreSQL outage the run rides out within `--pg-retry-for` is not a stall).
    pub fn touch(&self) {
        self.progress_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// When a call last started or ended (epoch ms; 0: never).
    pub fn progress_ms(&self) -> i64 {
        self.progress_ms.load(Ordering::Relaxed)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.progress_ms.store(now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Batch commit time in seconds: from 5 ms to about 82 s, doubling.
#[derive(Debug)]
pub struct CommitTimes(pub Histogram);

impl Default for CommitTimes {
    fn default() -> Self {
        CommitTimes(Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 15),
        ))
    }
}

impl CommitTimes {
    pub fn observe(&self, started: std::time::Instant) {
        self.0.observe(started.elapsed().as_secs_f64());
    }
}
