//! A test double of the DynamoDB Streams API that serves MANY shards (DynamoDB Local serves
//! one), in front of the real DynamoDB Local.
//!
//! An HTTP server on loopback forwards every request to DynamoDB Local untouched (DescribeTable's
//! LatestStreamArn included), except DescribeStream, GetShardIterator and GetRecords of the
//! stream it serves, which it answers itself in AWS JSON 1.0. The stream served is the one
//! named in [`Config::stream_arn`], or else the first one a client asks about (DescribeStream or
//! GetShardIterator); calls about other streams go upstream too.
//!
//! - **Fan-out** (`ingest`): a task reads the real stream (following its shard lineage) every
//!   ~100 ms and puts each record, in order, on one of N virtual shards by a stable hash of its
//!   `Keys` (FNV-1a of the keys in name order). Each open shard owns a hash range, so a key's
//!   records are on one shard, in order. Records keep their images, eventName and eventID;
//!   ApproximateCreationDateTime becomes the ingest time (with milliseconds) if
//!   [`Config::stamp_now`], since DynamoDB Local rounds it to the minute.
//! - **Model** (`model`): sequence numbers are decimal strings of growing length (900 ... 1000
//!   ... 10000 ...), increasing within a shard and along a lineage; `split` closes a shard at its
//!   last record and gives each of two children half of its hash range; `trim` drops a shard's
//!   oldest records; `forget` unlists a closed shard. Iterators are opaque checksummed tokens
//!   (shard, position, issue time, nonce), validated on use.
//! - **API** (`api`): Limit, paging (ExclusiveStartShardId / LastEvaluatedShardId), AWS's
//!   errors (ValidationException, ResourceNotFoundException, TrimmedDataAccessException,
//!   ExpiredIteratorException, LimitExceededException), empty pages before unseen records, no
//!   NextShardIterator once a closed shard is read to its end, and per-shard figures
//!   ([`Stats`]): calls, concurrent calls, calls per second, throttles, empty pages.
//!
//! The server runs on a thread of its own (its own tokio runtime), so the handle is used alike
//! from synchronous and asynchronous code; it stops when the last clone of the handle is dropped.
//! `examples/stream_double.rs` runs it standalone for benchmarks, where [`synthetic`] changes
//! stand in for writes DynamoDB Local cannot take fast enough.

#![allow(dead_code)]

mod api;
mod http;
mod ingest;
mod model;
pub mod synthetic;

/// One HTTP/1.1 request read off a connection (the fault proxy reads its requests alike).
#[allow(unused_imports)] // the example does not use it
pub use http::{read_request, Request};
#[allow(unused_imports)] // the test suite and the example use different parts
pub use model::{ShardInfo, ShardStats, Stats};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::Notify;

/// How the double behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Virtual shards at the start.
    pub shards: usize,
    /// Empty pages (each with a NextShardIterator) answered each time a reader reaches records
    /// no reader was shown before, as AWS documents it may.
    pub empty_pages: u32,
    /// Share of GetRecords calls answered LimitExceededException, in percent (random).
    pub throttle_pct: u64,
    /// GetRecords calls a shard accepts per second; the ones above get LimitExceededException
    /// (AWS: about 5).
    pub max_calls_per_shard_per_sec: Option<u32>,
    /// Iterators expire after this (AWS: 15 minutes).
    pub iterator_ttl: Duration,
    /// ApproximateCreationDateTime = the time the double read the record (DynamoDB Local's is
    /// rounded down to the minute).
    pub stamp_now: bool,
    /// How long a GetRecords call takes (so concurrent calls overlap, as on AWS).
    pub latency: Duration,
    /// The stream to serve; None: the first one a client asks about.
    pub stream_arn: Option<String>,
    /// Access key ID and region of the upstream calls when `stream_arn` is given (otherwise
    /// those of the client's first call): DynamoDB Local keeps tables per key and region.
    pub credentials: (String, String),
    /// Where to listen; None: 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            shards: 4,
            empty_pages: 0,
            throttle_pct: 0,
            max_calls_per_shard_per_sec: None,
            iterator_ttl: Duration::from_secs(15 * 60),
            stamp_now: true,
            latency: Duration::from_millis(10),
            stream_arn: None,
            credentials: ("ddb2pglocal".into(), "us-east-1".into()),
            listen: None,
        }
    }
}

/// State shared by the server, the ingest task and the handles.
struct Shared {
    cfg: Config,
    up: SocketAddr,
    state: Mutex<model::State>,
    wake: Notify,
    /// Ingest rounds completed (with a stream to read).
    rounds: AtomicU64,
    ingested: AtomicU64,
    paused: AtomicBool,
    throttle_pct: AtomicU64,
    cred: Mutex<(String, String)>,
    learning: tokio::sync::Mutex<()>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, model::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cred(&self) -> (String, String) {
        self.cred.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn throttle_pct(&self) -> u64 {
        self.throttle_pct.load(Ordering::SeqCst)
    }

    /// Whether the double serves `arn`; the first stream asked about (that exists upstream)
    /// becomes the one served, once a first ingest round has read what it holds.
    async fn serves(&self, arn: &str, req: &http::Request) -> bool {
        if let Some(a) = &self.lock().arn {
            return a == arn;
        }
        let _one = self.learning.lock().await;
        if let Some(a) = &self.lock().arn {
            return a == arn;
        }
        let cred = req
            .credential()
            .unwrap_or_else(|| self.cfg.credentials.clone());
        let target = "DynamoDBStreams_20120810.DescribeStream";
        let Ok(v) = http::call(self.up, &cred, target, &json!({ "StreamArn": arn })).await else {
            return false; // forwarded: the client gets DynamoDB Local's own answer
        };
        *self.cred.lock().unwrap_or_else(|p| p.into_inner()) = cred;
        {
            let mut st = self.lock();
            st.arn = Some(arn.to_string());
            st.meta = Some(ingest::meta_of(&v));
        }
        self.first_round().await;
        true
    }

    /// Wake the ingest task and wait (up to 10 s) for a round that saw the stream.
    async fn first_round(&self) {
        let seen = self.rounds.load(Ordering::SeqCst);
        self.wake.notify_one();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.rounds.load(Ordering::SeqCst) <= seen
            && Instant::now() < deadline
            && !self.paused.load(Ordering::SeqCst)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Stops the server's thread when the last handle goes.
struct Inner {
    shared: Arc<Shared>,
    url: String,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// The handle of a running double (clones share it).
#[derive(Clone)]
pub struct StreamDouble {
    inner: Arc<Inner>,
}

impl StreamDouble {
    /// Start a double in front of DynamoDB Local at `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str, cfg: Config) -> std::io::Result<StreamDouble> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let up: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| bad(format!("upstream {upstream:?} is not http://IP:PORT: {e}")))?;
        if cfg.shards == 0 {
            return Err(bad("shards must be at least 1".into()));
        }
        let listener =
            std::net::TcpListener::bind(cfg.listen.unwrap_or(([127, 0, 0, 1], 0).into()))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let secret = now_ms() ^ (u64::from(std::process::id()) << 32) ^ cfg.shards as u64;
        let mut state = model::State::new(cfg.shards, secret, now_ms());
        state.arn = cfg.stream_arn.clone();
        let shared = Arc::new(Shared {
            up,
            state: Mutex::new(state),
            wake: Notify::new(),
            rounds: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            throttle_pct: AtomicU64::new(cfg.throttle_pct),
            cred: Mutex::new(cfg.credentials.clone()),
            learning: tokio::sync::Mutex::new(()),
            cfg,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("stream-double".into())
            .spawn(move || rt.block_on(run(sh, listener, rx)))?;
        Ok(StreamDouble {
            inner: Arc::new(Inner {
                shared,
                url,
                stop: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL for clients (DynamoDB and Streams alike).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The stream served (None until a client asked about one).
    pub fn stream_arn(&self) -> Option<String> {
        self.shared().lock().arn.clone()
    }

    /// Every listed shard (forgotten ones are not), in creation order.
    pub fn shard_ids(&self) -> Vec<ShardInfo> {
        self.shared().lock().infos()
    }

    /// Close `shard` at its last record; returns its two children, which take the halves of
    /// its hash range (new records of its keys go to them).
    pub fn split(&self, shard: &str) -> Result<(String, String), String> {
        self.shared().lock().split(shard)
    }

    /// Drop the `n` oldest records of `shard` (past retention); returns how many were dropped.
    pub fn trim(&self, shard: &str, n: usize) -> Result<usize, String> {
        self.shared().lock().trim(shard, n)
    }

    /// Every iterator issued so far answers ExpiredIteratorException.
    pub fn expire_iterators(&self) {
        let mut st = self.shared().lock();
        st.expired_below = st.iter_nonce;
    }

    /// Unlist a closed shard; reading it answers ResourceNotFoundException.
    pub fn forget(&self, shard: &str) -> Result<(), String> {
        self.shared().lock().forget(shard)
    }

    /// Stop (true) or resume (false) reading the real stream.
    pub fn pause_ingest(&self, paused: bool) {
        self.shared().paused.store(paused, Ordering::SeqCst);
        if !paused {
            self.shared().wake.notify_one();
        }
    }

    pub fn set_throttle_pct(&self, pct: u64) {
        self.shared().throttle_pct.store(pct, Ordering::SeqCst);
    }

    /// Records read from the real stream so far.
    pub fn ingested(&self) -> u64 {
        self.shared().ingested.load(Ordering::SeqCst)
    }

    /// Wait until `n` records were ingested; false on timeout.
    pub async fn wait_ingested(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.ingested() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// `wait_ingested` for synchronous code.
    pub fn wait_ingested_blocking(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.ingested() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Per-shard GetRecords figures (forgotten shards included).
    pub fn stats(&self) -> Stats {
        self.shared().lock().stats()
    }

    /// The error of the last ingest round, if it failed (e.g. the stream was deleted).
    pub fn ingest_error(&self) -> Option<String> {
        self.shared().lock().last_error.clone()
    }
}

async fn run(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    tokio::spawn(ingest::run(shared.clone()));
    let accept = async {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let sh = shared.clone();
            tokio::spawn(async move {
                let _ = api::serve(sh, client).await;
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = stop => {}
    }
}
