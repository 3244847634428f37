//! Names from DynamoDB or the mapping that collide with ddb2pg's own columns or PostgreSQL's:
//! a key attribute `_seq` works (the staging tables' own column steps aside), a key attribute
//! `item` under the default mapping and system column names are refused at start, with the
//! reason, exit 2.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::support::harness::*;
use crate::support::{put, s};

/// A table keyed by one string attribute `key`, with `count` items (`v` a number attribute).
async fn table_keyed_by(key: &str, count: u32) -> String {
    let client = ddb().await;
    let table = unique("names");
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema element"),
        )
        .send()
        .await
        .expect("create table");
    for i in 0..count {
        let mut item = ddb2pg::value::Item::new();
        item.insert(key.to_string(), s(&format!("k{i:04}")));
        item.insert("v".into(), AttributeValue::N(i.to_string()));
        put(&client, &table, &item).await;
    }
    table
}

fn verify_args(table: &str, db: &str) -> Vec<String> {
    [
        "verify",
        "--table",
        table,
        "--target",
        db,
        "--endpoint-url",
        &services().endpoint,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_attribute_named_seq_works_beside_the_staging_tables_own_column() {
    let n = 60;
    let table = table_keyed_by("_seq", n).await;
    let db = new_database().await;
    let cp = tempdir("names-seq");
    let r = run(&migrate_args(&table, &db, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_inserted"], n, "{}", r.report);
    // The second run upserts through the staging tables: nothing changes.
    let mut again = migrate_args(&table, &db, &cp);
    again.push("--restart".into());
    let r = run(&again);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_unchanged"], n, "{}", r.report);
    let t = ddb2pg::plan::default_table_name(&table);
    let c = pg(&db).await;
    let row = c
        .query_one(
            &format!("SELECT item::text FROM \"{t}\" WHERE \"_seq\" = 'k0007'"),
            &[],
        )
        .await
        .expect("row");
    let doc: serde_json::Value = serde_json::from_str(row.get(0)).expect("json");
    assert_eq!(doc, serde_json::json!({"_seq": "k0007", "v": 7}));
    // verify's scratch tables have the same column of their own.
    let v = run(&verify_args(&table, &db));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(v.report["tables"][&t]["matched"], n, "{}", v.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_attribute_named_item_is_refused_at_start_with_the_reason() {
    let table = table_keyed_by("item", 5).await;
    let db = new_database().await;
    let t = ddb2pg::plan::default_table_name(&table);
    // Even over an existing table that has the key column, where the run used to fail late.
    pg(&db)
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{t}\" (\"item\" text PRIMARY KEY, doc jsonb)"
        ))
        .await
        .expect("create table");
    let cp = tempdir("names-item");
    let r = run(&migrate_args(&table, &db, &cp));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("key attribute \"item\"")
            && r.stderr.contains("holds the whole item")
            && r.stderr.contains("--mapping"),
        "{}",
        r.stderr
    );
    assert!(!cp.exists() || std::fs::read_dir(&cp).expect("dir").next().is_none());
    let rows: i64 = pg(&db)
        .await
        .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
    let v = run(&verify_args(&table, &db));
    assert_eq!(v.code, 2, "{}", v.stderr);
    assert!(v.stderr.contains("key attribute \"item\""), "{}", v.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_column_names_are_refused_at_start_with_the_reason() {
    // A key attribute under the default mapping.
    let table = table_keyed_by("ctid", 3).await;
    let db = new_database().await;
    let r = run(&migrate_args(&table, &db, &tempdir("names-ctid")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("key attribute \"ctid\"")
            && r.stderr.contains("PostgreSQL system column name")
            && r.stderr.contains("--mapping"),
        "{}",
        r.stderr
    );
    // A column of a mapping file: `schema` refuses it too, before printing any DDL.
    let dir = tempdir("names-xmin");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"t\"\nkey = [\"id\"]\n[table.columns]\n\
         id = { from = \"ctid\", type = \"text\" }\nxmin = { from = \"v\", type = \"bigint\" }\n",
    )
    .expect("mapping");
    let out = command(&[
        "schema".into(),
        "--mapping".into(),
        mapping.display().to_string(),
    ])
    .output()
    .expect("run schema");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "no DDL");
    assert!(
        stderr.contains("column \"xmin\"") && stderr.contains("PostgreSQL system column name"),
        "{stderr}"
    );
    let mut args = migrate_args(&table, &db, &tempdir("names-xmin-cp"));
    args.extend(["--mapping".into(), mapping.display().to_string()]);
    args.push("--create-tables".into());
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("column \"xmin\""), "{}", r.stderr);
}
