//! The follower's coordinator: lists the stream's shards, starts a reader for every shard
//! that may be read (`super::lineage`), runs one lane per connection (`super::lanes`), and
//! watches them: a failed reader or lane stops the run with its error; a reader that reached
//! its shard's end makes it list the shards again at once (its children may start), and it
//! lists them every `RELIST_EVERY` anyway, so new shards start within seconds.
//!
//! **Caught up** (`--until-caught-up`): every shard DescribeStream lists is done, or open and
//! quiet: nothing in flight and at least `QUIET_PAGES` empty pages in a row over at least
//! `QUIET_MS`. AWS documents that GetRecords may answer empty pages while records follow
//! (each page moves the iterator on), so one empty page proves nothing; a run of them, each
//! from a moved iterator, spread over seconds, is what "at its end" can mean on a stream that
//! has no "behind latest" figure. A shard listed as ended must be read and committed to its
//! end; a shard still waiting for its parent is not caught up. An empty page only speaks for
//! the records written before its call began: exiting also needs each open shard's last empty
//! page asked for at least `SEEN_AFTER_ASKED_MS` after the exit was asked (the run's start
//! with `--until-caught-up`, else when the request was found), so a change written just
//! before `ddb2pg finish` is applied before the follower exits.
//!
//! **Lag** is per shard (`ShardTrack::lag_ms`): the oldest record not yet committed, zero for
//! a shard idle at its end; the run's lag is the largest. Each tick it is noted in the
//! checkpoint's memory with the verdict (`super::verdict`: caught up since when, shards
//! behind); only a change of the verdict marks the checkpoint for a write, the lag is saved
//! with whatever write comes next (at most every 200 ms while changes flow).
//!
//! **Finish on request** (`crate::finish`): once asked, the follower behaves as with
//! `--until-caught-up`, and removes the request when it exits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::lanes::{self, LaneJob};
use super::lineage;
use super::now_ms;
use super::reader::{self, Readers};
use super::tracker::ShardTrack;
use super::verdict::{self, Assessment, View};
use super::{lag_text, read_error, FollowEnd, FollowJob, Tracks};
use crate::checkpoint::{now_secs, StreamState};
use crate::cli::ProgressMode;
use crate::error::{Error, Result};
use crate::progress::Stats;
use crate::sink::resilient::Writer;
use crate::source::stream::{ReadError, ShardInfo};

/// Shards are listed again this often.
const RELIST_EVERY: Duration = Duration::from_secs(2);
/// The coordinator looks at readers and lanes this often.
const TICK: Duration = Duration::from_millis(100);
/// Caught up: empty pages in a row on each open shard, over at least this long.
pub const QUIET_PAGES: u32 = 5;
pub const QUIET_MS: i64 = 2_500;
/// Exiting caught up: each open shard's last empty page is asked for at least this long after
/// the exit was asked (a record written just before the request may take a moment to show in
/// the stream; an empty page asked for before it was written proves nothing).
const SEEN_AFTER_ASKED_MS: i64 = 1_000;

struct Coordinator {
    job: FollowJob,
    readers: Arc<Readers>,
    tracks: Tracks,
    running: HashMap<String, JoinHandle<Result<()>>>,
    lanes: Vec<JoinHandle<Result<()>>>,
    flusher: JoinHandle<Result<()>>,
    flush_done: Arc<Notify>,
    stop_tx: watch::Sender<bool>,
    listed: Vec<ShardInfo>,
    /// The shards the checkpoint had closed before `listed` was asked for: one closed since
    /// may have children the listing does not show yet (see `closed`).
    closed_before_list: HashSet<String>,
    last_list: Option<Instant>,
    last_log: Instant,
    list_failing_since: Option<Instant>,
    /// When a finish was asked (see `asked_at`; logged once).
    asked_ms: Option<i64>,
    /// When this run began following (ms).
    started_ms: i64,
}

/// Apply the stream until stopped (or caught up, with `--until-caught-up`).
pub async fn run(job: FollowJob) -> Result<FollowEnd> {
    let mut c = start(job).await?;
    let end = c.watch().await;
    let closed = c.close().await;
    if c.asked_ms.is_some() {
        if let Some(w) = &c.job.finish {
            w.clear().await;
        }
    }
    let end = end?;
    closed?;
    if end == FollowEnd::CaughtUp {
        c.log(true);
    }
    Ok(end)
}

async fn start(job: FollowJob) -> Result<Coordinator> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Not caught up until this run finds it is.
    job.store.change_stream(|s| {
        let had = s.caught_up_since_ms.take().is_some();
        (s.lag_ms, s.lag_at_ms, s.shards_behind) = (None, None, 0);
        had
    });
    let tracks: Tracks = Arc::new(Mutex::new(HashMap::new()));
    let committed = Arc::new(Notify::new());
    let lane_job = Arc::new(LaneJob {
        plan: job.plan.clone(),
        key_attrs: job.key_attrs.clone(),
        old_images: job.stream.old_images,
        rejects: job.rejects.clone(),
        stats: job.stats.clone(),
        store: job.store.clone(),
        tracks: tracks.clone(),
        committed: committed.clone(),
        shutdown: stop_rx.clone(),
    });
    let mut senders = Vec::new();
    let mut lanes = Vec::new();
    for _ in 0..job.connections.max(1) {
        let writer = Writer::open(
            &job.target_url,
            job.plan.clone(),
            None,
            job.retry,
            None,
            Some(job.shutdown.clone()),
            job.stats.clone(),
        )
        .await?;
        let (tx, rx) = mpsc::channel(lanes::QUEUE);
        senders.push(tx);
        lanes.push(tokio::spawn(lanes::run_lane(lane_job.clone(), writer, rx)));
    }
    let flush_done = Arc::new(Notify::new());
    let flusher = tokio::spawn(lanes::flusher(
        job.store.clone(),
        committed,
        flush_done.clone(),
    ));
    let follow_from = job
        .store
        .read_stream(|s| s.follow_from)
        .unwrap_or_else(now_secs);
    let readers = Arc::new(Readers {
        stream: job.stream.clone(),
        store: job.store.clone(),
        tracks: tracks.clone(),
        lanes: senders,
        key_attrs: job.key_attrs.clone(),
        reads: Arc::new(Semaphore::new(job.readers.max(1))),
        retry_for: job.retry.max_elapsed,
        shutdown: stop_rx,
        follow_from,
        stats: job.stats.clone(),
    });
    Ok(Coordinator {
        job,
        readers,
        tracks,
        running: HashMap::new(),
        lanes,
        flusher,
        flush_done,
        stop_tx,
        listed: Vec::new(),
        closed_before_list: HashSet::new(),
        last_list: None,
        last_log: Instant::now(),
        list_failing_since: None,
        asked_ms: None,
        started_ms: now_ms(),
    })
}

impl Coordinator {
    fn state(&self) -> StreamState {
        self.job
            .store
            .read_stream(|s| s.clone())
            .unwrap_or_default()
    }

    /// Until stopped, caught up, or failed.
    async fn watch(&mut self) -> Result<FollowEnd> {
        let mut stop = self.job.shutdown.clone();
        loop {
            if *self.job.shutdown.borrow() {
                // The report's lag and shard counts as of the stop, not of the last tick.
                self.update_stats();
                return Ok(FollowEnd::Interrupted);
            }
            let ended_reader = self.reap().await?;
            let due = self.last_list.is_none_or(|t| t.elapsed() >= RELIST_EVERY);
            if ended_reader || due {
                self.relist().await?;
            }
            let now = now_ms();
            self.update_stats();
            let current = self.assess(now);
            self.note(current, now);
            self.log(false);
            let asked = self.asked_at().await;
            // Also notes when every shard was first read to its end (`first_round_at`).
            let quiet = self.caught_up(asked.map_or(i64::MIN, |t| t + SEEN_AFTER_ASKED_MS));
            if asked.is_some() && quiet && current.current {
                self.job
                    .store
                    .with_stream(|s| s.caught_up_at = Some(now_secs()));
                return Ok(FollowEnd::CaughtUp);
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Collect readers and lanes that ended; an error ends the run. Whether a reader ended.
    async fn reap(&mut self) -> Result<bool> {
        // Taken out of the list: `close` awaits the others (a handle awaited twice panics).
        if let Some(i) = self.lanes.iter().position(|l| l.is_finished()) {
            let r = self
                .lanes
                .swap_remove(i)
                .await
                .map_err(|e| Error::config(format!("a writer failed: {e}")))?;
            r?;
            return Err(Error::config("a writer of the follower ended early"));
        }
        let done: Vec<String> = self
            .running
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &done {
            if let Some(h) = self.running.remove(id) {
                h.await.map_err(|e| {
                    Error::config(format!("the reader of shard {id} failed: {e}"))
                })??;
            }
        }
        Ok(!done.is_empty())
    }

    /// DescribeStream; the checkpoint learns new shards and forgets pruned ones; readers
    /// start for the shards that may be read.
    async fn relist(&mut self) -> Result<()> {
        let mut stop = self.job.shutdown.clone();
        let closed_before = closed_ids(&self.state());
        let listed = tokio::select! {
            l = self.job.stream.shards() => l,
            _ = stop.changed() => return Ok(()),
        };
        if let Err(ReadError::Throttled(_)) = &listed {
            Stats::add(&self.job.stats.ddb_throttles, 1);
        }
        let shards = match listed {
            Ok(s) => s,
            Err(ReadError::Transient(why) | ReadError::Throttled(why)) => {
                let since = *self.list_failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.job.retry.max_elapsed {
                    return Err(Error::Source {
                        message: format!(
                            "DynamoDB Streams failed for {} s (longer than --pg-retry-for): \
                             {why}. Run the same command again to resume",
                            since.elapsed().as_secs()
                        ),
                        retryable: false,
                    });
                }
                self.last_list = Some(Instant::now());
                return Ok(());
            }
            Err(e) => return Err(read_error(e)),
        };
        self.list_failing_since = None;
        self.last_list = Some(Instant::now());
        let state = self.state();
        let plan = lineage::plan(&state, &shards, now_secs())?;
        let known = plan.known;
        self.job.store.change_stream(|s| {
            let before = s.shards.len();
            for (id, st) in &known {
                s.shards.entry(id.clone()).or_insert_with(|| st.clone());
            }
            let added = s.shards.len() != before;
            s.shards.retain(|id, _| known.contains_key(id));
            added || s.shards.len() != known.len() || plan.pruned > 0
        });
        for id in plan.eligible {
            if self.running.contains_key(&id) {
                continue;
            }
            let Some(info) = shards.iter().find(|s| s.id == id).cloned() else {
                continue;
            };
            let committed = known.get(&id).and_then(|s| s.seq.clone());
            {
                let mut t = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
                if t.get(&id).is_some_and(|t| t.read_to_end) {
                    // Read to its end in this run; its last commits are on their way.
                    continue;
                }
                t.insert(id.clone(), ShardTrack::resumed(committed.clone()));
            }
            let r = self.readers.clone();
            self.running
                .insert(id, tokio::spawn(reader::read_shard(r, info, committed)));
        }
        // Forget tracks of shards the checkpoint no longer knows.
        {
            let mut t = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
            t.retain(|id, _| known.contains_key(id));
        }
        self.listed = shards;
        self.closed_before_list = closed_before;
        Ok(())
    }

    /// Whether shard `id` is done for the verdict: closed in the checkpoint before the shards
    /// were last listed. One closed since is not yet (its children, which hold the changes
    /// made after its end, may be missing from that listing, a failed DescribeStream
    /// included): the next listing shows them.
    fn closed(&self, state: &StreamState, id: &str) -> bool {
        state.shards.get(id).is_some_and(|k| k.closed) && self.closed_before_list.contains(id)
    }

    /// Every listed shard done, or open and quiet at its end, its last empty page asked for
    /// at or after `after_ms`.
    fn caught_up(&self, after_ms: i64) -> bool {
        // Nothing listed yet (the first DescribeStream may have failed): nothing is known,
        // and no shard was read (`first_round_at` must not be noted).
        if self.listed.is_empty() {
            return false;
        }
        let state = self.state();
        let now = now_ms();
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        // Every shard is looked at (no early stop): `all_read_once` must see them all.
        let (mut ok, mut all_read_once) = (true, true);
        for s in &self.listed {
            if self.closed(&state, &s.id) {
                continue;
            }
            let t = tracks
                .get(&s.id)
                .filter(|_| !s.ended && self.running.contains_key(&s.id));
            all_read_once &= t.is_some_and(|t| t.empty_pages > 0);
            ok &= t.is_some_and(|t| t.quiet(QUIET_PAGES, QUIET_MS, now, after_ms));
        }
        drop(tracks);
        if all_read_once {
            self.job.store.change_stream(|s| {
                let first = s.first_round_at.is_none();
                s.first_round_at.get_or_insert(now_secs());
                first
            });
        }
        ok
    }

    /// The verdict over the listed shards (`super::verdict`).
    fn assess(&self, now: i64) -> Assessment {
        let state = self.state();
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let views = self.listed.iter().map(|s| {
            if self.closed(&state, &s.id) {
                return View::Closed;
            }
            match tracks.get(&s.id) {
                Some(t) if self.running.contains_key(&s.id) => View::Read(t),
                _ => View::Unread,
            }
        });
        verdict::assess(views, now, self.job.caught_up_lag_ms)
    }

    /// Keep the verdict and the lag in the stats and the checkpoint: only a change of the
    /// verdict marks the checkpoint for a write (the lag goes with the next write anyway).
    fn note(&self, a: Assessment, now: i64) {
        let s = &self.job.stats;
        let since = s.caught_up_since_ms.load(Ordering::Relaxed);
        let new_since = match (a.current, since) {
            (true, 0) => now,
            (true, t) => t,
            (false, _) => 0,
        };
        s.caught_up_since_ms.store(new_since, Ordering::Relaxed);
        s.shards_behind.store(a.behind, Ordering::Relaxed);
        let flipped = (since == 0) != (new_since == 0);
        if flipped && self.job.progress != ProgressMode::None {
            crate::say!(
                "following: {}",
                verdict::state_text(
                    (new_since != 0).then_some(new_since),
                    super::lag_s(s),
                    a.behind
                )
            );
        }
        let lag = s
            .lag_known
            .load(Ordering::Relaxed)
            .then(|| s.lag_ms.load(Ordering::Relaxed).max(0));
        self.job.store.change_stream(|st| {
            st.caught_up_since_ms = (new_since != 0).then_some(new_since);
            st.lag_ms = lag;
            st.lag_at_ms = Some(now);
            st.shards_behind = a.behind;
            flipped
        });
    }

    /// When this run was asked to exit once caught up (ms, this machine's clock): as it
    /// started, with `--until-caught-up`; when it found the request (`crate::finish`, logged).
    async fn asked_at(&mut self) -> Option<i64> {
        if self.job.until_caught_up {
            return Some(self.started_ms);
        }
        if self.asked_ms.is_some() {
            return self.asked_ms;
        }
        let w = self.job.finish.as_mut()?;
        if let Some(who) = w.asked().await {
            crate::say!("finish requested by {who}: finishing once caught up");
            self.asked_ms = Some(now_ms());
        }
        self.asked_ms
    }

    fn update_stats(&self) {
        let (closed, known) = self
            .job
            .store
            .read_stream(|st| {
                let closed = st.shards.values().filter(|s| s.closed).count() as u64;
                (closed, st.shards.len() as u64)
            })
            .unwrap_or_default();
        let open = known - closed;
        let s = &self.job.stats;
        s.shards_open.store(open, Ordering::Relaxed);
        s.shards_closed.store(closed, Ordering::Relaxed);
        let now = now_ms();
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        // Per shard, for the metrics: only the shards being read or applied now (a closed
        // shard's series disappears).
        let per_shard: std::collections::BTreeMap<String, i64> = tracks
            .iter()
            .filter(|(id, t)| self.running.contains_key(*id) || t.in_flight() > 0)
            .filter_map(|(id, t)| Some((id.clone(), t.lag_ms(now)?)))
            .collect();
        let lag = per_shard.values().copied().max();
        *s.shard_lag_ms.lock().unwrap_or_else(|e| e.into_inner()) = per_shard;
        match lag {
            Some(l) => {
                s.lag_ms.store(l, Ordering::Relaxed);
                s.lag_known.store(true, Ordering::Relaxed);
            }
            None if self.running.is_empty() && !self.listed.is_empty() => {
                s.lag_ms.store(0, Ordering::Relaxed);
                s.lag_known.store(true, Ordering::Relaxed);
            }
            None => {}
        }
    }

    /// A progress line every `--progress-interval` (and at the end), unless `--progress none`.
    fn log(&mut self, last: bool) {
        if self.job.progress == ProgressMode::None
            || (!last && self.last_log.elapsed() < self.job.progress_interval)
        {
            return;
        }
        self.last_log = Instant::now();
        let s = &self.job.stats;
        let (ins, modi, rem) = (
            Stats::get(&s.changes_inserted),
            Stats::get(&s.changes_modified),
            Stats::get(&s.changes_removed),
        );
        let since = s.caught_up_since_ms.load(Ordering::Relaxed);
        let lag = super::lag_s(s);
        let rejected = self.job.store.read_stream(|st| st.rejected).unwrap_or(0);
        let (open, closed, reading) = (
            Stats::get(&s.shards_open),
            Stats::get(&s.shards_closed),
            self.running.len(),
        );
        let behind = Stats::get(&s.shards_behind);
        let state = verdict::state_text((since != 0).then_some(since), lag, behind);
        let fields = crate::say::fields_of(&serde_json::json!({
            "changes_inserted": ins,
            "changes_modified": modi,
            "changes_removed": rem,
            "lag_s": lag,
            "shards_open": open,
            "shards_closed": closed,
            "shards_reading": reading,
            "shards_behind": behind,
            "caught_up": since != 0,
            "caught_up_since_ms": (since != 0).then_some(since),
            "state": state,
            "rejected_since_load": rejected,
        }));
        crate::say::event(crate::say::Level::Info, "following", fields, || {
            format!(
                "ddb2pg: following: {ins} inserted, {modi} modified, {rem} removed | lag {} | \
                 shards {open} open, {closed} closed, {reading} reading | {state} | \
                 {rejected} rejected since the load",
                lag_text(lag)
            )
        });
    }

    /// Stop readers and lanes, wait for them, write the checkpoint.
    async fn close(&mut self) -> Result<()> {
        let _ = self.stop_tx.send(true);
        let mut first_err = None;
        for (id, h) in self.running.drain() {
            match h.await {
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(Error::config(format!("reader of {id}: {e}")));
                }
                Ok(Ok(())) => {}
            }
        }
        for h in self.lanes.drain(..) {
            if let Ok(Err(e)) = h.await {
                first_err.get_or_insert(e);
            }
        }
        self.flush_done.notify_one();
        let flushed = (&mut self.flusher)
            .await
            .map_err(|e| Error::config(format!("the checkpoint writer failed: {e}")))
            .and_then(|r| r);
        let flushed = match flushed {
            Ok(()) => lanes::flush(&self.job.store).await,
            Err(e) => Err(e),
        };
        match first_err {
            Some(e) if !*self.job.shutdown.borrow() => Err(e),
            _ => flushed,
        }
    }
}

/// The shards `state` has closed.
fn closed_ids(state: &StreamState) -> HashSet<String> {
    let closed = state.shards.iter().filter(|(_, k)| k.closed);
    closed.map(|(id, _)| id.clone()).collect()
}
