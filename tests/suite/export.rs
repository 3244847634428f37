//! Exports: the AWS layout (manifests, gzipped and plain data files) gives the same target as
//! the live table; kill -9 and resume; a corrupt file and malformed lines; an incremental
//! export applied on top of a full load.

use std::io::Write;
use std::path::Path;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::support::harness::*;

/// Items `range` of the sample as an export laid out as AWS writes it: every `per_file` items a
/// data file, gzipped except every third one.
pub(crate) fn write_export(dir: &Path, range: std::ops::Range<u64>, per_file: u64) {
    let id = "01700000000000-abcdef12";
    let base = dir.join("AWSDynamoDB").join(id);
    std::fs::create_dir_all(base.join("data")).expect("dirs");
    let mut manifest = String::new();
    let mut file_no = 0;
    let mut start = range.start;
    while start < range.end {
        let end = (start + per_file).min(range.end);
        let mut text = String::new();
        for i in start..end {
            let item = ddb2pg::sample::item(1, i);
            text.push_str(
                &serde_json::json!({ "Item": crate::support::json::ddb_json(&item) }).to_string(),
            );
            text.push('\n');
        }
        let gz = file_no % 3 != 2;
        let name = format!("file{file_no:03}.json{}", if gz { ".gz" } else { "" });
        let path = base.join("data").join(&name);
        if gz {
            let mut e = flate2::write::GzEncoder::new(
                std::fs::File::create(&path).expect("create"),
                flate2::Compression::fast(),
            );
            e.write_all(text.as_bytes()).expect("gz");
            e.finish().expect("finish");
        } else {
            std::fs::write(&path, text).expect("write");
        }
        manifest.push_str(&format!(
            "{{\"itemCount\":{},\"dataFileS3Key\":\"AWSDynamoDB/{id}/data/{name}\"}}\n",
            end - start
        ));
        file_no += 1;
        start = end;
    }
    std::fs::write(base.join("manifest-files.json"), manifest).expect("manifest");
    std::fs::write(
        base.join("manifest-summary.json"),
        format!("{{\"exportType\":\"FULL_EXPORT\",\"tableArn\":\"arn:aws:dynamodb:us-east-1:000000000000:table/exp\",\"itemCount\":{}}}", range.end - range.start),
    )
    .expect("summary");
}

/// An export of the given lines in one plain data file, with manifests naming table `exp`.
pub(crate) fn write_export_lines(dir: &Path, lines: &[serde_json::Value], kind: &str) {
    let id = "01700000000001-incr";
    let base = dir.join("AWSDynamoDB").join(id);
    std::fs::create_dir_all(base.join("data")).expect("dirs");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(base.join("data/inc.json"), text).expect("data");
    std::fs::write(
        base.join("manifest-files.json"),
        format!(
            "{{\"itemCount\":{},\"dataFileS3Key\":\"AWSDynamoDB/{id}/data/inc.json\"}}\n",
            lines.len()
        ),
    )
    .expect("manifest");
    std::fs::write(
        base.join("manifest-summary.json"),
        format!("{{\"exportType\":\"{kind}\",\"tableArn\":\"arn:aws:dynamodb:us-east-1:000000000000:table/exp\"}}"),
    )
    .expect("summary");
}

pub(crate) fn export_args(export: &Path, db: &str, cp: &Path) -> Vec<String> {
    [
        "migrate",
        "--export",
        &export.to_string_lossy(),
        "--key",
        "PK,SK",
        "--target",
        db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--progress",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every row of `table` in key order, as text, so two databases can be compared.
async fn dump(db: &str, table: &str) -> Vec<String> {
    pg(db)
        .await
        .query(
            &format!("SELECT t::text FROM \"{table}\" t ORDER BY \"PK\", \"SK\""),
            &[],
        )
        .await
        .expect("dump")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_and_the_table_give_identical_targets() {
    let n = 3000;
    let table = sample_table(n).await;
    let from_table = new_database().await;
    let r = run(&migrate_args(&table, &from_table, &tempdir("exp-t")));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let dir = tempdir("export");
    write_export(&dir, 0..n, 700);
    let from_export = new_database().await;
    let r = run(&export_args(&dir, &from_export, &tempdir("exp-e")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["segments_total"], 5, "one segment per file");
    assert_eq!(r.report["items_read"].as_u64(), Some(n), "{}", r.report);
    let t = ddb2pg::plan::default_table_name(&table);
    let a = dump(&from_table, &t).await;
    let b = dump(&from_export, "exp").await;
    assert_eq!(a.len() as u64, n);
    assert_eq!(a, b);
    // Without a key schema the default mapping cannot work: a clear message.
    let mut args = export_args(&dir, &from_export, &tempdir("exp-nokey"));
    let at = args.iter().position(|a| a == "--key").expect("key");
    args.drain(at..at + 2);
    let r = run(&args);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--key"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_export_and_resume_is_exact() {
    let n = 20000;
    let dir = tempdir("export-kill");
    write_export(&dir, 0..n, 10000);
    let db = new_database().await;
    let cp = tempdir("exp-kill-cp");
    let mut args = export_args(&dir, &db, &cp);
    args.extend(["--batch-size", "20", "--concurrency", "1"].map(String::from));
    let mut child = spawn(&args);
    let seen = wait_until_committed(&mut child, &cp, 3000);
    child.kill().expect("kill -9");
    // The kill is what ended it: the run had not exited on its own.
    assert_killed_by_9(child.wait().expect("wait"));
    let before = committed_items(&cp);
    assert!(
        before >= seen && before < n,
        "killed mid-run: {before} of {n}"
    );
    let cursor = read_checkpoint(&cp);
    assert!(
        cursor
            .segments
            .iter()
            .any(|s| !s.done && s.cursor.is_some()),
        "a file was killed mid-way, its line cursor held: {:?}",
        cursor.segments
    );
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The resume read on from the line cursor, not from the start of the file: exactly
    // the items the checkpoint did not hold.
    assert_eq!(
        r.report["items_read"].as_u64(),
        Some(n - before),
        "{}",
        r.report
    );
    let (missing, extra) = default_mapping_differences(&db, "exp", n).await;
    assert_eq!((missing, extra), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_rejected_and_a_corrupt_file_stops_resumably() {
    let dir = tempdir("export-bad");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let good = |i: u64| {
        serde_json::json!({ "Item": crate::support::json::ddb_json(&ddb2pg::sample::item(1, i)) })
            .to_string()
    };
    std::fs::write(
        data.join("a.json"),
        format!(
            "{}\nthis is not json\n{}\n{{\"Item\": {{\"PK\": {{\"Q\": \"x\"}}}}}}\n",
            good(0),
            good(1)
        ),
    )
    .expect("a");
    // A gzip file cut in half.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 2..2000 {
        e.write_all(good(i).as_bytes()).expect("gz");
        e.write_all(b"\n").expect("gz");
    }
    let bytes = e.finish().expect("finish");
    std::fs::write(data.join("b.json.gz"), &bytes[..bytes.len() / 2]).expect("b");
    let db = new_database().await;
    let cp = tempdir("exp-bad-cp");
    let r = run(&export_args(&dir, &db, &cp));
    assert_eq!(r.code, 1, "{}", r.stderr);
    // The file and what reading it said, not "DynamoDB: ...": an export's file is a file.
    let b = data.join("b.json.gz");
    assert!(
        r.stderr.contains(&format!(
            "error: {}: cannot be read after line ",
            b.display()
        )) && r.stderr.contains("corrupt or truncated"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("DynamoDB: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("run the same command again"),
        "{}",
        r.stderr
    );
    let rejects = rejects_in(&cp);
    let mut lines: Vec<u64> = rejects.iter().filter_map(|r| r["line"].as_u64()).collect();
    lines.sort();
    assert_eq!(lines, [2, 4], "{rejects:?}");
    assert!(rejects
        .iter()
        .all(|r| r["file"].as_str().is_some_and(|f| f.ends_with("a.json"))));
    // The good lines of a.json landed (the table is named after the folder: no manifest).
    let t = ddb2pg::plan::default_table_name(&dir.file_name().expect("name").to_string_lossy());
    let rows: i64 = pg(&db)
        .await
        .query_one(
            &format!("SELECT count(*) FROM \"{t}\" WHERE \"PK\" = 'USER#00000000'"),
            &[],
        )
        .await
        .expect("rows")
        .get(0);
    assert_eq!(rows, 2, "items 0 and 1 of a.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_applies_updates_inserts_and_deletes() {
    let n = 500;
    let dir = tempdir("export-full");
    write_export(&dir, 0..n, 200);
    let db = new_database().await;
    let cp = tempdir("exp-inc-cp");
    let r = run(&export_args(&dir, &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Incremental: item 0 updated, item n new, item 1 deleted (OldImage) and item 2 deleted (Keys only).
    let img = |i: u64| crate::support::json::ddb_json(&ddb2pg::sample::item(1, i));
    let mut updated = ddb2pg::sample::item(1, 0);
    updated.insert(
        "email".into(),
        AttributeValue::S("changed@example.com".into()),
    );
    let keys = |i: u64| {
        let it = ddb2pg::sample::item(1, i);
        serde_json::json!({ "PK": crate::support::json::ddb_value(&it["PK"]), "SK": crate::support::json::ddb_value(&it["SK"]) })
    };
    let inc = tempdir("export-inc");
    let lines = [
        serde_json::json!({ "Keys": keys(0), "NewImage": crate::support::json::ddb_json(&updated), "OldImage": img(0) }),
        serde_json::json!({ "Keys": keys(n), "NewImage": img(n) }),
        serde_json::json!({ "Keys": keys(1), "OldImage": img(1) }),
        serde_json::json!({ "Keys": keys(2) }),
    ];
    write_export_lines(&inc, &lines, "INCREMENTAL_EXPORT");
    let r = run(&export_args(&inc, &db, &tempdir("exp-inc-cp2")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_deleted"], 2, "{}", r.report);
    let c = pg(&db).await;
    let email: String = c
        .query_one(
            "SELECT item->>'email' FROM exp WHERE \"PK\" = 'USER#00000000' AND \"SK\" = 'PROFILE'",
            &[],
        )
        .await
        .expect("updated row")
        .get(0);
    assert_eq!(email, "changed@example.com");
    let count = |pk: String, sk: String| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT count(*) FROM exp WHERE \"PK\" = $1 AND \"SK\" = $2",
                &[&pk, &sk],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
        }
    };
    let key_of = |i: u64| {
        let it = ddb2pg::sample::item(1, i);
        let s = |k: &str| match &it[k] {
            AttributeValue::S(v) => v.clone(),
            other => panic!("{other:?}"),
        };
        (s("PK"), s("SK"))
    };
    let (pk, sk) = key_of(n);
    assert_eq!(count(pk, sk).await, 1, "inserted");
    let (pk, sk) = key_of(1);
    assert_eq!(count(pk, sk).await, 0, "deleted by its old image");
    let (pk, sk) = key_of(2);
    assert_eq!(count(pk, sk).await, 0, "deleted by its keys");
    let total: i64 = c
        .query_one("SELECT count(*) FROM exp", &[])
        .await
        .expect("total")
        .get(0);
    assert_eq!(total, n as i64 + 1 - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_export_on_a_local_s3_server_gives_the_same_target() {
    let n = 1200;
    let dir = tempdir("export-s3");
    write_export(&dir, 0..n, 500);
    let endpoint = moto_s3();
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let local = new_database().await;
    let r = run(&export_args(&dir, &local, &tempdir("exp-s3-local")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let remote = new_database().await;
    let cp = tempdir("exp-s3-cp");
    let url = format!("s3://{bucket}/exports/app");
    let mut args = export_args(Path::new(&url), &remote, &cp);
    args.extend(["--s3-endpoint-url".to_string(), endpoint.to_string()]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["segments_total"], 3);
    assert_eq!(dump(&local, "exp").await, dump(&remote, "exp").await);
    assert_eq!(dump(&remote, "exp").await.len() as u64, n);
    // A missing prefix is a clear error.
    let mut args = export_args(
        Path::new(&format!("s3://{bucket}/nothing/here")),
        &remote,
        &tempdir("exp-s3-none"),
    );
    args.extend(["--s3-endpoint-url".to_string(), endpoint.to_string()]);
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no export files"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgresql_refuses_from_an_export_are_rejected_with_their_whole_item() {
    // Export pages are transformed on the reader's thread and their items dropped; a refused
    // row's item is parsed again from its line for the rejects file.
    let n = 300;
    let dir = tempdir("export-refused");
    write_export(&dir, 0..n, 120);
    let db = new_database().await;
    let key = |i: u64| {
        let item = ddb2pg::sample::item(1, i);
        let s = |a: &str| match item.get(a) {
            Some(AttributeValue::S(s)) => s.clone(),
            other => panic!("{a}: {other:?}"),
        };
        (s("PK"), s("SK"))
    };
    let (refused_a, refused_b) = (key(7), key(250));
    pg(&db)
        .await
        .batch_execute(&format!(
            "CREATE TABLE exp (\"PK\" text NOT NULL, \"SK\" text NOT NULL, item jsonb, \
             PRIMARY KEY (\"PK\", \"SK\"), CONSTRAINT not_these CHECK (NOT ( \
             (\"PK\" = '{}' AND \"SK\" = '{}') OR (\"PK\" = '{}' AND \"SK\" = '{}'))))",
            refused_a.0, refused_a.1, refused_b.0, refused_b.1
        ))
        .await
        .expect("create table");
    let cp = tempdir("exp-refused-cp");
    let mut args = export_args(&dir, &db, &cp);
    args.extend(["--batch-size", "50"].map(String::from));
    let r = run(&args);
    assert_eq!(r.code, 4, "finished with rejects: {}", r.stderr);
    let (missing, extra) = default_mapping_differences(&db, "exp", n).await;
    assert_eq!((missing, extra), (2, 0), "all but the two refused items");
    let rejects = rejects_in(&cp);
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    for (i, k) in [(7, &refused_a), (250, &refused_b)] {
        let r = rejects
            .iter()
            .find(|r| r["key"]["SK"]["S"] == k.1.as_str() && r["key"]["PK"]["S"] == k.0.as_str())
            .unwrap_or_else(|| panic!("no reject for item {i}: {rejects:?}"));
        assert!(
            r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("not_these")),
            "{r}"
        );
        let want = crate::support::json::ddb_json(&ddb2pg::sample::item(1, i));
        assert_eq!(r["item"], want, "the whole item, as read");
    }
}

/// A client of moto's S3 server and a new bucket on it.
pub(crate) async fn new_bucket() -> (aws_sdk_s3::Client, String) {
    let shared = ddb2pg::source::aws_config(
        &ddb2pg::cli::AwsArgs {
            endpoint_url: None,
            region: None,
            profile: None,
        },
        Some(moto_s3()),
    )
    .await
    .expect("aws config");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("bucket").replace('_', "-");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    (s3, bucket)
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .expect("put");
}

/// Every file below `dir` as an object below `prefix/`.
pub(crate) async fn upload(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .expect("rel")
                .to_string_lossy()
                .to_string();
            put(
                s3,
                bucket,
                &format!("{prefix}/{rel}"),
                std::fs::read(&p).expect("read"),
            )
            .await;
        }
    }
}

/// `export_args` for an s3:// export on moto.
fn s3_args(bucket: &str, prefix: &str, db: &str, cp: &Path) -> Vec<String> {
    let url = format!("s3://{bucket}/{prefix}");
    let mut args = export_args(Path::new(&url), db, cp);
    // The tests look at the copies after the run (removing them is tested in files.rs).
    args.extend([
        "--s3-endpoint-url".to_string(),
        moto_s3().to_string(),
        "--keep-downloads".to_string(),
    ]);
    args
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .expect("rel")
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_that_would_land_outside_the_download_folder_are_refused() {
    let dir = tempdir("export-s3-escape");
    write_export(&dir, 0..50, 50);
    let (s3, bucket) = new_bucket().await;
    let db = new_database().await;
    let line = format!(
        "{}\n",
        serde_json::json!({ "Item": { "PK": { "S": "x" }, "SK": { "S": "y" } } })
    );
    for (prefix, evil) in [
        ("exports/app", "exports/app/data/../../../escaped.json"),
        ("exports/abs", "exports/abs//tmp/absolute.json"),
    ] {
        upload(&s3, &bucket, prefix, &dir).await;
        put(&s3, &bucket, evil, line.clone().into_bytes()).await;
        // The download folder would be base/cp/s3-.../: the `..` key points at base.
        let base = tempdir("exp-s3-escape");
        let r = run(&s3_args(&bucket, prefix, &db, &base.join("cp")));
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(evil) && r.stderr.contains("nothing was downloaded"),
            "{}",
            r.stderr
        );
        assert_eq!(files_below(&base), Vec::<String>::new(), "nothing written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_cannot_name_files_outside_the_export() {
    let base = tempdir("export-manifest-escape");
    let root = base.join("export");
    write_export(&root, 0..20, 20);
    let outside = base.join("secret.json");
    std::fs::write(
        &outside,
        "{\"Item\":{\"PK\":{\"S\":\"secret\"},\"SK\":{\"S\":\"s\"}}}\n",
    )
    .expect("secret");
    let manifest = root.join("AWSDynamoDB/01700000000000-abcdef12/manifest-files.json");
    let good = std::fs::read_to_string(&manifest).expect("manifest");
    let db = new_database().await;
    for key in [
        "/etc/passwd",
        "../secret.json",
        "AWSDynamoDB/../../secret.json",
    ] {
        std::fs::write(
            &manifest,
            format!("{good}{{\"itemCount\":1,\"dataFileS3Key\":\"{key}\"}}\n"),
        )
        .expect("manifest");
        let r = run(&export_args(&root, &db, &tempdir("exp-manifest-escape-cp")));
        assert_eq!(r.code, 2, "{key}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("dataFileS3Key \"{key}\"")) && r.stderr.contains("line 2"),
            "{}",
            r.stderr
        );
    }
    // A data file that is a symbolic link to a file outside the export.
    let data = root.join("AWSDynamoDB/01700000000000-abcdef12/data");
    std::os::unix::fs::symlink(&outside, data.join("link.json")).expect("symlink");
    std::fs::write(
        &manifest,
        format!("{good}{{\"itemCount\":1,\"dataFileS3Key\":\"AWSDynamoDB/01700000000000-abcdef12/data/link.json\"}}\n"),
    )
    .expect("manifest");
    let r = run(&export_args(&root, &db, &tempdir("exp-manifest-escape-cp")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("lies outside the export"), "{}", r.stderr);
    let tables: i64 = pg(&db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'exp'",
            &[],
        )
        .await
        .expect("tables")
        .get(0);
    assert_eq!(tables, 0, "nothing was read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_prefix_is_a_folder_not_the_start_of_other_exports_names() {
    let full = tempdir("export-s3-full");
    write_export(&full, 0..100, 40);
    let incr = tempdir("export-s3-incr");
    write_export_lines(
        &incr,
        &[serde_json::json!({ "Keys": { "PK": { "S": "gone" }, "SK": { "S": "x" } } })],
        "INCREMENTAL_EXPORT",
    );
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &full).await;
    upload(&s3, &bucket, "exports/app-incr-1", &incr).await;
    // A folder of data files, and a file whose name starts with the folder's.
    put(&s3, &bucket, "bare/app/a.json", format!("{}\n", serde_json::json!({ "Item": crate::support::json::ddb_json(&ddb2pg::sample::item(1, 0)) })).into_bytes()).await;
    put(&s3, &bucket, "bare/app-2.json", format!("{}\n", serde_json::json!({ "Item": crate::support::json::ddb_json(&ddb2pg::sample::item(1, 1)) })).into_bytes()).await;
    let db = new_database().await;
    let cp = tempdir("exp-s3-prefix-cp");
    let r = run(&s3_args(&bucket, "exports/app", &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let downloaded = files_below(&cp);
    assert!(
        !downloaded.iter().any(|f| f.contains("incr")),
        "{downloaded:?}"
    );
    assert_eq!(dump(&db, "exp").await.len(), 100);
    let r = run(&s3_args(&bucket, "bare/app", &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["segments_total"], 1, "a.json only: {}", r.report);
    assert_eq!(r.report["items_read"], 1, "{}", r.report);
}

/// The checkpoint's lock file in `cp` (there is one run).
fn lock_file(cp: &Path) -> std::path::PathBuf {
    std::fs::read_dir(cp)
        .expect("cp")
        .flatten()
        .map(|e| e.path())
        // The run's lock, not the shared one of the download folder (s3-*.lock).
        .find(|p| {
            p.extension().is_some_and(|x| x == "lock")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("s3-"))
        })
        .expect("a lock file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_downloads_happen_under_the_lock_and_damaged_files_are_fetched_again() {
    let dir = tempdir("export-s3-lock");
    write_export(&dir, 0..300, 100);
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let db = new_database().await;
    let cp = tempdir("exp-s3-lock-cp");
    let r = run(&s3_args(&bucket, "exports/app", &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dl = std::fs::read_dir(&cp)
        .expect("cp")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.to_string_lossy().contains("s3-"))
        .expect("the download folder");
    // The lock keeps the name it had when it was named after the downloaded files.
    let url = format!("s3://{bucket}/exports/app");
    let on_disk =
        ddb2pg::source::export::open_in(&ddb2pg::source::export::Disk, &dl, &url).expect("open");
    let ckpt = std::fs::read_dir(&cp)
        .expect("cp")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("checkpoint");
    let saved = ddb2pg::checkpoint::Checkpoint::load(&ckpt)
        .expect("load")
        .expect("a checkpoint");
    assert_eq!(saved.settings.source, on_disk.identity);

    // Another run holds the lock: nothing is downloaded.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(lock_file(&cp))
        .expect("open lock");
    lock.try_lock().expect("take the lock");
    std::fs::remove_dir_all(&dl).expect("remove downloads");
    let r = run(&s3_args(&bucket, "exports/app", &db, &cp));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds"), "{}", r.stderr);
    assert!(
        !dl.exists(),
        "downloaded without the lock: {:?}",
        files_below(&dl)
    );
    drop(lock);

    // A file of the right size but damaged content is fetched again (moto's ETags are MD5s).
    let r = run(&s3_args(&bucket, "exports/app", &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = dl.join("AWSDynamoDB/01700000000000-abcdef12/data/file001.json.gz");
    let good = std::fs::read(&file).expect("read");
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0xff;
    std::fs::write(&file, &bad).expect("damage");
    let fresh = new_database().await;
    let mut args = s3_args(&bucket, "exports/app", &fresh, &cp);
    args.push("--restart".into());
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("fetching it again") && r.stderr.contains("file001.json.gz"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&file).expect("read"), good);
    assert_eq!(dump(&fresh, "exp").await, dump(&db, "exp").await);
}

/// A real export written by DynamoDB (../shared/real-data, see its README), when present.
fn real_export() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/real-data/exports/scylla-migrator-S3ExportTest");
    p.is_dir().then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_exports_md5_checksums_are_checked() {
    let Some(real) = real_export() else {
        eprintln!("skipped: no ../shared/real-data");
        return;
    };
    let (s3, bucket) = new_bucket().await;
    // As AWS wrote it: the manifest's keys start with the prefix, dynamodb-export.
    upload(&s3, &bucket, "dynamodb-export", &real).await;
    let db = new_database().await;
    let cp = tempdir("exp-s3-real-cp");
    let mut args = s3_args(&bucket, "dynamodb-export", &db, &cp);
    let key = args.iter().position(|a| a == "PK,SK").expect("key");
    args[key] = "id".into();
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["items_read"], 3, "{}", r.report);
    let data = "AWSDynamoDB/01715685260608-c488b4e1/data/uimbi7eofu2b5kzkxe63gsvb6i.json.gz";
    let file = files_below(&cp)
        .into_iter()
        .find(|f| f.ends_with(data))
        .map(|f| cp.join(f))
        .expect("downloaded");
    let good = std::fs::read(&file).expect("read");
    let mut bad = good.clone();
    bad[10] ^= 0x01;
    std::fs::write(&file, &bad).expect("damage");
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("md5Checksum") && r.stderr.contains("fetching it again"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&file).expect("read"), good);
    // The object itself no longer matches the manifest: refused, nothing of it read.
    std::fs::write(&file, &bad).expect("damage");
    let mut other = good.clone();
    other[11] ^= 0x01;
    put(&s3, &bucket, &format!("dynamodb-export/{data}"), other).await;
    let r = run(&args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("rzAeIrtALbOlNdK5Hh8tgA=="),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        bad,
        "the damaged copy is not replaced by another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_rejected_not_fatal() {
    let dir = tempdir("export-utf8");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let good = |i: u64| {
        serde_json::json!({ "Item": crate::support::json::ddb_json(&ddb2pg::sample::item(1, i)) })
            .to_string()
    };
    let mut bytes = format!("{}\n", good(0)).into_bytes();
    bytes.extend(b"{\"Item\":{\"PK\":{\"S\":\"caf\xe9\"},\"SK\":{\"S\":\"x\"}}}\n");
    bytes.extend(format!("{}\n", good(1)).into_bytes());
    std::fs::write(data.join("a.json"), bytes).expect("a");
    let db = new_database().await;
    let cp = tempdir("exp-utf8-cp");
    for _ in 0..2 {
        let r = run(&export_args(&dir, &db, &cp));
        assert_eq!(r.code, 4, "{}", r.stderr);
    }
    let rejects = rejects_in(&cp);
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["line"], 2);
    assert!(
        rejects[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not UTF-8")),
        "{rejects:?}"
    );
    assert!(
        rejects[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("caf\u{fffd}")),
        "{rejects:?}"
    );
    let t = ddb2pg::plan::default_table_name(&dir.file_name().expect("name").to_string_lossy());
    let rows: i64 = pg(&db)
        .await
        .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
        .await
        .expect("rows")
        .get(0);
    assert_eq!(rows, 2, "items 0 and 1 landed");
}

/// Run to the end, sampling the process's peak resident memory (VmHWM, in MiB) meanwhile.
fn run_measuring_peak(args: &[String]) -> (i32, String, u64) {
    let mut child = command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    while child.try_wait().expect("wait").is_none() {
        let status = std::fs::read_to_string(&status_file).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        peak_kb = peak_kb.max(hwm.unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        String::from_utf8_lossy(&out.stderr).to_string(),
        peak_kb >> 10,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_without_a_newline_for_hundreds_of_mib_is_rejected_in_flat_memory() {
    let dir = tempdir("export-long");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let good = |i: u64| {
        serde_json::json!({ "Item": crate::support::json::ddb_json(&ddb2pg::sample::item(1, i)) })
            .to_string()
    };
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(data.join("a.json.gz")).expect("create"),
        flate2::Compression::fast(),
    );
    e.write_all(format!("{}\n{{\"Item\":{{\"PK\":{{\"S\":\"", good(0)).as_bytes())
        .expect("gz");
    let chunk = vec![b'x'; 1 << 20];
    let long_mib = 300;
    for _ in 0..long_mib {
        e.write_all(&chunk).expect("gz");
    }
    e.write_all(format!("\"}}}}}}\n{}\n", good(1)).as_bytes())
        .expect("gz");
    e.finish().expect("finish");
    let db = new_database().await;
    let cp = tempdir("exp-long-cp");
    let (code, stderr, peak_mib) = run_measuring_peak(&export_args(&dir, &db, &cp));
    assert_eq!(code, 4, "{stderr}");
    assert!(
        peak_mib < 150,
        "peak RSS {peak_mib} MiB for a {long_mib} MiB line"
    );
    let rejects = rejects_in(&cp);
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["line"], 2);
    let reason = rejects[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("longer than the 16 MiB"), "{reason}");
    let text = rejects[0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("{\"Item\":{\"PK\"") && text.len() <= 2000,
        "{}",
        text.len()
    );
    let t = ddb2pg::plan::default_table_name(&dir.file_name().expect("name").to_string_lossy());
    let rows: i64 = pg(&db)
        .await
        .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
        .await
        .expect("rows")
        .get(0);
    assert_eq!(rows, 2, "the lines before and after landed");
}
