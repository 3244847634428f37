//! `verify` finds exactly what differs, as PostgreSQL compares values; `--dry-run` exercises the
//! real target's constraints and leaves it byte-for-byte unchanged.

use crate::support::harness::*;

fn verify_args(table: &str, db: &str) -> Vec<String> {
    [
        "verify",
        "--table",
        table,
        "--target",
        db,
        "--endpoint-url",
        &services().endpoint,
        "--samples",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_then_finds_exactly_the_changes() {
    let n = 1500;
    let table = sample_table(n).await;
    let db = new_database().await;
    let cp = tempdir("verify");
    let r = run(&migrate_args(&table, &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = run(&verify_args(&table, &db));
    assert_eq!(v.code, 0, "{}", v.stderr);
    let t = ddb2pg::plan::default_table_name(&table);
    assert_eq!(v.report["tables"][&t]["matched"], n);
    assert_eq!(v.report["status"], "identical");

    let c = pg(&db).await;
    let q = |sql: String| {
        let c = &c;
        async move {
            c.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    // One changed value, one deleted row, one extra row, and a numeric written with more
    // digits (259.26 -> 259.2600 is the same number: not a difference).
    q(format!("UPDATE \"{t}\" SET item = jsonb_set(item, '{{status}}', '\"lost\"') WHERE \"PK\" = 'USER#00000001' AND \"SK\" = 'ORDER#00000001-1'")).await;
    q(format!(
        "DELETE FROM \"{t}\" WHERE \"PK\" = 'USER#00000002' AND \"SK\" = 'PROFILE'"
    ))
    .await;
    q(format!(
        "INSERT INTO \"{t}\" VALUES ('USER#99999999', 'PROFILE', '{{}}')"
    ))
    .await;
    q(format!(
        "UPDATE \"{t}\" SET item = jsonb_set(item, '{{total}}', ((item->>'total')::numeric(20,4))::text::jsonb) \
         WHERE \"PK\" = 'USER#00000003' AND \"SK\" = 'ORDER#00000003-1'"
    ))
    .await;
    let more_digits: String = c
        .query_one(
            &format!("SELECT item->>'total' FROM \"{t}\" WHERE \"PK\" = 'USER#00000003' AND \"SK\" = 'ORDER#00000003-1'"),
            &[],
        )
        .await
        .expect("total")
        .get(0);
    assert!(more_digits.ends_with("00"), "{more_digits}");

    let v = run(&verify_args(&table, &db));
    assert_eq!(v.code, 3, "{}", v.stderr);
    let r = &v.report["tables"][&t];
    assert_eq!(
        (
            r["mismatched"].as_u64(),
            r["missing_in_target"].as_u64(),
            r["extra_in_target"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(r["matched"], n - 2);
    assert_eq!(r["samples"]["mismatched"][0]["SK"], "ORDER#00000001-1");
    assert_eq!(r["samples"]["missing_in_target"][0]["PK"], "USER#00000002");
    assert_eq!(r["samples"]["extra_in_target"][0]["PK"], "USER#99999999");
    // The scratch tables are gone.
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'ddb2pg_verify_%'",
            &[],
        )
        .await
        .expect("scratch")
        .get(0);
    assert_eq!(left, 0);
}

/// Row counts and a checksum of every row of the table, in key order.
async fn fingerprint(db: &str, t: &str) -> (i64, String) {
    let r = pg(db)
        .await
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x.\"PK\", x.\"SK\")), '') FROM \"{t}\" x"),
            &[],
        )
        .await
        .expect("fingerprint");
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_constraint_violations_and_changes_nothing() {
    let n = 600;
    let table = sample_table(n).await;
    let db = new_database().await;
    let t = ddb2pg::plan::default_table_name(&table);
    // Logins are forbidden by a CHECK; profiles must carry an email (NOT NULL on a generated
    // column would be contrived, so a CHECK on the jsonb); one row already exists.
    pg(&db)
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{t}\" (\"PK\" text NOT NULL, \"SK\" text NOT NULL, item jsonb NOT NULL, \
             PRIMARY KEY (\"PK\", \"SK\"), CONSTRAINT no_logins CHECK (coalesce(item->>'kind', '') <> 'login'));
             INSERT INTO \"{t}\" VALUES ('USER#00000000', 'PROFILE', '{{\"old\": true}}');"
        ))
        .await
        .expect("schema");
    let before = fingerprint(&db, &t).await;
    let logins = (0..n)
        .filter(|&i| {
            ddb2pg::sample::item(1, i).get("kind")
                == Some(&aws_sdk_dynamodb::types::AttributeValue::S("login".into()))
        })
        .count() as u64;
    assert!(logins > 0);
    let cp = tempdir("dry");
    let mut args = migrate_args(&table, &db, &cp);
    args.push("--dry-run".into());
    let r = run(&args);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.report["status"], "dry_run");
    assert_eq!(r.report["rejected"], logins);
    assert_eq!(
        r.report["tables"][&t]["rows_updated"], 1,
        "the existing row would change"
    );
    assert_eq!(r.report["tables"][&t]["rows_inserted"], n - logins - 1);
    let rejects: Vec<String> = std::fs::read_dir(&cp)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".dry-run.jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(rejects.len() as u64, logins);
    assert!(
        rejects.iter().all(|l| l.contains("no_logins")),
        "{}",
        rejects[0]
    );
    // Nothing persisted: same rows, same bytes; no checkpoint written.
    assert_eq!(fingerprint(&db, &t).await, before);
    assert_eq!(committed_items(&cp), 0);

    // --limit takes a quick sample.
    args.extend(["--limit", "50"].map(String::from));
    let r = run(&args);
    assert!(r.code == 0 || r.code == 4, "{}", r.stderr);
    assert_eq!(r.report["items_read"], 50);
    assert_eq!(fingerprint(&db, &t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_column_names_reach_verify_as_parameters_not_literals() {
    // With standard_conforming_strings off, a backslash in a string literal escapes the next
    // character: a key column named `pk\` used to end its own literal early.
    let n = 80;
    let table = sample_table(n).await;
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET standard_conforming_strings = off', \
             current_database()); END $$",
        )
        .await
        .expect("standard_conforming_strings = off");
    let dir = tempdir("verify-names");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"odd\"\nkey = ['pk\\', \"it's\"]\n[table.columns]\n\
         'pk\\' = { from = \"PK\", type = \"text\" }\n\"it's\" = { from = \"SK\", type = \"text\" }\n\
         doc = { from = \"$item\", type = \"jsonb\" }\n",
    )
    .expect("mapping");
    let mut args = migrate_args(&table, &db, &dir.join("cp"));
    args.extend(["--mapping".into(), mapping.display().to_string()]);
    args.push("--create-tables".into());
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    pg(&db)
        .await
        .batch_execute("DELETE FROM odd WHERE \"pk\\\" = 'USER#00000001' AND \"it's\" = 'PROFILE'")
        .await
        .expect("delete a row");
    let mut v = verify_args(&table, &db);
    v.extend(["--mapping".into(), mapping.display().to_string()]);
    let v = run(&v);
    assert_eq!(v.code, 3, "{}", v.stderr);
    let r = &v.report["tables"]["odd"];
    assert_eq!(r["missing_in_target"], 1, "{r}");
    assert_eq!(
        r["samples"]["missing_in_target"][0],
        serde_json::json!({"pk\\": "USER#00000001", "it's": "PROFILE"}),
        "{r}"
    );
}
