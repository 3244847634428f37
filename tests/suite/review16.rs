//! Findings of a review of issue 16, each a test that failed before its fix: the upsert's
//! change detection sees every change a fresh load writes; deletions pass NOT NULL domains in
//! migrate and verify; verify compares domains over json, takes --target-table and drops its
//! scratch tables when interrupted; a migration file cannot commit a dry run.

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

fn verify_exports(exports: &[&Path], db: &str, cp: &Path, mapping: &Path) -> Run {
    let mut args = strings(&["verify"]);
    for e in exports {
        args.extend(strings(&["--export", &e.to_string_lossy()]));
    }
    args.extend(strings(&[
        "--target",
        db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--mapping",
        &mapping.to_string_lossy(),
        "--samples",
        "3",
        "--progress",
        "none",
    ]));
    run(&args)
}

/// verify's scratch tables were typed as the target: a deletion's NULL cells were refused by
/// a NOT NULL domain, the deletion dropped, and the correctly deleted row reported missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_applies_deletions_when_a_column_is_a_not_null_domain() {
    let dir = tempdir("rev-vdomain");
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
    let lines = [line("a", "alice"), line("b", "bob"), line("c", "")];
    write_export_lines(&full, &lines, "FULL_EXPORT");
    let delete = json!({ "Keys": { "id": { "S": "a" } } });
    write_export_lines(&incr, &[delete], "INCREMENTAL_EXPORT");
    let cp = dir.join("cp");
    // c's empty name is refused by the domain's CHECK, in migrate and in verify alike.
    assert_eq!(migrate_export(&full, &db, &cp, &mapping).code, 4);
    assert_eq!(migrate_export(&incr, &db, &cp, &mapping).code, 0);

    let v = verify_exports(&[&full, &incr], &db, &cp, &mapping);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let t = &v.report["tables"]["people"];
    let got: Vec<u64> = [
        "matched",
        "missing_in_target",
        "extra_in_target",
        "mismatched",
    ]
    .iter()
    .map(|k| t[k].as_u64().unwrap_or(99))
    .collect();
    assert_eq!(got, [1, 0, 0, 0], "{t}");
    assert_eq!(t["refused_by_target"], 1, "{t}");
    assert_eq!(t["samples"]["refused_by_target"][0], json!({ "id": "c" }));
}

/// A domain over json made verify fail: "operator does not
/// exist: json = json", while migrate writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_a_column_whose_type_is_a_domain_over_json() {
    let dir = tempdir("rev-vjson");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"people\"\nkey = [\"id\"]\n[table.columns]\n\
         id = { from = \"id\", type = \"text\" }\nname = { from = \"name\", type = \"json\" }\n",
    )
    .expect("mapping");
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE DOMAIN doc AS json; CREATE TABLE people (id text PRIMARY KEY, name doc)",
        )
        .await
        .expect("schema");
    let full = dir.join("full");
    write_export_lines(
        &full,
        &[line("a", "alice"), line("b", "bob")],
        "FULL_EXPORT",
    );
    let cp = dir.join("cp");
    let r = migrate_export(&full, &db, &cp, &mapping);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = verify_exports(&[&full], &db, &cp, &mapping);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(v.report["tables"]["people"]["matched"], 2, "{}", v.report);

    pg(&db)
        .await
        .batch_execute("UPDATE people SET name = '\"ALICE\"' WHERE id = 'a'")
        .await
        .expect("update");
    let v = verify_exports(&[&full], &db, &cp, &mapping);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let t = &v.report["tables"]["people"];
    assert_eq!(t["mismatched"], 1, "{t}");
    assert_eq!(t["samples"]["mismatched"][0], json!({ "id": "a" }));
}

/// A migration file that ends its transaction itself (`BEGIN; ...; COMMIT;`, common in
/// migration folders) committed the dry run's transaction: the file's tables and its record
/// in ddb2pg_schema_migrations stayed in the target, and the real run then skipped the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_cannot_be_committed_by_a_migration_file() {
    use super::paths::{tables_in, with};
    let table = sample_table(20).await;
    let db = new_database().await;
    let dir = tempdir("rev-dry-commit");
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(&migrations).expect("dir");
    std::fs::write(
        migrations.join("001_audit.sql"),
        "BEGIN;\nCREATE TABLE audit (x int);\nCOMMIT;\n",
    )
    .expect("migration");
    let m = migrations.to_string_lossy().into_owned();
    let args = with(
        migrate_args(&table, &db, &dir.join("cp")),
        &["--dry-run", "--migrations", &m],
    );
    let r = run(&args);
    assert_eq!(
        tables_in(&db).await,
        Vec::<String>::new(),
        "nothing persists"
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("001_audit.sql") && r.stderr.contains("COMMIT"),
        "names the file and why: {}",
        r.stderr
    );
}

/// `migrate --target-table` names the default mapping's table; verify had no such flag, so a
/// migration into a named table could not be verified (verify looked for the export's table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_takes_the_target_table_that_migrate_wrote() {
    let dir = tempdir("rev-vtarget");
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute("CREATE SCHEMA app")
        .await
        .expect("schema");
    let full = dir.join("full");
    write_export_lines(
        &full,
        &[line("a", "alice"), line("b", "bob")],
        "FULL_EXPORT",
    );
    let cp = dir.join("cp");
    let common = |cmd: &str| {
        strings(&[
            cmd,
            "--export",
            &full.to_string_lossy(),
            "--key",
            "id",
            "--target-table",
            "app.People",
            "--target",
            &db,
            "--checkpoint-dir",
            &cp.to_string_lossy(),
            "--progress",
            "none",
        ])
    };
    let r = run(&common("migrate"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = run(&common("verify"));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(
        v.report["tables"]["app.People"]["matched"], 2,
        "{}",
        v.report
    );

    pg(&db)
        .await
        .batch_execute("DELETE FROM app.\"People\" WHERE id = 'a'")
        .await
        .expect("delete");
    let v = run(&common("verify"));
    assert_eq!(v.code, 3, "{}", v.stderr);
    assert_eq!(
        v.report["tables"]["app.People"]["missing_in_target"], 1,
        "{}",
        v.report
    );
}

async fn scratch_tables(db: &str) -> Vec<String> {
    pg(db)
        .await
        .query(
            "SELECT relname::text FROM pg_class WHERE relname LIKE 'ddb2pg_verify_%'",
            &[],
        )
        .await
        .expect("list scratch tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// verify's scratch tables are ordinary (unlogged) tables in the target, holding a copy of the
/// source: Ctrl-C or SIGTERM killed verify and left them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_verify_drops_its_scratch_tables() {
    let dir = tempdir("rev-vint");
    let full = dir.join("full");
    super::export::write_export(&full, 0..60_000, 6_000);
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE TABLE t (\"PK\" text, \"SK\" text, item jsonb, PRIMARY KEY (\"PK\", \"SK\"))",
        )
        .await
        .expect("schema");
    for sig in ["INT", "TERM"] {
        let mut child = spawn(&strings(&[
            "verify",
            "--export",
            &full.to_string_lossy(),
            "--key",
            "PK,SK",
            "--target-table",
            "t",
            "--target",
            &db,
            "--checkpoint-dir",
            &dir.join("cp").to_string_lossy(),
            "--concurrency",
            "1",
            "--batch-size",
            "20",
            "--progress",
            "none",
        ]));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while scratch_tables(&db).await.is_empty() {
            assert!(std::time::Instant::now() < deadline, "no scratch table");
            assert!(
                child.try_wait().ok().flatten().is_none(),
                "verify ended early"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Mid-load: a page or two in.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "verify ended early"
        );
        let killed = std::process::Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{sig}: {stderr}");
        assert_eq!(scratch_tables(&db).await, Vec::<String>::new(), "{sig}");
    }
}
