//! A real Prometheus server of a test's own: a temporary config scraping one target every
//! second, its TSDB in a temp dir, on a free loopback port; queried through its HTTP API
//! (`/api/v1/query`), stopped (SIGKILL, then reaped) on drop. Also `get`, a minimal HTTP/1.1
//! GET over a std `TcpStream` (the tests' only HTTP client: no client library is needed for a
//! loopback GET).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free loopback port (bound and released: a race with other processes is unlikely).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET `path` from `addr` (HOST:PORT): the status and the body; None when it cannot connect.
pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    get_with(addr, path, &[])
}

/// GET with extra header lines (`Name: value`).
pub fn get_with(addr: &str, path: &str, headers: &[&str]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// A chunked body, joined.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    pub addr: String,
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    /// Start Prometheus scraping `target` (HOST:PORT, path /metrics) every second; returns
    /// once it answers ready.
    pub fn start(target: &str) -> Prometheus {
        let port = free_port();
        let dir = super::temp_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ddb2pg\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (scripts/setup.sh installs it)");
        let p = Prometheus { addr, child, dir };
        let t0 = Instant::now();
        while get(&p.addr, "/-/ready").is_none_or(|(code, _)| code != 200) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "prometheus not ready after 60 s: {}",
                std::fs::read_to_string(p.dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query: the `data.result` array.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (code, body) = get(&self.addr, &path).expect("query prometheus");
        assert_eq!(code, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).expect("prometheus answers JSON");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a query returning one series (None: no series).
    pub fn value(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql);
        assert!(r.len() <= 1, "{promql}: more than one series: {r:?}");
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
