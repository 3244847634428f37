//! One shard's reader: GetRecords in a loop, each record handed to the lane of its item's key
//! with a ticket (`super::tracker`), until the shard ends or the follower stops.
//!
//! - **One reader per shard**, never two (AWS throttles more than 2 readers on a shard), and
//!   at most one GetRecords every `MIN_INTERVAL` on it (AWS allows about 5 per second per
//!   shard); an open shard at its end is asked again after `IDLE_POLL`, once a second after
//!   10 s of quiet. How many shards are
//!   read at the same moment is bounded by the follower's `--stream-readers` semaphore.
//! - **Where it starts**: after the checkpoint's sequence number; a shard never read starts
//!   at its `StartingSequenceNumber` (AT_SEQUENCE_NUMBER), so that a shard whose first records
//!   were trimmed says so (TrimmedDataAccessException) instead of silently starting later.
//!   Such a trim is a gap only if the trimmed records may postdate the load
//!   (`lineage::trim_is_gap`); otherwise the shard is read from its oldest record.
//! - **Failures**: an expired iterator is renewed after the last record read; throttling is
//!   waited out with a growing pause; an unreachable or failing endpoint is retried for as
//!   long as PostgreSQL's failures are (`--pg-retry-for`), then the run stops with exit 1 and
//!   resumes from its checkpoint. Records that are gone (trimmed, shard or stream deleted) stop
//!   the run: never a silent gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};

use super::lineage::trim_is_gap;
use super::now_ms;
use super::tracker::ShardTrack;
use super::{data_missed, Tracks, MARGIN_SECS};
use crate::changes::{Change, ChangeKind};
use crate::checkpoint::{now_secs, Store};
use crate::error::{Error, Result};
use crate::source::stream::{Position, ReadError, Record, ShardInfo, Stream};

/// At most one GetRecords per shard this often (AWS: about 5 per second per shard).
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// An open shard at its end is asked again after this long; after `IDLE_PAGES` empty pages in
/// a row (10 s of quiet), after `IDLE_POLL_QUIET` (GetRecords calls are billed: a quiet shard of
/// a table with hundreds of them need not be asked 4 times a second, but a shard that takes a
/// write every few seconds keeps its quick answer).
pub const IDLE_POLL: Duration = Duration::from_millis(250);
const IDLE_POLL_QUIET: Duration = Duration::from_secs(1);
const IDLE_PAGES: u32 = 40;
/// The longest pause after throttling or a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A record on its way to a lane.
pub struct Ticketed {
    pub shard: Arc<str>,
    pub ticket: u64,
    pub kind: ChangeKind,
    pub created_ms: Option<i64>,
    pub change: Change,
}

/// What every reader shares.
pub struct Readers {
    pub stream: Arc<Stream>,
    pub store: Arc<Store>,
    pub tracks: Tracks,
    pub lanes: Vec<mpsc::Sender<Ticketed>>,
    pub key_attrs: Vec<String>,
    /// GetRecords calls in flight at once, over all shards.
    pub reads: Arc<Semaphore>,
    /// How long an unreachable endpoint is retried.
    pub retry_for: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// Epoch seconds the load began (records well before it are already loaded).
    pub follow_from: u64,
    /// The run's counters (throttles, the reads in flight).
    pub stats: Arc<crate::progress::Stats>,
}

impl Readers {
    fn stopped(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleep `d`, or less if the follower is stopped meanwhile.
    async fn pause(&self, d: Duration) {
        let mut stop = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }

    /// The lane of a change: a hash of its item's key, so that one item's changes are always
    /// applied on one connection, in order.
    pub fn lane_of(&self, change: &Change) -> usize {
        let n = self.lanes.len().max(1);
        let Some(item) = change
            .keys
            .as_ref()
            .or(change.new.as_ref())
            .or(change.old.as_ref())
        else {
            return 0;
        };
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        for name in &self.key_attrs {
            use aws_sdk_dynamodb::types::AttributeValue as V;
            match item.get(name) {
                Some(V::S(s)) => eat(s.as_bytes()),
                Some(V::N(s)) => eat(s.as_bytes()),
                Some(V::B(b)) => eat(b.as_ref()),
                _ => eat(b""),
            }
        }
        (h % n as u64) as usize
    }

    /// Write a shard's watermark (and whether it is done) into the checkpoint.
    pub fn sync(&self, id: &str) {
        sync_shard(&self.store, &self.tracks, id);
    }
}

/// Copy a shard's watermark, and `closed` once it is done, into the checkpoint. Takes the
/// checkpoint's lock, then the tracks' (the lanes' commits take them in the same order).
pub fn sync_shard(store: &Store, tracks: &Tracks, id: &str) {
    store.change_stream(|s| {
        let t = tracks.lock().unwrap_or_else(|e| e.into_inner());
        t.get(id).is_some_and(|t| write_track(s, id, t))
    });
}

/// Whether the checkpoint's entry changed.
pub fn write_track(s: &mut crate::checkpoint::StreamState, id: &str, t: &ShardTrack) -> bool {
    let st = s.shards.entry(id.to_string()).or_default();
    let before = (st.seq.clone(), st.closed);
    if t.committed_seq.is_some() {
        st.seq = t.committed_seq.clone();
    }
    st.closed |= t.done();
    (st.seq.clone(), st.closed) != before
}

/// One shard's reading state.
struct Reading {
    id: Arc<str>,
    info: ShardInfo,
    pos: Position,
    iterator: Option<String>,
    last_call: Option<Instant>,
    /// Since when calls fail (network, 5xx), and the next pause.
    failing_since: Option<Instant>,
    backoff: Duration,
    /// The shard's start was trimmed and the load is older than the retention: its first
    /// record must predate the load.
    check_first: bool,
    renewed: bool,
    /// Empty pages in a row at the shard's end (for the idle pause).
    empty_run: u32,
}

/// Read `info` from `committed` (the checkpoint's sequence number) until its end or the stop.
pub async fn read_shard(r: Arc<Readers>, info: ShardInfo, committed: Option<String>) -> Result<()> {
    let pos = match (&committed, &info.start_seq) {
        (Some(s), _) => Position::After(s.clone()),
        (None, Some(start)) => Position::At(start.clone()),
        (None, None) => Position::Oldest,
    };
    let mut s = Reading {
        id: Arc::from(info.id.as_str()),
        info,
        pos,
        iterator: None,
        last_call: None,
        failing_since: None,
        backoff: MIN_INTERVAL,
        check_first: false,
        renewed: false,
        empty_run: 0,
    };
    while !r.stopped() {
        if let Some(t) = s.last_call {
            let wait = MIN_INTERVAL.saturating_sub(t.elapsed());
            if !wait.is_zero() {
                r.pause(wait).await;
                continue;
            }
        }
        let mut stop = r.shutdown.clone();
        let stepped = tokio::select! {
            x = step(&r, &mut s) => x,
            // A call that hangs does not hold up the stop (nothing it read is committed).
            _ = stop.changed() => return Ok(()),
        };
        match stepped {
            Ok(Step::Ended) => return Ok(()),
            Ok(Step::More) => s.empty_run = 0,
            Ok(Step::Idle) => {
                s.empty_run = s.empty_run.saturating_add(1);
                let quiet = s.empty_run >= IDLE_PAGES;
                r.pause(if quiet { IDLE_POLL_QUIET } else { IDLE_POLL })
                    .await
            }
            Err(e) => handle(&r, &mut s, e).await?,
        }
    }
    Ok(())
}

enum Step {
    /// Records came, or the shard is still on its way to its end: call again.
    More,
    /// An open shard at its end.
    Idle,
    /// Read to its end.
    Ended,
}

async fn step(r: &Readers, s: &mut Reading) -> std::result::Result<Step, ReadError> {
    let it = match s.iterator.take() {
        Some(it) => it,
        None => r.stream.iterator(&s.info.id, &s.pos).await?,
    };
    let (page, called_ms) = {
        let _permit =
            r.reads.acquire().await.map_err(|_| {
                ReadError::Other(Error::config("the follower's readers were closed"))
            })?;
        s.last_call = Some(Instant::now());
        let called_ms = now_ms();
        let _busy = r.stats.reader.begin();
        (r.stream.read(&it).await?, called_ms)
    };
    s.renewed = false;
    s.failing_since = None;
    s.backoff = MIN_INTERVAL;
    let n = page.records.len();
    if s.check_first {
        if let Some(first) = page.records.first() {
            s.check_first = false;
            let now = now_secs();
            let gap = r
                .store
                .read_stream(|st| trim_is_gap(st, now, first.created_ms));
            if gap.unwrap_or(true) {
                return Err(trimmed(&s.info.id));
            }
        } else if page.next.is_none() {
            return Err(trimmed(&s.info.id));
        }
    }
    dispatch(r, s, page.records).await?;
    let ended = page.next.is_none();
    {
        let mut t = r.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let t = t.entry(s.info.id.clone()).or_default();
        t.page(n, called_ms, now_ms());
        t.read_to_end |= ended;
    }
    r.sync(&s.info.id);
    match page.next {
        None => Ok(Step::Ended),
        Some(next) => {
            s.iterator = Some(next);
            // A shard DescribeStream says has ended is read on through empty pages.
            Ok(if n == 0 && !s.info.ended {
                Step::Idle
            } else {
                Step::More
            })
        }
    }
}

fn trimmed(id: &str) -> ReadError {
    ReadError::Lost(format!(
        "shard {id} lost records to the 24-hour retention before they were read, and they \
         may be changes made since the load began"
    ))
}

/// Hand a page's records to their lanes, each with a ticket (records older than the load are
/// complete at once).
async fn dispatch(
    r: &Readers,
    s: &mut Reading,
    records: Vec<Record>,
) -> std::result::Result<(), ReadError> {
    let from_ms = r.follow_from.saturating_sub(MARGIN_SECS) as i64 * 1000;
    if let Some(last) = records.last() {
        s.pos = Position::After(last.seq.clone());
    }
    // Tickets for the whole page under one lock; records older than the load complete at once.
    let mut out = Vec::with_capacity(records.len());
    {
        let mut tracks = r.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let t = tracks.entry(s.info.id.clone()).or_default();
        for rec in records {
            let skip = rec.created_ms.is_some_and(|c| c < from_ms);
            let ticket = t.dispatch(rec.seq, rec.created_ms);
            if skip {
                t.complete(ticket);
            } else {
                out.push((ticket, rec.kind, rec.created_ms, rec.change));
            }
        }
    }
    for (ticket, kind, created_ms, change) in out {
        let lane = r.lane_of(&change);
        let sent = Ticketed {
            shard: s.id.clone(),
            ticket,
            kind,
            created_ms,
            change,
        };
        if r.lanes[lane].send(sent).await.is_err() {
            // The lane ended (it failed, or the follower stops): its error is reported.
            return Err(ReadError::Other(Error::config(
                "a writer of the follower ended",
            )));
        }
    }
    Ok(())
}

/// A failed call: renew, wait, or give up.
async fn handle(r: &Readers, s: &mut Reading, e: ReadError) -> Result<()> {
    match e {
        ReadError::Expired if !s.renewed => {
            s.renewed = true;
            s.iterator = None;
            Ok(())
        }
        ReadError::Expired => Err(data_missed(&format!(
            "an iterator of shard {} expired and could not be renewed",
            s.info.id
        ))),
        ReadError::Lost(why) if matches!(s.pos, Position::At(_)) => {
            // The shard's first records are gone before it was ever read.
            let now = now_secs();
            if r.store
                .read_stream(|st| trim_is_gap(st, now, None))
                .unwrap_or(true)
            {
                s.check_first = true;
            }
            tracing::debug!(
                "shard {}: its start is trimmed ({why}); reading from its oldest record",
                s.info.id
            );
            s.pos = Position::Oldest;
            s.iterator = None;
            Ok(())
        }
        ReadError::Lost(why) => Err(data_missed(&why)),
        ReadError::Throttled(why) => {
            crate::progress::Stats::add(&r.stats.ddb_throttles, 1);
            tracing::debug!(
                "shard {}: throttled ({why}); waiting {:?}",
                s.info.id,
                s.backoff
            );
            r.pause(s.backoff).await;
            s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
            Ok(())
        }
        ReadError::Transient(why) => {
            let since = *s.failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > r.retry_for {
                return Err(Error::Source {
                    message: format!(
                        "DynamoDB Streams failed for {} s (longer than --pg-retry-for): {why}. \
                         Nothing unapplied is lost: run the same command again to resume",
                        since.elapsed().as_secs()
                    ),
                    retryable: false,
                });
            }
            crate::say!(
                "following: DynamoDB Streams failed ({why}); retrying in {:.1} s",
                s.backoff.as_secs_f64()
            );
            r.pause(s.backoff).await;
            s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
            Ok(())
        }
        ReadError::Other(e) => Err(e),
    }
}
