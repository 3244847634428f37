//! Rejects an on-call person can read: each rejected item or change is a warning in the log as
//! it is recorded (table, key, reason), its reason is in words (never Rust's debug text), a row
//! PostgreSQL refused is filed under the table that refused it, and `verify` counts the items
//! of the rejects file apart from real misses (`rejected_known`, exit 4), naming the file.

use aws_sdk_dynamodb::types::StreamViewType;
use serde_json::Value;

use crate::stream::{create_table, mapping, migrations, order, profile, verify_args};
use crate::support::harness::run;
use crate::support::{
    ddb, delete_table, drop_database, n, new_database, put, temp_dir, unique_name, Migration,
    Outcome,
};

/// Text that is Rust's debug output, not words.
const DEBUG_TEXT: [&str; 4] = ["Path(", "\\\"", "Some(", "None"];

/// Profile 2 breaks `CHECK (age >= 0)` (PostgreSQL refuses it), profile 3 has no email (the
/// mapping's `required = true` rejects it), order o-4 has no status (`orders.status` is NOT
/// NULL: PostgreSQL refuses it); profile 1 and order o-1 are fine.
fn bad_and_good() -> Vec<ddb2pg::value::Item> {
    let mut negative = profile("00000002", "two@example.com", "Two");
    negative.insert("age".into(), n("-5"));
    let mut no_email = profile("00000003", "three@example.com", "Three");
    no_email.remove("email");
    let mut no_status = order("00000001", "o-4", "NEW", vec![]);
    no_status.remove("status");
    vec![
        profile("00000001", "one@example.com", "One"),
        order("00000001", "o-1", "NEW", vec![]),
        negative,
        no_email,
        no_status,
    ]
}

/// The rejects file's lines, as text and as JSON.
fn reject_lines(m: &Migration) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(m.sibling(".rejects.jsonl")).expect("rejects file");
    text.lines()
        .map(|l| (l.to_string(), serde_json::from_str(l).expect("a JSON line")))
        .collect()
}

/// Each reject line names the right table and a reason in words.
fn assert_lines_readable(m: &Migration) {
    let lines = reject_lines(m);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let find = |pk: &str, sk: &str| -> &Value {
        &lines
            .iter()
            .find(|(_, v)| v["key"]["PK"]["S"] == pk && v["key"]["SK"]["S"] == sk)
            .unwrap_or_else(|| panic!("no reject of {pk} {sk}: {lines:#?}"))
            .1
    };
    for (text, v) in &lines {
        let reason = v["reason"].as_str().unwrap_or_default();
        for bad in DEBUG_TEXT {
            assert!(!reason.contains(bad), "{bad:?} in the reason: {text}");
        }
        assert!(!text.contains("Path(") && !text.contains("Some("), "{text}");
    }
    let check = find("USER#00000002", "PROFILE");
    assert_eq!(check["table"], "users", "{check}");
    let reason = check["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("CHECK constraint users_age_check of table users"),
        "{reason}"
    );
    let required = find("USER#00000003", "PROFILE");
    assert_eq!(required["table"], "users", "{required}");
    assert_eq!(
        required["reason"],
        "attribute email is missing or NULL, and column users.email requires it (required = true)"
    );
    let not_null = find("USER#00000001", "ORDER#o-4");
    assert_eq!(not_null["table"], "orders", "{not_null}");
    assert_eq!(not_null["column"], "status", "{not_null}");
    let reason = not_null["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("column status of table orders is NULL") && reason.contains("NOT NULL"),
        "{reason}"
    );
}

/// The warnings `bad_and_good` gives: table, part of the key, start of the reason.
const LOGGED: [(&str, &str, &str); 3] = [
    (
        "users",
        "SK=PROFILE",
        "refused by PostgreSQL: the row breaks CHECK",
    ),
    (
        "users",
        "PK=USER#00000003",
        "attribute email is missing or NULL",
    ),
    (
        "orders",
        "SK=ORDER#o-4",
        "refused by PostgreSQL: column status",
    ),
];

/// stderr holds one warning per reject of `bad_and_good`, with its table, key and reason.
fn assert_logged(out: &Outcome) {
    let want = LOGGED;
    let logged: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("rejected, recorded in the rejects file"))
        .collect();
    assert_eq!(logged.len(), want.len(), "stderr:\n{}", out.stderr);
    for (table, key, reason) in &want {
        let found = logged.iter().any(|l| {
            l.contains("WARN")
                && l.contains(&format!("table={table} "))
                && l.contains(key)
                && l.contains(&format!("reason={reason}"))
        });
        assert!(
            found,
            "no warning for {table} {key} {reason}:\n{}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_logs_rejects_in_words_under_their_table_and_verify_counts_them_known() {
    let client = ddb().await;
    let table = unique_name("readable");
    create_table(&client, &table, None).await;
    for it in bad_and_good() {
        put(&client, &table, &it).await;
    }
    let (map, migs) = (mapping(), migrations());
    let args = ["--mapping", map.as_str(), "--migrations", migs.as_str()];
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let out = m.run(&args).await;
    out.expect_code(4);
    assert_lines_readable(&m);
    assert_logged(&out);
    let by_reason = out.report()["rejects_by_reason"].clone();
    assert_eq!(
        by_reason,
        serde_json::json!({
            "orders: refused by PostgreSQL": 1,
            "users: refused by PostgreSQL": 1,
            "users: required attribute missing": 1,
        }),
        "{}",
        out.stderr
    );

    // -q: no warnings (the same rejects, into another database).
    let quiet_db = new_database().await;
    let quiet = Migration::new(&table, &quiet_db);
    let mut q = args.to_vec();
    q.push("-q");
    let out = quiet.run(&q).await;
    out.expect_code(4);
    assert!(!out.stderr.contains("rejected, recorded"), "{}", out.stderr);

    // verify: the two items PostgreSQL refused are known rejects, not missing.
    let mut v = verify_args(&table, &target, &map);
    v.extend(
        [
            "--checkpoint-dir",
            &m.checkpoint_dir.to_string_lossy(),
            "--progress",
            "none",
        ]
        .map(String::from),
    );
    let r = run(&v);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let rep = &r.report;
    assert_eq!(rep["status"], "equal_except_known_rejects", "{rep}");
    assert_eq!(rep["rejected_known"], 2, "{rep}");
    for t in ["users", "orders"] {
        assert_eq!(rep["tables"][t]["missing_in_target"], 0, "{rep}");
        assert_eq!(rep["tables"][t]["rejected_known"], 1, "{rep}");
    }
    let file = m.sibling(".rejects.jsonl").display().to_string();
    assert_eq!(rep["rejects_files"], serde_json::json!([file]), "{rep}");
    assert!(
        r.stderr
            .contains("target equals source except 2 known rejects")
            && r.stderr.contains(&file),
        "{}",
        r.stderr
    );
    delete_table(&client, &table).await;
    drop_database(&target).await;
    drop_database(&quiet_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_logs_each_rejected_change_in_words_under_its_table() {
    let client = ddb().await;
    let table = unique_name("readablef");
    create_table(&client, &table, Some(StreamViewType::NewAndOldImages)).await;
    put(
        &client,
        &table,
        &profile("00000001", "one@example.com", "One"),
    )
    .await;
    let (map, migs) = (mapping(), migrations());
    let args = [
        "--mapping",
        map.as_str(),
        "--migrations",
        migs.as_str(),
        "--follow",
        "--until-caught-up",
    ];
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    m.run(&args).await.expect_code(0);
    for it in bad_and_good() {
        put(&client, &table, &it).await;
    }
    let out = m.run(&args).await;
    out.expect_code(4);
    assert_lines_readable(&m);
    assert_logged(&out);
    delete_table(&client, &table).await;
    drop_database(&target).await;
}

/// The example schema with a unique email, and orders that need their user.
const STRICT_SCHEMA: &str = "\
CREATE TABLE users (user_id text PRIMARY KEY, email text NOT NULL UNIQUE, name text, age integer,
  score numeric(12, 2), active boolean, lang text, created_at timestamptz, tags text[],
  avatar bytea, doc jsonb);
CREATE TABLE orders (order_id text PRIMARY KEY, user_id text NOT NULL REFERENCES users (user_id),
  status text NOT NULL, total numeric(12, 2));
CREATE TABLE order_lines (order_id text NOT NULL REFERENCES orders (order_id), line_no integer,
  sku text, qty integer, price numeric(12, 2), PRIMARY KEY (order_id, line_no));";

/// Every other kind of refusal is filed under the table that refused it, in words: a unique
/// value taken (users), a foreign key (orders), a value out of range (users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_foreign_key_and_range_refusals_name_their_table() {
    let client = ddb().await;
    let table = unique_name("readableu");
    create_table(&client, &table, None).await;
    let mut too_big = profile("00000006", "six@example.com", "Six");
    too_big.insert("score".into(), n("12345678901234"));
    for it in [
        profile("00000001", "same@example.com", "One"),
        profile("00000005", "same@example.com", "Five"),
        too_big,
        order("00000009", "o-9", "NEW", vec![]),
    ] {
        put(&client, &table, &it).await;
    }
    let migs = temp_dir("readableu-migrations");
    std::fs::write(migs.join("001_schema.sql"), STRICT_SCHEMA).expect("schema");
    let map = mapping();
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let out = m
        .run(&["--mapping", &map, "--migrations", &migs.to_string_lossy()])
        .await;
    out.expect_code(4);
    let lines = reject_lines(&m);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let with = |part: &str| -> &Value {
        &lines
            .iter()
            .find(|(t, _)| t.contains(part))
            .unwrap_or_else(|| panic!("no reject with {part:?}: {lines:#?}"))
            .1
    };
    for (part, table) in [
        ("unique constraint users_email_key of table users", "users"),
        ("foreign key orders_user_id_fkey of table orders", "orders"),
        (
            "column score of table users: numeric field overflow",
            "users",
        ),
    ] {
        let v = with(part);
        assert_eq!(v["table"], table, "{v}");
    }
    assert_eq!(with("numeric field overflow")["column"], "score");
    for (text, _) in &lines {
        for bad in DEBUG_TEXT {
            assert!(!text.contains(bad), "{bad:?} in {text}");
        }
    }
    let by_reason = &out.report()["rejects_by_reason"];
    assert_eq!(by_reason["users: refused by PostgreSQL"], 2, "{by_reason}");
    assert_eq!(by_reason["orders: refused by PostgreSQL"], 1, "{by_reason}");
    delete_table(&client, &table).await;
    drop_database(&target).await;
}
