//! The table path's Scan parser (`source::fast_scan`) against the SDK's own, on the same
//! pages of a real DynamoDB Local: the sample dataset and hostile items.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use ddb2pg::source::fast_scan::FastScan;
use ddb2pg::value::Item;

use crate::support::{ddb, delete_table, item, load_sample, n, put, s, unique_name};

/// Items DynamoDB accepts that stress a JSON parser: every byte value in binary, every control
/// character and escapes in strings and names, 38-digit and extreme numbers, deep nesting,
/// empty strings, maps and lists, a 300 KB string.
fn hostile() -> Vec<Item> {
    let controls: String = (1u8..0x20).map(char::from).collect();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mut deep = AttributeValue::L(vec![s("bottom")]);
    for i in 0..30 {
        deep = if i % 2 == 0 {
            AttributeValue::M(HashMap::from([("d".to_string(), deep)]))
        } else {
            AttributeValue::L(vec![deep, n("1")])
        };
    }
    vec![
        item(
            "HOSTILE#text",
            "1",
            vec![
                ("controls", s(&controls)),
                ("quotes", s("\"\\/\u{7f}\u{2028}\u{2029}\u{feff}")),
                ("nul", s("a\u{0}b")),
                ("emoji", s("😀 𝄞 𠜎 Zoë")),
                ("empty", s("")),
                ("big", s(&"x\u{e9}\"".repeat(100_000))),
                ("we\"ird\\ \u{1} name", s("v")),
                (
                    "ss",
                    AttributeValue::Ss(vec![controls.clone(), "".into(), "\u{0}".into()]),
                ),
            ],
        ),
        item(
            "HOSTILE#numbers",
            "2",
            vec![
                ("d38", n("12345678901234567890123456789012345678")),
                ("neg38", n("-0.12345678901234567890123456789012345678")),
                ("huge", n("9.9999999999999999999999999999999999999E+125")),
                ("tiny", n("-1E-130")),
                ("zero", n("-0.000")),
                (
                    "ns",
                    AttributeValue::Ns(vec!["1".into(), "1E+2".into(), "-0.5".into()]),
                ),
            ],
        ),
        item(
            "HOSTILE#binary",
            "3",
            vec![
                ("all", AttributeValue::B(Blob::new(all_bytes.clone()))),
                ("one", AttributeValue::B(Blob::new(vec![0xff]))),
                (
                    "bs",
                    AttributeValue::Bs(vec![
                        Blob::new(vec![0]),
                        Blob::new(vec![0xfb, 0xff]),
                        Blob::new(all_bytes),
                    ]),
                ),
            ],
        ),
        item(
            "HOSTILE#structure",
            "4",
            vec![
                ("deep", deep),
                ("em", AttributeValue::M(HashMap::new())),
                ("el", AttributeValue::L(vec![])),
                (
                    "m",
                    AttributeValue::M(HashMap::from([
                        (" ".to_string(), s("blank key")),
                        ("\u{1}\"".to_string(), AttributeValue::Null(true)),
                        ("b".to_string(), AttributeValue::Bool(false)),
                    ])),
                ),
            ],
        ),
    ]
}

fn canon_number(n: &str) -> String {
    ddb2pg::value::Number::parse(n)
        .unwrap_or_else(|e| panic!("{n}: {e}"))
        .to_json_string()
}

fn canon(v: &AttributeValue) -> AttributeValue {
    let sorted = |mut xs: Vec<String>| {
        xs.sort();
        xs
    };
    match v {
        AttributeValue::N(x) => AttributeValue::N(canon_number(x)),
        AttributeValue::Ns(xs) => {
            AttributeValue::Ns(sorted(xs.iter().map(|x| canon_number(x)).collect()))
        }
        AttributeValue::Ss(xs) => AttributeValue::Ss(sorted(xs.clone())),
        AttributeValue::Bs(xs) => {
            let mut xs = xs.clone();
            xs.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
            AttributeValue::Bs(xs)
        }
        AttributeValue::M(m) => AttributeValue::M(canon_item(m)),
        AttributeValue::L(l) => AttributeValue::L(l.iter().map(canon).collect()),
        other => other.clone(),
    }
}

fn canon_item(it: &Item) -> Item {
    it.iter().map(|(k, v)| (k.clone(), canon(v))).collect()
}

/// Every page of every segment, through the SDK's parser or through ddb2pg's.
async fn scan_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    fast: Option<&FastScan>,
) -> Vec<ScanOutput> {
    let mut pages = Vec::new();
    for segment in 0..3 {
        let mut start = None;
        loop {
            let req = client
                .scan()
                .table_name(table)
                .segment(segment)
                .total_segments(3)
                .limit(97)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start.take());
            let out = match fast {
                Some(f) => req.customize().interceptor(f.clone()).send().await,
                None => req.send().await,
            }
            .unwrap_or_else(|e| {
                panic!("Scan: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))
            });
            start = out.last_evaluated_key.clone().filter(|k| !k.is_empty());
            let last = start.is_none();
            pages.push(out);
            if last {
                break;
            }
        }
    }
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_parse_as_the_sdk_parses_them() {
    let client = ddb().await;
    let table = unique_name("scanparse");
    let mut items = load_sample(&client, &table, 15, 1500).await;
    for it in crate::crafted()
        .into_iter()
        .map(|(it, _)| it)
        .chain(hostile())
    {
        put(&client, &table, &it).await;
        items.push(it);
    }

    let sdk = scan_all(&client, &table, None).await;
    let fast = FastScan::new().expect("the SDK's Scan deserializer");
    let ours = scan_all(&client, &table, Some(&fast)).await;

    assert_eq!(ours.len(), sdk.len(), "pages");
    assert!(sdk.len() > 10, "several pages per segment: {}", sdk.len());
    for (i, (o, w)) in ours.iter().zip(&sdk).enumerate() {
        assert_eq!(o.items, w.items, "items of page {i}");
        assert_eq!(
            o.last_evaluated_key, w.last_evaluated_key,
            "cursor of page {i}"
        );
        assert_eq!(
            (o.count, o.scanned_count),
            (w.count, w.scanned_count),
            "page {i}"
        );
        assert_eq!(
            o.consumed_capacity, w.consumed_capacity,
            "capacity of page {i}"
        );
    }
    // Every page was parsed by ddb2pg's parser; none left to the SDK.
    assert_eq!(fast.counts().fast.load(Ordering::Relaxed), sdk.len() as u64);
    assert_eq!(fast.counts().declined.load(Ordering::Relaxed), 0);

    // And the items are the ones written, built by hand above (not by either parser), up to
    // what DynamoDB itself changes: sets come back in its order, numbers normalized
    // ("314.10" -> "314.1", "1E+2" -> "100").
    let mut got: Vec<Item> = ours
        .into_iter()
        .flat_map(|p| p.items.unwrap_or_default())
        .collect();
    let key = |it: &Item| format!("{:?}{:?}", it.get("PK"), it.get("SK"));
    got.sort_by_key(key);
    items.sort_by_key(key);
    assert_eq!(got.len(), items.len());
    for (g, w) in got.iter().zip(&items) {
        assert_eq!(canon_item(g), canon_item(w), "item {}", key(w));
    }

    delete_table(&client, &table).await;
}

/// Rows of the default mapping's table, as text, by key.
async fn default_rows(db: &str, table: &str) -> Vec<(String, String, String)> {
    crate::support::pg(db)
        .await
        .query(
            &format!("SELECT \"PK\", \"SK\", item::text FROM {table} ORDER BY 1, 2"),
            &[],
        )
        .await
        .expect("read rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// migrate's pages are made from the Scan bodies (each item transformed as it is parsed, the
/// body kept for refused rows); with DDB2PG_SDK_SCAN_PARSER the SDK parses every body and the
/// writer prepares its items (the path of a body the fast parser declines).
/// Both write the same rows and the same rejects, lines and segments included: items the
/// transform rejects (a U+0000), and items PostgreSQL refuses (a CHECK), whose reject lines
/// come from the body parsed again, here inside transactions that coalesce pages of several
/// segments (--connections 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_made_from_bodies_write_what_pages_of_items_write() {
    use crate::support::harness::{command, migrate_args, new_database, rejects_in, tempdir};
    let client = ddb().await;
    let table = unique_name("scanrows");
    load_sample(&client, &table, 16, 700).await;
    for it in crate::crafted()
        .into_iter()
        .map(|(it, _)| it)
        .chain(hostile())
    {
        put(&client, &table, &it).await;
    }
    let dir = tempdir("scanrows");
    let mut outcomes = Vec::new();
    for (name, sdk) in [("bodies", false), ("items", true)] {
        let db = new_database().await;
        crate::support::pg(&db)
            .await
            .batch_execute(
                "CREATE TABLE t (\"PK\" text, \"SK\" text, item jsonb, PRIMARY KEY (\"PK\", \"SK\"),
                 CHECK (\"SK\" <> '3' AND item->>'status' IS DISTINCT FROM 'shipped'))",
            )
            .await
            .expect("create the target");
        let cp = dir.join(name);
        let mut args = migrate_args(&table, &db, &cp);
        args.extend(
            [
                "--target-table",
                "t",
                "--segments",
                "3",
                "--concurrency",
                "3",
                "--connections",
                "1",
                "--batch-size",
                "97",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let mut cmd = command(&args);
        if sdk {
            cmd.env("DDB2PG_SDK_SCAN_PARSER", "1");
        }
        let out = cmd.arg("-v").output().expect("run ddb2pg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{name}: some items rejected: {stderr}"
        );
        let mut rejects: Vec<String> = rejects_in(&cp).iter().map(|r| r.to_string()).collect();
        rejects.sort();
        outcomes.push((default_rows(&db, "t").await, rejects));
    }
    let (rows, rejects) = &outcomes[0];
    assert!(rows.len() > 400, "{} rows", rows.len());
    // The transform's reject (U+0000) and PostgreSQL's (the CHECK) are both there.
    assert!(rejects.iter().any(|r| r.contains("U+0000")), "{rejects:?}");
    let refused = rejects
        .iter()
        .filter(|r| r.contains("CHECK constraint"))
        .count();
    assert!(refused > 1, "PostgreSQL refused several items: {rejects:?}");
    assert!(
        rejects.iter().any(|r| r.contains("HOSTILE#binary")),
        "{rejects:?}"
    );
    assert_eq!(&outcomes[1].0, rows, "the same rows either way");
    assert_eq!(&outcomes[1].1, rejects, "the same reject lines either way");
    delete_table(&client, &table).await;
}
