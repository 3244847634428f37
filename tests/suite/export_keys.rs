//! An export keyed by a number and a binary attribute (`--key id:N,bin:B`): typed key columns,
//! every digit and byte kept, and a re-run that finds every row again by those keys.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ddb2pg::value::Item;

use crate::support::harness::{new_database, pg, run, tempdir};
use crate::support::json;

const BIG: &str = "12345678901234567890123456789012345678";

/// Items keyed by `id` (N) and `bin` (B): numbers in every spelling DynamoDB keeps, bytes COPY's
/// text format escapes (backslash, tab, newline) and zero bytes.
fn n_b_items(count: usize) -> Vec<Item> {
    let mut items: Vec<Item> = (0..count)
        .map(|i| {
            let id = match i % 4 {
                0 => format!("{i}"),
                1 => format!("{i}.5"),
                2 => format!("-{i}.25"),
                _ => format!("{i}E+100"),
            };
            let bin = vec![0, (i % 256) as u8, b'\\', b'\t', b'\n', (i / 256) as u8, 0];
            Item::from([
                ("id".to_string(), AttributeValue::N(id)),
                ("bin".to_string(), AttributeValue::B(Blob::new(bin))),
                ("i".to_string(), AttributeValue::N(i.to_string())),
            ])
        })
        .collect();
    for (id, bin) in [
        (BIG, vec![1u8]),
        ("1E+125", vec![0]),
        ("-1E-130", vec![0, 0]),
    ] {
        items.push(Item::from([
            ("id".to_string(), AttributeValue::N(id.to_string())),
            ("bin".to_string(), AttributeValue::B(Blob::new(bin))),
        ]));
    }
    items
}

/// `items` as an AWS full export of table `nb`, `per_file` items a plain data file.
fn write_export(dir: &Path, items: &[Item], per_file: usize) {
    let id = "01700000000002-nbkeys";
    let base = dir.join("AWSDynamoDB").join(id);
    std::fs::create_dir_all(base.join("data")).expect("dirs");
    let mut manifest = String::new();
    for (k, chunk) in items.chunks(per_file).enumerate() {
        let text: String = chunk
            .iter()
            .map(|it| format!("{}\n", serde_json::json!({ "Item": json::ddb_json(it) })))
            .collect();
        let name = format!("part{k:03}.json");
        std::fs::write(base.join("data").join(&name), text).expect("data file");
        manifest.push_str(&format!(
            "{{\"itemCount\":{},\"dataFileS3Key\":\"AWSDynamoDB/{id}/data/{name}\"}}\n",
            chunk.len()
        ));
    }
    std::fs::write(base.join("manifest-files.json"), manifest).expect("manifest");
    std::fs::write(
        base.join("manifest-summary.json"),
        format!(
            "{{\"exportType\":\"FULL_EXPORT\",\"tableArn\":\"arn:aws:dynamodb:us-east-1:000000000000:table/nb\",\"itemCount\":{}}}",
            items.len()
        ),
    )
    .expect("summary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_number_and_binary_keys_lands_exactly_and_is_found_again() {
    let items = n_b_items(1200);
    let total = items.len() as u64;
    let dir = tempdir("export-nb");
    write_export(&dir, &items, 400);
    let db = new_database().await;
    let cp = tempdir("export-nb-cp");
    let args: Vec<String> = [
        "migrate",
        "--export",
        &dir.to_string_lossy(),
        "--key",
        "id:N,bin:B",
        "--target",
        &db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--progress",
        "none",
        "--batch-size",
        "50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["items_read"], total, "{}", r.report);
    assert_eq!(r.report["rows_inserted"], total, "{}", r.report);

    let c = pg(&db).await;
    let types: BTreeMap<String, String> = c
        .query(
            "SELECT attname::text, atttypid::regtype::text FROM pg_attribute \
             WHERE attrelid = 'nb'::regclass AND attnum > 0 AND NOT attisdropped",
            &[],
        )
        .await
        .expect("column types")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([
            ("id".to_string(), "numeric".to_string()),
            ("bin".to_string(), "bytea".to_string()),
            ("item".to_string(), "jsonb".to_string()),
        ])
    );
    let (mut ids, mut bins, mut docs) = (Vec::new(), Vec::new(), Vec::new());
    for it in &items {
        let (Some(AttributeValue::N(id)), Some(AttributeValue::B(bin))) =
            (it.get("id"), it.get("bin"))
        else {
            panic!("keys of {it:?}")
        };
        ids.push(id.clone());
        bins.push(bin.as_ref().to_vec());
        docs.push(json::doc(it));
    }
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM nb), count(*) \
             FROM unnest($1::text[], $2::bytea[], $3::text[]) AS e(id, bin, doc) \
             JOIN nb t ON t.id = e.id::numeric AND t.bin = e.bin AND t.item = e.doc::jsonb",
            &[&ids, &bins, &docs],
        )
        .await
        .expect("compare");
    let (rows, matching): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((rows as u64, matching as u64), (total, total));
    let big: String = c
        .query_one("SELECT id::text FROM nb WHERE bin = '\\x01'::bytea", &[])
        .await
        .expect("the 38-digit key")
        .get(0);
    assert_eq!(big, BIG);

    // Read again from the start: every item finds its row by (numeric, bytea) key, unchanged.
    let mut again = args.clone();
    again.push("--restart".into());
    let r = run(&again);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["items_read"], total, "{}", r.report);
    assert_eq!(r.report["rows_unchanged"], total, "{}", r.report);
    assert_eq!(r.report["rows_written"], 0, "{}", r.report);
    let after: i64 = c
        .query_one("SELECT count(*) FROM nb", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(after as u64, total);
}
