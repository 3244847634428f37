//! The table's DynamoDB Stream: which stream (refusing one that cannot make the target exact),
//! its shards and their lineage, and a shard's records in sequence order, as changes.
//!
//! Reading is plain DynamoDB Streams (DescribeStream, GetShardIterator, GetRecords); the order
//! rules (a shard in sequence order, a child after its parent) and the checkpoint live in
//! `crate::follow`, the change rules in `crate::changes`.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, StreamSpecification, StreamViewType};
use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
use aws_sdk_dynamodbstreams::types::{
    AttributeValue as StreamValue, OperationType, ShardIteratorType,
};

use super::{sdk_message, Source};
use crate::changes::{Change, ChangeKind, OldImages, Unreadable};
use crate::error::{Error, Result};
use crate::value::Item;

/// A table's stream, ready to read.
pub struct Stream {
    client: aws_sdk_dynamodbstreams::Client,
    pub arn: String,
    /// What an absent old image means for this stream's records.
    pub old_images: OldImages,
    pub view_type: String,
}

/// One shard of the stream, as DescribeStream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    /// DescribeStream gives it an ending sequence number: no more records will come, and it
    /// must be read until GetRecords says it ended (empty pages may come before).
    pub ended: bool,
    /// Its first sequence number (`SequenceNumberRange.StartingSequenceNumber`).
    pub start_seq: Option<String>,
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Right after this sequence number (the last one committed or read).
    After(String),
    /// At this sequence number (a shard's `StartingSequenceNumber`: TrimmedDataAccessException
    /// when its oldest records are gone).
    At(String),
    /// At the oldest record still kept (TRIM_HORIZON).
    Oldest,
}

/// One stream record.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: String,
    pub kind: ChangeKind,
    /// ApproximateCreationDateTime, in milliseconds since the epoch.
    pub created_ms: Option<i64>,
    pub change: Change,
}

/// A page of a shard.
pub struct Records {
    pub records: Vec<Record>,
    /// Where the shard continues; None: the shard is closed and this was its end.
    pub next: Option<String>,
}

/// Why a shard cannot be read on.
#[derive(Debug)]
pub enum ReadError {
    /// The iterator is older than 15 minutes: get a new one from the last sequence number.
    Expired,
    /// The records asked for are past the stream's 24-hour retention, or the stream is gone.
    Lost(String),
    /// Too many calls (LimitExceededException, throttling): wait and call again.
    Throttled(String),
    /// The endpoint could not be reached or failed (network, timeout, HTTP 5xx): retried
    /// for as long as PostgreSQL's failures are (`--pg-retry-for`).
    Transient(String),
    Other(Error),
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        ReadError::Other(e)
    }
}

/// The fix for a table whose stream cannot be followed.
fn enable_hint(table: &str) -> String {
    format!(
        "run again with --enable-stream (turns on NEW_AND_OLD_IMAGES), or: aws dynamodb update-table \
         --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
    )
}

/// The table's stream: None when it is off (unless `enable`, which turns it on with
/// NEW_AND_OLD_IMAGES and waits until it is enabled); refused with the fix when its view type
/// lacks new images.
pub async fn open(source: &Source, table: &str, enable: bool) -> Result<Option<Stream>> {
    let (mut arn, mut view) = describe(source, table).await?;
    if arn.is_none() {
        if !enable {
            return Ok(None);
        }
        source
            .client
            .update_table()
            .table_name(table)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(|e| Error::config(format!("stream specification: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| {
                Error::config(format!(
                    "--enable-stream: cannot enable the stream of {table:?}: {}",
                    sdk_message(&e)
                ))
            })?;
        crate::say!("--enable-stream: enabled a NEW_AND_OLD_IMAGES stream on {table:?}");
        for _ in 0..120 {
            (arn, view) = describe(source, table).await?;
            if arn.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let Some(arn) = arn else {
        return Err(Error::config(format!(
            "--enable-stream: the stream of {table:?} did not appear within a minute; run again"
        )));
    };
    let old_images = match view.as_str() {
        "NEW_AND_OLD_IMAGES" => OldImages::Complete,
        "NEW_IMAGE" => OldImages::Unknown,
        other => {
            return Err(Error::config(format!(
                "--follow: the stream of {table:?} has view type {other}, which carries no new \
                 images: the rows of a changed item cannot be written from it. A stream's view \
                 type cannot be changed: disable the stream, enable it with NEW_AND_OLD_IMAGES \
                 (aws dynamodb update-table --table-name {table} --stream-specification \
                 StreamEnabled=false, then StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES), \
                 and run again"
            )))
        }
    };
    Ok(Some(Stream {
        client: source.streams.clone(),
        arn,
        old_images,
        view_type: view,
    }))
}

/// The refusal of a table without a stream (`resuming`: a checkpoint follows one already).
pub fn no_stream(table: &str, resuming: bool) -> Error {
    if resuming {
        return Error::Source {
            message: format!(
                "--follow: table {table:?} has no stream any more, but this checkpoint follows \
                 one: the stream was disabled, and the changes since then are lost, so data \
                 may have been missed. Enable the stream again and reload: empty the target \
                 tables, then run with --restart --enable-stream"
            ),
            retryable: false,
        };
    }
    Error::config(format!(
        "--follow: table {table:?} has no stream enabled; {}",
        enable_hint(table)
    ))
}

/// The table's latest enabled stream ARN and view type (None: no stream is enabled).
async fn describe(source: &Source, table: &str) -> Result<(Option<String>, String)> {
    let out = source
        .client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            Error::config(format!(
                "cannot describe table {table:?} at {}: {}",
                source.describe_location(),
                sdk_message(&e)
            ))
        })?;
    let t = out.table.unwrap_or_else(|| {
        aws_sdk_dynamodb::types::TableDescription::builder()
            .table_name(table)
            .build()
    });
    let spec = t.stream_specification.as_ref();
    let enabled = spec.is_some_and(|s| s.stream_enabled);
    let view = spec
        .and_then(|s| s.stream_view_type.as_ref())
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    Ok((t.latest_stream_arn.filter(|_| enabled), view))
}

/// A Streams call's failure: records lost, an expired iterator, or another error.
fn read_error<E>(
    what: &str,
    e: &aws_sdk_dynamodbstreams::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> ReadError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    use aws_sdk_dynamodbstreams::error::SdkError;
    let text = sdk_message(e);
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            match lost_or_other(what, s.err(), text) {
                ReadError::Other(e) if status >= 500 => {
                    ReadError::Transient(format!("{what}: HTTP {status}: {e}"))
                }
                r => r,
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            ReadError::Transient(format!("{what}: {text}"))
        }
        _ => ReadError::Other(Error::Source {
            message: format!("DynamoDB Streams: {what}: {text}"),
            retryable: false,
        }),
    }
}

fn lost_or_other<E: ProvideErrorMetadata>(what: &str, e: &E, text: String) -> ReadError {
    match e.code() {
        Some("TrimmedDataAccessException") => ReadError::Lost(format!(
            "{what}: the records are past the stream's 24-hour retention ({})",
            e.message().unwrap_or("TrimmedDataAccessException")
        )),
        Some("ResourceNotFoundException") => ReadError::Lost(format!(
            "{what}: the stream or shard no longer exists ({})",
            e.message().unwrap_or("ResourceNotFoundException")
        )),
        Some("ExpiredIteratorException") => ReadError::Expired,
        Some(
            c @ ("LimitExceededException"
            | "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"),
        ) => ReadError::Throttled(format!("{what}: {c}")),
        Some(c @ ("InternalServerError" | "InternalFailure" | "ServiceUnavailable")) => {
            ReadError::Transient(format!("{what}: {c}: {text}"))
        }
        _ => ReadError::Other(Error::Source {
            message: format!("DynamoDB Streams: {what}: {text}"),
            retryable: false,
        }),
    }
}

impl Stream {
    /// Every shard of the stream (DescribeStream, paged).
    pub async fn shards(&self) -> std::result::Result<Vec<ShardInfo>, ReadError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start.clone())
                .limit(100)
                .send()
                .await
                .map_err(|e| read_error("DescribeStream", &e))?;
            let Some(desc) = out.stream_description else {
                break;
            };
            for s in desc.shards.unwrap_or_default() {
                if let Some(id) = s.shard_id {
                    let range = s.sequence_number_range;
                    let ended = range
                        .as_ref()
                        .is_some_and(|r| r.ending_sequence_number.is_some());
                    shards.push(ShardInfo {
                        id,
                        parent: s.parent_shard_id,
                        ended,
                        start_seq: range.and_then(|r| r.starting_sequence_number),
                    });
                }
            }
            match desc.last_evaluated_shard_id {
                Some(last) if Some(&last) != start.as_ref() => start = Some(last),
                _ => break,
            }
        }
        Ok(shards)
    }

    /// An iterator of `shard` at `from`.
    pub async fn iterator(
        &self,
        shard: &str,
        from: &Position,
    ) -> std::result::Result<String, ReadError> {
        let (kind, seq) = match from {
            Position::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s)),
            Position::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s)),
            Position::Oldest => (ShardIteratorType::TrimHorizon, None),
        };
        let out = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(seq.cloned())
            .send()
            .await
            .map_err(|e| read_error(&format!("GetShardIterator of shard {shard}"), &e))?;
        out.shard_iterator.ok_or_else(|| {
            ReadError::Lost(format!(
                "GetShardIterator of shard {shard} returned no iterator"
            ))
        })
    }

    /// The next page of a shard (up to 1,000 records).
    pub async fn read(&self, iterator: &str) -> std::result::Result<Records, ReadError> {
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(1000)
            .send()
            .await
            .map_err(|e| read_error("GetRecords", &e))?;
        let mut records = Vec::new();
        for r in out.records.unwrap_or_default() {
            let kind = match r.event_name {
                Some(OperationType::Insert) => ChangeKind::Insert,
                Some(OperationType::Modify) => ChangeKind::Modify,
                Some(OperationType::Remove) => ChangeKind::Remove,
                other => {
                    return Err(ReadError::Other(Error::Source {
                        message: format!(
                            "DynamoDB Streams: a record with event {other:?}, which this ddb2pg \
                             does not know (INSERT, MODIFY, REMOVE): nothing after it was \
                             applied; upgrade ddb2pg and run the same command again"
                        ),
                        retryable: false,
                    }))
                }
            };
            let (Some(d), id) = (r.dynamodb, r.event_id.unwrap_or_default()) else {
                return Err(malformed("no dynamodb part"));
            };
            let Some(seq) = d.sequence_number else {
                return Err(malformed(&format!("record {id} has no SequenceNumber")));
            };
            if d.keys.as_ref().is_none_or(|k| k.is_empty()) {
                // Its lane could not be chosen by key: per-item order would not hold.
                return Err(malformed(&format!("record {id} has no Keys")));
            }
            let created_ms = d
                .approximate_creation_date_time
                .and_then(|t| t.to_millis().ok());
            let new_image = match kind {
                ChangeKind::Remove => None,
                _ => d.new_image,
            };
            let unreadable = unreadable(&d.keys, &d.old_image, &new_image);
            records.push(Record {
                seq,
                kind,
                created_ms,
                change: Change {
                    keys: d.keys.map(item),
                    old: d.old_image.map(item),
                    new: new_image.map(item),
                    unreadable,
                },
            });
        }
        Ok(Records {
            records,
            next: out.next_shard_iterator,
        })
    }
}

fn malformed(what: &str) -> ReadError {
    ReadError::Other(Error::Source {
        message: format!(
            "DynamoDB Streams: a malformed record ({what}): nothing after it was applied; \
             run the same command again"
        ),
        retryable: false,
    })
}

type Image = std::collections::HashMap<String, StreamValue>;

/// A stream image as an item (the Streams SDK has its own, identical, value type). A value of
/// a type the SDK does not know (`Unknown`: newer than this ddb2pg) becomes the DynamoDB SDK's
/// `Unknown`, as a Scan response's value of that type does: the transform rejects the item
/// only if the mapping reads it, as on the scan path. (Without one, see [`unknown_value`], the
/// value is left out and [`unreadable`] rejects the change.)
fn item(image: Image) -> Item {
    image
        .into_iter()
        .filter_map(|(k, v)| Some((k, value(v)?)))
        .collect()
}

fn value(v: StreamValue) -> Option<AttributeValue> {
    Some(match v {
        StreamValue::B(b) => AttributeValue::B(b),
        StreamValue::Bool(b) => AttributeValue::Bool(b),
        StreamValue::Bs(b) => AttributeValue::Bs(b),
        StreamValue::L(l) => AttributeValue::L(l.into_iter().filter_map(value).collect()),
        StreamValue::M(m) => AttributeValue::M(item(m)),
        StreamValue::N(n) => AttributeValue::N(n),
        StreamValue::Ns(n) => AttributeValue::Ns(n),
        StreamValue::Null(b) => AttributeValue::Null(b),
        StreamValue::S(s) => AttributeValue::S(s),
        StreamValue::Ss(s) => AttributeValue::Ss(s),
        // A value type newer than this SDK (none exists today).
        _ => return unknown_value().cloned(),
    })
}

/// The DynamoDB SDK's `AttributeValue::Unknown`, which only the SDK can build: what its own
/// Scan deserializer makes of a value with a type tag it does not know. Made once. None if
/// this SDK makes none (a future SDK): then a stream value of an unknown type is left out and
/// its change rejected (see [`unreadable`]).
pub(crate) fn unknown_value() -> Option<&'static AttributeValue> {
    use aws_sdk_dynamodb::config::{ConfigBag, RuntimePlugin};
    use aws_sdk_dynamodb::operation::scan::{Scan, ScanOutput};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    static UNKNOWN: std::sync::OnceLock<Option<AttributeValue>> = std::sync::OnceLock::new();
    UNKNOWN
        .get_or_init(|| {
            let layer = Scan::new().config()?;
            let sdk = layer.load::<SharedResponseDeserializer>()?;
            let body = SdkBody::from(r#"{"Items":[{"v":{"QQ":"?"}}],"Count":1}"#);
            let response = HttpResponse::new(StatusCode::try_from(200).ok()?, body);
            let out = sdk
                .deserialize_nonstreaming_with_config(&response, &ConfigBag::base())
                .ok()?
                .downcast::<ScanOutput>()
                .ok()?;
            let v = out.items?.into_iter().next()?.remove("v")?;
            v.is_unknown().then_some(v)
        })
        .as_ref()
}

/// Why a record cannot be applied as read: a value of an unknown type in its keys (which are
/// strings, numbers or binary: the record is malformed), with its path (`a.b[3]`, as the
/// scan path names one). In its images such a value is the transform's to judge (see
/// [`item`]), unless this SDK cannot represent it: then the first one found rejects the new
/// image, or in the old image the whole change (its old rows cannot be known).
fn unreadable(
    keys: &Option<Image>,
    old: &Option<Image>,
    new: &Option<Image>,
) -> Option<Unreadable> {
    let found = |image: &Option<Image>| image.as_ref().and_then(unknown_in);
    let images = unknown_value().is_none();
    let (part, path, whole) = match (found(keys), images) {
        (Some(p), _) => ("Keys", p, true),
        (None, false) => return None,
        (None, true) => match (found(old), found(new)) {
            (Some(p), _) => ("OldImage", p, true),
            (None, Some(p)) => ("NewImage", p, false),
            (None, None) => return None,
        },
    };
    let what = match whole {
        true => "nothing of the change is applied",
        false => "the new image is not written",
    };
    Some(Unreadable {
        reason: format!(
            "unsupported attribute type at {path} (in the record's {part}: a DynamoDB type this \
             ddb2pg does not know); {what}"
        ),
        whole,
    })
}

/// The path of the first value of an unknown type in `image` (attribute names in order), if
/// any; built only when one is found.
fn unknown_in(image: &Image) -> Option<String> {
    // The common case, nothing unknown, allocates nothing.
    if !image.values().any(has_unknown) {
        return None;
    }
    let mut names: Vec<&String> = image.keys().collect();
    names.sort();
    names.into_iter().find_map(|k| {
        let rest = unknown_below(&image[k])?;
        Some(format!("{k}{rest}"))
    })
}

fn has_unknown(v: &StreamValue) -> bool {
    match v {
        StreamValue::M(m) => m.values().any(has_unknown),
        StreamValue::L(l) => l.iter().any(has_unknown),
        other => known_scalar(other).is_none(),
    }
}

/// `Some` for a scalar or set of a known type.
fn known_scalar(v: &StreamValue) -> Option<()> {
    match v {
        StreamValue::B(_)
        | StreamValue::Bool(_)
        | StreamValue::Bs(_)
        | StreamValue::N(_)
        | StreamValue::Ns(_)
        | StreamValue::Null(_)
        | StreamValue::S(_)
        | StreamValue::Ss(_) => Some(()),
        _ => None,
    }
}

/// The path below `v` (`.a[2]`...) to a value of an unknown type, `""` for `v` itself.
fn unknown_below(v: &StreamValue) -> Option<String> {
    match v {
        StreamValue::M(m) => unknown_in(m).map(|p| format!(".{p}")),
        StreamValue::L(l) => l
            .iter()
            .enumerate()
            .find_map(|(i, v)| unknown_below(v).map(|p| format!("[{i}]{p}"))),
        other => match known_scalar(other) {
            Some(()) => None,
            None => Some(String::new()),
        },
    }
}
