//! The DynamoDB Streams double (tests/support/stream_double) against the real DynamoDB Local,
//! read with the real aws-sdk-dynamodbstreams client: N shards, each put on exactly one shard
//! and a key's records in order, splits and lineage, empty pages, trims, expired iterators,
//! forgotten shards, throttles, and sequence numbers that only compare right as numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{OperationType, Record, Shard, ShardIteratorType};

use crate::support::stream_double::Config;
use crate::support::stream_fixture::{attr, code, id, range, seq, Fixture};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What the fan-out test saw of the records read so far.
#[derive(Default)]
struct Seen {
    event_ids: BTreeSet<String>,
    /// Key -> the shard its records are on.
    shard_of: BTreeMap<String, String>,
    /// Records whose ApproximateCreationDateTime is not a whole minute.
    stamped: usize,
}

impl Seen {
    /// One shard's records (versions 0.. of keys "K<n>"): each once, each key on this shard
    /// only and in version order, sequence numbers increasing from StartingSequenceNumber.
    fn check(&mut self, s: &Shard, records: &[Record]) {
        let seqs: Vec<u128> = records.iter().map(seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "increasing in {}",
            id(s)
        );
        if let Some(first) = seqs.first() {
            assert_eq!(
                *first,
                range(s).0,
                "the first record gets StartingSequenceNumber"
            );
        }
        let mut last_v: BTreeMap<String, u32> = BTreeMap::new();
        for r in records {
            let event = r.event_id().expect("eventID").to_string();
            assert!(self.event_ids.insert(event), "each record once");
            let (pk, v) = (attr(r, "PK"), attr(r, "v").parse::<u32>().expect("v"));
            let prev = self.shard_of.insert(pk.clone(), id(s));
            assert!(prev.is_none_or(|p| p == id(s)), "{pk} on one shard");
            let want_v = last_v.insert(pk.clone(), v).map(|p| p + 1).unwrap_or(0);
            assert_eq!(want_v, v, "{pk} in order");
            let want = if v == 0 {
                OperationType::Insert
            } else {
                OperationType::Modify
            };
            assert_eq!(r.event_name(), Some(&want));
            let d = r.dynamodb().expect("dynamodb");
            assert_eq!(d.old_image().is_some(), v > 0, "old image of a modify");
            let t = d.approximate_creation_date_time().expect("a creation time");
            self.stamped += usize::from(t.subsec_nanos() != 0 || t.secs() % 60 != 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Eight shards listed (paged); every put on exactly one shard, a key's records on one shard
/// in order; sequence numbers increase as numbers, and not all as strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_every_record_onto_one_of_eight_shards() {
    let f = Fixture::new("dbl_fan", with_shards(8)).await;
    f.put_many(12, 4).await;
    let arn = f.learn().await;
    f.wait(48).await;

    let (shards, pages) = f.shards(&arn, 3).await;
    assert_eq!(shards.len(), 8, "8 shards listed");
    assert_eq!(pages, 3, "3 + 3 + 2 with Limit 3");
    let ids: BTreeSet<String> = shards.iter().map(id).collect();
    assert_eq!(ids.len(), 8, "distinct ids");
    assert!(shards.iter().all(|s| s.parent_shard_id().is_none()));
    assert!(shards.iter().all(|s| range(s).1.is_none()), "all open");
    let listed: Vec<String> = f.double.shard_ids().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, shards.iter().map(id).collect::<Vec<_>>());

    let mut seen = Seen::default();
    let mut all_seqs = Vec::new();
    let mut used = 0;
    for s in &shards {
        let (records, ended) = f.read(&arn, &id(s)).await;
        assert!(!ended, "an open shard does not end");
        used += usize::from(!records.is_empty());
        seen.check(s, &records);
        all_seqs.extend(records.iter().map(|r| {
            r.dynamodb()
                .and_then(|d| d.sequence_number())
                .unwrap_or("")
                .to_string()
        }));
    }
    let (event_ids, shard_of) = (seen.event_ids, seen.shard_of);
    assert!(
        seen.stamped > 0,
        "stamp_now: times with milliseconds, not whole minutes"
    );
    assert_eq!(event_ids.len(), 48, "every put exactly once");
    assert_eq!(shard_of.len(), 12);
    assert!(used >= 4, "12 keys spread over {used} of 8 shards");
    let lengths: BTreeSet<usize> = all_seqs.iter().map(String::len).collect();
    assert!(
        lengths.len() >= 2,
        "sequence numbers of lengths {lengths:?}"
    );
    let mut as_text = all_seqs.clone();
    as_text.sort();
    let mut as_number = all_seqs.clone();
    as_number.sort_by_key(|s| s.parse::<u128>().expect("number"));
    assert_ne!(
        as_text, as_number,
        "string order differs from numeric order"
    );
    f.delete().await;
}

/// A split: the parent ends at its last record (no NextShardIterator at its end), two children
/// name it as parent and take its keys' new records, with higher numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_closes_the_parent_and_children_take_its_keys() {
    let f = Fixture::new("dbl_split", with_shards(2)).await;
    f.put_many(8, 1).await;
    let arn = f.learn().await;
    f.wait(8).await;
    let (shards, _) = f.shards(&arn, 100).await;
    let mut before = BTreeMap::new();
    for s in &shards {
        before.insert(id(s), f.read(&arn, &id(s)).await.0);
    }
    let parent = before
        .iter()
        .max_by_key(|(_, r)| r.len())
        .map(|(i, _)| i.clone())
        .expect("a shard");
    let parent_keys: BTreeSet<String> = before[&parent].iter().map(|r| attr(r, "PK")).collect();
    let parent_last = before[&parent]
        .iter()
        .map(seq)
        .max()
        .expect("records on the parent");

    let (a, b) = f.double.split(&parent).expect("split");
    for v in 1..3 {
        for k in 0..8 {
            f.put(&format!("K{k}"), v).await; // 16 more records (MODIFY)
        }
    }
    f.wait(24).await;

    let (shards, _) = f.shards(&arn, 100).await;
    assert_eq!(shards.len(), 4);
    let by_id: BTreeMap<String, &Shard> = shards.iter().map(|s| (id(s), s)).collect();
    assert_eq!(
        range(by_id[&parent]).1,
        Some(parent_last),
        "EndingSequenceNumber"
    );
    for child in [&a, &b] {
        assert_eq!(by_id[child].parent_shard_id(), Some(parent.as_str()));
        assert!(
            range(by_id[child]).0 > parent_last,
            "a child starts after its parent"
        );
        assert!(range(by_id[child]).1.is_none(), "open");
    }
    let (records, ended) = f.read(&arn, &parent).await;
    assert!(
        ended,
        "the parent read to its end returns no NextShardIterator"
    );
    assert_eq!(
        records.len(),
        before[&parent].len(),
        "nothing new on the parent"
    );

    let mut child_keys = BTreeSet::new();
    for child in [&a, &b] {
        let (records, ended) = f.read(&arn, child).await;
        assert!(!ended);
        for r in &records {
            assert!(seq(r) > parent_last);
            child_keys.insert(attr(r, "PK"));
        }
    }
    assert_eq!(
        child_keys, parent_keys,
        "the parent's keys continue on its children"
    );
    assert!(
        f.double.split(&parent).is_err(),
        "a closed shard cannot be split"
    );
    f.delete().await;
}

/// Empty pages (with a NextShardIterator) come before records no reader was shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pages_come_before_unseen_records() {
    let cfg = Config {
        shards: 1,
        empty_pages: 2,
        ..Config::default()
    };
    let f = Fixture::new("dbl_empty", cfg).await;
    f.put_many(3, 1).await;
    let arn = f.learn().await;
    f.wait(3).await;
    let shard = f.double.shard_ids()[0].id.clone();
    let mut it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    for _ in 0..2 {
        let (records, next) = f.page(&it).await.expect("GetRecords");
        assert!(records.is_empty(), "an empty page first");
        it = next.expect("an empty page has a NextShardIterator");
    }
    let (records, _) = f.page(&it).await.expect("GetRecords");
    assert_eq!(records.len(), 3, "then the records");
    // Records already shown come at once.
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    assert_eq!(f.page(&it).await.expect("GetRecords").0.len(), 3);
    assert_eq!(f.double.stats().empty_pages(), 2);
    f.delete().await;
}

/// The default configuration with `n` shards.
fn with_shards(n: usize) -> Config {
    Config {
        shards: n,
        ..Config::default()
    }
}

/// A fixture of one shard holding `n` records (keys K0.., version 0): the stream ARN, the
/// shard's id and its records.
async fn one_shard(prefix: &str, n: u32) -> (Fixture, String, String, Vec<Record>) {
    let f = Fixture::new(prefix, with_shards(1)).await;
    f.put_many(n, 1).await;
    let arn = f.learn().await;
    f.wait(u64::from(n)).await;
    let shard = f.double.shard_ids()[0].id.clone();
    let (all, _) = f.read(&arn, &shard).await;
    assert_eq!(all.len(), n as usize);
    (f, arn, shard, all)
}

/// The error code of a call that must fail.
fn code_of<T: std::fmt::Debug>(r: Result<T, String>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(code) => code,
    }
}

fn seq_text(r: &Record) -> String {
    r.dynamodb()
        .and_then(|d| d.sequence_number())
        .expect("SequenceNumber")
        .to_string()
}

/// trim: TRIM_HORIZON starts after the dropped records; an iterator before them, or one asked
/// for at or after a dropped record's number, answers TrimmedDataAccessException.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_records_are_past_reach() {
    let (f, arn, shard, all) = one_shard("dbl_trim", 5).await;
    let old = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    assert_eq!(f.double.trim(&shard, 2), Ok(2));

    let (kept, _) = f.read(&arn, &shard).await;
    let seqs = |r: &[Record]| r.iter().map(seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(&kept),
        seqs(&all[2..]),
        "TRIM_HORIZON after the trimmed"
    );
    let trimmed = Some("TrimmedDataAccessException".to_string());
    assert_eq!(f.page(&old).await.err(), trimmed, "an iterator before them");
    let at = |kind, i: usize| f.try_iterator(&arn, &shard, kind, Some(seq_text(&all[i])));
    assert_eq!(
        at(ShardIteratorType::AfterSequenceNumber, 0).await.err(),
        trimmed
    );
    assert_eq!(
        at(ShardIteratorType::AtSequenceNumber, 1).await.err(),
        trimmed
    );
    // After the last trimmed record is the first kept one.
    let it = at(ShardIteratorType::AfterSequenceNumber, 1)
        .await
        .expect("iterator");
    assert_eq!(seq(&f.page(&it).await.expect("page").0[0]), seq(&all[2]));
    let it = at(ShardIteratorType::AtSequenceNumber, 3)
        .await
        .expect("iterator");
    assert_eq!(seq(&f.page(&it).await.expect("page").0[0]), seq(&all[3]));
    f.delete().await;
}

/// expire_iterators; malformed and altered iterators; a sequence number that is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_invalid_iterators_are_refused() {
    let (f, arn, shard, _) = one_shard("dbl_expire", 3).await;
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    f.double.expire_iterators();
    assert_eq!(code_of(f.page(&it).await), "ExpiredIteratorException");
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    assert_eq!(f.page(&it).await.expect("a new iterator works").0.len(), 3);

    assert_eq!(code_of(f.page("garbage").await), "ValidationException");
    let mut altered = it.clone();
    let last = altered.pop().expect("a character");
    altered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(code_of(f.page(&altered).await), "ValidationException");
    let not_a_number = Some("12x".to_string());
    let kind = ShardIteratorType::AfterSequenceNumber;
    let r = f.try_iterator(&arn, &shard, kind, not_a_number).await;
    assert_eq!(code_of(r), "ValidationException");
    f.delete().await;
}

/// forget: only a closed shard; then it is not listed (its child still names it) and reading
/// it answers ResourceNotFoundException.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_shards_are_gone() {
    let (f, arn, shard, _) = one_shard("dbl_forget", 2).await;
    let open = f.double.forget(&shard);
    assert!(open.is_err(), "an open shard cannot be forgotten");
    let (a, _) = f.double.split(&shard).expect("split");
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    f.double.forget(&shard).expect("forget");
    let (shards, _) = f.shards(&arn, 100).await;
    assert!(shards.iter().all(|s| id(s) != shard), "not listed");
    let child = shards.iter().find(|s| id(s) == a).expect("child listed");
    assert_eq!(
        child.parent_shard_id(),
        Some(shard.as_str()),
        "its child still names it"
    );
    let gone = Some("ResourceNotFoundException".to_string());
    assert_eq!(f.page(&it).await.err(), gone);
    let r = f
        .try_iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    assert_eq!(r.err(), gone);
    f.delete().await;
}

/// Calls above the per-shard rate are throttled; concurrent calls are counted; iterators
/// expire after their time to live; Limit is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_concurrency_expiry_and_page_limit() {
    let cfg = Config {
        shards: 1,
        max_calls_per_shard_per_sec: Some(5),
        latency: Duration::from_millis(200),
        iterator_ttl: Duration::from_secs(1),
        ..Config::default()
    };
    let f = Fixture::new("dbl_rate", cfg).await;
    f.put_many(4, 1).await;
    let arn = f.learn().await;
    f.wait(4).await;
    let shard = f.double.shard_ids()[0].id.clone();
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;

    // Four at once: all in flight together.
    let calls: Vec<_> = (0..4).map(|_| f.page(&it)).collect();
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(f.double.stats().max_in_flight(), 4);
    // Four more within the same second: the sixth and later are throttled.
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(f.page(&it).await.err());
    }
    assert_eq!(codes[0], None);
    assert!(
        codes[1..]
            .iter()
            .all(|c| c.as_deref() == Some("LimitExceededException")),
        "{codes:?}"
    );
    let st = f.double.stats();
    assert_eq!(st.get_records(), 8);
    assert_eq!(st.throttled(), 3);
    assert!(st.max_per_sec() >= 6, "{st:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        f.page(&it).await.err().as_deref(),
        Some("ExpiredIteratorException"),
        "past the iterator's time to live"
    );
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    let page = f
        .streams
        .get_records()
        .shard_iterator(&it)
        .limit(3)
        .send()
        .await
        .expect("GetRecords Limit 3");
    assert_eq!(page.records().len(), 3, "Limit honoured");
    let bad = f
        .streams
        .get_records()
        .shard_iterator(&it)
        .limit(1001)
        .send()
        .await;
    assert_eq!(
        bad.err().map(|e| code(&e)).as_deref(),
        Some("ValidationException")
    );
    f.delete().await;
}
