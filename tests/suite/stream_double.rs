//! The DynamoDB Streams double (tests/support/stream_double) against the real DynamoDB Local,
//! read with the real aws-sdk-dynamodbstreams client: N shards, each put on exactly one shard
//! and a key's records in order, splits and lineage, empty pages, trims, expired iterators,
//! forgotten shards, throttles, and sequence numbers that only compare right as numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{
    AttributeValue as StreamValue, OperationType, Record, Shard, ShardIteratorType,
};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_types::retry::RetryConfig;

use crate::support::services;
use crate::support::stream_double::{Config, StreamDouble};

const KEY: &str = "ddb2pglocal";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A DynamoDB client and a Streams client for `url`, without retries (errors are asserted).
fn clients(url: &str) -> (aws_sdk_dynamodb::Client, aws_sdk_dynamodbstreams::Client) {
    let creds = aws_sdk_dynamodb::config::Credentials::new(KEY, KEY, None, None, "test");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let ddb = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .endpoint_url(url)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    let streams = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version_latest()
        .endpoint_url(url)
        .region(aws_sdk_dynamodbstreams::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    (
        aws_sdk_dynamodb::Client::from_conf(ddb),
        aws_sdk_dynamodbstreams::Client::from_conf(streams),
    )
}

/// A double of `cfg` with clients through it, and a fresh table (PK, SK) with a
/// NEW_AND_OLD_IMAGES stream, made through the double.
struct Fixture {
    double: StreamDouble,
    ddb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    table: String,
}

impl Fixture {
    async fn new(prefix: &str, cfg: Config) -> Fixture {
        let double = StreamDouble::start(&services().endpoint, cfg).expect("start the double");
        let (ddb, streams) = clients(&double.url());
        let table = crate::support::unique_name(prefix);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition")
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .expect("key schema element")
        };
        let spec = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewAndOldImages)
            .build()
            .expect("stream specification");
        ddb.create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK"))
            .attribute_definitions(attr("SK"))
            .key_schema(key("PK", KeyType::Hash))
            .key_schema(key("SK", KeyType::Range))
            .stream_specification(spec)
            .send()
            .await
            .expect("CreateTable through the double");
        Fixture {
            double,
            ddb,
            streams,
            table,
        }
    }

    /// Put item (`pk`, "s") with version `v`.
    async fn put(&self, pk: &str, v: u32) {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("PK", AttributeValue::S(pk.into()))
            .item("SK", AttributeValue::S("s".into()))
            .item("v", AttributeValue::N(v.to_string()))
            .send()
            .await
            .expect("PutItem through the double");
    }

    /// Put `versions` versions of each of `keys` keys, key by key per version.
    async fn put_many(&self, keys: u32, versions: u32) {
        for v in 0..versions {
            for k in 0..keys {
                self.put(&format!("K{k}"), v).await;
            }
        }
    }

    /// The stream ARN from DescribeTable (forwarded to DynamoDB Local).
    async fn arn(&self) -> String {
        let d = self
            .ddb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .expect("DescribeTable through the double");
        d.table()
            .and_then(|t| t.latest_stream_arn())
            .expect("LatestStreamArn")
            .to_string()
    }

    /// All shards through DescribeStream, `limit` a page.
    async fn shards(&self, arn: &str, limit: i32) -> (Vec<Shard>, usize) {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        let mut pages = 0;
        loop {
            let d = self
                .streams
                .describe_stream()
                .stream_arn(arn)
                .limit(limit)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .expect("DescribeStream");
            pages += 1;
            let desc = d.stream_description.expect("StreamDescription");
            out.extend(desc.shards.unwrap_or_default());
            match desc.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return (out, pages),
            }
        }
    }

    async fn iterator(
        &self,
        arn: &str,
        shard: &str,
        kind: ShardIteratorType,
        seq: Option<&str>,
    ) -> String {
        self.try_iterator(arn, shard, kind, seq)
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator of {shard}: {e}"))
    }

    async fn try_iterator(
        &self,
        arn: &str,
        shard: &str,
        kind: ShardIteratorType,
        seq: Option<&str>,
    ) -> Result<String, String> {
        self.streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(seq.map(str::to_string))
            .send()
            .await
            .map(|o| o.shard_iterator.expect("ShardIterator"))
            .map_err(|e| code(&e))
    }

    /// One page: records and the next iterator, or the error's code.
    async fn page(&self, it: &str) -> Result<(Vec<Record>, Option<String>), String> {
        self.streams
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .map(|o| (o.records.unwrap_or_default(), o.next_shard_iterator))
            .map_err(|e| code(&e))
    }

    /// A shard from its oldest record: records, and whether the shard ended (a page without
    /// NextShardIterator) rather than an empty page of an open shard.
    async fn read(&self, arn: &str, shard: &str) -> (Vec<Record>, bool) {
        let mut it = self
            .iterator(arn, shard, ShardIteratorType::TrimHorizon, None)
            .await;
        let mut all = Vec::new();
        loop {
            let (records, next) = self.page(&it).await.expect("GetRecords");
            let empty = records.is_empty();
            all.extend(records);
            match next {
                None => return (all, true),
                Some(_) if empty => return (all, false),
                Some(n) => it = n,
            }
        }
    }

    async fn learn(&self) -> String {
        let arn = self.arn().await;
        self.shards(&arn, 100).await;
        assert_eq!(self.double.stream_arn().as_deref(), Some(arn.as_str()));
        arn
    }

    async fn wait(&self, n: u64) {
        assert!(
            self.double.wait_ingested(n, Duration::from_secs(15)).await,
            "{n} records ingested (got {}, last error {:?})",
            self.double.ingested(),
            self.double.ingest_error()
        );
    }

    async fn delete(&self) {
        let _ = self.ddb.delete_table().table_name(&self.table).send().await;
    }
}

fn code<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(s) => s.code().unwrap_or("(no code)").to_string(),
        None => format!("not a service error: {e:?}"),
    }
}

fn seq(r: &Record) -> u128 {
    r.dynamodb()
        .and_then(|d| d.sequence_number())
        .expect("SequenceNumber")
        .parse()
        .expect("a decimal SequenceNumber")
}

fn attr(r: &Record, name: &str) -> String {
    let d = r.dynamodb().expect("dynamodb");
    let img = d.new_image().or(d.keys()).expect("an image");
    match img.get(name) {
        Some(StreamValue::S(s)) | Some(StreamValue::N(s)) => s.clone(),
        other => panic!("attribute {name}: {other:?}"),
    }
}

fn id(s: &Shard) -> String {
    s.shard_id().expect("ShardId").to_string()
}

fn range(s: &Shard) -> (u128, Option<u128>) {
    let r = s.sequence_number_range().expect("SequenceNumberRange");
    let start = r
        .starting_sequence_number()
        .expect("Starting")
        .parse()
        .expect("number");
    (
        start,
        r.ending_sequence_number()
            .map(|e| e.parse().expect("number")),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Eight shards listed (paged); every put on exactly one shard, a key's records on one shard
/// in order; sequence numbers increase as numbers, and not all as strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_every_record_onto_one_of_eight_shards() {
    let f = Fixture::new(
        "dbl_fan",
        Config {
            shards: 8,
            ..Config::default()
        },
    )
    .await;
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

    let mut event_ids = BTreeSet::new();
    let mut shard_of: BTreeMap<String, String> = BTreeMap::new();
    let mut all_seqs = Vec::new();
    let mut used = 0;
    for s in &shards {
        let (records, ended) = f.read(&arn, &id(s)).await;
        assert!(!ended, "an open shard does not end");
        used += usize::from(!records.is_empty());
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
        for r in &records {
            assert!(
                event_ids.insert(r.event_id().expect("eventID").to_string()),
                "once"
            );
            let (pk, v) = (attr(r, "PK"), attr(r, "v").parse::<u32>().expect("v"));
            let prev = shard_of.insert(pk.clone(), id(s));
            assert!(prev.is_none_or(|p| p == id(s)), "{pk} on one shard");
            assert_eq!(
                last_v.insert(pk.clone(), v).map(|p| p + 1).unwrap_or(0),
                v,
                "{pk} in order"
            );
            let want = if v == 0 {
                OperationType::Insert
            } else {
                OperationType::Modify
            };
            assert_eq!(r.event_name(), Some(&want));
            let d = r.dynamodb().expect("dynamodb");
            assert_eq!(d.old_image().is_some(), v > 0, "old image of a modify");
            assert!(d.approximate_creation_date_time().is_some());
        }
        all_seqs.extend(records.iter().map(|r| {
            r.dynamodb()
                .and_then(|d| d.sequence_number())
                .unwrap_or("")
                .to_string()
        }));
    }
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
    let f = Fixture::new(
        "dbl_split",
        Config {
            shards: 2,
            ..Config::default()
        },
    )
    .await;
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

/// trim: TRIM_HORIZON starts after the dropped records, iterators before them answer
/// TrimmedDataAccessException; expire_iterators; forget; malformed iterators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_expire_forget_and_invalid_iterators() {
    let f = Fixture::new(
        "dbl_trim",
        Config {
            shards: 1,
            ..Config::default()
        },
    )
    .await;
    f.put_many(5, 1).await;
    let arn = f.learn().await;
    f.wait(5).await;
    let shard = f.double.shard_ids()[0].id.clone();
    let (all, _) = f.read(&arn, &shard).await;
    assert_eq!(all.len(), 5);
    let s = |i: usize| {
        all[i]
            .dynamodb()
            .and_then(|d| d.sequence_number())
            .expect("seq")
            .to_string()
    };
    let old = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;

    assert_eq!(f.double.trim(&shard, 2), Ok(2));
    let (kept, _) = f.read(&arn, &shard).await;
    assert_eq!(
        kept.iter().map(seq).collect::<Vec<_>>(),
        all[2..].iter().map(seq).collect::<Vec<_>>()
    );
    assert_eq!(
        f.page(&old).await.err().as_deref(),
        Some("TrimmedDataAccessException")
    );
    assert_eq!(
        f.try_iterator(
            &arn,
            &shard,
            ShardIteratorType::AfterSequenceNumber,
            Some(&s(0))
        )
        .await
        .err()
        .as_deref(),
        Some("TrimmedDataAccessException")
    );
    assert_eq!(
        f.try_iterator(
            &arn,
            &shard,
            ShardIteratorType::AtSequenceNumber,
            Some(&s(1))
        )
        .await
        .err()
        .as_deref(),
        Some("TrimmedDataAccessException")
    );
    // After the last trimmed record is the first kept one.
    let it = f
        .try_iterator(
            &arn,
            &shard,
            ShardIteratorType::AfterSequenceNumber,
            Some(&s(1)),
        )
        .await
        .expect("iterator");
    assert_eq!(seq(&f.page(&it).await.expect("page").0[0]), seq(&all[2]));
    let it = f
        .try_iterator(
            &arn,
            &shard,
            ShardIteratorType::AtSequenceNumber,
            Some(&s(3)),
        )
        .await
        .expect("iterator");
    assert_eq!(seq(&f.page(&it).await.expect("page").0[0]), seq(&all[3]));

    // Expired iterators.
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    f.double.expire_iterators();
    assert_eq!(
        f.page(&it).await.err().as_deref(),
        Some("ExpiredIteratorException")
    );
    let it = f
        .iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
        .await;
    assert_eq!(f.page(&it).await.expect("a new iterator works").0.len(), 3);

    // Malformed and altered iterators, a sequence number that is not one.
    assert_eq!(
        f.page("garbage").await.err().as_deref(),
        Some("ValidationException")
    );
    let mut altered = it.clone();
    let last = altered.pop().expect("a character");
    altered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        f.page(&altered).await.err().as_deref(),
        Some("ValidationException")
    );
    assert_eq!(
        f.try_iterator(
            &arn,
            &shard,
            ShardIteratorType::AfterSequenceNumber,
            Some("12x")
        )
        .await
        .err()
        .as_deref(),
        Some("ValidationException")
    );

    // forget: only a closed shard; then unlisted and unreadable.
    assert!(
        f.double.forget(&shard).is_err(),
        "an open shard cannot be forgotten"
    );
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
    assert_eq!(
        f.page(&it).await.err().as_deref(),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        f.try_iterator(&arn, &shard, ShardIteratorType::TrimHorizon, None)
            .await
            .err()
            .as_deref(),
        Some("ResourceNotFoundException")
    );
    f.delete().await;
}

/// Calls above the per-shard rate are throttled; concurrent calls and Limit are honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_concurrency_and_page_limit() {
    let cfg = Config {
        shards: 1,
        max_calls_per_shard_per_sec: Some(5),
        latency: Duration::from_millis(200),
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
