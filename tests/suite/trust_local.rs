//! What other local users can reach: the S3 working folder in the temp directory (created
//! private, or refused when someone else made it or it is open to others), downloaded export
//! copies (refused when swapped after their MD5 check), and what an `s3://` export downloads
//! (only what its manifest lists; manifests capped).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::export::{export_args, new_bucket, upload, write_export};
use crate::shards::s3_checkpoint_dir;
use crate::support::harness::*;
use crate::support::spawn_in;

const EXPORT_ID: &str = "01700000000000-abcdef12";

/// `ddb2pg <args>` with TMPDIR set: exit code and stderr.
fn run_with_tmpdir(args: &[String], tmpdir: &Path) -> (i32, String) {
    let out = command(args)
        .env("TMPDIR", tmpdir)
        .output()
        .expect("run ddb2pg");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The folders in `dir` whose names start with `prefix`.
fn folders_in(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777
}

/// Make `dir` again, empty, with `mode`.
fn remake(dir: &Path, mode: u32) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir).expect("mkdir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_working_folder_someone_else_could_use_is_refused() {
    let table = sample_table(20).await;
    let db = new_database().await;
    let url = s3_checkpoint_dir().await;
    let tmp = tempdir("trust-tmpdir");
    let mut args = migrate_args(&table, &db, Path::new(&url));
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let (code, stderr) = run_with_tmpdir(&args, &tmp);
    assert_eq!(code, 0, "{stderr}");
    // The working folder ddb2pg made in TMPDIR: this user's own.
    let made = folders_in(&tmp, "ddb2pg-s3-");
    assert_eq!(made.len(), 1, "{made:?}");
    let work = made[0].clone();
    assert_eq!(mode(&work), 0o700);
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };

    // Made first by someone else, open to everyone: refused, named, not used.
    remake(&work, 0o777);
    let (code, stderr) = run_with_tmpdir(&args, &tmp);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&work.display().to_string())
            && stderr.contains("mode 0777")
            && stderr.contains("TMPDIR")
            && stderr.contains("rm -r"),
        "{stderr}"
    );
    assert_eq!(mode(&work), 0o777, "left as it is");
    assert_eq!(
        std::fs::read_dir(&work).expect("read").count(),
        0,
        "nothing written to it"
    );

    // Owned by another user (mode 0700): refused too. Only root can give a folder away.
    if me == 0 {
        remake(&work, 0o700);
        std::os::unix::fs::chown(&work, Some(65534), Some(65534)).expect("chown nobody");
        let (code, stderr) = run_with_tmpdir(&args, &tmp);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("owned by user 65534"), "{stderr}");
        assert_eq!(std::fs::read_dir(&work).expect("read").count(), 0);
    }

    // Gone: made afresh, private.
    std::fs::remove_dir_all(&work).expect("rm");
    let (code, stderr) = run_with_tmpdir(&args, &tmp);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mode(&work), 0o700);
    assert!(
        work.to_string_lossy().contains(&format!("-u{me}-")),
        "the uid in the name keeps users apart: {}",
        work.display()
    );
}

/// `lines` gzipped.
fn gzip(lines: &[serde_json::Value]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in lines {
        writeln!(e, "{l}").expect("gz");
    }
    e.finish().expect("gz")
}

fn line(pk: &str) -> serde_json::Value {
    serde_json::json!({ "Item": { "PK": { "S": pk }, "SK": { "S": "x" } } })
}

async fn put_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .expect("put");
}

/// `export_args` for `s3://bucket/prefix` on moto, copies kept.
fn s3_export_args(bucket: &str, prefix: &str, db: &str, cp: &Path) -> Vec<String> {
    let url = format!("s3://{bucket}/{prefix}");
    let mut args = export_args(Path::new(&url), db, cp);
    args.extend(
        ["--s3-endpoint-url", moto_s3(), "--keep-downloads"]
            .iter()
            .map(|s| s.to_string()),
    );
    args
}

/// Every file below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

async fn count(db: &str, sql: &str) -> i64 {
    pg(db)
        .await
        .query_one(sql, &[])
        .await
        .expect("count")
        .get(0)
}

/// The run is stopped between its downloads and its reads deterministically: the test holds
/// an uncommitted row with the key of the export's first item, so the run's first write of
/// rows waits for the test's transaction (creating or checking the table does not). The
/// downloads are done and checked by then (they happen under the run's lock, before rows are
/// written), and with one segment at a time the second data file is opened only after the
/// first one's last page is written: it has not been opened yet. The test swaps it (a rename
/// in the download folder, what another local user with write access there would do), rolls
/// its transaction back, and the run reaches the swapped copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_swapped_after_its_md5_check_is_refused() {
    let dir = tempdir("trust-swap-export");
    write_export(&dir, 0..400, 200);
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE TABLE exp (\"PK\" text NOT NULL, \"SK\" text NOT NULL, item jsonb, \
             PRIMARY KEY (\"PK\", \"SK\"))",
        )
        .await
        .expect("create table");
    let first = ddb2pg::sample::item(1, 0);
    let key = |a: &str| match first.get(a) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
        other => panic!("{a}: {other:?}"),
    };
    let blocker = pg(&db).await;
    blocker.batch_execute("BEGIN").await.expect("begin");
    blocker
        .execute(
            "INSERT INTO exp (\"PK\", \"SK\") VALUES ($1, $2)",
            &[&key("PK"), &key("SK")],
        )
        .await
        .expect("hold the first item's key");
    let cp = tempdir("trust-swap-cp");
    let mut args = s3_export_args(&bucket, "exports/app", &db, &cp);
    args.extend(["--concurrency", "1", "--batch-size", "20"].map(String::from));
    let mut running = spawn_in(&tempdir("trust-swap-run"), &args);

    // Wait for the run to wait for the test's transaction.
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                   WHERE a.datname = current_database() AND l.locktype = 'transactionid' \
                   AND NOT l.granted";
    while count(&db, waiting).await == 0 {
        assert!(!running.exited(), "the run ended before it wrote");
        assert!(
            Instant::now() < deadline,
            "the run never waited for the row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let copy = cp
        .join(format!("s3-{bucket}_exports_app"))
        .join(format!("AWSDynamoDB/{EXPORT_ID}/data/file001.json.gz"));
    assert!(
        copy.is_file(),
        "downloaded before the first write: {copy:?}"
    );
    let forged = copy.with_extension("forged");
    std::fs::write(&forged, gzip(&[line("intruder")])).expect("forge");
    std::fs::rename(&forged, &copy).expect("swap");
    blocker.batch_execute("ROLLBACK").await.expect("release");

    let out = running.wait().await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("file001.json.gz") && out.stderr.contains("replaced by another file"),
        "{}",
        out.stderr
    );
    let intruder = "SELECT count(*) FROM exp WHERE \"PK\" = 'intruder'";
    assert_eq!(count(&db, intruder).await, 0, "nothing read from the swap");
    assert_eq!(
        count(&db, "SELECT count(*) FROM exp").await,
        200,
        "the first file's rows, none of the second's"
    );

    // The same command again: the copy is checked, fetched again, and the load completes.
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let original = dir.join(format!("AWSDynamoDB/{EXPORT_ID}/data/file001.json.gz"));
    assert_eq!(
        std::fs::read(&copy).expect("copy"),
        std::fs::read(original).expect("original")
    );
    assert_eq!(count(&db, intruder).await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM exp").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_files_the_manifest_lists_are_downloaded() {
    let dir = tempdir("trust-listed-export");
    write_export(&dir, 0..100, 50);
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    // Objects under the prefix that no manifest lists, shaped like export files.
    let extra = [
        format!("exports/app/AWSDynamoDB/{EXPORT_ID}/data/extra.json.gz"),
        "exports/app/extra.json".to_string(),
        "exports/app/data/extra.json.gz".to_string(),
        "exports/app/manifest-extra.json".to_string(),
    ];
    for key in &extra {
        put_object(&s3, &bucket, key, gzip(&[line("extra")])).await;
    }
    let db = new_database().await;
    let cp = tempdir("trust-listed-cp");
    let r = run(&s3_export_args(&bucket, "exports/app", &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let base = format!("AWSDynamoDB/{EXPORT_ID}");
    assert_eq!(
        files_below(&cp.join(format!("s3-{bucket}_exports_app"))),
        [
            format!("{base}/data/file000.json.gz"),
            format!("{base}/data/file001.json.gz"),
            format!("{base}/manifest-files.json"),
            format!("{base}/manifest-summary.json"),
        ]
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM exp WHERE \"PK\" = 'extra'").await,
        0
    );
    assert_eq!(count(&db, "SELECT count(*) FROM exp").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_manifest_is_refused_before_it_is_read() {
    let dir = tempdir("trust-big-manifest");
    write_export(&dir, 0..20, 20);
    // A manifest-summary.json of 2 MiB, valid JSON (a padding field).
    let summary = dir.join(format!("AWSDynamoDB/{EXPORT_ID}/manifest-summary.json"));
    let padding = "x".repeat(2 << 20);
    std::fs::write(
        &summary,
        serde_json::json!({
            "exportType": "FULL_EXPORT",
            "tableArn": "arn:aws:dynamodb:us-east-1:000000000000:table/exp",
            "padding": padding,
        })
        .to_string(),
    )
    .expect("summary");
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let db = new_database().await;
    let cp = tempdir("trust-big-cp");
    let r = run(&s3_export_args(&bucket, "exports/app", &db, &cp));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("manifest-summary.json") && r.stderr.contains("1 MiB"),
        "{}",
        r.stderr
    );
    assert_eq!(files_below(&cp), Vec::<String>::new(), "nothing downloaded");
    // A local export: the same refusal.
    let r = run(&export_args(&dir, &db, &tempdir("trust-big-local-cp")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&summary.display().to_string()) && r.stderr.contains("1 MiB"),
        "{}",
        r.stderr
    );
    let tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'exp'";
    assert_eq!(count(&db, tables).await, 0, "nothing written");
}
