//! A fixture for tests of the DynamoDB Streams double (`stream_double`): a double in front of
//! DynamoDB Local, a DynamoDB client and a Streams client through it (real AWS SDK clients,
//! without retries, so errors reach the test), a fresh table with a NEW_AND_OLD_IMAGES stream,
//! and readers of shards and records.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{
    AttributeValue as StreamValue, Record, Shard, ShardIteratorType,
};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_types::retry::RetryConfig;

use super::services;
use super::stream_double::{Config, StreamDouble};

pub const KEY: &str = "ddb2pglocal";

/// A DynamoDB client and a Streams client for `url`, without retries (errors are asserted).
pub fn clients(url: &str) -> (aws_sdk_dynamodb::Client, aws_sdk_dynamodbstreams::Client) {
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
pub struct Fixture {
    pub double: StreamDouble,
    pub ddb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub table: String,
}

impl Fixture {
    pub async fn new(prefix: &str, cfg: Config) -> Fixture {
        let double = StreamDouble::start(&services().endpoint, cfg).expect("start the double");
        let (ddb, streams) = clients(&double.url());
        let table = crate::support::unique_name(prefix);
        crate::stream::create_table(&ddb, &table, Some(StreamViewType::NewAndOldImages)).await;
        Fixture {
            double,
            ddb,
            streams,
            table,
        }
    }

    /// Put item (`pk`, "s") with version `v`.
    pub async fn put(&self, pk: &str, v: u32) {
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
    pub async fn put_many(&self, keys: u32, versions: u32) {
        for v in 0..versions {
            for k in 0..keys {
                self.put(&format!("K{k}"), v).await;
            }
        }
    }

    /// The stream ARN from DescribeTable (forwarded to DynamoDB Local).
    pub async fn arn(&self) -> String {
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
    pub async fn shards(&self, arn: &str, limit: i32) -> (Vec<Shard>, usize) {
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

    pub async fn iterator(
        &self,
        arn: &str,
        shard: &str,
        kind: ShardIteratorType,
        seq: Option<&str>,
    ) -> String {
        self.try_iterator(arn, shard, kind, seq.map(str::to_string))
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator of {shard}: {e}"))
    }

    pub async fn try_iterator(
        &self,
        arn: &str,
        shard: &str,
        kind: ShardIteratorType,
        seq: Option<String>,
    ) -> Result<String, String> {
        self.streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(seq)
            .send()
            .await
            .map(|o| o.shard_iterator.expect("ShardIterator"))
            .map_err(|e| code(&e))
    }

    /// One page: records and the next iterator, or the error's code.
    pub async fn page(&self, it: &str) -> Result<(Vec<Record>, Option<String>), String> {
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
    pub async fn read(&self, arn: &str, shard: &str) -> (Vec<Record>, bool) {
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

    pub async fn learn(&self) -> String {
        let arn = self.arn().await;
        self.shards(&arn, 100).await;
        assert_eq!(self.double.stream_arn().as_deref(), Some(arn.as_str()));
        arn
    }

    pub async fn wait(&self, n: u64) {
        assert!(
            self.double.wait_ingested(n, Duration::from_secs(15)).await,
            "{n} records ingested (got {}, last error {:?})",
            self.double.ingested(),
            self.double.ingest_error()
        );
    }

    pub async fn delete(&self) {
        let _ = self.ddb.delete_table().table_name(&self.table).send().await;
    }
}

pub fn code<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(s) => s.code().unwrap_or("(no code)").to_string(),
        None => format!("not a service error: {e:?}"),
    }
}

pub fn seq(r: &Record) -> u128 {
    r.dynamodb()
        .and_then(|d| d.sequence_number())
        .expect("SequenceNumber")
        .parse()
        .expect("a decimal SequenceNumber")
}

pub fn attr(r: &Record, name: &str) -> String {
    let d = r.dynamodb().expect("dynamodb");
    let img = d.new_image().or(d.keys()).expect("an image");
    match img.get(name) {
        Some(StreamValue::S(s)) | Some(StreamValue::N(s)) => s.clone(),
        other => panic!("attribute {name}: {other:?}"),
    }
}

pub fn id(s: &Shard) -> String {
    s.shard_id().expect("ShardId").to_string()
}

pub fn range(s: &Shard) -> (u128, Option<u128>) {
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
