//! The follower's writers: one lane per PostgreSQL connection (`--connections`).
//!
//! Readers send each change to the lane its item's key hashes to (`Readers::lane_of`), so an
//! item's changes always meet one connection, in the order their shard holds them; changes
//! of different items commute (a deletion only removes rows still the removed item's, see
//! `crate::changes`), so lanes need no order between them. A lane takes what is queued, up to
//! `BATCH` changes from any shards, as one batch (`batch::prepare_changes`: the last
//! operation per row wins, deletions before writes), commits it through `PageSink::apply`,
//! and in the same step completes the batch's tickets, writes the watermarks they move into
//! the checkpoint (`super::tracker`) and appends the reject lines of the changes those
//! watermarks pass (a line waits in its shard's track until then: a resume re-applies every
//! change past the checkpoint's position, and its line must not be in the file already). A flusher writes the
//! checkpoint out at most every `FLUSH_EVERY`: a kill -9 re-applies at most what was
//! committed since, which is harmless.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::reader::{write_track, Ticketed};
use super::Tracks;
use crate::batch;
use crate::changes::{ChangeKind, OldImages};
use crate::checkpoint::{Checkpoint, Delta, Store};
use crate::error::{Error, Result};
use crate::pipeline::{PageSink, Rejected};
use crate::plan::Plan;
use crate::progress::Stats;
use crate::rejects::Rejects;
use crate::sink::resilient::Writer;

/// The most changes one lane commits in one batch.
pub const BATCH: usize = 1000;
/// Changes queued for a lane before readers wait.
pub const QUEUE: usize = 4 * BATCH;
/// The checkpoint is written at most this often while changes are applied.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// ... and at least this often when anything else in it changed.
pub const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// What every lane shares.
pub struct LaneJob {
    pub plan: Arc<Plan>,
    pub key_attrs: Vec<String>,
    pub old_images: OldImages,
    pub rejects: Arc<Rejects>,
    pub stats: Arc<Stats>,
    pub store: Arc<Store>,
    pub tracks: Tracks,
    /// Woken after each commit: the flusher writes the checkpoint.
    pub committed: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
}

/// Apply what comes on `rx` until the readers hang up or the follower stops.
pub async fn run_lane(
    job: Arc<LaneJob>,
    mut writer: Writer,
    mut rx: mpsc::Receiver<Ticketed>,
) -> Result<()> {
    let mut stop = job.shutdown.clone();
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = stop.changed() => None,
        };
        let Some(first) = first else {
            return Ok(());
        };
        if *job.shutdown.borrow() {
            return Ok(());
        }
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        apply(&job, &mut writer, batch).await?;
        job.committed.notify_one();
    }
}

/// Commit one batch and complete its tickets.
async fn apply(job: &Arc<LaneJob>, writer: &mut Writer, batch: Vec<Ticketed>) -> Result<()> {
    let mut kinds = [0u64; 3];
    let mut newest = None;
    let mut tickets = Vec::with_capacity(batch.len());
    let mut changes = Vec::with_capacity(batch.len());
    for t in batch {
        kinds[t.kind as usize] += 1;
        newest = newest.max(t.created_ms);
        tickets.push((t.shard, t.ticket));
        changes.push(t.change);
    }
    let p = batch::prepare_changes(&job.plan, &job.key_attrs, job.old_images, changes, None);
    let tracks = job.tracks.clone();
    let k = kinds;
    let record = move |cp: &mut Checkpoint, _: &Delta, _: &[u32], lines: Rejected| {
        let Some(s) = cp.stream.as_mut() else {
            return lines.into_iter().map(|(line, _)| line).collect();
        };
        let mut t = tracks.lock().unwrap_or_else(|e| e.into_inner());
        // A change's reject line waits for its shard's position to pass the change: written
        // with the position that covers it, it is never written again by a resume.
        let mut now = Vec::new();
        for (line, i) in lines {
            match tickets.get(i as usize) {
                Some((shard, ticket)) => match t.get_mut(&**shard) {
                    Some(track) => track.hold(*ticket, line),
                    None => now.push(line),
                },
                None => now.push(line),
            }
        }
        let mut moved = BTreeSet::new();
        for (shard, ticket) in &tickets {
            if let Some(track) = t.get_mut(&**shard) {
                if track.complete(*ticket) {
                    moved.insert(shard.clone());
                }
            }
        }
        for shard in moved {
            if let Some(track) = t.get_mut(&*shard) {
                now.extend(track.release());
                write_track(s, &shard, track);
            }
        }
        s.inserted += k[ChangeKind::Insert as usize];
        s.modified += k[ChangeKind::Modify as usize];
        s.removed += k[ChangeKind::Remove as usize];
        s.rejected += now.len() as u64;
        s.newest_applied_ms = s.newest_applied_ms.max(newest);
        now
    };
    let sink = PageSink {
        plan: &job.plan,
        key_attrs: &job.key_attrs,
        rejects: &job.rejects,
        stats: &job.stats,
        segment: None,
    };
    sink.apply(writer, p, &job.store, record).await?;
    let s = &job.stats;
    Stats::add(&s.changes_inserted, kinds[ChangeKind::Insert as usize]);
    Stats::add(&s.changes_modified, kinds[ChangeKind::Modify as usize]);
    Stats::add(&s.changes_removed, kinds[ChangeKind::Remove as usize]);
    if let Some(t) = newest {
        s.newest_change_ms.fetch_max(t, Ordering::Relaxed);
    }
    Ok(())
}

/// Write the checkpoint after commits, at most every `FLUSH_EVERY`, and at least every
/// `IDLE_FLUSH` while it changed (positions of skipped records, shards learnt), until `done`.
pub async fn flusher(store: Arc<Store>, committed: Arc<Notify>, done: Arc<Notify>) -> Result<()> {
    loop {
        tokio::select! {
            _ = committed.notified() => {}
            _ = tokio::time::sleep(IDLE_FLUSH) => {}
            _ = done.notified() => return flush(&store).await,
        }
        flush(&store).await?;
        tokio::time::sleep(FLUSH_EVERY).await;
    }
}

/// Write the checkpoint now (off the async threads).
pub async fn flush(store: &Arc<Store>) -> Result<()> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush())
        .await
        .map_err(|e| Error::file(store.path(), e))?
}
