//! Surviving faults against the real services: a throttling, failing, resetting, slow
//! DynamoDB (through the fault proxy), PostgreSQL connections terminated and the server
//! restarted mid-run, a crash loop of kill -9, and rows refused by a CHECK constraint.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::count_rows;
use crate::support::fault_proxy::{self, Faults};
use crate::support::harness::*;
use crate::support::private_pg::PrivatePg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_dynamodb_still_yields_the_exact_table() {
    let n = 3000;
    let table = sample_table(n).await;
    let proxy = fault_proxy::start(
        &services().endpoint,
        Faults {
            throttle_pct: 10,
            error500_pct: 5,
            reset_pct: 5,
            max_delay_ms: 20,
            ..Faults::none()
        },
    )
    .await;
    let db = new_database().await;
    let cp = tempdir("faults-ddb");
    let mut args = migrate_args(&table, &db, &cp);
    let at = args
        .iter()
        .position(|a| a == "--endpoint-url")
        .expect("flag")
        + 1;
    args[at] = proxy.url.clone();
    args.extend(
        [
            "--segments",
            "8",
            "--concurrency",
            "4",
            "--batch-size",
            "100",
        ]
        .map(String::from),
    );
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = &proxy.stats;
    assert!(
        s.throttled.load(Ordering::Relaxed) > 0
            && s.errors500.load(Ordering::Relaxed) > 0
            && s.resets.load(Ordering::Relaxed) > 0,
        "the proxy injected faults: {s:?}"
    );
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_reconnected_and_retried() {
    let n = 12000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dbname = db.rsplit('/').next().expect("db name").to_string();
    let cp = tempdir("faults-term");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(
        [
            "--segments",
            "16",
            "--concurrency",
            "2",
            "--batch-size",
            "20",
        ]
        .map(String::from),
    );
    let mut child = spawn(&args);
    let admin = pg(&services().admin_url).await;
    let mut killed = 0u64;
    // Once the workers write (the setup phase before them is not retried), terminate every
    // backend of the target database every 50 ms while the run lasts.
    wait_until_committed(&mut child, &cp, 1);
    for _ in 0..20 {
        if child.try_wait().expect("poll").is_some() {
            break;
        }
        // Only terminations while work is left count: the run is alive and not complete.
        let before = committed_items(&cp);
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&dbname],
            )
            .await
            .expect("terminate");
        if before < n {
            killed += rows.len() as u64;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        killed > 0,
        "no connection was terminated: the run finished too early ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
}

/// The server restarts while the run is working (alive, checkpoint strictly between 0 and n);
/// rows written after the restart prove the run (or its resume) carried on; the outcome is
/// exact and nothing was read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_run_ends_exact() {
    let n = 6000;
    let table = sample_table(n).await;
    let server = PrivatePg::start();
    let db = new_database_on(&server.url).await;
    let cp = tempdir("faults-restart");
    let mut args = migrate_args(&table, &db, &cp);
    // ~1500 items/s after the first second's budget: seconds of work left at the restart.
    args.extend(
        [
            "--segments",
            "16",
            "--concurrency",
            "2",
            "--batch-size",
            "25",
            "--max-read-units",
            "30",
        ]
        .map(String::from),
    );
    let files = tempdir("faults-restart-run");
    let mut running = crate::support::spawn_in(&files, &args);
    let at_restart = wait_until_committed(&mut running.child, &cp, n / 4);
    assert!(
        at_restart < n,
        "restarted at {at_restart} of {n}: not mid-run"
    );
    let started = |url: String| async move {
        pg(&url)
            .await
            .query_one("SELECT pg_postmaster_start_time()::text", &[])
            .await
            .expect("start time")
            .get::<_, String>(0)
    };
    let first_start = started(db.clone()).await;
    assert!(!running.exited(), "the run ended before the restart");
    server.restart();
    // Transactions from here on are after the restart.
    let after = pg(&db).await;
    let (second_start, xid): (String, i64) = {
        let r = after
            .query_one(
                "SELECT pg_postmaster_start_time()::text, pg_current_xact_id()::text::bigint",
                &[],
            )
            .await
            .expect("after the restart");
        (r.get(0), r.get(1))
    };
    assert_ne!(first_start, second_start, "the server restarted");
    let out = running.wait().await;
    // Either it rode out the restart, or it stopped resumably: then the same command finishes,
    // reading exactly what the checkpoint lacks.
    match out.code {
        Some(0) => assert_eq!(out.num("items_read"), n, "read once: {}", out.stderr),
        Some(1) => {
            let left = n - committed_items(&cp);
            assert!(left > 0, "exit 1 with everything committed: {}", out.stderr);
            let r = crate::support::run_in(&files, &args);
            r.expect_code(0);
            assert_eq!(r.num("items_read"), left, "{}", r.stderr);
        }
        other => panic!("exit {other:?}: {}", out.stderr),
    }
    let t = ddb2pg::plan::default_table_name(&table);
    let written_after: i64 = after
        .query_one(
            &format!("SELECT count(*) FROM \"{t}\" WHERE xmin::text::bigint > $1"),
            &[&xid],
        )
        .await
        .expect("rows of later transactions")
        .get(0);
    assert!(
        written_after > 0,
        "no row was written after the restart: it did not land mid-run"
    );
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
}

/// Twelve kills of -9, each after the run committed work of its own (so none lands in setup),
/// each leaving a valid checkpoint strictly between 0 and n and ahead of the one before; the
/// final run reads exactly what the last checkpoint lacks, and the table is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_of_kill_9_ends_exact() {
    let n = 10000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let cp = tempdir("faults-crash");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(
        [
            "--segments",
            "16",
            "--concurrency",
            "2",
            "--batch-size",
            "20",
        ]
        .map(String::from),
    );
    // The killed runs are slowed (a few hundred items each) so that twelve of them leave work
    // for the last; the final run goes at full speed (the cap is no part of the checkpoint).
    let mut slow = args.clone();
    slow.extend(["--max-read-units", "10"].map(String::from));
    let rows = pg(&db).await;
    let t = format!("\"{}\"", ddb2pg::plan::default_table_name(&table));
    let mut at_kills: Vec<u64> = Vec::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    while at_kills.len() < 12 {
        let before = at_kills.last().copied().unwrap_or(0);
        let mut child = spawn(&slow);
        // Working: this run committed a batch of its own.
        wait_until_committed(&mut child, &cp, before + 1);
        // Then a random moment: 0..150 ms later.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 150));
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run finished before kill {}: give it more items",
            at_kills.len() + 1
        );
        child.kill().expect("kill -9");
        assert_killed_by_9(child.wait().expect("wait"));
        let at = committed_items(&cp);
        assert!(
            at > before && at < n,
            "kill {}: committed {at}, before it {before}, of {n}",
            at_kills.len() + 1
        );
        // Rows may be ahead of the checkpoint (committed, not yet recorded), never behind.
        let in_pg = count_rows(&rows, &t).await;
        assert!(in_pg as u64 >= at, "{in_pg} rows for {at} committed items");
        at_kills.push(at);
    }
    eprintln!("committed at the kills: {at_kills:?}");
    let last = *at_kills.last().expect("kills");
    let r = run(&args);
    assert!(r.code == 0, "{}", r.stderr);
    assert_eq!(
        r.report["items_read"].as_u64(),
        Some(n - last),
        "the final run reads what the checkpoint lacks: {}",
        r.report
    );
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_by_a_check_constraint_is_rejected_and_the_rest_lands() {
    let n = 500;
    let table = sample_table(n).await;
    let db = new_database().await;
    let t = ddb2pg::plan::default_table_name(&table);
    // The target refuses one particular item (PK of item 7, an order).
    let bad_pk = "USER#00000001";
    let bad_sk = "ORDER#00000001-2";
    pg(&db)
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{t}\" (\"PK\" text NOT NULL, \"SK\" text NOT NULL, item jsonb, \
             PRIMARY KEY (\"PK\", \"SK\"), CONSTRAINT no_such_order CHECK (NOT (\"PK\" = '{bad_pk}' AND \"SK\" = '{bad_sk}')))"
        ))
        .await
        .expect("create");
    let cp = tempdir("faults-check");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(["--batch-size", "100"].map(String::from));
    let r = run(&args);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.report["rejected"], 1);
    let rejects: Vec<serde_json::Value> = std::fs::read_dir(&cp)
        .expect("dir")
        .flatten()
        .filter(|e| e.path().to_string_lossy().ends_with(".rejects.jsonl"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["key"]["SK"]["S"], bad_sk);
    let reason = rejects[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("no_such_order") && reason.contains("23514"),
        "{reason}"
    );
    assert_eq!(rejects[0]["item"]["PK"]["S"], bad_pk);
    // Every other item is there.
    let (missing, extra) = default_mapping_differences(&db, &table, n).await;
    assert_eq!((missing, extra), (1, 0));
}

/// SIGTERM while the writers retry through a PostgreSQL outage: the run stops within seconds
/// (not after --pg-retry-for), exit 130, and the same command finishes exactly once the server
/// is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_postgresql_outage_exits_130_at_once() {
    let n = 6000;
    let table = sample_table(n).await;
    let server = PrivatePg::start();
    let db = new_database_on(&server.url).await;
    let cp = tempdir("faults-outage-term");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(
        [
            "--segments",
            "16",
            "--concurrency",
            "2",
            "--batch-size",
            "25",
            "--pg-retry-for",
            "600",
        ]
        .map(String::from),
    );
    let mut child = spawn(&args);
    let at_stop = wait_until_committed(&mut child, &cp, n / 4);
    assert!(at_stop < n, "stopped at {at_stop} of {n}: not mid-run");
    server.stop();
    // Let the writers meet the outage and start retrying.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let asked = std::time::Instant::now();
    crate::support::signal(child.id(), "TERM");
    let out = child.wait_with_output().expect("wait");
    let took = asked.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        took < std::time::Duration::from_secs(30),
        "SIGTERM took {took:?} during the outage"
    );
    let committed = crate::support::harness::committed_items(&cp);
    assert!(
        committed > 0 && committed < n,
        "committed {committed} of {n}"
    );
    server.start_again();
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
}

/// Reject lines a killed run appended for batches it did not commit are cut on resume, so the
/// rejects file holds each rejected item once (the checkpoint records where committed lines end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_lines_of_batches_not_committed_are_cut_on_resume() {
    use crate::support::{ddb, load_sample, new_database, unique_name, Migration};
    let client = ddb().await;
    let table = unique_name("rejcut");
    load_sample(&client, &table, 5, 40).await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let mapping = m.dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"rejcut\"\nkey = [\"pk\", \"sk\"]\n[table.columns]\n\
         pk = { from = \"PK\", type = \"text\" }\nsk = { from = \"SK\", type = \"text\" }\n\
         x = { from = \"nope\", type = \"text\", required = true }\n",
    )
    .expect("mapping");
    let map = mapping.to_string_lossy().to_string();
    let args = [
        "--mapping",
        map.as_str(),
        "--create-tables",
        "--segments",
        "4",
    ];
    m.run(&args).await.expect_code(4);
    let rejects = m.sibling(".rejects.jsonl");
    let committed = std::fs::read(&rejects).expect("rejects");
    assert_eq!(committed.iter().filter(|&&b| b == b'\n').count(), 40);
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.checkpoint_path().expect("cp")).expect("read"))
            .expect("json");
    assert_eq!(cp["rejects_bytes"], committed.len() as u64, "{cp}");
    // What a kill -9 between appending a page's rejects and saving the checkpoint leaves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&rejects)
        .expect("open");
    std::io::Write::write_all(&mut f, b"{\"uncommitted\":1}\n{\"uncommitted\":2}\n").expect("w");
    drop(f);
    let out = m.run(&args).await;
    out.expect_code(4);
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
    assert_eq!(std::fs::read(&rejects).expect("rejects"), committed);
    // --restart rejects the items again: the earlier file is set aside, not appended twice.
    let mut restart = args.to_vec();
    restart.push("--restart");
    let out = m.run(&restart).await;
    out.expect_code(4);
    assert_eq!(
        std::fs::read(&rejects).expect("rejects").len(),
        committed.len()
    );
    let aside: Vec<_> = std::fs::read_dir(&m.checkpoint_dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".rejects.") && !n.ends_with(".rejects.jsonl"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}: {}", out.stderr);
}
