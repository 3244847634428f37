//! The checkpoint shared by a run's workers: changed in memory after each commit, written to
//! its storage by `flush` (with the rejects first, when the storage keeps its own copy).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::storage::{Names, Storage, Tag};
use super::{Checkpoint, SegmentState, StreamState};
use crate::error::Result;

/// The checkpoint shared by the segment workers: updated in memory after each commit, written
/// to its storage by `flush` (the pipeline flushes a few times a second and at the end).
pub struct Store {
    /// False for `--dry-run`: the checkpoint is kept in memory only.
    persist: bool,
    storage: Arc<dyn Storage>,
    names: Names,
    /// The checkpoint's location, for messages.
    shown: PathBuf,
    /// The stored version this process wrote last (a conditional write replaces only it).
    tag: Mutex<Tag>,
    state: Mutex<Checkpoint>,
    dirty: AtomicBool,
    /// The local rejects file (the storage's copy is refreshed from it before a flush).
    rejects_local: PathBuf,
    /// `--max-rejects`: rejected items recorded over all runs of the checkpoint (0: no limit).
    max_rejects: u64,
    /// Reject lines of committed pages not appended yet (see `commit_page`).
    held: AtomicU64,
    /// Appending reject lines failed: nothing more is recorded or saved.
    broken: AtomicBool,
    /// The run's counters, told when the checkpoint is written (for its age in the metrics).
    observer: OnceLock<Arc<crate::progress::Stats>>,
}

/// The error once appending reject lines failed (see `Store::commit_page`).
fn broken(shown: &str) -> crate::error::Error {
    crate::error::Error::file(
        shown,
        "not recorded: an earlier append to the rejects failed; the checkpoint saved last \
         stays valid (run the same command again to resume)",
    )
}

/// What a committed page adds to its segment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delta {
    pub items: u64,
    pub rows_written: u64,
    pub rows_unchanged: u64,
    pub rejected: u64,
    pub skipped: u64,
}

impl Store {
    /// `tag`: the version of the checkpoint as read (`Tag::Absent` for a new one).
    pub fn new(
        storage: Arc<dyn Storage>,
        names: Names,
        rejects_local: PathBuf,
        tag: Tag,
        cp: Checkpoint,
    ) -> Store {
        Store {
            persist: true,
            shown: PathBuf::from(storage.show(&names.checkpoint)),
            storage,
            names,
            tag: Mutex::new(tag),
            state: Mutex::new(cp),
            dirty: AtomicBool::new(true),
            rejects_local,
            max_rejects: 0,
            held: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            observer: OnceLock::new(),
        }
    }

    /// At most `max` rejected items recorded over all runs of the checkpoint (0: no limit):
    /// see `commit_page`.
    pub fn limit_rejects(self, max: u64) -> Store {
        Store {
            max_rejects: max,
            ..self
        }
    }

    /// A store that never writes (dry runs).
    pub fn in_memory(
        storage: Arc<dyn Storage>,
        names: Names,
        rejects_local: PathBuf,
        cp: Checkpoint,
    ) -> Store {
        Store {
            persist: false,
            ..Store::new(storage, names, rejects_local, Tag::Absent, cp)
        }
    }

    /// Where the checkpoint is (a path, or an s3:// URL), for messages.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Checkpoint {
        self.lock().clone()
    }

    pub fn segment(&self, i: u32) -> SegmentState {
        self.lock().segments[i as usize].clone()
    }

    pub fn begin_segment(&self, i: u32) {
        let mut cp = self.lock();
        cp.segments[i as usize].runs += 1;
        self.dirty.store(true, Ordering::Release);
    }

    /// Before a page is written to the target: an error once this run no longer holds its
    /// lock (an S3 lease that ran out, or was taken over), so that a process that lost its
    /// shard writes no more rows beside the one that took it.
    pub fn still_held(&self) -> Result<()> {
        if !self.persist {
            return Ok(());
        }
        self.storage.still_held(&self.names.lock)
    }

    /// Record a committed page (call only after the transaction holding its rows committed) as
    /// one step, under the checkpoint's lock: `f` changes the checkpoint and returns the reject
    /// lines to append now, and they are appended, so that no saved checkpoint holds the one
    /// without the other (`rejects_bytes` marks where committed lines end). `adding`: the
    /// page's rejected items; those `f` does not return yet are held (the follower records a
    /// change's line once its shard's checkpoint position passes it) and count as recorded.
    ///
    /// A page that would take the rejects past `--max-rejects` is neither recorded nor
    /// committed (`f` is not called): the error stops the run, and a resume reads the page
    /// again. Once appending failed nothing more is recorded or saved: the checkpoint saved
    /// last stays the run's last (what `f` changed is not saved without its lines).
    pub fn commit_page(
        &self,
        rejects: &crate::rejects::Rejects,
        adding: u64,
        f: impl FnOnce(&mut Checkpoint) -> Vec<String>,
    ) -> Result<()> {
        let mut cp = self.lock();
        let shown = || match self.persist {
            true => self.storage.show(&self.names.rejects),
            false => rejects.path().display().to_string(),
        };
        if self.broken.load(Ordering::Acquire) {
            return Err(broken(&shown()));
        }
        let held = self.held.load(Ordering::Acquire);
        let max = self.max_rejects;
        if adding > 0 && max != 0 && cp.rejected_here() + held + adding > max {
            use crate::rejects::{within_limit, Kept};
            let recorded = cp.rejected_here();
            let shown = shown();
            let kept = match self.persist {
                true => Kept::Run(&shown),
                // A dry run's file is created by its first append.
                false => Kept::DryRun(Some(rejects.path()).filter(|p| p.exists())),
            };
            within_limit(recorded, held + adding, max, kept)?;
        }
        let lines = f(&mut cp);
        let held = (held + adding).saturating_sub(lines.len() as u64);
        self.held.store(held, Ordering::Release);
        if !lines.is_empty() {
            match rejects.append(&lines) {
                Ok(len) => cp.rejects_bytes = Some(len),
                Err(e) => {
                    self.broken.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Read the stream state (the checkpoint is not marked changed).
    pub fn read_stream<R>(&self, f: impl FnOnce(&StreamState) -> R) -> Option<R> {
        let cp = self.lock();
        cp.stream.as_ref().map(f)
    }

    /// Change the stream state where `f` says it changed it (only then is the checkpoint marked
    /// for the next flush).
    pub fn change_stream(&self, f: impl FnOnce(&mut StreamState) -> bool) -> bool {
        let mut cp = self.lock();
        let changed = cp.stream.as_mut().is_some_and(f);
        if changed {
            self.dirty.store(true, Ordering::Release);
        }
        changed
    }

    /// Read or change the stream state (marks the checkpoint for the next flush).
    pub fn with_stream<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> Option<R> {
        let mut cp = self.lock();
        let r = cp.stream.as_mut().map(f);
        self.dirty.store(true, Ordering::Release);
        r
    }

    /// Write the checkpoint if it changed since the last flush: first the rejects it counts
    /// (when the storage keeps its own copy), so that no stored checkpoint counts reject lines
    /// the storage does not hold, then the checkpoint, replacing only the version this process
    /// wrote last.
    pub fn flush(&self) -> Result<()> {
        if !self.persist || !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        if self.broken.load(Ordering::Acquire) {
            return Err(broken(&self.storage.show(&self.names.rejects)));
        }
        let r = self.write();
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    fn write(&self) -> Result<()> {
        let mut cp = self.snapshot();
        // The storage's copy holds exactly the lines this checkpoint counts (S3: the lines
        // past what it holds are uploaded; nothing to do when it holds them already).
        if let Some(len) = cp.rejects_bytes {
            self.storage
                .publish_prefix(&self.names.rejects, &self.rejects_local, len)?;
        }
        let bytes = cp.encode()?;
        let mut tag = self.tag.lock().unwrap_or_else(|p| p.into_inner());
        *tag = self.storage.write(&self.names.checkpoint, &bytes, &tag)?;
        if let Some(stats) = self.observer.get() {
            let now = crate::metrics::now_ms();
            stats.checkpoint_written_ms.store(now, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Tell `stats` when the checkpoint is written from now on.
    pub fn report_writes_to(&self, stats: Arc<crate::progress::Stats>) {
        let _ = self.observer.set(stats);
    }

    /// After the run: remove the local copy of the rejects when the storage keeps its own (S3:
    /// a run always fetches the stored ones first, so the copy, whole items, is never read
    /// again; lines it holds past the stored ones belong to batches the checkpoint does not
    /// count, which a resume reads again).
    pub fn drop_local_copy(&self) {
        if self.persist && self.storage.keeps_copies() {
            let _ = std::fs::remove_file(&self.rejects_local);
        }
    }
}
