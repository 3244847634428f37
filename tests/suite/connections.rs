//! `--connections`: the segments in flight share fewer PostgreSQL connections, their queued
//! pages coalesced into one transaction, and the checkpoint still only claims committed items.

use std::collections::BTreeSet;
use std::time::Duration;

use ddb2pg::checkpoint::Checkpoint;

use crate::support::{
    assert_target_is, committed, count_rows, ddb, delete_table, drop_database, held_cursors,
    load_sample, new_database, pg, unique_name, Migration,
};

/// The connections to `db` other than the caller's own.
async fn connections_to(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

const ARGS: [&str; 10] = [
    "--batch-size",
    "100",
    "--concurrency",
    "8",
    "--connections",
    "2",
    "--segments",
    "16",
    "--max-read-units",
    "120",
];

/// 8 segments at once over 2 connections: PostgreSQL sees at most 2 connections from the run
/// (+1 for its setup) while it loads, and the target is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_segments_share_two_connections_and_the_target_is_exact() {
    const N: u64 = 12_000;
    let client = ddb().await;
    let table = unique_name("conns");
    let target = new_database().await;
    let items = load_sample(&client, &table, 31, N).await;
    let m = Migration::new(&table, &target);
    let db = pg(&target).await;
    let mut running = m.spawn(&ARGS);
    let (mut most, mut samples) = (0, 0);
    while !running.exited() {
        if m.committed().unwrap_or(0) > 0 {
            most = most.max(connections_to(&db).await);
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = running.wait().await;
    out.expect_code(0);
    assert!(
        samples >= 10,
        "the run was watched while it wrote ({samples} samples)"
    );
    assert!(most >= 1, "the run's connections were seen");
    assert!(most <= 3, "{most} connections with --connections 2");
    assert_eq!(out.num("segments_done"), 16);
    let cp = m.checkpoint();
    assert!(cp.complete);
    assert_eq!(committed(&cp), N, "every item counted once");
    assert!(cp.segments.iter().all(|s| s.done && s.cursor.is_none()));
    let rows: u64 = cp.segments.iter().map(|s| s.rows_written).sum();
    assert_eq!(rows, N, "every row counted once, over the segments");
    assert_target_is(&db, &m.pg_table(), &items).await;
    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

/// kill -9 mid-run with segments sharing connections, then a resume: nothing lost, nothing
/// counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_with_shared_connections_resumes_exactly() {
    const N: u64 = 12_000;
    let client = ddb().await;
    let table = unique_name("connk9");
    let target = new_database().await;
    let items = load_sample(&client, &table, 32, N).await;
    let m = Migration::new(&table, &target);
    let ready = |cp: &Checkpoint| committed(cp) >= N * 2 / 5 && held_cursors(cp) > 0;
    let (running, seen) = match m.spawn_until_checkpoint(&ARGS, ready).await {
        Ok((r, cp)) => (r, committed(&cp)),
        Err(out) => panic!("the run ended before it could be killed: {out:?}"),
    };
    running.kill9().await.expect_killed_by_9();
    let killed = m.checkpoint();
    assert!(!killed.complete);
    let at_kill = committed(&killed);
    assert!(at_kill >= seen && at_kill < N, "{at_kill} of {N}");
    let db = pg(&target).await;
    let t = m.pg_table();
    // The target may be ahead of the checkpoint (committed, not yet flushed), never behind.
    assert!(count_rows(&db, &t).await as u64 >= at_kill);

    let out = m.run(&ARGS).await;
    out.expect_code(0);
    assert_eq!(out.status(), "complete");
    assert_eq!(
        out.num("items_read"),
        N - at_kill,
        "the resume reads exactly what the checkpoint did not cover"
    );
    let fin = m.checkpoint();
    assert!(fin.complete);
    assert_eq!(committed(&fin), N, "every item counted once");
    assert_target_is(&db, &t, &items).await;
    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

/// More connections than segments at once: lowered, with a note, and the run is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_than_concurrency_is_lowered_with_a_note() {
    const N: u64 = 500;
    let client = ddb().await;
    let table = unique_name("connclamp");
    let target = new_database().await;
    let items = load_sample(&client, &table, 33, N).await;
    let m = Migration::new(&table, &target);
    let out = m
        .run(&[
            "--concurrency",
            "2",
            "--connections",
            "5",
            "--segments",
            "4",
        ])
        .await;
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("--connections 5 is more than --concurrency 2: using 2 connections"),
        "{}",
        out.stderr
    );
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

/// The (key, segment) of every reject line of a run, and each segment's rejected count in its
/// checkpoint.
fn rejects_by_segment(m: &Migration) -> (BTreeSet<(String, u64)>, Vec<u64>) {
    let lines = crate::support::harness::rejects_in(&m.checkpoint_dir);
    let keyed = lines
        .iter()
        .map(|l| {
            (
                l["key"].to_string(),
                l["segment"].as_u64().expect("a segment"),
            )
        })
        .collect();
    let counted = m.checkpoint().segments.iter().map(|s| s.rejected).collect();
    (keyed, counted)
}

/// Rows PostgreSQL refuses inside coalesced transactions: each goes to the rejects file under
/// the segment it was read from, and counts as that segment's reject, exactly as when every
/// segment has its own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_in_coalesced_transactions_are_rejects_of_their_own_segment() {
    const N: u64 = 3000;
    let client = ddb().await;
    let table = unique_name("connrej");
    let items = load_sample(&client, &table, 34, N).await;
    let logins = items
        .iter()
        .filter(|i| {
            i.get("kind") == Some(&aws_sdk_dynamodb::types::AttributeValue::S("login".into()))
        })
        .count() as u64;
    assert!(logins > 10, "the sample has logins to refuse");
    let mut runs = Vec::new();
    for shared in [true, false] {
        let target = new_database().await;
        let m = Migration::new(&table, &target);
        let t = m.pg_table();
        let db = pg(&target).await;
        db.batch_execute(&format!(
            "CREATE TABLE {t} (\"PK\" text NOT NULL, \"SK\" text NOT NULL, item jsonb NOT NULL, \
             PRIMARY KEY (\"PK\", \"SK\"), \
             CONSTRAINT no_logins CHECK (coalesce(item->>'kind', '') <> 'login'))"
        ))
        .await
        .expect("schema");
        let mut args = vec![
            "--batch-size",
            "50",
            "--concurrency",
            "8",
            "--segments",
            "16",
        ];
        if shared {
            args.extend(["--connections", "1"]);
        }
        let out = m.run(&args).await;
        out.expect_code(4);
        assert_eq!(out.num("rejected"), logins);
        assert_eq!(count_rows(&db, &t).await as u64, N - logins);
        let cp = m.checkpoint();
        assert!(cp.complete);
        assert_eq!(committed(&cp), N);
        let (keyed, counted) = rejects_by_segment(&m);
        assert_eq!(keyed.len() as u64, logins, "one line per refused item");
        let mut lines_per_segment = vec![0u64; counted.len()];
        for (_, s) in &keyed {
            lines_per_segment[*s as usize] += 1;
        }
        assert_eq!(
            lines_per_segment, counted,
            "each segment counts its own lines"
        );
        runs.push(keyed);
        drop(db);
        drop_database(&target).await;
    }
    assert_eq!(
        runs[0], runs[1],
        "every item under the segment it was read from"
    );
    delete_table(&client, &table).await;
}
