//! `verify` on every path: exports (local and s3://, incremental exports applied on top),
//! values the target's column types refuse, collisions, json columns, and its flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use super::export::{new_bucket, upload, write_export, write_export_lines};
use crate::support::harness::*;
use crate::support::{item, n, put, s};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `migrate --export PATH` into `db`, with `extra` flags.
fn migrate_export(path: &str, db: &str, cp: &Path, extra: &[&str]) -> Run {
    let cp = cp.to_string_lossy();
    let mut args = strings(&[
        "migrate",
        "--export",
        path,
        "--target",
        db,
        "--checkpoint-dir",
        &cp,
        "--progress",
        "none",
    ]);
    args.extend(strings(extra));
    run(&args)
}

/// `verify --export E1 --export E2 ...` against `db`, with `extra` flags.
fn verify_exports(exports: &[&str], db: &str, cp: &Path, extra: &[&str]) -> Run {
    let mut args = strings(&["verify"]);
    for e in exports {
        args.extend(strings(&["--export", e]));
    }
    let cp = cp.to_string_lossy();
    args.extend(strings(&[
        "--target",
        db,
        "--checkpoint-dir",
        &cp,
        "--samples",
        "3",
    ]));
    if !extra.contains(&"--progress") {
        args.extend(strings(&["--progress", "none"]));
    }
    args.extend(strings(extra));
    run(&args)
}

fn p(path: &Path) -> String {
    path.to_string_lossy().to_string()
}

/// The sample item `i`'s (PK, SK).
fn key_of(i: u64) -> (String, String) {
    let it = ddb2pg::sample::item(1, i);
    let s = |k: &str| match &it[k] {
        AttributeValue::S(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    (s("PK"), s("SK"))
}

fn keys_json(i: u64) -> serde_json::Value {
    let (pk, sk) = key_of(i);
    json!({ "PK": { "S": pk }, "SK": { "S": sk } })
}

fn image(i: u64) -> serde_json::Value {
    ddb2pg::value::item_to_ddb_json(&ddb2pg::sample::item(1, i))
}

/// An incremental export of the sample: item 0's email changed, item `n` new, item 1 deleted
/// with its old image, item 2 deleted by its keys only.
fn write_incremental(dir: &Path, n: u64) {
    let mut updated = ddb2pg::sample::item(1, 0);
    updated.insert(
        "email".into(),
        AttributeValue::S("changed@example.com".into()),
    );
    let lines = [
        json!({ "Keys": keys_json(0), "NewImage": ddb2pg::value::item_to_ddb_json(&updated), "OldImage": image(0) }),
        json!({ "Keys": keys_json(n), "NewImage": image(n) }),
        json!({ "Keys": keys_json(1), "OldImage": image(1) }),
        json!({ "Keys": keys_json(2) }),
    ];
    write_export_lines(dir, &lines, "INCREMENTAL_EXPORT");
}

fn counts(r: &serde_json::Value) -> [u64; 4] {
    [
        "matched",
        "missing_in_target",
        "extra_in_target",
        "mismatched",
    ]
    .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}")))
}

fn pk_sk(i: u64) -> serde_json::Value {
    let (pk, sk) = key_of(i);
    json!({ "PK": pk, "SK": sk })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_an_export_and_its_incremental_exports_as_migrate_applied_them() {
    let n = 500;
    let (full, incr) = (tempdir("vx-full"), tempdir("vx-incr"));
    write_export(&full, 0..n, 200);
    write_incremental(&incr, n);
    let db = new_database().await;
    let cp = tempdir("vx-cp");
    for dir in [&full, &incr] {
        let r = migrate_export(&p(dir), &db, &cp, &["--key", "PK,SK"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let key = ["--key", "PK,SK"];

    // Full, then incremental: what migrate left, exactly (with progress log lines).
    let v = verify_exports(
        &[&p(&full), &p(&incr)],
        &db,
        &cp,
        &["--key", "PK,SK", "--progress", "log"],
    );
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(v.report["status"], "identical");
    assert_eq!(v.report["items_read"], n + 4);
    assert_eq!(counts(&v.report["tables"]["exp"]), [n - 1, 0, 0, 0]);

    // The full export alone: the incremental export's four changes are the differences.
    let v = verify_exports(&[&p(&full)], &db, &cp, &key);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let t = &v.report["tables"]["exp"];
    assert_eq!(counts(t), [n - 3, 2, 1, 1], "{t}");
    assert_eq!(t["samples"]["extra_in_target"][0], pk_sk(n), "{t}");
    assert_eq!(t["samples"]["mismatched"][0], pk_sk(0), "{t}");

    // A row lost from the target is found.
    let (pk, sk) = key_of(3);
    pg(&db)
        .await
        .execute(
            "DELETE FROM exp WHERE \"PK\" = $1 AND \"SK\" = $2",
            &[&pk, &sk],
        )
        .await
        .expect("delete");
    let v = verify_exports(&[&p(&full), &p(&incr)], &db, &cp, &key);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let t = &v.report["tables"]["exp"];
    assert_eq!(counts(t), [n - 2, 1, 0, 0], "{t}");
    assert_eq!(t["samples"]["missing_in_target"][0], pk_sk(3), "{t}");

    // Without --key or a mapping: the same usage error as migrate's.
    let v = verify_exports(&[&p(&full)], &db, &cp, &[]);
    assert_eq!(v.code, 2, "{}", v.stderr);
    assert!(v.stderr.contains("--key"), "{}", v.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_s3_exports_and_leaves_no_copies() {
    let n = 300;
    let (full, incr) = (tempdir("vx-s3-full"), tempdir("vx-s3-incr"));
    write_export(&full, 0..n, 120);
    write_incremental(&incr, n);
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &full).await;
    upload(&s3, &bucket, "exports/app-incr-1", &incr).await;
    let db = new_database().await;
    let cp = tempdir("vx-s3-cp");
    for dir in [&full, &incr] {
        let r = migrate_export(&p(dir), &db, &cp, &["--key", "PK,SK"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let (url_full, url_incr) = (
        format!("s3://{bucket}/exports/app"),
        format!("s3://{bucket}/exports/app-incr-1"),
    );
    let extra = ["--key", "PK,SK", "--s3-endpoint-url", moto_s3()];
    let v = verify_exports(&[&url_full, &url_incr], &db, &cp, &extra);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(counts(&v.report["tables"]["exp"]), [n - 1, 0, 0, 0]);
    let v = verify_exports(&[&url_full], &db, &cp, &extra);
    assert_eq!(v.code, 3, "{}", v.stderr);
    assert_eq!(counts(&v.report["tables"]["exp"]), [n - 3, 2, 1, 1]);
    // The copies verify downloaded are gone.
    let left: Vec<PathBuf> = std::fs::read_dir(&cp)
        .expect("cp")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("verify-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

const SCORES_MAPPING: &str = r#"
[[table]]
name = "scores"
key = ["id"]
[table.columns]
id = { from = "id", type = "text" }
score = { from = "score", type = "numeric" }

[[table]]
name = "tags"
key = ["id"]
[table.columns]
id = { from = "id", type = "text" }
tag = { from = "tag", type = "text" }
"#;

fn score_item(i: u64, score: &str) -> serde_json::Value {
    json!({
        "id": { "S": format!("i{i:03}") },
        "score": { "N": score },
        "tag": { "S": format!("t{i}") },
    })
}

async fn count_where(db: &str, table: &str, id: &str) -> i64 {
    pg(db)
        .await
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE id = $1"),
            &[&id],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_target_refuses_are_counted_differences_not_a_crash() {
    // numeric(13,2) holds less than 10^11: every tenth item's score is over it.
    let n = 40u64;
    let too_big = |i: u64| i % 10 == 3;
    let lines: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let score = if too_big(i) {
                "123456789012.5".to_string()
            } else {
                format!("{i}.25")
            };
            json!({ "Item": score_item(i, &score) })
        })
        .collect();
    let full = tempdir("vx-refused-full");
    write_export_lines(&full, &lines, "FULL_EXPORT");
    let dir = tempdir("vx-refused");
    let mapping = dir.join("m.toml");
    std::fs::write(&mapping, SCORES_MAPPING).expect("mapping");
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE TABLE scores (id text PRIMARY KEY, score numeric(13,2)); \
             CREATE TABLE tags (id text PRIMARY KEY, tag text);",
        )
        .await
        .expect("schema");
    let cp = dir.join("cp");
    let m = p(&mapping);
    let r = migrate_export(&p(&full), &db, &cp, &["--mapping", &m]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    // Migrate rejects the whole item: neither table has its rows.
    assert_eq!(count_where(&db, "tags", "i003").await, 0);
    assert_eq!(count_where(&db, "scores", "i003").await, 0);

    let v = verify_exports(&[&p(&full)], &db, &cp, &["--mapping", &m]);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let refused = (0..n).filter(|&i| too_big(i)).count() as u64;
    assert_eq!(refused, 4);
    let s = &v.report["tables"]["scores"];
    assert_eq!(counts(s), [n - refused, 0, 0, 0], "{s}");
    assert_eq!(s["refused_by_target"], refused, "{s}");
    assert_eq!(
        s["samples"]["refused_by_target"][0],
        json!({ "id": "i003" })
    );
    assert!(
        s["refused_reason"]
            .as_str()
            .is_some_and(|r| r.contains("numeric field overflow")),
        "{s}"
    );
    let t = &v.report["tables"]["tags"];
    assert_eq!(counts(t), [n - refused, 0, 0, 0], "{t}");
    assert_eq!(t["refused_by_target"], 0, "{t}");
    assert_eq!(v.report["refused_by_target"], refused);
    let files = v.report["rejects_files"].as_array().expect("rejects_files");
    assert_eq!(files.len(), 1, "{}", v.report);
    assert!(
        Path::new(files[0].as_str().unwrap_or_default()).exists(),
        "{files:?}"
    );
    assert!(v.stderr.contains("rejects file"), "{}", v.stderr);

    // An incremental export makes item 0's score too big: migrate rejects the change and
    // deletes the item's old rows, and verify expects exactly that.
    let incr = tempdir("vx-refused-incr");
    let change = json!({
        "Keys": { "id": { "S": "i000" } },
        "NewImage": score_item(0, "999999999999"),
        "OldImage": score_item(0, "0.25"),
    });
    write_export_lines(&incr, &[change], "INCREMENTAL_EXPORT");
    let r = migrate_export(&p(&incr), &db, &cp, &["--mapping", &m]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(count_where(&db, "scores", "i000").await, 0);
    assert_eq!(count_where(&db, "tags", "i000").await, 0);
    let v = verify_exports(&[&p(&full), &p(&incr)], &db, &cp, &["--mapping", &m]);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let s = &v.report["tables"]["scores"];
    assert_eq!(counts(s), [n - refused - 1, 0, 0, 0], "{s}");
    assert_eq!(s["refused_by_target"], refused + 1, "{s}");
    let t = &v.report["tables"]["tags"];
    assert_eq!(counts(t), [n - refused - 1, 0, 0, 0], "{t}");
    assert_eq!(v.report["rejects_files"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_whose_scores_overflow_the_column_exits_3_not_1() {
    // The report's case: a numeric(13,2) column and scores over 10^11, from a live table.
    let table = sample_table(0).await;
    let client = ddb().await;
    let total = 30u64;
    for i in 0..total {
        let score = if i % 7 == 0 {
            format!("{}", 200_000_000_000u64 + i)
        } else {
            format!("{i}.5")
        };
        put(
            &client,
            &table,
            &item(&format!("i{i:03}"), "-", vec![("score", n(&score))]),
        )
        .await;
    }
    let dir = tempdir("vx-overflow");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"scores\"\nkey = [\"id\"]\n[table.columns]\n\
         id = { from = \"PK\", type = \"text\" }\nscore = { from = \"score\", type = \"numeric\" }\n",
    )
    .expect("mapping");
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute("CREATE TABLE scores (id text PRIMARY KEY, score numeric(13,2))")
        .await
        .expect("schema");
    let m = p(&mapping);
    let cp = dir.join("cp");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(strings(&["--mapping", &m]));
    let r = run(&args);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let refused = (0..total).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(r.report["rejected"], refused, "{}", r.report);

    let mut v = strings(&[
        "verify",
        "--table",
        &table,
        "--target",
        &db,
        "--endpoint-url",
        &services().endpoint,
        "--mapping",
        &m,
    ]);
    let cp = p(&cp);
    v.extend(strings(&["--checkpoint-dir", &cp]));
    let v = run(&v);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let t = &v.report["tables"]["scores"];
    assert_eq!(counts(t), [total - refused, 0, 0, 0], "{t}");
    assert_eq!(t["refused_by_target"], refused, "{t}");
    let files = v.report["rejects_files"].as_array().expect("rejects_files");
    assert_eq!(files.len(), 1, "{}", v.report);
    assert!(
        v.stderr.contains(files[0].as_str().unwrap_or("?")),
        "{}",
        v.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collisions_are_counted_per_table_with_samples() {
    // Keyed by PK alone, a user's profile and orders all land on one row.
    let n = 200;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dir = tempdir("vx-collide");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"by_pk\"\nkey = [\"pk\"]\n[table.columns]\n\
         pk = { from = \"PK\", type = \"text\" }\ndoc = { from = \"$item\", type = \"jsonb\" }\n",
    )
    .expect("mapping");
    let m = p(&mapping);
    let mut args = migrate_args(&table, &db, &dir.join("cp"));
    args.extend(strings(&["--mapping", &m, "--create-tables"]));
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let mut per_pk: HashMap<String, u64> = HashMap::new();
    for i in 0..n {
        *per_pk.entry(key_of(i).0).or_default() += 1;
    }
    let colliding: Vec<&String> = per_pk
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(!colliding.is_empty());

    let v = verify_table(&table, &db, &m);
    assert_eq!(v.code, 3, "{}", v.stderr);
    assert_eq!(v.report["status"], "different");
    let t = &v.report["tables"]["by_pk"];
    assert_eq!(t["collisions"], colliding.len() as u64, "{t}");
    let [matched, missing, extra, mismatched] = counts(t);
    assert_eq!((missing, extra), (0, 0), "{t}");
    assert_eq!(matched + mismatched, per_pk.len() as u64, "{t}");
    let samples = t["samples"]["collisions"].as_array().expect("samples");
    assert_eq!(samples.len(), 3, "{t}");
    for s in samples {
        let pk = s["pk"].as_str().expect("pk");
        assert!(per_pk[pk] > 1, "{s}");
    }
}

fn verify_table(table: &str, db: &str, mapping: &str) -> Run {
    run(&strings(&[
        "verify",
        "--table",
        table,
        "--target",
        db,
        "--endpoint-url",
        &services().endpoint,
        "--mapping",
        mapping,
        "--samples",
        "3",
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_columns_compare_as_documents() {
    let table = sample_table(0).await;
    let client = ddb().await;
    let m = |pairs: Vec<(&str, AttributeValue)>| {
        AttributeValue::M(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let docs = [
        ("a", m(vec![("k", s("x")), ("n", n("1"))])),
        (
            "b",
            m(vec![("list", AttributeValue::L(vec![n("2"), s("y")]))]),
        ),
        ("c", s("plain")),
    ];
    for (pk, doc) in docs {
        put(&client, &table, &item(pk, "-", vec![("doc", doc)])).await;
    }
    let dir = tempdir("vx-json");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"j\"\nkey = [\"id\"]\n[table.columns]\n\
         id = { from = \"PK\", type = \"text\" }\ndoc = { from = \"doc\", type = \"json\" }\n",
    )
    .expect("mapping");
    let db = new_database().await;
    // Seeded by hand: other key order, spacing and number spelling than ddb2pg writes, the
    // same documents.
    pg(&db)
        .await
        .batch_execute(
            "CREATE TABLE j (id text PRIMARY KEY, doc json); \
             INSERT INTO j VALUES ('a', '{ \"n\" : 1.0, \"k\": \"x\" }'), \
             ('b', '{\"list\": [2, \"y\"]}'), ('c', '\"plain\"');",
        )
        .await
        .expect("seed");
    let map = p(&mapping);
    let v = verify_table(&table, &db, &map);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(counts(&v.report["tables"]["j"]), [3, 0, 0, 0]);

    pg(&db)
        .await
        .batch_execute("UPDATE j SET doc = '{\"n\": 2, \"k\": \"x\"}' WHERE id = 'a'")
        .await
        .expect("update");
    let v = verify_table(&table, &db, &map);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let t = &v.report["tables"]["j"];
    assert_eq!(counts(t), [2, 0, 0, 1], "{t}");
    assert_eq!(t["samples"]["mismatched"][0], json!({ "id": "a" }));
}

#[test]
fn verify_help_describes_its_own_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddb2pg"))
        .args(["verify", "--help"])
        .output()
        .expect("run ddb2pg");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--export",
        "--key",
        "--progress",
        "--s3-endpoint-url",
        "refused_by_target",
    ] {
        assert!(help.contains(want), "{want}: {help}");
    }
    // migrate's wording: verify keeps no checkpoint and writes no batches.
    for not in ["A resumed run", "one transaction each"] {
        assert!(!help.contains(not), "{not}: {help}");
    }
    // --segments does not combine with --export (an export's segments are its files).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddb2pg"))
        .args(["verify", "--export", "/x", "--segments", "4"])
        .output()
        .expect("run ddb2pg");
    assert_eq!(out.status.code(), Some(2));
}
