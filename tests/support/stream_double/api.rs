//! The three DynamoDB Streams calls the double answers itself (DescribeStream, GetShardIterator,
//! GetRecords), for the stream it serves; every other request, and these calls for another
//! stream (or with an iterator DynamoDB Local issued), go to DynamoDB Local untouched.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::http::{ddb_error, error_body, forward, read_request, respond, Request, VALIDATION};
use super::model::{Iter, State};
use super::{now_ms, Shared};

/// An error answer: type and message.
type Fail = (String, String);

fn validation(message: impl Into<String>) -> Fail {
    (VALIDATION.to_string(), message.into())
}

fn aws(name: &str, message: impl Into<String>) -> Fail {
    (ddb_error(name), message.into())
}

fn not_found(shard: &str) -> Fail {
    aws(
        "ResourceNotFoundException",
        format!("Requested resource not found: Shard does not exist: {shard}"),
    )
}

fn trimmed() -> Fail {
    aws(
        "TrimmedDataAccessException",
        "The operation attempted to read past the oldest stream record in a shard.",
    )
}

/// Serve one connection's request.
pub(super) async fn serve(shared: Arc<Shared>, mut client: TcpStream) -> std::io::Result<()> {
    let Some(req) = read_request(&mut client).await? else {
        return Ok(());
    };
    let target = req.header("x-amz-target").unwrap_or("").to_string();
    let answer = match target.strip_prefix("DynamoDBStreams_20120810.") {
        Some(op @ ("DescribeStream" | "GetShardIterator" | "GetRecords")) => {
            handle(&shared, op, &req).await
        }
        _ => None,
    };
    match answer {
        None => forward(client, shared.up, &req).await,
        Some(Ok(v)) => respond(&mut client, "200 OK", &v).await,
        Some(Err((t, m))) => respond(&mut client, "400 Bad Request", &error_body(&t, &m)).await,
    }
}

/// The answer, or None to forward the request.
async fn handle(shared: &Arc<Shared>, op: &str, req: &Request) -> Option<Result<Value, Fail>> {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Some(Err(aws("SerializationException", "the body is not JSON")));
    };
    if op == "GetRecords" {
        return get_records(shared, &body).await;
    }
    let arn = body["StreamArn"].as_str()?;
    if !shared.serves(arn, req).await {
        return None;
    }
    Some(match op {
        "DescribeStream" => describe(&shared.lock(), &body),
        _ => shard_iterator(&mut shared.lock(), &body),
    })
}

fn describe(st: &State, body: &Value) -> Result<Value, Fail> {
    let limit = match body.get("Limit") {
        None | Some(Value::Null) => 100,
        Some(v) => v
            .as_u64()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                validation(format!(
                    "1 validation error detected: Value '{v}' at 'limit' failed to satisfy \
                 constraint: Member must have value between 1 and 100"
                ))
            })? as usize,
    };
    let start = body["ExclusiveStartShardId"].as_str();
    // Ids are fixed-width and made in creation order: their order is the listing order.
    let listed: Vec<_> = st
        .shards
        .iter()
        .filter(|s| !s.forgotten && start.is_none_or(|x| s.id.as_str() > x))
        .collect();
    let shards: Vec<Value> = listed
        .iter()
        .take(limit)
        .map(|s| {
            let mut range = json!({ "StartingSequenceNumber": s.start_seq.to_string() });
            if let Some(e) = s.end_seq {
                range["EndingSequenceNumber"] = json!(e.to_string());
            }
            let mut v = json!({ "ShardId": s.id, "SequenceNumberRange": range });
            if let Some(p) = &s.parent {
                v["ParentShardId"] = json!(p);
            }
            v
        })
        .collect();
    let mut desc = st
        .meta
        .clone()
        .unwrap_or_else(|| json!({ "StreamArn": st.arn }));
    if listed.len() > limit {
        desc["LastEvaluatedShardId"] = json!(listed[limit - 1].id);
    }
    desc["Shards"] = Value::Array(shards);
    Ok(json!({ "StreamDescription": desc }))
}

/// A sequence number argument: decimal digits only.
fn seq_arg(v: &Value) -> Option<u128> {
    let s = v.as_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn shard_iterator(st: &mut State, body: &Value) -> Result<Value, Fail> {
    let id = body["ShardId"]
        .as_str()
        .ok_or_else(|| validation("ShardId is required"))?;
    let kind = body["ShardIteratorType"].as_str().unwrap_or("");
    let s = st
        .shard(id)
        .filter(|s| !s.forgotten)
        .ok_or_else(|| not_found(id))?;
    let pos = match kind {
        "TRIM_HORIZON" => s.base,
        "LATEST" => s.end(),
        "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER" => {
            let after = kind == "AFTER_SEQUENCE_NUMBER";
            let seq = seq_arg(&body["SequenceNumber"]).ok_or_else(|| {
                validation("One or more parameter values were invalid: Invalid SequenceNumber")
            })?;
            if seq < s.start_seq || seq > s.max_seq() {
                return Err(validation(format!(
                    "One or more parameter values were invalid: SequenceNumber {seq} is not in \
                     shard {id}, whose range is {}..={}",
                    s.start_seq,
                    s.max_seq()
                )));
            }
            if s.trimmed_upto
                .is_some_and(|t| if after { seq < t } else { seq <= t })
            {
                return Err(trimmed());
            }
            s.position(seq, after)
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to \
                 satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, \
                 AT_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST]"
            )))
        }
    };
    let it = st.issue(id, pos, 0, now_ms());
    Ok(json!({ "ShardIterator": it }))
}

/// Counts a GetRecords call on `shard` as done when dropped (answered or cancelled).
struct InFlight<'a> {
    shared: &'a Shared,
    shard: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.shared.lock().shard_mut(&self.shard) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

async fn get_records(shared: &Shared, body: &Value) -> Option<Result<Value, Fail>> {
    let Some(token) = body["ShardIterator"].as_str() else {
        return Some(Err(validation("ShardIterator is required")));
    };
    if token.starts_with("arn:") && !token.contains("|dbl|") {
        return None; // DynamoDB Local's own iterator (another stream)
    }
    let limit = match body.get("Limit") {
        None | Some(Value::Null) => 1000,
        Some(v) => match v.as_u64().filter(|l| (1..=1000).contains(l)) {
            Some(l) => l as usize,
            None => {
                return Some(Err(validation(format!(
                    "1 validation error detected: Value '{v}' at 'limit' failed to satisfy \
                     constraint: Member must have value between 1 and 1000"
                ))))
            }
        },
    };
    let it = {
        let mut st = shared.lock();
        let Some(it) = st.decode(token) else {
            return Some(Err(validation("Invalid ShardIterator")));
        };
        if let Err(e) = admit(shared, &mut st, &it) {
            return Some(Err(e));
        }
        it
    };
    let _guard = InFlight {
        shared,
        shard: it.shard.clone(),
    };
    if !shared.cfg.latency.is_zero() {
        tokio::time::sleep(shared.cfg.latency).await;
    }
    let page = page(shared, &mut shared.lock(), &it, limit);
    Some(page)
}

/// Count the call; refuse it for a forgotten shard, an expired iterator or a throttle.
fn admit(shared: &Shared, st: &mut State, it: &Iter) -> Result<(), Fail> {
    let draw = st.percent_draw();
    let expired_below = st.expired_below;
    let throttle_pct = shared.throttle_pct();
    let s = st
        .shard_mut(&it.shard)
        .filter(|s| !s.forgotten)
        .ok_or_else(|| not_found(&it.shard))?;
    let now = Instant::now();
    for q in [&mut s.calls, &mut s.accepted] {
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t).as_secs_f64() >= 1.0)
        {
            q.pop_front();
        }
    }
    s.calls.push_back(now);
    s.stats.get_records += 1;
    s.stats.max_per_sec = s.stats.max_per_sec.max(s.calls.len() as u64);
    let over_rate = shared
        .cfg
        .max_calls_per_shard_per_sec
        .is_some_and(|m| s.accepted.len() >= m as usize);
    if draw < throttle_pct || over_rate {
        s.stats.throttled += 1;
        return Err(aws(
            "LimitExceededException",
            format!("Rate exceeded for shard {}", s.id),
        ));
    }
    let age_ms = now_ms().saturating_sub(it.issued_ms);
    if it.nonce <= expired_below || age_ms > shared.cfg.iterator_ttl.as_millis() as u64 {
        return Err(aws(
            "ExpiredIteratorException",
            format!(
                "Iterator expired. The iterator was created {age_ms} ms ago (time to live {} s)",
                shared.cfg.iterator_ttl.as_secs()
            ),
        ));
    }
    s.accepted.push_back(now);
    s.in_flight += 1;
    s.stats.max_in_flight = s.stats.max_in_flight.max(s.in_flight);
    Ok(())
}

/// The page at `it`: records, or an empty page before records no reader was shown yet.
fn page(shared: &Shared, st: &mut State, it: &Iter, limit: usize) -> Result<Value, Fail> {
    let empty_pages = shared.cfg.empty_pages;
    let s = st
        .shard_mut(&it.shard)
        .filter(|s| !s.forgotten)
        .ok_or_else(|| not_found(&it.shard))?;
    if it.pos < s.base {
        return Err(trimmed());
    }
    let end = s.end();
    let pos = it.pos.min(end);
    let take = (end - pos).min(limit);
    let (records, next) = if take > 0 && pos + take > s.shown_upto && it.empties < empty_pages {
        s.stats.empty_pages += 1;
        (Vec::new(), Some((pos, it.empties + 1)))
    } else {
        let from = pos - s.base;
        let records: Vec<Value> = s.records[from..from + take]
            .iter()
            .map(|r| r.body.clone())
            .collect();
        s.shown_upto = s.shown_upto.max(pos + take);
        s.stats.records_served += take as u64;
        let at_end = !s.open() && pos + take == end;
        (records, (!at_end).then_some((pos + take, 0)))
    };
    let mut out = json!({ "Records": records });
    if let Some((pos, empties)) = next {
        out["NextShardIterator"] = json!(st.issue(&it.shard, pos, empties, now_ms()));
    }
    Ok(out)
}
