//! Findings of a review of issue 16: the upsert's change detection must see every change a
//! fresh load would write, and a deletion must not trip over the target's column types.

use std::path::Path;

use serde_json::json;

use super::export::write_export_lines;
use crate::support::harness::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn migrate_export(path: &Path, db: &str, cp: &Path, mapping: &Path) -> Run {
    run(&strings(&[
        "migrate",
        "--export",
        &path.to_string_lossy(),
        "--target",
        db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--mapping",
        &mapping.to_string_lossy(),
        "--progress",
        "none",
    ]))
}

fn line(id: &str, name: &str) -> serde_json::Value {
    json!({ "Item": { "id": { "S": id }, "name": { "S": name } } })
}

const MAPPING: &str = "[[table]]\nname = \"people\"\nkey = [\"id\"]\n[table.columns]\n\
     id = { from = \"id\", type = \"text\" }\nname = { from = \"name\", type = \"text\" }\n";

async fn names(db: &str) -> Vec<(String, String)> {
    pg(db)
        .await
        .query("SELECT id, name::text FROM people ORDER BY id", &[])
        .await
        .expect("read people")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// citext's `=` ignores case: a change of case alone was "unchanged" to the upsert, so a
/// re-run kept the old text where a fresh load writes the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_the_columns_equality_ignores_is_still_written() {
    let dir = tempdir("rev-citext");
    let mapping = dir.join("m.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS citext; \
             CREATE TABLE people (id text PRIMARY KEY, name citext)",
        )
        .await
        .expect("schema");
    let (first, second) = (dir.join("first"), dir.join("second"));
    write_export_lines(
        &first,
        &[line("a", "alice"), line("b", "bob")],
        "FULL_EXPORT",
    );
    write_export_lines(
        &second,
        &[line("a", "ALICE"), line("b", "bob")],
        "FULL_EXPORT",
    );

    let r = migrate_export(&first, &db, &dir.join("cp1"), &mapping);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = migrate_export(&second, &db, &dir.join("cp2"), &mapping);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_updated"], 1, "{}", r.report);
    assert_eq!(r.report["rows_unchanged"], 1, "{}", r.report);
    let want = vec![
        ("a".to_string(), "ALICE".to_string()),
        ("b".to_string(), "bob".to_string()),
    ];
    assert_eq!(names(&db).await, want, "as a fresh load writes it");

    // And a third run of the same data changes nothing.
    let r = migrate_export(&second, &db, &dir.join("cp3"), &mapping);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_unchanged"], 2, "{}", r.report);
    assert_eq!(r.report["rows_updated"], 0, "{}", r.report);
    assert_eq!(names(&db).await, want);
}

/// A deletion stages its key alone (the other cells NULL) in a staging table typed as the
/// target: a domain that refuses NULL made every deletion fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_goes_through_when_a_column_is_a_not_null_domain() {
    let dir = tempdir("rev-domain");
    let mapping = dir.join("m.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE DOMAIN given_name AS text NOT NULL CHECK (VALUE <> ''); \
             CREATE TABLE people (id text PRIMARY KEY, name given_name)",
        )
        .await
        .expect("schema");
    let (full, incr) = (dir.join("full"), dir.join("incr"));
    write_export_lines(
        &full,
        &[line("a", "alice"), line("b", "bob")],
        "FULL_EXPORT",
    );
    let r = migrate_export(&full, &db, &dir.join("cp"), &mapping);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let delete = json!({ "Keys": { "id": { "S": "a" } } });
    write_export_lines(&incr, &[delete], "INCREMENTAL_EXPORT");
    let r = migrate_export(&incr, &db, &dir.join("cp"), &mapping);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        names(&db).await,
        vec![("b".to_string(), "bob".to_string())],
        "a deleted"
    );
}
