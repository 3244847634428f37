//! S3 rejects as numbered part objects (`<stem>.rejects/part-NNNNNNNN.jsonl`, against moto):
//! each reject line uploaded once (no object PUT twice on a versioned bucket), no local copy
//! left after a run, parts past the checkpoint cut back on resume, and a part missing from the
//! middle stops the run without deleting any other.

use std::collections::BTreeSet;
use std::path::Path;

use ddb2pg::checkpoint::{Checkpoint, Names, S3Dir, Storage};

use crate::shards::{no_aws, s3_checkpoint_dir};
use crate::support::harness::{migrate_args, moto_s3, new_database, run, tempdir, unique};
use crate::trust_rejects::{email_mapping, keys_once};

/// Every version of every object under `dir`'s `folder` (the bucket is versioned): key, size.
async fn versions(dir: &str, folder: &str) -> Vec<(String, u64)> {
    let (bucket, prefix) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    let s3 = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(format!("{prefix}/{folder}"))
        .send()
        .await
        .expect("versions");
    assert_ne!(out.is_truncated(), Some(true));
    out.versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap_or_default().to_string(),
                v.size().unwrap_or(0) as u64,
            )
        })
        .collect()
}

async fn versioned(dir: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let (bucket, _) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client")
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
}

/// `migrate` of `table` with the email mapping `map` and checkpoints in the s3:// `dir`, slow
/// enough (read units) for many checkpoint writes, each after new reject lines (new parts).
fn s3_email_args(table: &str, db: &str, dir: &str, map: &str, limit: &str) -> Vec<String> {
    let mut a = migrate_args(table, db, Path::new(dir));
    a.extend(
        [
            "--s3-endpoint-url",
            moto_s3(),
            "--mapping",
            map,
            "--create-tables",
            "--segments",
            "4",
            "--batch-size",
            "10",
            "--concurrency",
            "2",
            "--max-read-units",
            "4",
            "--max-rejects",
            limit,
        ]
        .map(String::from),
    );
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_rejects_are_uploaded_once_each_and_no_local_copy_is_left() {
    const N: u64 = 600;
    let client = crate::support::ddb().await;
    let table = unique("s3rej");
    crate::support::load_sample(&client, &table, 4, N).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    versioned(&dir).await;
    let work = tempdir("s3rej");
    let map = email_mapping(&work);
    let args = |limit: &str| s3_email_args(&table, &db, &dir, &map, limit);
    let first = run(&args("200"));
    assert_eq!(first.code, 1, "{}", first.stderr);
    let done = run(&args("0"));
    assert_eq!(done.code, 4, "{}", done.stderr);

    let s3 = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let target_id = ddb2pg::pgconn::resolve(Some(&db))
        .expect("target")
        .identity();
    let names = Names::new(
        &table,
        &format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}"),
        &target_id,
        None,
    );
    let (cp, _) = Checkpoint::load_from(&s3, &names.checkpoint)
        .expect("load")
        .expect("present");
    assert!(cp.complete);
    let size = cp.rejects_bytes.expect("counted");

    // The parts: each PUT once (one version), their sizes adding up to the rejects' length.
    let folder = names.rejects.trim_end_matches(".jsonl");
    let all = versions(&dir, &format!("{folder}/")).await;
    let keys: BTreeSet<&String> = all.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), all.len(), "an object PUT twice: {all:?}");
    assert!(all.len() >= 3, "several uploads: {all:?}");
    assert!(
        all.iter().all(|(k, _)| k.contains("/part-")),
        "parts: {all:?}"
    );
    let uploaded: u64 = all.iter().map(|(_, n)| n).sum();
    assert_eq!(uploaded, size, "bytes uploaded = the rejects' length");
    eprintln!(
        "rejects: {size} bytes in {} parts, {uploaded} bytes uploaded",
        all.len()
    );

    // Fetched back whole: every rejected item once; status counts them.
    let copy = tempdir("s3rej-copy").join("rejects.jsonl");
    s3.fetch(&names.rejects, &copy, Some(size)).expect("fetch");
    let text = std::fs::read_to_string(&copy).expect("fetched");
    assert_eq!(text.len() as u64, size);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len() as u64, N / 5 * 4);
    assert_eq!(keys_once(&db, &lines).await.len() as u64, N);
    assert_eq!(
        s3.lines(&names.rejects).expect("lines"),
        Some(N / 5 * 4),
        "counted as status counts"
    );

    // No copy of the rejects (whole items) left in the local working folder.
    let local = s3.local_dir().expect("local dir").join(&names.rejects);
    assert!(!local.exists(), "{} left behind", local.display());
}

/// The names of the checkpoint of `table` migrated to `db` (DynamoDB Local, unsharded).
fn names_of(table: &str, db: &str) -> Names {
    let target_id = ddb2pg::pgconn::resolve(Some(db))
        .expect("target")
        .identity();
    Names::new(
        table,
        &format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}"),
        &target_id,
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_s3_part_stops_the_run_and_no_later_part_is_deleted() {
    const N: u64 = 300;
    let client = crate::support::ddb().await;
    let table = unique("s3gap");
    crate::support::load_sample(&client, &table, 5, N).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let work = tempdir("s3gap");
    let map = email_mapping(&work);
    let args = s3_email_args(&table, &db, &dir, &map, "0");
    let done = run(&args);
    assert_eq!(done.code, 4, "{}", done.stderr);
    let names = names_of(&table, &db);
    let folder = format!("{}/", names.rejects.trim_end_matches(".jsonl"));
    let parts = keys_under(&dir, &folder).await;
    assert!(parts.len() >= 3, "several parts: {parts:?}");

    // One part removed outside ddb2pg: the run stops naming it, and deletes no other part.
    let (s3, bucket, prefix) = s3_of(&dir).await;
    let second = format!("{prefix}/{folder}part-00000002.jsonl");
    let body = s3
        .get_object()
        .bucket(&bucket)
        .key(&second)
        .send()
        .await
        .expect("get part 2")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    s3.delete_object()
        .bucket(&bucket)
        .key(&second)
        .send()
        .await
        .expect("delete part 2");
    let rest = stored_rejects(&dir, &names.rejects).await;
    let stopped = run(&args);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    let err = &stopped.stderr;
    assert!(
        err.contains("part-00000002.jsonl is missing") && err.contains("Restore"),
        "{err}"
    );
    assert!(!err.contains("appended after what is there"), "{err}");
    let left: Vec<String> = parts
        .iter()
        .filter(|k| !k.ends_with("part-00000002.jsonl"))
        .cloned()
        .collect();
    assert_eq!(
        keys_under(&dir, &folder).await,
        left,
        "no other part deleted"
    );
    assert_eq!(stored_rejects(&dir, &names.rejects).await, rest);
    // `status` counts what it can and says the rest is not counted.
    let status = crate::support::ddb2pg_command()
        .args([
            "status",
            "--checkpoint-dir",
            &dir,
            "--s3-endpoint-url",
            moto_s3(),
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run status");
    let serr = String::from_utf8_lossy(&status.stderr);
    assert!(
        serr.contains("part 3 and later are not counted (part 2 is missing"),
        "{serr}"
    );

    // Restored as the message says: the same command finds every rejected item again.
    put_part(&dir, &names.rejects, 2, body.to_vec().into()).await;
    let again = run(&args);
    assert_eq!(again.code, 4, "{}", again.stderr);
    assert_eq!(keys_under(&dir, &folder).await, parts);
    let text = stored_rejects(&dir, &names.rejects).await;
    assert_eq!(
        text.iter().filter(|&&b| b == b'\n').count() as u64,
        N / 5 * 4
    );

    // Or, as it also says, --restart: the gapped parts set aside, every item rejected again.
    s3.delete_object()
        .bucket(&bucket)
        .key(&second)
        .send()
        .await
        .expect("delete part 2");
    let mut restart = args.clone();
    restart.push("--restart".to_string());
    let restarted = run(&restart);
    assert_eq!(restarted.code, 4, "{}", restarted.stderr);
    assert!(
        restarted.stderr.contains("earlier rejects are kept"),
        "{}",
        restarted.stderr
    );
    let text = stored_rejects(&dir, &names.rejects).await;
    assert_eq!(
        text.iter().filter(|&&b| b == b'\n').count() as u64,
        N / 5 * 4
    );
}

/// A plain S3 client on moto, and `dir`'s bucket and prefix.
async fn s3_of(dir: &str) -> (aws_sdk_s3::Client, String, String) {
    let (bucket, prefix) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    let client = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    (client, bucket, prefix)
}

/// The keys (below `dir`'s prefix) of the objects whose key starts with `start`, sorted.
pub(crate) async fn keys_under(dir: &str, start: &str) -> Vec<String> {
    let (s3, bucket, prefix) = s3_of(dir).await;
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/{start}"))
        .send()
        .await
        .expect("list");
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key()?.strip_prefix(&format!("{prefix}/")))
        .map(String::from)
        .collect();
    keys.sort();
    keys
}

/// The stored rejects `name` (`<stem>.rejects.jsonl`) under `dir`, read with a plain client:
/// its parts `<stem>.rejects/part-*.jsonl` joined in name order.
pub(crate) async fn stored_rejects(dir: &str, name: &str) -> Vec<u8> {
    let (s3, bucket, prefix) = s3_of(dir).await;
    let folder = format!("{}/", name.trim_end_matches(".jsonl"));
    let mut all = Vec::new();
    for key in keys_under(dir, &folder).await {
        let out = s3
            .get_object()
            .bucket(&bucket)
            .key(format!("{prefix}/{key}"))
            .send()
            .await
            .expect("get");
        all.extend(out.body.collect().await.expect("body").into_bytes());
    }
    all
}

/// Part `n` of the stored rejects `name` under `dir`, written with a plain client (as a run
/// killed after uploading it leaves it).
pub(crate) async fn put_part(
    dir: &str,
    name: &str,
    n: u64,
    body: aws_sdk_s3::primitives::ByteStream,
) {
    let (s3, bucket, prefix) = s3_of(dir).await;
    let key = format!(
        "{prefix}/{}/part-{n:08}.jsonl",
        name.trim_end_matches(".jsonl")
    );
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .expect("put part");
}

/// The rejects of the checkpoint `<stem>.json` in a listing whose name ends with `suffix`.
pub(crate) fn rejects_named(listing: &[String], suffix: &str) -> String {
    listing
        .iter()
        .find(|n| n.ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {listing:?}"))
        .replace(".json", ".rejects.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_parts_are_cut_back_to_the_checkpoint_and_only_uncounted_strays_are_removed() {
    const R: &str = "t.rejects.jsonl";
    let dir = s3_checkpoint_dir().await;
    let open = || S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let (a, b) = (open(), open());
    let local = tempdir("parts-a").join(R);
    a.fetch(R, &local, Some(0)).expect("fetch nothing");
    assert!(!local.exists());
    assert_eq!(a.lines(R).expect("lines"), None);
    std::fs::write(&local, "a1\na2\n").expect("write");
    a.publish_prefix(R, &local, 3).expect("first line");
    a.publish(R, &local).expect("the rest");
    std::fs::write(&local, "a1\na2\na3\n").expect("append");
    a.publish(R, &local).expect("a third part");
    let folder = R.trim_end_matches(".jsonl");
    assert_eq!(
        keys_under(&dir, folder).await,
        (1..=3)
            .map(|n| format!("{folder}/part-{n:08}.jsonl"))
            .collect::<Vec<_>>()
    );
    assert_eq!(a.lines(R).expect("lines"), Some(3));
    assert_eq!(
        a.show(R),
        format!("{dir}/{folder}/"),
        "shown as the folder of its parts"
    );

    // A part past a gap, while the parts before it hold fewer bytes than the checkpoint counts
    // (or it counts none): committed lines are missing; the fetch stops and deletes nothing.
    put_part(&dir, R, 7, b"stray\n".to_vec().into()).await;
    let local_b = tempdir("parts-b").join(R);
    for committed in [None, Some(10)] {
        let err = b.fetch(R, &local_b, committed).expect_err("a gap");
        let text = err.to_string();
        assert!(
            text.contains("part-00000004.jsonl is missing") && text.contains("Restore"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 1);
        assert_eq!(keys_under(&dir, folder).await.len(), 4, "nothing deleted");
    }
    // Past what the checkpoint counts (a killed run's tail): not the file's, and goes.
    b.fetch(R, &local_b, Some(9)).expect("fetch");
    assert_eq!(std::fs::read(&local_b).expect("fetched"), b"a1\na2\na3\n");
    assert_eq!(keys_under(&dir, folder).await.len(), 3, "the stray removed");

    // Cut back inside the second part: the third removed, the second replaced by its start.
    std::fs::write(&local_b, "a1\na").expect("cut");
    b.publish_prefix(R, &local_b, 4).expect("cut back");
    assert_eq!(stored_rejects(&dir, R).await, b"a1\na");
    assert_eq!(keys_under(&dir, folder).await.len(), 2);
    // The first process's parts are not the stored ones any more: it cannot add its own.
    std::fs::write(&local, "a1\na2\na3\nold\n").expect("append");
    let err = a.publish(R, &local).expect_err("refused");
    assert!(err.to_string().contains("another process"), "{err}");
    assert_eq!(stored_rejects(&dir, R).await, b"a1\na");
}

/// A report that cannot be written fails the run (exit 1), and the local copy of the rejects
/// is removed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_rejects_copy_is_removed_when_the_report_cannot_be_written() {
    let client = crate::support::ddb().await;
    let table = unique("s3repfail");
    crate::support::load_sample(&client, &table, 4, 50).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let work = tempdir("s3repfail");
    let map = email_mapping(&work);
    let out = crate::support::ddb2pg_command()
        .args(s3_email_args(&table, &db, &dir, &map, "0"))
        .arg("--report")
        .arg(work.join("no-such-folder").join("report.json"))
        .output()
        .expect("run ddb2pg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("report.json"), "{stderr}");
    let s3 = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let names = names_of(&table, &db);
    assert_eq!(
        s3.lines(&names.rejects).expect("lines"),
        Some(40),
        "kept in S3"
    );
    let local = s3.local_dir().expect("local dir").join(&names.rejects);
    assert!(!local.exists(), "{} left behind", local.display());
}
