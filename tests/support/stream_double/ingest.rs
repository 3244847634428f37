//! The fan-out: a task reads DynamoDB Local's real stream of the served table (DescribeStream,
//! GetShardIterator, GetRecords; a child shard after its parent is read to its end) every
//! ~100 ms, and puts each record, in order, on the virtual shard of its keys' hash.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{call, UpError};
use super::{now_ms, Shared};

const POLL: Duration = Duration::from_millis(100);

/// Where the task is in one upstream shard.
#[derive(Default)]
struct UpShard {
    iterator: Option<String>,
    last_seq: Option<String>,
    done: bool,
}

/// Run until the double's runtime ends.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut shards: HashMap<String, UpShard> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shared.wake.notified() => {}
        }
        if shared.paused.load(Ordering::SeqCst) {
            continue;
        }
        let Some(arn) = shared.lock().arn.clone() else {
            continue;
        };
        let result = round(&shared, &arn, &mut shards).await;
        shared.lock().last_error = result.err().map(|e| e.to_string());
        shared.rounds.fetch_add(1, Ordering::SeqCst);
    }
}

/// The upstream description's stream fields (without shards).
pub(super) fn meta_of(describe: &Value) -> Value {
    let mut d = describe["StreamDescription"].clone();
    if let Some(m) = d.as_object_mut() {
        m.remove("Shards");
        m.remove("LastEvaluatedShardId");
    }
    d
}

/// Upstream shards: (id, parent), all pages.
async fn upstream_shards(
    shared: &Shared,
    arn: &str,
) -> Result<Vec<(String, Option<String>)>, UpError> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let mut req = json!({ "StreamArn": arn });
        if let Some(s) = &start {
            req["ExclusiveStartShardId"] = json!(s);
        }
        let v = call(
            shared.up,
            &shared.cred(),
            "DynamoDBStreams_20120810.DescribeStream",
            &req,
        )
        .await?;
        shared.lock().meta = Some(meta_of(&v));
        let d = &v["StreamDescription"];
        for s in d["Shards"].as_array().into_iter().flatten() {
            if let Some(id) = s["ShardId"].as_str() {
                out.push((
                    id.to_string(),
                    s["ParentShardId"].as_str().map(str::to_string),
                ));
            }
        }
        match d["LastEvaluatedShardId"].as_str() {
            Some(last) if start.as_deref() != Some(last) => start = Some(last.to_string()),
            _ => return Ok(out),
        }
    }
}

/// Read every upstream shard whose parent is done to its current end.
async fn round(
    shared: &Shared,
    arn: &str,
    shards: &mut HashMap<String, UpShard>,
) -> Result<(), UpError> {
    let listed = upstream_shards(shared, arn).await?;
    for (id, parent) in &listed {
        let parent_pending = parent.as_ref().is_some_and(|p| {
            listed.iter().any(|(i, _)| i == p) && !shards.get(p).is_some_and(|s| s.done)
        });
        if parent_pending || shards.get(id).is_some_and(|s| s.done) {
            continue;
        }
        let mut up = shards.remove(id).unwrap_or_default();
        let r = drain(shared, arn, id, &mut up).await;
        shards.insert(id.clone(), up);
        r?;
    }
    Ok(())
}

/// Read `id` until an empty page (or its end), routing each record.
async fn drain(shared: &Shared, arn: &str, id: &str, up: &mut UpShard) -> Result<(), UpError> {
    let cred = shared.cred();
    let mut renewed = false;
    loop {
        let iterator = match up.iterator.take() {
            Some(i) => i,
            None => {
                let mut req = json!({ "StreamArn": arn, "ShardId": id });
                match &up.last_seq {
                    Some(s) => {
                        req["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                        req["SequenceNumber"] = json!(s);
                    }
                    None => req["ShardIteratorType"] = json!("TRIM_HORIZON"),
                }
                let v = call(
                    shared.up,
                    &cred,
                    "DynamoDBStreams_20120810.GetShardIterator",
                    &req,
                )
                .await?;
                v["ShardIterator"].as_str().unwrap_or_default().to_string()
            }
        };
        let req = json!({ "ShardIterator": iterator, "Limit": 1000 });
        let v = match call(
            shared.up,
            &cred,
            "DynamoDBStreams_20120810.GetRecords",
            &req,
        )
        .await
        {
            Ok(v) => v,
            Err(e) if e.code == "ExpiredIteratorException" && !renewed => {
                renewed = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let records = v["Records"].as_array().cloned().unwrap_or_default();
        let n = records.len();
        for mut r in records {
            up.last_seq = r["dynamodb"]["SequenceNumber"].as_str().map(str::to_string);
            if shared.cfg.stamp_now {
                r["dynamodb"]["ApproximateCreationDateTime"] = json!(now_ms() as f64 / 1000.0);
            }
            shared.lock().route(r);
            shared.ingested.fetch_add(1, Ordering::SeqCst);
        }
        match v["NextShardIterator"].as_str() {
            None => {
                up.done = true;
                return Ok(());
            }
            Some(next) => up.iterator = Some(next.to_string()),
        }
        if n == 0 {
            return Ok(());
        }
    }
}
