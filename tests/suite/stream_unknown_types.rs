//! A stream value of a type this ddb2pg does not know is handled as the scan path handles it:
//! the item is rejected only when the mapping reads that value (a column of it, or the default
//! mapping's whole-item `jsonb`), so the same item gives the same rows or the same reject
//! whichever way it arrives. An old image holding one still deletes the item's old rows; an
//! unknown type in a record's Keys rejects the whole change.
//!
//! DynamoDB Local cannot store such a value: the records are injected into the Streams test
//! double in front of it, after a first run loaded the table.

use std::time::Duration;

use serde_json::{json, Value};

use super::follow_scale::{create_stream_table, put_ver};
use crate::support::stream_double::{Config, StreamDouble};
use crate::support::{ddb, new_database, pg, temp_dir, unique_name, Migration};

/// Reads `pk`, `ver` and `doc`: never `odd` or `a`.
const MAPPING: &str = "[[table]]\nname = \"things\"\nkey = [\"pk\"]\n[table.columns]\n\
     pk = { from = \"pk\", type = \"text\" }\nver = { from = \"ver\", type = \"integer\" }\n\
     doc = { from = \"doc\", type = \"jsonb\" }\n";

/// A value of a DynamoDB type newer than this ddb2pg.
fn future() -> Value {
    json!({"QQ": "from the future"})
}

/// The item `put_ver` writes at `ver`, plus `extra` attributes.
fn image(pk: &str, ver: u64, extra: &[(&str, Value)]) -> Value {
    let mut i = json!({
        "pk": {"S": pk},
        "ver": {"N": ver.to_string()},
        "tag": {"S": format!("{pk}-v{ver}")},
    });
    for (k, v) in extra {
        i[*k] = v.clone();
    }
    i
}

/// A NEW_AND_OLD_IMAGES stream record of `pk`'s change from `old` to `new`.
fn record(id: &str, keys: Value, old: Option<Value>, new: Option<Value>) -> Value {
    let name = match (&old, &new) {
        (None, _) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        (Some(_), None) => "REMOVE",
    };
    let mut d = json!({
        "ApproximateCreationDateTime": crate::support::stream_double::now_ms() as f64 / 1000.0,
        "Keys": keys,
        "SizeBytes": 64,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    if let Some(o) = old {
        d["OldImage"] = o;
    }
    if let Some(n) = new {
        d["NewImage"] = n;
    }
    json!({
        "eventID": id,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": d,
    })
}

fn keys(pk: &str) -> Value {
    json!({"pk": {"S": pk}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_values_of_an_unknown_type_give_the_rows_and_rejects_of_the_scan_path() {
    let client = ddb().await;
    let table = unique_name("unknownold");
    create_stream_table(&client, &table).await;
    for pk in ["k0", "k1", "k2"] {
        put_ver(&client, &table, pk, 1).await;
    }
    let arn = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe")
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("a stream");
    let double = StreamDouble::start(
        &services_endpoint(),
        Config {
            stream_arn: Some(arn),
            shards: 1,
            ..Config::default()
        },
    )
    .expect("start the double");
    let dir = temp_dir("unknownold-map");
    let mapping = dir.join("m.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let mapping = mapping.to_string_lossy().into_owned();
    let db = new_database().await;
    let mut m = Migration::new(&table, &db);
    m.endpoint = double.url();
    let args = [
        "--follow",
        "--until-caught-up",
        "--mapping",
        &mapping,
        "--create-tables",
    ];
    let first = tokio::time::timeout(Duration::from_secs(120), m.run(&args))
        .await
        .expect("run 1 caught up within 120 s");
    first.expect_code(0);
    assert_eq!(
        things(&db).await,
        [("k0".into(), 1), ("k1".into(), 1), ("k2".into(), 1)]
    );

    let odd = || ("odd", future());
    let nested = json!({"M": {"b": {"L": [{"S": "x"}, {"N": "1"}, future()]}}});
    let read = json!({"M": {"x": {"L": [{"S": "x"}, {"N": "1"}, future()]}}});
    double.inject(vec![
        // k0: gains a value of an unknown type, then loses it.
        record(
            "k0-2",
            keys("k0"),
            Some(image("k0", 1, &[])),
            Some(image("k0", 2, &[odd()])),
        ),
        record(
            "k0-3",
            keys("k0"),
            Some(image("k0", 2, &[odd()])),
            Some(image("k0", 3, &[])),
        ),
        // k1: gains one, then is deleted.
        record(
            "k1-2",
            keys("k1"),
            Some(image("k1", 1, &[])),
            Some(image("k1", 2, &[odd()])),
        ),
        record("k1-x", keys("k1"), Some(image("k1", 2, &[odd()])), None),
        // k2: deleted, its old image holding one.
        record("k2-x", keys("k2"), Some(image("k2", 1, &[odd()])), None),
        // n1: one nested where the mapping does not read: loaded, as a scan loads it.
        record(
            "n1-1",
            keys("n1"),
            None,
            Some(image("n1", 1, &[("a", nested)])),
        ),
        // n2: one nested where the mapping reads (`doc`): rejected with its column and path.
        record(
            "n2-1",
            keys("n2"),
            None,
            Some(image("n2", 1, &[("doc", read)])),
        ),
        // An unknown type in the Keys: the whole change is rejected.
        record(
            "bad-1",
            json!({"pk": future()}),
            None,
            Some(json!({"pk": future(), "ver": {"N": "1"}})),
        ),
    ]);
    let second = tokio::time::timeout(Duration::from_secs(120), m.run(&args))
        .await
        .expect("run 2 caught up within 120 s");
    // What the records leave in DynamoDB, less n2 (rejected: a scan would reject it too).
    assert_eq!(
        things(&db).await,
        [("k0".into(), 3), ("n1".into(), 1)],
        "{}",
        second.stderr
    );
    second.expect_code(4);
    let text = std::fs::read_to_string(m.sibling(".rejects.jsonl")).expect("rejects file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let reason_of = |pick: &dyn Fn(&Value) -> bool| -> String {
        let found: Vec<&Value> = lines.iter().filter(|l| pick(l)).collect();
        assert_eq!(found.len(), 1, "one reject line expected:\n{text}");
        found[0]["reason"].as_str().unwrap_or_default().to_string()
    };
    // As the scan path names it: the column, and the path inside the column's value.
    let n2 = reason_of(&|l| l["key"]["pk"]["S"] == "n2" && l["column"] == "doc");
    assert!(n2.contains("unsupported attribute type at x[2]"), "{n2}");
    let bad = reason_of(&|l| l["key"]["pk"]["S"].is_null());
    assert!(
        bad.contains("unsupported attribute type at pk") && bad.contains("Keys"),
        "{bad}"
    );
    assert_eq!(
        lines.len(),
        2,
        "only n2 and the bad key are rejected:\n{text}"
    );
}

fn services_endpoint() -> String {
    crate::support::services().endpoint.clone()
}

/// The rows of the mapping's table, `(pk, ver)` sorted.
async fn things(db: &str) -> Vec<(String, i32)> {
    pg(db)
        .await
        .query("SELECT pk, ver FROM things ORDER BY pk", &[])
        .await
        .expect("read things")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
