//! A deterministic single-table-design dataset (users, orders with folded order lines, events)
//! with every DynamoDB type, and a loader that writes it with BatchWriteItem. Used by the demo,
//! the tests and the benchmark.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use crate::error::{Error, Result};
use crate::source::sdk_message;
use crate::value::Item;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, i: u64) -> Rng {
        Rng((seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Item number `i` of the dataset (PK = USER#<u>, SK = PROFILE | ORDER#.. | EVENT#..).
pub fn item(seed: u64, i: u64) -> Item {
    let mut r = Rng::new(seed, i);
    let user = i / 5;
    let pk = format!("USER#{user:08}");
    let mut it = Item::new();
    it.insert("PK".into(), s(&pk));
    match i % 5 {
        0 => {
            it.insert("SK".into(), s("PROFILE"));
            it.insert("email".into(), s(format!("user{user}@example.com")));
            it.insert(
                "name".into(),
                s(["Ada", "Grace", "Émile", "李雷", "Zoë 😀"][r.below(5) as usize]),
            );
            it.insert("age".into(), n(18 + r.below(70)));
            it.insert(
                "score".into(),
                n(format!("{}.{:02}", r.below(1000), r.below(100))),
            );
            it.insert("active".into(), AttributeValue::Bool(r.below(2) == 0));
            it.insert("deletedAt".into(), AttributeValue::Null(true));
            it.insert(
                "createdAt".into(),
                s(format!(
                    "2024-{:02}-{:02}T10:00:00Z",
                    1 + r.below(12),
                    1 + r.below(28)
                )),
            );
            let mut prefs = Item::new();
            prefs.insert("lang".into(), s(["en", "fr", "de"][r.below(3) as usize]));
            prefs.insert("newsletter".into(), AttributeValue::Bool(r.below(2) == 0));
            it.insert("prefs".into(), AttributeValue::M(prefs));
            it.insert(
                "tags".into(),
                AttributeValue::Ss(vec!["beta".into(), format!("t{}", r.below(9))]),
            );
            it.insert(
                "avatar".into(),
                AttributeValue::B(Blob::new(vec![0u8, 1, 2, (r.next() & 0xff) as u8, 0])),
            );
        }
        1..=3 => {
            let order = i % 5;
            it.insert("SK".into(), s(format!("ORDER#{user:08}-{order}")));
            it.insert("orderId".into(), s(format!("O-{user}-{order}")));
            it.insert(
                "status".into(),
                s(["new", "paid", "shipped"][r.below(3) as usize]),
            );
            it.insert(
                "total".into(),
                n(format!("{}.{:02}", r.below(500), r.below(100))),
            );
            let lines: Vec<AttributeValue> = (0..1 + r.below(4))
                .map(|k| {
                    let mut l = Item::new();
                    l.insert("sku".into(), s(format!("SKU-{}", r.below(1000))));
                    l.insert("qty".into(), n(1 + r.below(5)));
                    l.insert("price".into(), n(format!("{}.{:02}", r.below(100), k)));
                    AttributeValue::M(l)
                })
                .collect();
            it.insert("lines".into(), AttributeValue::L(lines));
        }
        _ => {
            it.insert("SK".into(), s(format!("EVENT#{:010}", 1_700_000_000 + i)));
            it.insert(
                "kind".into(),
                s(["login", "click", "logout"][r.below(3) as usize]),
            );
            // 38 significant digits: survives only if never converted to f64.
            it.insert(
                "big".into(),
                n(format!(
                    "1234567890123456789012345678901234567{}",
                    r.below(10)
                )),
            );
            it.insert(
                "ns".into(),
                AttributeValue::Ns(vec!["10".into(), "9".into(), "-1.5".into()]),
            );
            let mut payload = Item::new();
            payload.insert(
                "ip".into(),
                s(format!("10.0.{}.{}", r.below(255), r.below(255))),
            );
            payload.insert(
                "nested".into(),
                AttributeValue::L(vec![n(1), s("two"), AttributeValue::Bool(false)]),
            );
            it.insert("payload".into(), AttributeValue::M(payload));
        }
    }
    it
}

/// Create `table` (PK, SK strings; on-demand) if it does not exist.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    if client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr_def("PK")?)
        .attribute_definitions(attr_def("SK")?)
        .key_schema(key_elem("PK", KeyType::Hash)?)
        .key_schema(key_elem("SK", KeyType::Range)?)
        .send()
        .await
        .map_err(|e| {
            Error::config(format!(
                "cannot create table {table:?}: {}",
                sdk_message(&e)
            ))
        })?;
    Ok(())
}

fn attr_def(name: &str) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| Error::config(e.to_string()))
}

fn key_elem(name: &str, t: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .map_err(|e| Error::config(e.to_string()))
}

/// Write items `0..count` of the dataset with BatchWriteItem (25 per request, 8 in flight),
/// retrying unprocessed items.
pub async fn load(client: &Client, table: &str, seed: u64, count: u64) -> Result<()> {
    create_table(client, table).await?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        let table = table.to_string();
        let next = next.clone();
        set.spawn(async move {
            loop {
                let start = next.fetch_add(25, std::sync::atomic::Ordering::Relaxed);
                if start >= count {
                    return Ok(());
                }
                let mut reqs: Vec<WriteRequest> = Vec::with_capacity(25);
                for i in start..(start + 25).min(count) {
                    let put = PutRequest::builder()
                        .set_item(Some(item(seed, i)))
                        .build()
                        .map_err(|e| Error::config(e.to_string()))?;
                    reqs.push(WriteRequest::builder().put_request(put).build());
                }
                write_all(&client, &table, reqs).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| Error::config(format!("loader task failed: {e}")))??;
    }
    Ok(())
}

/// BatchWriteItem until every request is processed.
pub async fn write_all(client: &Client, table: &str, mut reqs: Vec<WriteRequest>) -> Result<()> {
    let mut backoff = Duration::from_millis(20);
    while !reqs.is_empty() {
        let out = client
            .batch_write_item()
            .request_items(table, reqs)
            .send()
            .await
            .map_err(|e| Error::Source {
                message: format!("BatchWriteItem into {table:?}: {}", sdk_message(&e)),
                retryable: false,
            })?;
        reqs = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        if !reqs.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
    Ok(())
}

/// Write items `0..count` as a DynamoDB export laid out as AWS writes it (manifests and
/// `files` gzipped data files of `{"Item": ...}` lines) under `dir`, for benchmarks and demos.
pub fn write_export(
    dir: &std::path::Path,
    table: &str,
    seed: u64,
    count: u64,
    files: u64,
) -> Result<()> {
    use std::io::Write;
    let id = "01700000000000-sample";
    let base = dir.join("AWSDynamoDB").join(id);
    let data = base.join("data");
    std::fs::create_dir_all(&data).map_err(|e| Error::file(&data, e))?;
    let per_file = count.div_ceil(files.max(1)).max(1);
    let mut manifest = String::new();
    let mut start = 0;
    let mut n = 0;
    while start < count {
        let end = (start + per_file).min(count);
        let name = format!("part-{n:05}.json.gz");
        let path = data.join(&name);
        let f = std::fs::File::create(&path).map_err(|e| Error::file(&path, e))?;
        let mut gz =
            flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
        for i in start..end {
            let line =
                serde_json::json!({ "Item": crate::value::item_to_ddb_json(&item(seed, i)) });
            writeln!(gz, "{line}").map_err(|e| Error::file(&path, e))?;
        }
        gz.finish()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::file(&path, e))?;
        manifest.push_str(&format!(
            "{{\"itemCount\":{},\"dataFileS3Key\":\"AWSDynamoDB/{id}/data/{name}\"}}\n",
            end - start
        ));
        start = end;
        n += 1;
    }
    let m = base.join("manifest-files.json");
    std::fs::write(&m, manifest).map_err(|e| Error::file(&m, e))?;
    let summary = serde_json::json!({
        "exportType": "FULL_EXPORT",
        "tableArn": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{table}"),
        "itemCount": count,
    });
    let sp = base.join("manifest-summary.json");
    std::fs::write(&sp, summary.to_string()).map_err(|e| Error::file(&sp, e))
}
