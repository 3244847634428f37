//! `migrate --follow`: after the load, apply the table's DynamoDB Stream until stopped, so the
//! target keeps up with a live table until the cutover.
//!
//! **Where it starts.** Before the load begins, `attach` records the stream's ARN and the time
//! in the checkpoint (`follow_from`). The load then runs as always. Every record of the stream
//! is read afterwards, from each shard's oldest record; those created more than
//! `MARGIN_SECS` before `follow_from` are already in what the load read and are skipped
//! (their sequence numbers still advance), the rest are applied. Applying a change twice, or
//! one the load already saw, is harmless (see `crate::changes`), so the margin only costs
//! a few re-applied records. After an export, `follow_from` is the export's own time instead
//! (`crate::migrate`'s handover checks the stream holds it).
//!
//! **Many shards at once** ([`run`]): a coordinator lists the shards every few seconds and
//! starts one reader per shard that may be read ([`lineage`]: a child once its parent is
//! done), bounded by `--stream-readers` GetRecords calls in flight ([`reader`]).
//!
//! **In parallel, in per-key order** ([`lanes`]): each change goes to the connection its
//! item's key hashes to, so one item's changes are applied in its shard's order, on one
//! connection; changes of different items commute.
//!
//! **Checkpoint.** Per shard, the watermark ([`tracker`]): the sequence number below which
//! every record is committed, whatever lane committed it; a shard read to its end and fully
//! committed is `closed`. A kill -9 re-applies at most what was committed since the last
//! write of the checkpoint (every 200 ms while changes flow). Done shards that the stream no
//! longer lists are pruned once their children are done.
//!
//! **Never a silent gap.** If the checkpoint needs records the stream no longer has (a shard
//! past the 24-hour retention, TrimmedDataAccessException, a replaced stream, a load that took
//! longer than the retention), the run stops with exit 1 and says to reload (`--restart`).
//! An iterator older than 15 minutes is renewed from the last sequence number read.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::changes::{key_derivation_problem, OldImages};
use crate::checkpoint::{now_secs, Checkpoint, Store, StreamState};
use crate::cli::ProgressMode;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::progress::Stats;
use crate::rejects::Rejects;
use crate::sink::resilient::RetryPolicy;
use crate::source::stream::{self, ReadError, Stream};
use crate::source::Source;

/// Records created this long before the scan began are re-applied rather than skipped
/// (clock skew, eventually consistent reads of the scan).
pub const MARGIN_SECS: u64 = 120;
/// DynamoDB Streams keeps records for 24 hours.
const RETENTION_SECS: u64 = 24 * 3600;

/// The table's stream, checked against the plan: a NEW_IMAGE stream needs a mapping whose
/// rows can be found from the item's keys (it has no old images to tell which rows to delete).
/// `resuming`: this run's checkpoint already follows a stream (a missing one is then a gap).
pub async fn open(
    source: &Source,
    table: &str,
    enable: bool,
    resuming: bool,
    plan: &Plan,
    key_attrs: &[String],
) -> Result<Stream> {
    let stream = stream::open(source, table, enable)
        .await?
        .ok_or_else(|| stream::no_stream(table, resuming))?;
    usable(stream, table, plan, key_attrs)
}

/// As `open`, for a stream that must be on already (it cannot be enabled now: an export's
/// stream must hold the changes since the export's time); `missing` is the refusal when the
/// table has none.
pub async fn open_existing(
    source: &Source,
    table: &str,
    missing: impl FnOnce() -> Error,
    plan: &Plan,
    key_attrs: &[String],
) -> Result<Stream> {
    let stream = stream::open(source, table, false)
        .await?
        .ok_or_else(missing)?;
    usable(stream, table, plan, key_attrs)
}

/// The stream, unless it is NEW_IMAGE and the plan's rows cannot be found from the keys.
fn usable(stream: Stream, table: &str, plan: &Plan, key_attrs: &[String]) -> Result<Stream> {
    if stream.old_images == OldImages::Unknown {
        if let Some(why) = key_derivation_problem(plan, key_attrs) {
            return Err(Error::config(format!(
                "--follow: the stream of {table:?} is NEW_IMAGE, which tells not which rows a \
                 changed or removed item had, and {why}. Use a NEW_AND_OLD_IMAGES stream \
                 (disable the stream and enable it again with that view type)"
            )));
        }
    }
    Ok(stream)
}

/// Whether the stream still holds what was written at `from` (epoch seconds) and after, with
/// the margin: DynamoDB Streams keeps records for 24 hours.
pub fn within_retention(from: u64, now: u64) -> bool {
    now.saturating_sub(from) + MARGIN_SECS <= RETENTION_SECS
}

/// Milliseconds since the epoch (ApproximateCreationDateTime's unit).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn data_missed(why: &str) -> Error {
    Error::Source {
        message: format!(
            "{why}: changes in between are no longer in the stream, so data may have been \
             missed. Reload: empty the target tables (a reload only writes, it cannot see \
             what was deleted meanwhile), then run the same command with --restart"
        ),
        retryable: false,
    }
}

/// Record in the checkpoint which stream is followed and from when, before the load begins;
/// on a resume, check it is still the table's stream. `as_of`: the time (epoch seconds) the
/// loaded data is as of when it is fixed (an export's), else the load is a scan beginning now.
/// A load of data as of a fixed time may have been done before without `--follow`; a
/// checkpoint that follows from another time is refused.
pub fn attach(cp: &mut Checkpoint, stream: &Stream, as_of: Option<u64>) -> Result<()> {
    match &cp.stream {
        None => {
            let started = cp.segments.iter().any(|s| s.runs > 0 || s.items > 0);
            if started && as_of.is_none() {
                return Err(Error::config(
                    "--follow: this checkpoint's load was started without --follow, so the \
                     stream position before its scan is unknown; add --restart to load again \
                     with --follow (rows already written are upserted, not duplicated)",
                ));
            }
            cp.stream = Some(StreamState {
                arn: stream.arn.clone(),
                follow_from: as_of.unwrap_or_else(now_secs),
                ..StreamState::default()
            });
            Ok(())
        }
        Some(s) if s.arn != stream.arn => Err(data_missed(&format!(
            "the table's stream is now {} but the checkpoint follows {} (the stream was \
             disabled and enabled again)",
            stream.arn, s.arn
        ))),
        Some(s) => match as_of {
            Some(t) if t != s.follow_from => Err(Error::config(format!(
                "--follow: this checkpoint follows the stream from {} (epoch s), not from {t}: \
                 resume with the time it was started with (--follow-from), or add --restart to \
                 load again and follow from the new time",
                s.follow_from
            ))),
            _ => Ok(()),
        },
    }
}

/// How a follow ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    CaughtUp,
    Interrupted,
}

/// What the follower needs.
pub struct FollowJob {
    pub stream: Arc<Stream>,
    pub store: Arc<Store>,
    pub plan: Arc<Plan>,
    pub key_attrs: Vec<String>,
    pub rejects: Arc<Rejects>,
    pub stats: Arc<Stats>,
    pub target_url: String,
    pub retry: RetryPolicy,
    pub until_caught_up: bool,
    /// `--caught-up-lag`, in ms.
    pub caught_up_lag_ms: i64,
    /// Finish once caught up when asked (`ddb2pg finish`, SIGUSR1).
    pub finish: Option<crate::finish::Watch>,
    pub progress: ProgressMode,
    /// Between two follower lines.
    pub progress_interval: std::time::Duration,
    pub shutdown: watch::Receiver<bool>,
    /// PostgreSQL connections (lanes) changes are spread over by item key.
    pub connections: usize,
    /// GetRecords calls in flight at once, over all shards.
    pub readers: usize,
}

/// Each shard's progress in this run, shared by readers, lanes and the coordinator.
pub type Tracks = Arc<Mutex<HashMap<String, tracker::ShardTrack>>>;

/// Apply the stream until stopped (or caught up, with `--until-caught-up`).
pub async fn run(job: FollowJob) -> Result<FollowEnd> {
    run::run(job).await
}

fn read_error(e: ReadError) -> Error {
    match e {
        ReadError::Lost(why) => data_missed(&why),
        ReadError::Expired => data_missed("a shard iterator expired and could not be renewed"),
        ReadError::Throttled(why) | ReadError::Transient(why) => Error::Source {
            message: format!("DynamoDB Streams: {why}"),
            retryable: false,
        },
        ReadError::Other(e) => e,
    }
}

/// The largest lag of a shard being read, in seconds (None: not known yet): per shard, now
/// minus the creation of its oldest record not yet committed, zero when it is idle at its end.
pub fn lag_s(stats: &Stats) -> Option<f64> {
    stats
        .lag_known
        .load(Ordering::Relaxed)
        .then(|| stats.lag_ms.load(Ordering::Relaxed).max(0) as f64 / 1000.0)
}

fn lag_text(lag: Option<f64>) -> String {
    match lag {
        Some(s) => format!("{s:.1} s"),
        None => "-".into(),
    }
}

/// The follow part of a run's report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FollowSummary {
    pub stream_arn: String,
    pub changes_inserted: u64,
    pub changes_modified: u64,
    pub changes_removed: u64,
    pub shards_open: u64,
    pub shards_closed: u64,
    /// The largest shard lag: now minus the oldest unapplied record's
    /// ApproximateCreationDateTime (zero for a shard idle at its end).
    pub lag_s: Option<f64>,
    /// Whether the follower was caught up when it ended (every listed shard applied to
    /// within `--caught-up-lag`, none waiting), and since when (RFC 3339).
    pub caught_up: bool,
    pub caught_up_since: Option<String>,
    /// The follower's rejected changes over all its runs since the load (the rejects file).
    pub rejected_since_load: u64,
}

impl FollowSummary {
    /// `state`: the checkpoint's stream state at the end.
    pub fn of(arn: &str, stats: &Stats, state: Option<&StreamState>) -> FollowSummary {
        let since = stats.caught_up_since_ms.load(Ordering::Relaxed);
        FollowSummary {
            caught_up: since != 0,
            caught_up_since: (since != 0).then(|| verdict::rfc3339(since)).flatten(),
            rejected_since_load: state.map_or(0, |s| s.rejected),
            stream_arn: arn.to_string(),
            changes_inserted: Stats::get(&stats.changes_inserted),
            changes_modified: Stats::get(&stats.changes_modified),
            changes_removed: Stats::get(&stats.changes_removed),
            shards_open: Stats::get(&stats.shards_open),
            shards_closed: Stats::get(&stats.shards_closed),
            lag_s: lag_s(stats),
        }
    }
}

mod lanes;
mod lineage;
mod reader;
mod run;
mod tracker;
pub mod verdict;

/// The shards of a checkpoint's stream state by state, for `status`.
pub fn shard_counts(s: &StreamState) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for sh in s.shards.values() {
        *m.entry(if sh.closed { "closed" } else { "open" })
            .or_default() += 1;
    }
    m
}
