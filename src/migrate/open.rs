//! The run's files. First ([`lock_run`], step 2, before anything is written to the source or
//! the target): the checkpoint folder (private) and the run's lock, so that a second run of the
//! same source and target (a follower still alive, a retried pod) exits 2 naming the holder
//! having changed nothing. Then ([`open_run`], step 4): an `s3://` export downloaded under the
//! lock, and the checkpoint this run continues: loaded, or discarded by `--restart` (the
//! earlier rejects set aside), checked against this run's settings, the stream attached, and
//! the reject lines of batches the last run did not commit cut (those batches are read again).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::{
    self, printable, Checkpoint, Held, Names, Settings, Storage, Store, StreamState, Tag,
};
use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::rejects::Rejects;
use crate::source::stream::Stream;
use crate::source::TableInfo;

use super::{default_segments, Resolved};

/// Step 3's result: the run's files, held lock and checkpoint store, and what is left to do.
pub(super) struct Run {
    /// Held to the end of the run (none for a dry run of a local source). First field: dropped
    /// (released) before the storage it lives in.
    pub(super) _lock: Option<Box<dyn Held>>,
    pub(super) store: Arc<Store>,
    /// The names of this run's documents (checkpoint, lock, rejects, report).
    pub(super) names: Names,
    /// The total of segments (of all shards).
    pub(super) segments: u32,
    /// The segments of this run (its shard's, or all).
    pub(super) owned: u32,
    pub(super) pending: Vec<u32>,
    pub(super) segments_skipped: u64,
    pub(super) segments_resumed: u64,
    pub(super) items_before: u64,
    pub(super) already_complete: bool,
    /// This run's rejects file, local (a dry run's own, emptied each time); with an s3://
    /// checkpoint dir, the local copy of the stored one.
    pub(super) rejects_path: PathBuf,
    /// Where the rejects are kept, as shown (a path or an s3:// URL).
    pub(super) rejects_shown: String,
}

/// Step 2: the run's lock (none for a dry run of a local source, which writes no files),
/// taken before anything is written, waiting up to `--lock-wait` for a live holder.
pub(super) async fn lock_run(args: &MigrateArgs, src: &Resolved) -> Result<Option<Box<dyn Held>>> {
    let info = &src.origin.info;
    let names = Names::new(&info.name, &info.arn, &src.target_id, src.shard);
    src.storage.secure(&names)?;
    if args.dry_run && src.origin.download.is_none() {
        return Ok(None);
    }
    let lease = Duration::from_secs(args.lock_lease);
    let lock = take_lock(src.storage.as_ref(), &names.lock, lease, args.lock_wait).await?;
    Ok(Some(lock))
}

/// Step 4: an `s3://` export downloaded under `lock` (from [`lock_run`]), and the checkpoint.
pub(super) async fn open_run(
    args: &MigrateArgs,
    src: &Resolved,
    stream: Option<&Stream>,
    lock: Option<Box<dyn Held>>,
) -> Result<Run> {
    let info = &src.origin.info;
    let storage = src.storage.clone();
    let names = Names::new(&info.name, &info.arn, &src.target_id, src.shard);
    if let Some(download) = &src.origin.download {
        download.run().await?;
    }
    // A dry run does not touch the checkpoint: its lock was only for the download.
    let lock = if args.dry_run { None } else { lock };
    let local_rejects = storage.local_dir()?.join(&names.rejects);
    let (cp, tag) = checkpoint_for(args, src, &names, stream, &local_rejects)?;
    let segments = cp.settings.segments;
    let owned = cp.owned();
    let segments_skipped = cp.segments_done() as u64;
    let segments_resumed = owned
        .iter()
        .filter(|&&i| !cp.segments[i as usize].done && cp.segments[i as usize].cursor.is_some())
        .count() as u64;
    let items_before: u64 = cp.segments.iter().map(|s| s.items).sum();
    let pending: Vec<u32> = owned
        .iter()
        .copied()
        .filter(|&i| !cp.segments[i as usize].done)
        .collect();
    let already_complete = cp.complete;
    let dry = args.dry_run;
    let (rejects_path, rejects_shown) = if dry {
        let p = local_rejects.with_extension("dry-run.jsonl");
        let _ = std::fs::remove_file(&p);
        (p.clone(), p.display().to_string())
    } else {
        (local_rejects.clone(), storage.show(&names.rejects))
    };
    let store = Arc::new(
        if dry {
            Store::in_memory(storage, names.clone(), local_rejects, cp)
        } else {
            Store::new(storage, names.clone(), local_rejects, tag, cp)
        }
        .limit_rejects(args.max_rejects),
    );
    Ok(Run {
        _lock: lock,
        store,
        names,
        segments,
        owned: owned.len() as u32,
        pending,
        segments_skipped,
        segments_resumed,
        items_before,
        already_complete,
        rejects_path,
        rejects_shown,
    })
}

/// The lock, waiting up to `wait_s` while a live run holds it (`--lock-wait`).
async fn take_lock(
    storage: &dyn Storage,
    name: &str,
    lease: Duration,
    wait_s: u64,
) -> Result<Box<dyn Held>> {
    // `--lock-wait` is at most a day; a deadline past what the clock can hold never comes.
    let deadline = std::time::Instant::now().checked_add(Duration::from_secs(wait_s));
    let mut said = false;
    loop {
        let err = match storage.lock(name, lease) {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        let held = storage.lock_state(name);
        if !held.running || deadline.is_none_or(|d| std::time::Instant::now() >= d) {
            return Err(err);
        }
        if !said {
            crate::say!(
                "{} is held by {}; waiting up to {wait_s} s (--lock-wait)",
                printable(&storage.show(name)),
                printable(held.holder.as_deref().unwrap_or("another run"))
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The checkpoint this run continues (or a new one) and the version read, checked against
/// this run's settings (and, for a shard, its siblings'), with the stream attached and the
/// reject lines of batches the last run did not commit cut.
fn checkpoint_for(
    args: &MigrateArgs,
    src: &Resolved,
    names: &Names,
    stream: Option<&Stream>,
    local_rejects: &std::path::Path,
) -> Result<(Checkpoint, Tag)> {
    let storage = src.storage.as_ref();
    let dry = args.dry_run;
    let existing = if dry {
        None
    } else if args.restart {
        discard_checkpoint(storage, names)?;
        None
    } else {
        Checkpoint::load_from(storage, &names.checkpoint)?
    };
    let settings = settings_for(args, src, names, existing.as_ref().map(|(c, _)| c))?;
    let fresh = existing.is_none();
    let (mut cp, tag) = match existing {
        Some((cp, tag)) => {
            let diffs = cp.settings.differences(&settings);
            if !diffs.is_empty() {
                return Err(Error::config(format!(
                    "checkpoint {} was written under different settings:\n  - {}\n\
                     resume with the original settings, or add --restart to discard the \
                     checkpoint and start over (rows already written are upserted again, not duplicated)",
                    storage.show(&names.checkpoint),
                    diffs.join("\n  - ")
                )));
            }
            (cp, tag)
        }
        None => match stream.filter(|_| src.shard.is_none()) {
            // --follow after a sharded load: the shards' segments, followed from their start.
            Some(s) => match super::after_shards::adopt(storage, names, &settings, s, src.as_of)? {
                Some(cp) => (cp, Tag::Absent),
                None => (Checkpoint::new(settings), Tag::Absent),
            },
            None => (Checkpoint::new(settings), Tag::Absent),
        },
    };
    if let Some(s) = stream {
        crate::follow::attach(&mut cp, s, src.as_of)?;
    }
    if dry {
        return Ok((cp, tag));
    }
    // A run on another machine: the stored rejects become the local file appended to.
    let committed = cp.rejects_bytes.filter(|_| !fresh);
    storage.fetch(&names.rejects, local_rejects, committed)?;
    if fresh {
        // Lines already there (a checkpoint removed by hand) stay; the count starts after them.
        let there = std::fs::metadata(local_rejects).map_or(0, |m| m.len());
        cp.rejects_bytes = Some(there);
    }
    // Reject lines a killed run wrote for pages it did not commit: those pages are read again.
    if let Some(n) = cp.rejects_bytes {
        let cut = Rejects::trim_to(local_rejects, n)?;
        if cut > 0 {
            crate::say!(
                "removed {cut} bytes of reject lines from {} that belong to batches the \
                 last run did not commit (they are processed again)",
                storage.show(&names.rejects)
            );
            storage.publish_prefix(&names.rejects, local_rejects, n)?;
        }
        let there = std::fs::metadata(local_rejects).map_or(0, |m| m.len());
        if there < n {
            // Removed by hand: the count continues after what is there.
            crate::say!(
                "{} holds {there} bytes of reject lines where the checkpoint counts {n}: \
                 lines were removed outside ddb2pg; new ones are appended after what is there",
                storage.show(&names.rejects)
            );
            cp.rejects_bytes = Some(there);
        }
    }
    Ok((cp, tag))
}

/// The settings this run's checkpoint must have. The segment total: an export's files; else
/// `--segments`, the checkpoint's, a sibling shard's, or (unsharded) the default from the
/// table's size. Shards must agree on it (see `checkpoint::siblings_agree`).
fn settings_for(
    args: &MigrateArgs,
    src: &Resolved,
    names: &Names,
    existing: Option<&Checkpoint>,
) -> Result<Settings> {
    let info = &src.origin.info;
    let given = match &src.origin.export {
        // An export's segments are its files.
        Some(e) => Some(e.files.len() as u32),
        None => args.scan.segments.or(existing.map(|c| c.settings.segments)),
    };
    let siblings = match src.shard {
        Some(shard) => checkpoint::siblings_agree(src.storage.as_ref(), &names.base, shard, given)?,
        None => None,
    };
    let fallback = default_segments(args.scan.concurrency_for(false), info.size_bytes);
    let segments = match (given.or(siblings), src.shard) {
        (Some(n), _) => n,
        (None, None) => fallback,
        (None, Some(shard)) => {
            return Err(Error::config(format!(
                "shard {shard}: give --segments (the same number to every shard, e.g. \
                 --segments {}): derived from the table's size, shards started at different \
                 times could disagree",
                fallback.max(shard.count).next_multiple_of(shard.count)
            )))
        }
    };
    if let Some(shard) = src.shard.filter(|s| s.count > segments) {
        return Err(Error::config(format!(
            "shard {shard}: {segments} segments for {} shards leaves some shards nothing to do; \
             give --segments of at least {} (a multiple of the shard count)",
            shard.count, shard.count
        )));
    }
    Ok(Settings {
        source: info.arn.clone(),
        target: src.target_id.clone(),
        mapping: src.plan.fingerprint_label(),
        segments,
        shard: src.shard,
    })
}

/// `--restart`: the checkpoint removed, the earlier rejects set aside (kept, with the time in
/// their name) rather than appended to twice.
fn discard_checkpoint(storage: &dyn Storage, names: &Names) -> Result<()> {
    if storage.read(&names.checkpoint)?.is_some() {
        storage.remove(&names.checkpoint)?;
        crate::say!("--restart: discarded {}", storage.show(&names.checkpoint));
    }
    let stem = names.rejects.trim_end_matches(".jsonl");
    let old = format!("{stem}.{}.jsonl", checkpoint::now_secs());
    if storage.rename(&names.rejects, &old)? {
        crate::say!(
            "--restart: the earlier rejects are kept in {}",
            storage.show(&old)
        );
    }
    Ok(())
}

/// The stream this run's checkpoint (read-only peek) already follows, if any.
pub(super) fn stream_state(
    storage: &dyn Storage,
    info: &TableInfo,
    target_id: &str,
) -> Option<StreamState> {
    let names = Names::new(&info.name, &info.arn, target_id, None);
    match Checkpoint::load_from(storage, &names.checkpoint) {
        Ok(Some((cp, _))) => cp.stream,
        _ => None,
    }
}
