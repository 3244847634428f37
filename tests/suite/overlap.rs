//! The next segment's scan starts while the current segment's last page is written: with one
//! connection and single-page segments, reading and writing overlap instead of alternating.

use crate::support::{
    assert_target_is, ddb, delete_table, drop_database, load_sample, new_database, pg, temp_dir,
    unique_name, Migration,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_segments_scan_overlaps_the_last_write() {
    const N: u64 = 800;
    let client = ddb().await;
    let table = unique_name("overlap");
    let target = new_database().await;
    let items = load_sample(&client, &table, 41, N).await;
    let m = Migration::new(&table, &target);
    let report = temp_dir("overlap-report").join("report.json");
    // 4 segments of ~200 items: one page each, written one after the other on one connection.
    let out = m
        .command(&["--segments", "4", "--concurrency", "1"], &report)
        .env("RUST_LOG", "ddb2pg::pipeline=debug")
        .output()
        .expect("run ddb2pg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let overlaps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("scan started while segment"))
        .collect();
    // Segments 1, 2 and 3 each start while the previous one's only page is written.
    assert_eq!(overlaps.len(), 3, "{stderr}");
    for (i, l) in overlaps.iter().enumerate() {
        let want = format!(
            "segment {}: scan started while segment {i}'s last page",
            i + 1
        );
        assert!(l.contains(&want), "{l}");
    }
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
    let cp = m.checkpoint();
    assert!(cp.complete && cp.segments.iter().all(|s| s.done && s.runs == 1));

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}
