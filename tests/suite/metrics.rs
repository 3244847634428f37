//! `--metrics-addr`: a real Prometheus scrapes a load and its follow, and what it stored equals
//! the run's report; promtool accepts the exposition; /readyz follows the run (loading, then
//! following and not caught up, then ready); /healthz turns 503 while PostgreSQL is stopped
//! (SIGSTOP) under a running load and 200 again when it goes on; no body quotes the target's
//! password; a taken address exits 2; the Grafana dashboard queries only exposed metrics.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};

use crate::stream::{delete_item, stream_table};
use crate::support::harness::{new_database_on, sample_table};
use crate::support::private_pg::PrivatePg;
use crate::support::prometheus::{free_port, get, get_with, Prometheus};
use crate::support::{ddb, new_database, put, signal, Migration};

/// The password put in the target URL (the test server trusts any).
const PASSWORD: &str = "Metr1cs-pw-0b5cure";

/// Poll `path` on `addr` until `done(status, body)` or `secs` pass; every answer is kept.
pub(crate) async fn poll(
    addr: &str,
    path: &str,
    secs: u64,
    mut done: impl FnMut(u16, &str) -> bool,
) -> Vec<(u16, String)> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        if let Some((code, body)) = get(addr, path) {
            let stop = done(code, &body);
            seen.push((code, body));
            if stop {
                return seen;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{path} on {addr}: not as expected after {secs} s; answers: {:?}",
            seen.iter().rev().take(3).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of an unlabelled sample (or the sum of a labelled family) in an exposition.
pub(crate) fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `promtool check metrics` on `text`: its complaints (empty: accepted).
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        String::new()
    } else {
        said
    }
}

/// Puts, modifies and deletes on a followed table: (inserted, modified, removed).
async fn change(client: &aws_sdk_dynamodb::Client, table: &str, seed: u64, loaded: u64) {
    for i in loaded..loaded + 20 {
        put(client, table, &ddb2pg::sample::item(seed, i)).await;
    }
    for i in 0..10 {
        let mut it = ddb2pg::sample::item(seed, i);
        it.insert("touched".into(), AttributeValue::N(i.to_string()));
        put(client, table, &it).await;
    }
    for i in 10..15 {
        delete_item(client, table, &ddb2pg::sample::item(seed, i)).await;
    }
}

/// What Prometheus stored over the run (the series are stale once the run ended: the
/// largest, or last, value over the last minutes).
fn stored(prom: &Prometheus, promql: &str) -> f64 {
    prom.value(promql)
        .unwrap_or_else(|| panic!("prometheus has no series for {promql}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_load_is_scraped_by_prometheus_and_equals_its_report() {
    let client = ddb().await;
    let (seed, loaded) = (31, 3000);
    let view = Some(StreamViewType::NewAndOldImages);
    let (table, _) = stream_table(&client, "metrics", seed, loaded, view).await;
    let db = new_database().await;
    let target = db.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    assert_ne!(target, db, "a password in the target URL");
    let m = Migration::new(&table, &target);
    let addr = format!("127.0.0.1:{}", free_port());
    let prom = tokio::task::block_in_place(|| Prometheus::start(&addr));
    let running = m.spawn(&["--follow", "--metrics-addr", &addr]);

    // /readyz: loading, then following and not caught up, then ready.
    let seen = poll(&addr, "/readyz", 300, |code, _| code == 200).await;
    let first = &seen[0];
    assert_eq!(first.0, 503, "not ready at first: {first:?}");
    assert!(first.1.starts_with("loading"), "{first:?}");
    assert!(
        seen.iter()
            .any(|(c, b)| *c == 503 && b.starts_with("following: not caught up")),
        "a followed run is not ready between its load and catching up: {seen:?}"
    );

    change(&client, &table, seed, loaded).await;
    poll(&addr, "/metrics", 120, |_, body| {
        sample(body, "ddb2pg_changes_applied_total") >= 35.0
    })
    .await;
    poll(&addr, "/readyz", 120, |code, _| code == 200).await;
    // Scraped a few more times once caught up.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut bodies = Vec::new();
    for (path, headers) in [
        ("/metrics", &[][..]),
        (
            "/metrics",
            &["Accept: application/openmetrics-text; version=1.0.0"][..],
        ),
        ("/healthz", &[][..]),
        ("/readyz", &[][..]),
        ("/nothing", &[][..]),
    ] {
        let (code, body) = get_with(&addr, path, headers).expect("the metrics server answers");
        bodies.push((path, code, body));
    }
    let text = &bodies[0].2;
    assert_eq!(
        promtool(text),
        "",
        "promtool refuses the exposition:\n{text}"
    );
    assert!(bodies[1].2.ends_with("# EOF\n"), "OpenMetrics when asked");
    assert_eq!((bodies[2].1, bodies[3].1, bodies[4].1), (200, 200, 404));
    for (path, _, body) in &bodies {
        assert!(
            !body.contains(PASSWORD),
            "{path} quotes the password:\n{body}"
        );
    }

    signal(running.pid(), "TERM");
    let out = tokio::time::timeout(Duration::from_secs(60), running.wait())
        .await
        .expect("the run did not stop within 60 s of SIGTERM");
    out.expect_code(130);

    let window = "[10m]";
    let items = stored(
        &prom,
        &format!("max_over_time(ddb2pg_items_read_total{window})"),
    );
    assert_eq!(items as u64, out.num("items_read"));
    assert_eq!(items as u64, loaded);
    let rows = stored(
        &prom,
        &format!("sum(max_over_time(ddb2pg_rows_written_total{window}))"),
    );
    assert_eq!(rows as u64, out.num("rows_written"));
    for (kind, field, want) in [
        ("insert", "changes_inserted", 20),
        ("modify", "changes_modified", 10),
        ("remove", "changes_removed", 5),
    ] {
        let q = format!("max_over_time(ddb2pg_changes_applied_total{{kind=\"{kind}\"}}{window})");
        let got = stored(&prom, &q) as u64;
        assert_eq!(got, out.num(field), "{kind}: prometheus against the report");
        // The stream also holds the sample's own inserts: those from before the load began
        // are skipped, the others applied again.
        let extra = if kind == "insert" { loaded } else { 0 };
        assert!((want..=want + extra).contains(&got), "{kind}: {got}");
    }
    let lag = stored(
        &prom,
        &format!("last_over_time(ddb2pg_lag_seconds{window})"),
    );
    assert!(lag <= 1.0, "the lag once caught up: {lag} s");
    let peak = stored(&prom, &format!("max_over_time(ddb2pg_lag_seconds{window})"));
    assert!(peak >= lag, "{peak} {lag}");
    assert_eq!(
        stored(
            &prom,
            &format!("max_over_time(ddb2pg_follow_caught_up{window})")
        ),
        1.0
    );
    let shards = prom.query(&format!("max_over_time(ddb2pg_shard_lag_seconds{window})"));
    assert!(!shards.is_empty(), "a per-shard lag series");
    let labels: BTreeSet<String> = prom
        .query("count by (__name__) ({job=\"ddb2pg\"})")
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_string))
        .collect();
    for name in &labels {
        assert!(!name.contains(PASSWORD));
    }
    assert!(
        labels.contains("ddb2pg_batch_commit_seconds_bucket"),
        "{labels:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_fails_while_postgresql_is_stopped_and_recovers_after() {
    let pg = PrivatePg::start();
    let target = new_database_on(&pg.url).await;
    let table = sample_table(3000).await;
    let m = Migration::new(&table, &target);
    let addr = format!("127.0.0.1:{}", free_port());
    let running = m.spawn(&[
        "--metrics-addr",
        &addr,
        "--stall-limit",
        "2",
        "--batch-size",
        "20",
        "--concurrency",
        "1",
        "--max-read-units",
        "40",
    ]);
    // Writing: some rows committed, many to go.
    poll(&addr, "/metrics", 120, |_, body| {
        sample(body, "ddb2pg_rows_written_total") > 0.0
    })
    .await;
    let pids = pg.server_pids();
    for p in &pids {
        signal(*p, "STOP");
    }
    let wedged = poll(&addr, "/healthz", 60, |code, _| code == 503).await;
    let why = &wedged.last().expect("an answer").1;
    let (_, text) = get(&addr, "/metrics").expect("metrics while stalled");
    assert_eq!(
        sample(&text, "ddb2pg_healthy"),
        0.0,
        "the verdict as a metric"
    );
    for p in &pids {
        signal(*p, "CONT");
    }
    assert!(
        why.starts_with("writer stalled") && why.contains("--stall-limit 2"),
        "{why}"
    );
    assert_eq!(why.lines().count(), 1, "one line: {why}");
    assert!(
        wedged.iter().any(|(c, _)| *c == 200),
        "healthy before the stop"
    );
    poll(&addr, "/healthz", 60, |code, _| code == 200).await;
    let out = tokio::time::timeout(Duration::from_secs(180), running.wait())
        .await
        .expect("the load did not finish within 180 s of SIGCONT");
    out.expect_code(0);
    assert_eq!(out.num("items_read"), 3000);
    assert_eq!(out.num("rows_written"), 3000, "rows = items");
    let rows: i64 = crate::support::pg(&target)
        .await
        .query_one(&format!("SELECT count(*) FROM {}", m.pg_table()), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 3000);
}

#[tokio::test]
async fn a_metrics_address_in_use_or_beside_scan_only_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let db = new_database().await;
    let m = Migration::new("no_such_table_needed", &db);
    let out = m.run(&["--metrics-addr", &addr]).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!("--metrics-addr {addr}")),
        "{}",
        out.stderr
    );
    let out = m
        .run(&["--metrics-addr", "127.0.0.1:0", "--scan-only"])
        .await;
    out.expect_code(2);
    assert!(out.stderr.contains("--scan-only"), "{}", out.stderr);
}

/// Every metric the dashboard's queries name is one /metrics exposes.
#[test]
fn the_grafana_dashboard_queries_only_exposed_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("read the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard's queries: {exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("ddb2pg_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.insert(name);
        }
    }
    for name in &used {
        assert!(
            ddb2pg::metrics::exposition::NAMES.contains(&name.as_str()),
            "the dashboard queries {name}, which /metrics does not expose"
        );
    }
    for want in [
        "ddb2pg_items_read_total",
        "ddb2pg_lag_seconds",
        "ddb2pg_shard_lag_seconds",
        "ddb2pg_memory_held_bytes",
        "ddb2pg_batch_commit_seconds_bucket",
        "ddb2pg_checkpoint_age_seconds",
    ] {
        assert!(used.contains(want), "the dashboard shows no {want}");
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_str()) {
                    ("expr", Some(e)) => out.push(e.to_string()),
                    _ => collect_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}
