//! The DynamoDB Streams test double (tests/support/stream_double) as a standalone server, for
//! benchmarks of `ddb2pg migrate --follow` on many shards:
//!
//! ```text
//! cargo run --example stream_double -- --upstream http://127.0.0.1:8000 --shards 16 \
//!     [--listen 127.0.0.1:PORT] [--split-every SECS]
//! ```
//!
//! It prints its URL on stdout's first line (pass it as `--endpoint-url`), then serves until
//! killed, printing `ingested N` (records taken from the real stream so far) every second;
//! with `--split-every`, every SECS seconds the oldest open shard is split in two (the open
//! shards grow by one each time, and over time every shard is split). `--latency MS`: how long
//! each GetRecords takes (default 10; a remote endpoint's is tens of milliseconds).
//!
//! Commands on stdin put synthetic changes on the shards (DynamoDB Local takes only about 50
//! writes a second with a stream; see `stream_double::synthetic`), each answered by a line
//! `done N` on stdout:
//! - `steady RATE SECS PREFIX`: RATE new items a second (`PREFIX0`, `PREFIX1`, ...) for SECS;
//! - `burst N PREFIX`: N changes at once: new items, every tenth a REMOVE of one 31 before.

#[path = "../tests/support/stream_double/mod.rs"]
mod stream_double;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use stream_double::{synthetic, Config, StreamDouble};

const USAGE: &str = "usage: stream_double --upstream http://IP:PORT --shards N \
                     [--listen IP:PORT] [--split-every SECS] [--latency MS]";

struct Args {
    upstream: String,
    shards: usize,
    listen: Option<SocketAddr>,
    split_every: Option<u64>,
    latency_ms: Option<u64>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut upstream = None;
    let mut shards = None;
    let mut listen = None;
    let mut split_every = None;
    let mut latency_ms = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--upstream" => upstream = Some(value()?),
            "--shards" => {
                let v = value()?;
                shards = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--shards {v:?}: a whole number from 1"))?,
                )
            }
            "--listen" => {
                let v = value()?;
                listen = Some(v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?)
            }
            "--split-every" => {
                let v = value()?;
                split_every = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--split-every {v:?}: seconds, from 1"))?,
                )
            }
            "--latency" => {
                let v = value()?;
                latency_ms = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("--latency {v:?}: milliseconds"))?,
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        upstream: upstream.ok_or("--upstream is required")?,
        shards: shards.ok_or("--shards is required")?,
        listen,
        split_every,
        latency_ms,
    })
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stream_double: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut cfg = Config {
        shards: args.shards,
        listen: args.listen,
        ..Config::default()
    };
    if let Some(ms) = args.latency_ms {
        cfg.latency = Duration::from_millis(ms);
    }
    let double = match StreamDouble::start(&args.upstream, cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stream_double: cannot start: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", double.url());
    let _ = std::io::stdout().flush();
    let commands = double.clone();
    std::thread::spawn(move || serve_commands(&commands));
    let counter = double.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        println!("ingested {}", counter.ingested());
        let _ = std::io::stdout().flush();
    });
    loop {
        match args.split_every {
            Some(secs) => {
                std::thread::sleep(Duration::from_secs(secs));
                // The oldest open shard: over time every shard is split, one at a time.
                let Some(oldest) = double.shard_ids().into_iter().find(|s| s.open) else {
                    continue;
                };
                match double.split(&oldest.id) {
                    Ok((a, b)) => eprintln!(
                        "stream_double: split {} into {a} and {b}; {} records ingested",
                        oldest.id,
                        double.ingested()
                    ),
                    Err(e) => eprintln!("stream_double: {e}"),
                }
            }
            None => std::thread::sleep(Duration::from_secs(3600)),
        }
    }
}

/// Run the stdin commands (see the module's documentation) until stdin closes.
fn serve_commands(double: &StreamDouble) {
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let done = match words.as_slice() {
            ["steady", rate, secs, prefix] => match (rate.parse::<u64>(), secs.parse::<f64>()) {
                (Ok(rate), Ok(secs)) => steady(double, rate, secs, prefix),
                _ => None,
            },
            ["burst", n, prefix] => n.parse::<u64>().ok().map(|n| burst(double, n, prefix)),
            _ => None,
        };
        match done {
            Some(n) => println!("done {n}"),
            None => println!("error: unknown command {:?}", line.trim()),
        }
        let _ = std::io::stdout().flush();
        line.clear();
    }
}

/// RATE new items a second for SECS, in 10 ms ticks.
fn steady(double: &StreamDouble, rate: u64, secs: f64, prefix: &str) -> Option<u64> {
    let start = std::time::Instant::now();
    let mut made = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let batch: Vec<_> = (made..due)
            .map(|i| {
                let ts = synthetic::now_ms();
                synthetic::record(&format!("{prefix}{i}"), i, None, false, ts)
            })
            .collect();
        made = due.max(made);
        double.inject(batch);
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(made)
}

/// N changes at once: new items, every tenth a REMOVE of the item made 31 before.
fn burst(double: &StreamDouble, n: u64, prefix: &str) -> u64 {
    let ts = synthetic::now_ms();
    let batch = (0..n)
        .map(|i| {
            if i % 10 == 9 && i >= 31 {
                synthetic::record(
                    &format!("{prefix}{}", i - 31),
                    i - 31,
                    Some(i - 31),
                    true,
                    ts,
                )
            } else {
                synthetic::record(&format!("{prefix}{i}"), i, None, false, ts)
            }
        })
        .collect();
    double.inject(batch);
    n
}
