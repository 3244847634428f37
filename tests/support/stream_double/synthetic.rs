//! Synthetic changes put straight on the double's shards, for benchmarks: DynamoDB Local with a
//! stream takes about 50 writes a second on this machine, far below the rates a follower must
//! be measured at. A synthetic record is what AWS would put in the stream for a table keyed by
//! `pk` (a string): INSERT or MODIFY with the new image `{pk, v, ts}` (`ts`: the time it was
//! made, in ms, so a benchmark can tell each change's lag once its row lands), or REMOVE with
//! the old image. They are routed by key hash like the real stream's records.

use serde_json::{json, Value};

pub use super::now_ms;
use super::StreamDouble;

/// A stream record of `pk` at version `v` (`previous`: the version it replaces, if any;
/// `remove`: a REMOVE of `previous`). Its images carry `ts` (ms): a REMOVE's old image must be
/// the item as it was written, so give the `ts` it was written with.
pub fn record(pk: &str, v: u64, previous: Option<u64>, remove: bool, ts: u64) -> Value {
    let now = now_ms();
    let image = |v: u64| {
        json!({
            "pk": { "S": pk },
            "v": { "N": v.to_string() },
            "ts": { "N": ts.to_string() },
        })
    };
    let mut d = json!({
        "ApproximateCreationDateTime": now as f64 / 1000.0,
        "Keys": { "pk": { "S": pk } },
        "SizeBytes": 64,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    let name = match (previous, remove) {
        (Some(p), true) => {
            d["OldImage"] = image(p);
            "REMOVE"
        }
        (Some(p), false) => {
            d["OldImage"] = image(p);
            d["NewImage"] = image(v);
            "MODIFY"
        }
        (None, _) => {
            d["NewImage"] = image(v);
            "INSERT"
        }
    };
    json!({
        "eventID": format!("syn-{pk}-{v}"),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": d,
    })
}

impl StreamDouble {
    /// Put `records` on the shards of their keys, in order, as if read from the real stream.
    pub fn inject(&self, records: Vec<Value>) {
        let n = records.len() as u64;
        {
            let mut st = self.shared().lock();
            for r in records {
                st.route(r);
            }
        }
        self.shared()
            .ingested
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
}
