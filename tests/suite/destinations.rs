//! What a run names: an export by its folder or its manifest-summary.json (local and s3://),
//! the default mapping's table by `--target-table`, and the first line that says where a run
//! writes before it writes.

use crate::paths::{tables_in, with};
use crate::support::harness::*;
use crate::support::{drop_database, s};

// ---------------------------------------------------------------------------------------------
// An export named by its manifest-summary.json.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_can_be_named_by_its_manifest_summary_local_and_s3() {
    use crate::export::{export_args, new_bucket, upload, write_export};
    let dir = tempdir("export-summary");
    write_export(&dir, 0..300, 100);
    let folder = dir.join("AWSDynamoDB").join("01700000000000-abcdef12");
    let summary = folder.join("manifest-summary.json");

    let db = new_database().await;
    let cp = tempdir("export-summary-cp");
    let r = run(&export_args(&summary, &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["items_read"], 300, "{}", r.report);
    assert_eq!(r.report["rows_inserted"], 300);
    // The folder is the same export: its checkpoint says the work is done.
    let r = run(&export_args(&folder, &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["status"], "nothing_to_do", "{}", r.report);

    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let remote = new_database().await;
    let url = format!(
        "s3://{bucket}/exports/app/AWSDynamoDB/01700000000000-abcdef12/manifest-summary.json"
    );
    let mut args = export_args(std::path::Path::new(&url), &remote, &tempdir("exp-sum-s3"));
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_inserted"], 300, "{}", r.report);
    let count: i64 = pg(&remote)
        .await
        .query_one("SELECT count(*) FROM exp", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 300);
    drop_database(&db).await;
    drop_database(&remote).await;
}

// ---------------------------------------------------------------------------------------------
// --target-table, and the first line saying where a run writes.
// ---------------------------------------------------------------------------------------------

/// A bare folder (no manifests) with one data file of `items`.
fn bare_export(name: &str, items: &[ddb2pg::value::Item]) -> std::path::PathBuf {
    let dir = tempdir("bare").join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let text: String = items
        .iter()
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({ "Item": ddb2pg::value::item_to_ddb_json(i) })
            )
        })
        .collect();
    std::fs::write(dir.join("part-0.json"), text).expect("data file");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_table_sends_a_second_export_into_the_first_ones_table() {
    use crate::export::export_args;
    let full: Vec<_> = (0..100).map(|i| ddb2pg::sample::item(1, i)).collect();
    let mut changes: Vec<_> = (0..10)
        .map(|i| {
            let mut it = ddb2pg::sample::item(1, i);
            it.insert("changed".into(), s("yes"));
            it
        })
        .collect();
    changes.extend((100..110).map(|i| ddb2pg::sample::item(1, i)));
    let full_dir = bare_export("full", &full);
    let incr_dir = bare_export("incr", &changes);
    let db = new_database().await;

    let r = run(&export_args(&full_dir, &db, &tempdir("tt-full")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_inserted"], 100);
    // The first line says which table the run writes, before it writes.
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.ends_with(" table full"), "{}", r.stderr);

    let args = with(
        export_args(&incr_dir, &db, &tempdir("tt-incr")),
        &["--target-table", "full"],
    );
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.ends_with(" table full"), "{}", r.stderr);
    assert_eq!(r.report["rows_updated"], 10, "{}", r.report);
    assert_eq!(r.report["rows_inserted"], 10);
    assert_eq!(
        tables_in(&db).await,
        ["public.full"],
        "no table named after incr/"
    );
    let c = pg(&db).await;
    let changed: i64 = c
        .query_one(
            "SELECT count(*) FROM \"full\" WHERE item->>'changed' = 'yes'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(changed, 10);
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_table_names_the_default_mappings_table_of_a_live_table() {
    let table = sample_table(20).await;
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute("CREATE SCHEMA app")
        .await
        .expect("schema");
    let cp = tempdir("tt-live");
    let args = with(
        migrate_args(&table, &db, &cp),
        &["--target-table", "app.Users 2"],
    );
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.ends_with(" table app.Users 2"), "{}", r.stderr);
    assert_eq!(tables_in(&db).await, ["app.Users 2"]);
    assert_eq!(r.report["rows_inserted"], 20);
    // A mapping file names its own tables.
    let r = run(&with(args, &["--mapping", "m.toml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--mapping"), "{}", r.stderr);
    drop_database(&db).await;
}
