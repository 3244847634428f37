//! A fault-injecting HTTP proxy on loopback, in front of the real DynamoDB Local.
//!
//! Each client connection carries one request (forwarded with `Connection: close`). Scan
//! requests are, by a seeded pseudo-random draw: answered with a throttling error (HTTP 400
//! ProvisionedThroughputExceededException), answered with HTTP 500, reset (TCP RST, no answer),
//! delayed, or forwarded untouched. Streams' GetRecords requests can be answered, instead of
//! forwarded, with ExpiredIteratorException (every `expire_every`-th one) or, after
//! `trim_after` of them, with TrimmedDataAccessException. Other requests are always forwarded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Shares in percent of Scan requests, and the largest added latency.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub throttle_pct: u64,
    pub error500_pct: u64,
    pub reset_pct: u64,
    pub max_delay_ms: u64,
    /// Answer every n-th GetRecords with ExpiredIteratorException (0: never).
    pub expire_every: u64,
    /// Answer every GetRecords after the first n with TrimmedDataAccessException.
    pub trim_after: Option<u64>,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults {
            throttle_pct: 0,
            error500_pct: 0,
            reset_pct: 0,
            max_delay_ms: 0,
            expire_every: 0,
            trim_after: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub errors500: AtomicU64,
    pub resets: AtomicU64,
    pub forwarded: AtomicU64,
    pub expired: AtomicU64,
    pub trimmed: AtomicU64,
}

pub struct FaultProxy {
    pub url: String,
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn draw(n: u64) -> u64 {
    // splitmix64
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Start the proxy in front of `upstream` (e.g. "http://127.0.0.1:8000").
pub async fn start(upstream: &str, faults: Faults) -> FaultProxy {
    let up: SocketAddr = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("upstream host:port");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let stats = Arc::new(ProxyStats::default());
    let st = stats.clone();
    let task = tokio::spawn(async move {
        let counter = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (st, counter, reads) = (st.clone(), counter.clone(), reads.clone());
            tokio::spawn(async move {
                let _ = handle(client, up, faults, st, counter, reads).await;
            });
        }
    });
    FaultProxy {
        url: format!("http://{addr}"),
        stats,
        task,
    }
}

async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    Ok(super::stream_double::read_request(s)
        .await?
        .map(|r| (r.head, r.body)))
}

async fn respond(
    s: &mut TcpStream,
    status: &str,
    error_type: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = format!("{{\"__type\":\"{error_type}\",\"message\":\"{message}\"}}");
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

async fn handle(
    mut client: TcpStream,
    up: SocketAddr,
    f: Faults,
    st: Arc<ProxyStats>,
    counter: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    st.requests.fetch_add(1, Ordering::Relaxed);
    if head.contains("DynamoDBStreams_20120810.GetRecords") {
        let n = reads.fetch_add(1, Ordering::Relaxed) + 1;
        if f.trim_after.is_some_and(|t| n > t) {
            st.trimmed.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut client,
                "400 Bad Request",
                "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException",
                "trimmed by the test proxy",
            )
            .await;
        }
        if f.expire_every > 0 && n.is_multiple_of(f.expire_every) {
            st.expired.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut client,
                "400 Bad Request",
                "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException",
                "expired by the test proxy",
            )
            .await;
        }
    }
    let is_scan = head.contains("DynamoDB_20120810.Scan");
    if is_scan {
        let r = draw(counter.fetch_add(1, Ordering::Relaxed));
        let pct = r % 100;
        if f.max_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis((r >> 8) % f.max_delay_ms)).await;
        }
        if pct < f.throttle_pct {
            st.throttled.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut client,
                "400 Bad Request",
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "throttled by the test proxy",
            )
            .await;
        }
        if pct < f.throttle_pct + f.error500_pct {
            st.errors500.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut client,
                "500 Internal Server Error",
                "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "injected by the test proxy",
            )
            .await;
        }
        if pct < f.throttle_pct + f.error500_pct + f.reset_pct {
            st.resets.fetch_add(1, Ordering::Relaxed);
            // SO_LINGER 0: close with a TCP RST, like a dropped connection.
            #[allow(deprecated)]
            client.set_linger(Some(Duration::ZERO))?;
            drop(client);
            return Ok(());
        }
    }
    st.forwarded.fetch_add(1, Ordering::Relaxed);
    // Forward with Connection: close, then pipe the response back until the server closes.
    let mut head_out = String::with_capacity(head.len() + 20);
    for line in head.trim_end().split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        head_out.push_str(line);
        head_out.push_str("\r\n");
    }
    head_out.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(up).await?;
    server.write_all(head_out.as_bytes()).await?;
    server.write_all(&body).await?;
    tokio::io::copy(&mut server, &mut client).await?;
    client.shutdown().await
}
