//! `migrate --follow`: after the load, apply the table's DynamoDB Stream until stopped, so the
//! target keeps up with a live table until the cutover.
//!
//! **Where it starts.** Before the scan begins, `attach` records the stream's ARN and the time
//! in the checkpoint (`follow_from`). The load then runs as always. Every record of the stream
//! is read afterwards, from each shard's oldest record; those created more than
//! `MARGIN_SECS` before `follow_from` are already in what the scan read and are skipped
//! (their sequence numbers still advance), the rest are applied. Applying a change twice, or
//! one the scan already saw, is harmless (see `crate::changes`), so the margin only costs
//! a few re-applied records. After an export, `follow_from` is the export's own time instead
//! (`crate::migrate`'s handover checks the stream holds it).
//!
//! **Order.** One shard's records are applied in sequence order, page by page (a page is
//! one batch, see `crate::changes` for order inside it). A shard starts only once its parent is
//! read to its end: DynamoDB keeps one key in one shard at a time, so a key's changes are never
//! reordered. Shards are read one after another on one connection.
//!
//! **Checkpoint.** Per shard, the sequence number of the last committed record, in the same
//! checkpoint as the load's segments; it moves only after the page's transaction(s) committed
//! and is flushed after every page, so a kill -9 re-applies at most one page. A shard read to
//! its end is `closed`.
//!
//! **Never a silent gap.** If the checkpoint needs records the stream no longer has (a shard
//! past the 24-hour retention, TrimmedDataAccessException, a replaced stream, a load that took
//! longer than the retention), the run stops with exit 1 and says to reload (`--restart`).
//! An iterator older than 15 minutes is renewed from the last sequence number.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::batch;
use crate::changes::{key_derivation_problem, ChangeKind, OldImages};
use crate::checkpoint::{now_secs, Checkpoint, ShardState, Store, StreamState};
use crate::cli::ProgressMode;
use crate::error::{Error, Result};
use crate::pipeline::PageSink;
use crate::plan::Plan;
use crate::progress::Stats;
use crate::rejects::Rejects;
use crate::sink::resilient::{RetryPolicy, Writer};
use crate::source::stream::{self, ReadError, Record, ShardInfo, Stream};
use crate::source::Source;

/// Records created this long before the scan began are re-applied rather than skipped
/// (clock skew, eventually consistent reads of the scan).
pub const MARGIN_SECS: u64 = 120;
/// DynamoDB Streams keeps records for 24 hours.
const RETENTION_SECS: u64 = 24 * 3600;
/// Pages read from one shard before the next shard's turn.
const PAGES_PER_TURN: usize = 16;
/// Rounds in a row that found nothing new before `--until-caught-up` ends.
/// (DynamoDB Streams may answer empty pages before a shard's next records.)
const IDLE_ROUNDS: u32 = 3;

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
    pub stream: Stream,
    pub store: Arc<Store>,
    pub plan: Arc<Plan>,
    pub key_attrs: Vec<String>,
    pub rejects: Arc<Rejects>,
    pub stats: Arc<Stats>,
    pub target_url: String,
    pub retry: RetryPolicy,
    pub until_caught_up: bool,
    pub progress: ProgressMode,
    pub shutdown: watch::Receiver<bool>,
}

/// Apply the stream until stopped (or caught up, with `--until-caught-up`).
pub async fn run(job: FollowJob) -> Result<FollowEnd> {
    let stop = Some(job.shutdown.clone());
    let writer = Writer::open(
        &job.target_url,
        job.plan.clone(),
        None,
        job.retry,
        None,
        stop,
    )
    .await?;
    let mut f = Follower {
        job,
        writer,
        iterators: HashMap::new(),
        last_log: Instant::now(),
    };
    let mut idle = 0;
    loop {
        if f.stopped() {
            return Ok(FollowEnd::Interrupted);
        }
        let progressed = f.round().await?;
        f.log(false);
        if progressed {
            idle = 0;
            continue;
        }
        idle += 1;
        if f.job.until_caught_up && idle >= IDLE_ROUNDS {
            f.job
                .store
                .with_stream(|s| s.caught_up_at = Some(now_secs()));
            f.flush().await?;
            f.log(true);
            return Ok(FollowEnd::CaughtUp);
        }
        let mut stop = f.job.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => {}
        }
    }
}

struct Follower {
    job: FollowJob,
    writer: Writer,
    /// The iterator to read each open shard on with.
    iterators: HashMap<String, String>,
    last_log: Instant,
}

impl Follower {
    fn stopped(&self) -> bool {
        *self.job.shutdown.borrow()
    }

    fn state(&self) -> StreamState {
        self.job
            .store
            .with_stream(|s| s.clone())
            .unwrap_or_default()
    }

    async fn flush(&self) -> Result<()> {
        let store = self.job.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| Error::file(self.job.store.path(), e))?
    }

    /// One pass over the shards that may be read; whether anything was applied or closed.
    async fn round(&mut self) -> Result<bool> {
        let shards = self.job.stream.shards().await.map_err(read_error)?;
        let eligible = self.register(&shards)?;
        let mut progressed = false;
        for id in &eligible {
            if self.stopped() {
                break;
            }
            let ended = shards.iter().any(|s| &s.id == id && s.ended);
            progressed |= self.drain(id, ended).await?;
        }
        // A shard DescribeStream says has ended is not caught up until read to its end.
        let state = self.state();
        let unfinished = shards
            .iter()
            .any(|s| s.ended && !state.shards.get(&s.id).is_some_and(|k| k.closed));
        if !progressed && !self.stopped() {
            self.job
                .store
                .with_stream(|s| s.first_round_at.get_or_insert(now_secs()).to_owned());
        }
        Ok(progressed || unfinished)
    }

    /// Add new shards to the checkpoint; refuse gaps; the shards to read now.
    fn register(&mut self, shards: &[ShardInfo]) -> Result<Vec<String>> {
        let (known, eligible) = plan_shards(&self.state(), shards, now_secs())?;
        let open = known.values().filter(|s| !s.closed).count();
        let closed = known.len() - open;
        self.job.store.with_stream(|st| st.shards = known);
        self.job.stats_shards(open as u64, closed as u64);
        Ok(eligible)
    }

    /// Read one shard for up to `PAGES_PER_TURN` pages, applying each; whether anything was
    /// applied or the shard closed. An open shard's turn ends at its first empty page; an
    /// `ended` one is read on through empty pages towards its end.
    async fn drain(&mut self, id: &str, ended: bool) -> Result<bool> {
        let mut progressed = false;
        let mut renewed = false;
        for _ in 0..PAGES_PER_TURN {
            let iterator = match self.iterators.remove(id) {
                Some(it) => it,
                None => {
                    let after = self.state().shards.get(id).and_then(|s| s.seq.clone());
                    self.job
                        .stream
                        .iterator(id, after.as_deref())
                        .await
                        .map_err(read_error)?
                }
            };
            let page = match self.job.stream.read(&iterator).await {
                Ok(p) => {
                    renewed = false;
                    p
                }
                // Older than 15 minutes: a new one from the last committed sequence number.
                Err(ReadError::Expired) if !renewed => {
                    renewed = true;
                    continue;
                }
                Err(e) => return Err(read_error(e)),
            };
            let empty = page.records.is_empty();
            let closed = page.next.is_none();
            if !empty || closed {
                self.apply(id, page.records, closed).await?;
                progressed = true;
            }
            match page.next {
                Some(next) => {
                    self.iterators.insert(id.to_string(), next);
                    if empty && !ended {
                        break;
                    }
                }
                None => break,
            }
            if self.stopped() {
                break;
            }
        }
        Ok(progressed)
    }

    /// Apply one page of a shard and commit its position.
    async fn apply(&mut self, shard: &str, records: Vec<Record>, closed: bool) -> Result<()> {
        let from = self.state().follow_from.saturating_sub(MARGIN_SECS) as i64 * 1000;
        let last_seq = records.last().map(|r| r.seq.clone());
        let mut kinds = [0u64; 3];
        let mut newest = None;
        let mut changes = Vec::with_capacity(records.len());
        for r in records {
            // Older than the scan: already in the load.
            if r.created_ms.is_some_and(|t| t < from) {
                continue;
            }
            kinds[r.kind as usize] += 1;
            newest = newest.max(r.created_ms);
            changes.push(r.change);
        }
        let job = &self.job;
        let (k, closed_now, shard) = (kinds, closed, shard.to_string());
        // The shard's position moves with the page's reject lines, in one step.
        let record = move |cp: &mut Checkpoint, d: &crate::checkpoint::Delta, _: &[u32]| {
            let Some(s) = cp.stream.as_mut() else { return };
            let st = s.shards.entry(shard).or_default();
            if last_seq.is_some() {
                st.seq = last_seq;
            }
            st.closed |= closed_now;
            s.inserted += k[ChangeKind::Insert as usize];
            s.modified += k[ChangeKind::Modify as usize];
            s.removed += k[ChangeKind::Remove as usize];
            s.rejected += d.rejected;
            s.newest_applied_ms = s.newest_applied_ms.max(newest);
        };
        let p = batch::prepare_changes(
            &job.plan,
            &job.key_attrs,
            job.stream.old_images,
            changes,
            None,
        );
        let sink = PageSink {
            plan: &job.plan,
            key_attrs: &job.key_attrs,
            rejects: &job.rejects,
            stats: &job.stats,
            segment: None,
        };
        sink.apply(&mut self.writer, p, &job.store, record).await?;
        for (c, n) in [
            (
                &job.stats.changes_inserted,
                kinds[ChangeKind::Insert as usize],
            ),
            (
                &job.stats.changes_modified,
                kinds[ChangeKind::Modify as usize],
            ),
            (
                &job.stats.changes_removed,
                kinds[ChangeKind::Remove as usize],
            ),
        ] {
            Stats::add(c, n);
        }
        if let Some(t) = newest {
            job.stats.newest_change_ms.fetch_max(t, Ordering::Relaxed);
        }
        self.flush().await
    }

    /// A progress line every few seconds (and at the end), unless `--progress none`.
    fn log(&mut self, last: bool) {
        if self.job.progress == ProgressMode::None
            || (!last && self.last_log.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.last_log = Instant::now();
        let s = &self.job.stats;
        eprintln!(
            "ddb2pg: following: {} inserted, {} modified, {} removed | lag {} | shards {} open, {} closed",
            Stats::get(&s.changes_inserted),
            Stats::get(&s.changes_modified),
            Stats::get(&s.changes_removed),
            lag_text(lag_s(s)),
            Stats::get(&s.shards_open),
            Stats::get(&s.shards_closed),
        );
    }
}

impl FollowJob {
    fn stats_shards(&self, open: u64, closed: u64) {
        self.stats.shards_open.store(open, Ordering::Relaxed);
        self.stats.shards_closed.store(closed, Ordering::Relaxed);
    }
}

/// The shards the checkpoint knows after this DescribeStream (new ones added), and those that
/// may be read now: not read to their end, and without a parent still to read. Refuses gaps:
/// a shard not read to its end that is gone, a parent gone unread after a load longer than the
/// retention (`now`: epoch seconds).
fn plan_shards(
    state: &StreamState,
    shards: &[ShardInfo],
    now: u64,
) -> Result<(BTreeMap<String, ShardState>, Vec<String>)> {
    let described: HashMap<&str, &ShardInfo> = shards.iter().map(|s| (s.id.as_str(), s)).collect();
    for (id, s) in &state.shards {
        if !s.closed && !described.contains_key(id.as_str()) {
            return Err(data_missed(&format!(
                "shard {id} of the stream, not yet read to its end, is gone (past the 24-hour \
                 retention)"
            )));
        }
    }
    let age = now.saturating_sub(state.follow_from);
    let long_ago = age + MARGIN_SECS > RETENTION_SECS;
    if long_ago && state.first_round_at.is_none() && state.shards.values().all(|s| s.seq.is_none())
    {
        return Err(data_missed(&format!(
            "the load began {} h ago, longer than the stream's 24-hour retention, before the \
             stream was first read",
            age / 3600
        )));
    }
    let mut known = state.shards.clone();
    for s in shards {
        known.entry(s.id.clone()).or_insert_with(|| ShardState {
            parent: s.parent.clone(),
            ..ShardState::default()
        });
    }
    let mut eligible = Vec::new();
    for s in shards {
        if known.get(&s.id).is_some_and(|k| k.closed) {
            continue;
        }
        let ready = match s.parent.as_ref().map(|p| (p, state.shards.get(p))) {
            None => true,
            Some((_, Some(parent))) => parent.closed,
            // Trimmed before we ever saw it: fine while all it held predates the scan.
            Some((p, None)) if long_ago => {
                return Err(data_missed(&format!(
                    "the load began {} h ago, longer than the stream's 24-hour retention, and \
                     shard {p} (parent of {}) is gone unread",
                    age / 3600,
                    s.id
                )))
            }
            Some((p, None)) => !described.contains_key(p.as_str()),
        };
        if ready {
            eligible.push(s.id.clone());
        }
    }
    Ok((known, eligible))
}

fn read_error(e: ReadError) -> Error {
    match e {
        ReadError::Lost(why) => data_missed(&why),
        ReadError::Expired => data_missed("a shard iterator expired and could not be renewed"),
        ReadError::Other(e) => e,
    }
}

/// Seconds between now and the newest applied record's creation (None: nothing applied).
pub fn lag_s(stats: &Stats) -> Option<f64> {
    let t = stats.newest_change_ms.load(Ordering::Relaxed);
    (t > 0).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (now - t).max(0) as f64 / 1000.0
    })
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
    /// Now minus the newest applied record's ApproximateCreationDateTime.
    pub lag_s: Option<f64>,
}

impl FollowSummary {
    pub fn of(arn: &str, stats: &Stats) -> FollowSummary {
        FollowSummary {
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

#[cfg(test)]
mod tests;

/// The shards of a checkpoint's stream state by state, for `status`.
pub fn shard_counts(s: &StreamState) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for sh in s.shards.values() {
        *m.entry(if sh.closed { "closed" } else { "open" })
            .or_default() += 1;
    }
    m
}
