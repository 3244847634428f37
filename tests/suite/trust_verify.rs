//! `verify` with what others can write: an s3:// checkpoint folder is read like `migrate`
//! reads it (its rejects found, nothing created under the working directory), and runs that
//! share a PID (containers: ddb2pg is PID 1) never drop each other's scratch tables.

use std::path::Path;

use ddb2pg::checkpoint::{S3Dir, Storage};

use crate::shards::{no_aws, s3_checkpoint_dir};
use crate::support::harness::{migrate_args, moto_s3, sample_table};
use crate::support::{ddb, new_database, pg, put, s, services, temp_dir};
use crate::trust_state::run_at;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_rejects_of_an_s3_checkpoint_folder() {
    let table = sample_table(30).await;
    put(
        &ddb().await,
        &table,
        &crate::support::item("BAD#1", "X", vec![("bad", s("nul\u{0}"))]),
    )
    .await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let cwd = temp_dir("verify-s3");
    let mut args = migrate_args(&table, &db, Path::new(&dir));
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let migrated = run_at(&cwd, &args);
    assert_eq!(migrated.code, Some(4), "{}", migrated.stderr);
    let storage = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    // The rejects are a folder of parts beside the checkpoint `<stem>.json`.
    let checkpoint = storage
        .list()
        .expect("list")
        .into_iter()
        .find(|n| n.ends_with(".json") && !n.ends_with(".report.json"))
        .expect("a checkpoint object");
    let rejects = format!("{}.rejects.jsonl", checkpoint.trim_end_matches(".json"));
    assert_eq!(
        storage.lines(&rejects).expect("count"),
        Some(1),
        "one reject stored"
    );

    let verify: Vec<String> = [
        "verify",
        "--table",
        &table,
        "--target",
        &db,
        "--endpoint-url",
        &services().endpoint,
        "--checkpoint-dir",
        &dir,
        "--s3-endpoint-url",
        moto_s3(),
        "--progress",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let v = run_at(&cwd, &verify);
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    let report = v.report.as_ref().expect("a report");
    assert_eq!(
        report["rejects_files"],
        serde_json::json!([storage.show(&rejects)]),
        "{report}"
    );
    assert!(
        !cwd.join("s3:").exists(),
        "verify took s3://… for a local path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_an_s3_export_with_an_s3_checkpoint_folder_writes_nothing_under_its_cwd() {
    let export = temp_dir("trust-export");
    crate::export::write_export(&export, 0..60, 25);
    let (s3, bucket) = crate::export::new_bucket().await;
    crate::export::upload(&s3, &bucket, "exports/app", &export).await;
    let url = format!("s3://{bucket}/exports/app");
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let cwd = temp_dir("verify-s3-export");
    let mut migrate = crate::export::export_args(Path::new(&url), &db, Path::new(&dir));
    migrate.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let migrated = run_at(&cwd, &migrate);
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);

    let verify: Vec<String> = [
        "verify",
        "--export",
        &url,
        "--key",
        "PK,SK",
        "--target",
        &db,
        "--checkpoint-dir",
        &dir,
        "--s3-endpoint-url",
        moto_s3(),
        "--progress",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let v = run_at(&cwd, &verify);
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    assert_eq!(v.report.as_ref().expect("report")["status"], "identical");
    let left: Vec<String> = std::fs::read_dir(&cwd)
        .expect("cwd")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != "report.json")
        .collect();
    assert!(
        left.is_empty(),
        "verify wrote under its working directory (s3://… taken for a local path): {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_as_pid_1_leaves_another_pid_1s_scratch_tables_alone() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // a PID namespace needs root
    }
    let table = sample_table(20).await;
    let db = new_database().await;
    let cp = temp_dir("verify-pid1");
    let args: Vec<String> = migrate_args(&table, &db, &cp);
    let r = run_at(&cp, &args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Another pod's scratch tables, as a verify that is PID 1 names them today or did before.
    let c = pg(&db).await;
    let theirs = ["ddb2pg_verify_1_0", "ddb2pg_verify_1_0000000000000000_0"];
    for t in theirs {
        c.batch_execute(&format!(
            "CREATE UNLOGGED TABLE {t} (x int); INSERT INTO {t} VALUES (7)"
        ))
        .await
        .expect("their scratch table");
    }
    let mut verify = std::process::Command::new("unshare");
    crate::support::clean_env(&mut verify);
    let out = verify
        .args(["--pid", "--fork", crate::support::ddb2pg_exe()])
        .args(["verify", "--table", &table, "--target", &db])
        .args(["--endpoint-url", &services().endpoint])
        .output()
        .expect("verify as PID 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for t in theirs {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{t} was dropped by the other verify: {e}"))
            .get(0);
        assert_eq!(n, 1, "{t}");
    }
    // And its own are gone.
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ddb2pg_verify_%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, theirs.len() as i64);
}
