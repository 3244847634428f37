//! `/healthz` tells a wedged run from one that waits on purpose: a reader held back by
//! `--max-read-units`, and a writer riding out a PostgreSQL outage within `--pg-retry-for`,
//! answer 200 throughout (a false 503 makes the kubelet kill a healthy run); `--stall-limit`
//! without `--metrics-addr` is refused rather than ignored.

use std::time::{Duration, Instant};

use crate::metrics::{poll, sample};
use crate::support::harness::{new_database_on, sample_table};
use crate::support::private_pg::PrivatePg;
use crate::support::prometheus::{free_port, get};
use crate::support::{new_database, Migration, Running};

/// `/healthz` every 100 ms for `secs` seconds or until the run exits: the first answers that
/// were not 200.
async fn unhealthy_answers(addr: &str, running: &mut Running, secs: u64) -> Vec<String> {
    let t0 = Instant::now();
    let mut bad: Vec<String> = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) && !running.exited() {
        if let Some((code, body)) = get(addr, "/healthz") {
            if code != 200 && bad.len() < 3 {
                bad.push(format!(
                    "{:.1} s: {code} {body}",
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bad
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_held_back_by_max_read_units_is_healthy() {
    let table = sample_table(1500).await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut running = m.spawn(&[
        "--metrics-addr",
        &addr,
        "--stall-limit",
        "1",
        "--concurrency",
        "1",
        "--max-read-units",
        "3",
    ]);
    let t0 = Instant::now();
    let bad = unhealthy_answers(&addr, &mut running, 180).await;
    let out = running.wait().await;
    out.expect_code(0);
    assert_eq!(out.num("items_read"), 1500);
    assert!(
        t0.elapsed() > Duration::from_secs(3),
        "the read limit held the reader back for longer than --stall-limit"
    );
    assert!(bad.is_empty(), "/healthz failed a throttled load: {bad:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_stays_200_through_a_postgresql_outage_the_run_rides_out() {
    let pg = PrivatePg::start();
    let target = new_database_on(&pg.url).await;
    let table = sample_table(3000).await;
    let m = Migration::new(&table, &target);
    let addr = format!("127.0.0.1:{}", free_port());
    // --stall-limit above the longest pause between two retries (5 s), far below the outage.
    let mut running = m.spawn(&[
        "--metrics-addr",
        &addr,
        "--stall-limit",
        "6",
        "--pg-retry-for",
        "120",
        "--batch-size",
        "20",
        "--concurrency",
        "1",
        "--max-read-units",
        "40",
    ]);
    poll(&addr, "/metrics", 120, |_, body| {
        sample(body, "ddb2pg_rows_written_total") > 0.0
    })
    .await;
    pg.stop();
    let bad = unhealthy_answers(&addr, &mut running, 15).await;
    let (_, text) = get(&addr, "/metrics").expect("metrics during the outage");
    pg.start_again();
    assert!(
        sample(&text, "ddb2pg_pg_retries_total") > 0.0,
        "the writer retried through the outage:\n{text}"
    );
    assert!(
        bad.is_empty(),
        "/healthz failed while the run rode out a 15 s outage: {bad:?}"
    );
    let out = tokio::time::timeout(Duration::from_secs(180), running.wait())
        .await
        .expect("the load did not finish within 180 s of the restart");
    out.expect_code(0);
    assert_eq!(out.num("rows_written"), 3000);
}

#[tokio::test]
async fn stall_limit_without_metrics_addr_exits_2() {
    let db = new_database().await;
    let m = Migration::new("no_such_table_needed", &db);
    let out = m.run(&["--stall-limit", "30"]).await;
    out.expect_code(2);
    assert!(out.stderr.contains("--metrics-addr"), "{}", out.stderr);
}
