//! Every path to the target gives the same result: a dry run on an empty database (created and
//! rolled back), the direct COPY and the upsert for every pair of assignable types, json
//! columns on both write paths.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::support::harness::*;
use crate::support::{drop_database, put, s};

/// A table keyed by string attribute `id`, holding `items`.
async fn table_with(items: &[ddb2pg::value::Item]) -> String {
    let client = ddb().await;
    let table = unique("paths");
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema element"),
        )
        .send()
        .await
        .expect("create table");
    for item in items {
        put(&client, &table, item).await;
    }
    table
}

fn item(attrs: Vec<(&str, AttributeValue)>) -> ddb2pg::value::Item {
    attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Names of the tables (any schema but the catalogs) in `db`.
pub(crate) async fn tables_in(db: &str) -> Vec<String> {
    pg(db)
        .await
        .query(
            "SELECT schemaname || '.' || tablename FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a test file");
    p.to_string_lossy().into_owned()
}

pub(crate) fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

// ---------------------------------------------------------------------------------------------
// Dry run on an empty database.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_on_an_empty_database_creates_the_default_table_and_leaves_nothing() {
    let table = sample_table(60).await;
    let db = new_database().await;
    let cp = tempdir("dry-empty");
    let r = run(&with(migrate_args(&table, &db, &cp), &["--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["status"], "dry_run");
    assert_eq!(r.report["items_read"], 60);
    assert_eq!(r.report["rows_inserted"], 60, "{}", r.report);
    assert!(
        r.stderr.contains("would create table") && r.stderr.contains("one connection"),
        "says what it creates and how it writes: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("not applied"), "{}", r.stderr);
    assert_eq!(
        tables_in(&db).await,
        Vec::<String>::new(),
        "nothing persists"
    );

    // The real run then creates the table and writes every item.
    let cp2 = tempdir("dry-empty-real");
    let r = run(&migrate_args(&table, &db, &cp2));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_inserted"], 60);

    // A dry run over the loaded table has nothing to create: the usual writers, no changes.
    let r = run(&with(migrate_args(&table, &db, &cp), &["--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_unchanged"], 60, "{}", r.report);
    assert!(!r.stderr.contains("one connection"), "{}", r.stderr);
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_applies_migrations_and_create_tables_inside_its_transaction() {
    let example = |f: &str| format!("{}/examples/single-table/{f}", env!("CARGO_MANIFEST_DIR"));
    let table = sample_table(300).await;
    let db = new_database().await;
    let cp = tempdir("dry-migrations");
    let mapping = example("mapping.toml");
    let base = with(
        migrate_args(&table, &db, &cp),
        &["--dry-run", "--mapping", &mapping],
    );

    // Without what creates the tables, the dry run fails as the real run would, and its advice
    // is what the dry run then does: no "drop the table" for tables that do not exist.
    let r = run(&base);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("does not exist") && r.stderr.contains("--create-tables"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("drop the table"), "{}", r.stderr);
    assert!(!r.stderr.contains("not applied"), "{}", r.stderr);

    let migrations = example("migrations");
    let r = run(&with(base.clone(), &["--migrations", &migrations]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["status"], "dry_run");
    assert!(
        r.stderr
            .contains("2 would be applied (001_users.sql, 002_orders.sql)"),
        "{}",
        r.stderr
    );
    let users = r.report["tables"]["users"]["rows_inserted"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        users > 0,
        "rows written into the migrated tables: {}",
        r.report
    );
    assert_eq!(
        tables_in(&db).await,
        Vec::<String>::new(),
        "nothing persists"
    );

    let r = run(&with(base, &["--create-tables"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["tables"]["users"]["rows_inserted"], users);
    assert_eq!(
        tables_in(&db).await,
        Vec::<String>::new(),
        "nothing persists"
    );
    drop_database(&db).await;
}

// ---------------------------------------------------------------------------------------------
// The direct COPY and the upsert give the same rows.
// ---------------------------------------------------------------------------------------------

/// Mapping type, the attribute it reads, and the column types it is assignable to (as the
/// target check accepts: PostgreSQL's assignment casts among ddb2pg's types, plus typmods).
const PAIRS: &[(&str, &str, &[&str])] = &[
    (
        "smallint",
        "i",
        &[
            "integer",
            "bigint",
            "numeric",
            "real",
            "double precision",
            "text",
        ],
    ),
    (
        "integer",
        "i",
        &[
            "smallint",
            "bigint",
            "numeric",
            "real",
            "double precision",
            "text",
        ],
    ),
    (
        "bigint",
        "i",
        &[
            "smallint",
            "integer",
            "numeric",
            "real",
            "double precision",
            "text",
        ],
    ),
    (
        "numeric",
        "n",
        &[
            "smallint",
            "integer",
            "bigint",
            "real",
            "double precision",
            "text",
            "numeric(6,2)",
        ],
    ),
    (
        "real",
        "n",
        &[
            "smallint",
            "integer",
            "bigint",
            "numeric",
            "double precision",
            "text",
        ],
    ),
    (
        "double precision",
        "n",
        &["smallint", "integer", "bigint", "numeric", "real", "text"],
    ),
    ("boolean", "flag", &["text"]),
    ("uuid", "uid", &["text"]),
    (
        "timestamptz",
        "at",
        &["timestamp", "date", "text", "timestamp(0)"],
    ),
    ("timestamp", "at", &["timestamptz", "date", "text"]),
    ("date", "day", &["timestamptz", "timestamp", "text"]),
    ("jsonb", "doc", &["json", "text"]),
    ("json", "doc", &["jsonb", "text"]),
    ("bytea", "bin", &["text"]),
    ("text", "name", &["character varying(12)"]),
    ("text[]", "tags", &["text"]),
];

fn column_name(m: &str, c: &str) -> String {
    let clean = |t: &str| {
        t.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    };
    format!("{}__{}", clean(m), clean(c))
}

fn pairs_mapping(table: &str) -> String {
    let mut m = format!(
        "[[table]]\nname = \"{table}\"\nkey = [\"id\"]\n[table.columns]\nid = {{ from = \"id\", type = \"text\" }}\n"
    );
    for (ty, attr, targets) in PAIRS {
        for c in *targets {
            m.push_str(&format!(
                "{} = {{ from = \"{attr}\", type = \"{ty}\" }}\n",
                column_name(ty, c)
            ));
        }
    }
    m
}

fn pairs_ddl(table: &str) -> String {
    let mut cols = vec!["id text PRIMARY KEY".to_string()];
    for (ty, _, targets) in PAIRS {
        for c in *targets {
            cols.push(format!("{} {c}", column_name(ty, c)));
        }
    }
    format!("CREATE TABLE {table} ({})", cols.join(", "))
}

fn pairs_items() -> Vec<ddb2pg::value::Item> {
    let doc = |b: &str| {
        AttributeValue::M(
            [
                ("b".to_string(), AttributeValue::N(b.into())),
                (
                    "a".to_string(),
                    AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)]),
                ),
            ]
            .into_iter()
            .collect(),
        )
    };
    let full = |id: &str, n: &str, at: &str, day: &str, uid: &str| {
        // `i` for the integer mapping types (which refuse fractions themselves), `n` for the
        // others: what the target's columns refuse.
        let i = if n.contains('.') || n.len() > 4 {
            "12"
        } else {
            n
        };
        item(vec![
            ("id", s(id)),
            ("i", AttributeValue::N(i.into())),
            ("n", AttributeValue::N(n.into())),
            ("flag", AttributeValue::Bool(id == "good")),
            ("uid", s(uid)),
            ("at", s(at)),
            ("day", s(day)),
            ("doc", doc(n)),
            ("bin", AttributeValue::B(Blob::new(vec![0u8, 1, 255]))),
            ("name", s("Zoë \t tab")),
            ("tags", AttributeValue::Ss(vec!["x".into(), "y z".into()])),
        ])
    };
    vec![
        // 22:30 UTC is the next day in Kolkata: a time-zone-dependent cast would show it.
        full(
            "good",
            "42",
            "2024-05-01T22:30:00Z",
            "2024-05-01",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        ),
        full(
            "neg",
            "-7",
            "1999-12-31T23:59:59.999999+02:00",
            "1999-12-31",
            "00000000-0000-0000-0000-000000000001",
        ),
        // Fractions: an integer column refuses 12.75 (not rounded), on every path.
        full(
            "frac",
            "12.75",
            "2024-01-01T00:00:00Z",
            "2024-01-01",
            "00000000-0000-0000-0000-000000000002",
        ),
        // Beyond smallint and integer: refused on every path.
        full(
            "big",
            "123456789012",
            "2024-01-01T00:00:00Z",
            "2024-01-01",
            "00000000-0000-0000-0000-000000000003",
        ),
    ]
}

/// Each row of `table` as the text of its JSON, by id.
async fn rows_of(db: &str, table: &str) -> BTreeMap<String, String> {
    pg(db)
        .await
        .query(
            &format!("SELECT id, row_to_json(t)::text FROM {table} t ORDER BY id"),
            &[],
        )
        .await
        .expect("read rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Rejected item ids with their reasons, from a checkpoint directory.
fn rejected(dir: &std::path::Path) -> BTreeMap<String, String> {
    rejects_in(dir)
        .iter()
        .map(|r| {
            (
                r["item"]["id"]["S"].as_str().unwrap_or("?").to_string(),
                r["reason"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_copy_and_the_upsert_write_the_same_value_for_every_assignable_pair() {
    let items = pairs_items();
    let table = table_with(&items).await;
    let db = new_database().await;
    let dir = tempdir("pairs");
    let c = pg(&db).await;
    // A session time zone far from UTC.
    let dbname = db
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    c.batch_execute(&format!(
        "ALTER DATABASE \"{dbname}\" SET timezone TO 'Asia/Kolkata'; {}; {}; {};",
        pairs_ddl("fresh"),
        pairs_ddl("rerun"),
        pairs_ddl("forced"),
    ))
    .await
    .expect("create the targets");
    // The re-run's rows exist already (all NULL): the direct COPY meets them, the upsert writes.
    c.batch_execute("INSERT INTO rerun (id) VALUES ('good'), ('neg'), ('frac'), ('big')")
        .await
        .expect("rows to rewrite");

    let mut outcomes = BTreeMap::new();
    for (target, no_direct) in [("fresh", false), ("rerun", false), ("forced", true)] {
        let cp = dir.join(target);
        let mapping = write(&dir, &format!("{target}.toml"), &pairs_mapping(target));
        let mut args = with(migrate_args(&table, &db, &cp), &["--mapping", &mapping]);
        let report = dir.join(format!("{target}.json"));
        args.extend(["--report".into(), report.to_string_lossy().into_owned()]);
        let mut cmd = command(&args);
        if no_direct {
            cmd.env("DDB2PG_NO_DIRECT_COPY", "1");
        }
        let out = cmd.output().expect("run ddb2pg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{target}: two items refused: {stderr}"
        );
        // A reason names its table, which differs per target here.
        let named = format!(" of table {target}:");
        let reasons: BTreeMap<String, String> = rejected(&cp)
            .into_iter()
            .map(|(id, r)| (id, r.replace(&named, ":")))
            .collect();
        outcomes.insert(target, reasons);
    }

    // The same items refused, for the same reasons, whichever way the batch went.
    let refused = &outcomes["fresh"];
    assert_eq!(
        refused.keys().map(String::as_str).collect::<Vec<_>>(),
        ["big", "frac"]
    );
    assert!(
        refused["frac"].contains("invalid input syntax for type smallint: '12.75'"),
        "{refused:?}"
    );
    assert_eq!(&outcomes["rerun"], refused);
    assert_eq!(&outcomes["forced"], refused);

    let fresh = rows_of(&db, "fresh").await;
    let mut rerun = rows_of(&db, "rerun").await;
    let forced = rows_of(&db, "forced").await;
    assert_eq!(fresh.keys().collect::<Vec<_>>(), ["good", "neg"]);
    // The refused items' earlier rows stay as they were.
    for id in ["big", "frac"] {
        let r = rerun.remove(id).unwrap_or_default();
        assert!(r.contains("\"smallint__integer\":null"), "{id}: {r}");
    }
    assert_eq!(fresh, rerun, "direct COPY vs upsert over existing rows");
    assert_eq!(fresh, forced, "direct COPY vs upsert of new rows");

    // Values built by hand: UTC times, whatever the session's time zone; text as converted.
    let good: serde_json::Value = serde_json::from_str(&fresh["good"]).expect("row JSON");
    let expect = [
        ("timestamptz__timestamp", "2024-05-01T22:30:00"),
        ("timestamptz__timestamp_0_", "2024-05-01T22:30:00"),
        ("timestamptz__date", "2024-05-01"),
        ("timestamptz__text", "2024-05-01T22:30:00+00:00"),
        ("numeric__integer", "42"),
        ("real__text", "42"),
        ("uuid__text", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("boolean__text", "true"),
        ("bytea__text", "\\x0001ff"),
        ("text__character_varying_12_", "Zoë \t tab"),
        ("text____text", "{\"x\",\"y z\"}"),
    ];
    for (col, want) in expect {
        let got = match &good[col] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(got, want, "column {col}: {good}");
    }
    assert!(
        fresh["good"].contains("\"numeric__numeric_6_2_\":42.00,"),
        "{}",
        fresh["good"]
    );
    let neg: serde_json::Value = serde_json::from_str(&fresh["neg"]).expect("row JSON");
    assert_eq!(neg["timestamptz__timestamp"], "1999-12-31T21:59:59.999999");
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_jsonb_columns_take_both_write_paths() {
    let doc = |v: &str| {
        AttributeValue::M(
            [
                ("z".to_string(), s(v)),
                ("a".to_string(), AttributeValue::N("1".into())),
            ]
            .into_iter()
            .collect(),
        )
    };
    let items: Vec<_> = (0..5)
        .map(|i| item(vec![("id", s(&format!("k{i}"))), ("doc", doc("same"))]))
        .collect();
    let table = table_with(&items).await;
    let db = new_database().await;
    let dir = tempdir("json");
    let mapping = write(
        &dir,
        "m.toml",
        "[[table]]\nname = \"docs\"\nkey = [\"id\"]\n[table.columns]\n\
         id = { from = \"id\", type = \"text\" }\n\
         j = { from = \"doc\", type = \"json\" }\n\
         jb = { from = \"doc\", type = \"jsonb\" }\n",
    );
    let args = |cp: &str| {
        with(
            migrate_args(&table, &db, &dir.join(cp)),
            &["--mapping", &mapping, "--create-tables", "--restart"],
        )
    };
    let texts = || async {
        pg(&db)
            .await
            .query("SELECT id, j::text, jb::text FROM docs ORDER BY id", &[])
            .await
            .expect("read docs")
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                )
            })
            .collect::<Vec<_>>()
    };

    // Fresh: the direct COPY.
    let r = run(&args("a"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_inserted"], 5);
    let loaded = texts().await;
    assert_eq!(
        loaded[0].1, r#"{"a":1,"z":"same"}"#,
        "json keeps the text as written"
    );
    assert_eq!(loaded[0].2, r#"{"a": 1, "z": "same"}"#);

    // Again: the upsert over existing rows, nothing changed (json compared by its text).
    let r = run(&args("a"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_unchanged"], 5, "{}", r.report);
    assert_eq!(r.report["rows_updated"], 0);
    assert_eq!(texts().await, loaded);

    // One document changed: that row alone is updated, to what a fresh load writes.
    put(
        &ddb().await,
        &table,
        &item(vec![("id", s("k3")), ("doc", doc("new"))]),
    )
    .await;
    let r = run(&args("a"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["rows_updated"], 1, "{}", r.report);
    assert_eq!(r.report["rows_unchanged"], 4);
    let after = texts().await;
    assert_eq!(after[3].1, r#"{"a":1,"z":"new"}"#);
    assert_eq!(after[3].2, r#"{"a": 1, "z": "new"}"#);
    assert_eq!(after[0], loaded[0]);
    drop_database(&db).await;
}
