//! Step 3 of a migration: the run's files. The checkpoint folder (private), the run's lock,
//! an `s3://` export downloaded under it, and the checkpoint this run continues: loaded, or
//! discarded by `--restart` (the earlier rejects set aside), checked against this run's
//! settings, the stream attached, and the reject lines of batches the last run did not commit
//! cut (those batches are read again).

use std::path::PathBuf;
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, Lock, RunFiles, Settings, Store};
use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::rejects::Rejects;
use crate::source::stream::Stream;
use crate::source::TableInfo;

use super::{default_segments, Resolved};

/// Step 3's result: the run's files, held lock and checkpoint store, and what is left to do.
pub(super) struct Run {
    pub(super) files: RunFiles,
    /// Held to the end of the run (none for a dry run of a local source).
    pub(super) _lock: Option<Lock>,
    pub(super) store: Arc<Store>,
    pub(super) segments: u32,
    pub(super) pending: Vec<u32>,
    pub(super) segments_skipped: u64,
    pub(super) segments_resumed: u64,
    pub(super) items_before: u64,
    pub(super) already_complete: bool,
    /// This run's rejects file (a dry run's own, emptied each time).
    pub(super) rejects_path: PathBuf,
}

pub(super) async fn open_run(
    args: &MigrateArgs,
    src: &Resolved,
    stream: Option<&Stream>,
) -> Result<Run> {
    let info = &src.origin.info;
    let dir = &args.checkpoint_dir;
    crate::private::dir(dir)?;
    let files = RunFiles::new(dir, &info.name, &info.arn, &src.target_id);
    files.secure()?;
    let lock = lock_and_download(args, src, &files).await?;
    let cp = checkpoint_for(args, src, &files, stream)?;
    let segments = cp.settings.segments;
    let segments_skipped = cp.segments_done() as u64;
    let segments_resumed = cp
        .segments
        .iter()
        .filter(|s| !s.done && s.cursor.is_some())
        .count() as u64;
    let items_before: u64 = cp.segments.iter().map(|s| s.items).sum();
    let pending: Vec<u32> = (0..segments)
        .filter(|&i| !cp.segments[i as usize].done)
        .collect();
    let already_complete = cp.complete;
    let dry = args.dry_run;
    let store = Arc::new(if dry {
        Store::in_memory(files.checkpoint.clone(), cp)
    } else {
        Store::new(files.checkpoint.clone(), cp)
    });
    let rejects_path = if dry {
        let p = files.rejects.with_extension("dry-run.jsonl");
        let _ = std::fs::remove_file(&p);
        p
    } else {
        files.rejects.clone()
    };
    Ok(Run {
        files,
        _lock: lock,
        store,
        segments,
        pending,
        segments_skipped,
        segments_resumed,
        items_before,
        already_complete,
        rejects_path,
    })
}

/// The run's lock, and an `s3://` export downloaded under it. A dry run does not touch the
/// checkpoint, so it needs no lock, except to download: files are written only under the lock.
async fn lock_and_download(
    args: &MigrateArgs,
    src: &Resolved,
    files: &RunFiles,
) -> Result<Option<Lock>> {
    let dry = args.dry_run;
    let lock = match (dry, &src.origin.download) {
        (true, None) => None,
        _ => Some(Lock::acquire(&files.lock)?),
    };
    if let Some(download) = &src.origin.download {
        download.run().await?;
    }
    if dry {
        return Ok(None);
    }
    Checkpoint::remove_leftover_tmp(&files.checkpoint);
    Ok(lock)
}

/// The checkpoint this run continues (or a new one), checked against this run's settings, with
/// the stream attached and the reject lines of batches the last run did not commit cut.
fn checkpoint_for(
    args: &MigrateArgs,
    src: &Resolved,
    files: &RunFiles,
    stream: Option<&Stream>,
) -> Result<Checkpoint> {
    let dry = args.dry_run;
    let existing = if dry {
        None
    } else if args.restart {
        discard_checkpoint(files)?;
        None
    } else {
        Checkpoint::load(&files.checkpoint)?
    };
    let info = &src.origin.info;
    let segments = match &src.origin.export {
        // An export's segments are its files.
        Some(e) => e.files.len() as u32,
        None => args
            .scan
            .segments
            .or(existing.as_ref().map(|c| c.settings.segments))
            .unwrap_or_else(|| default_segments(args.scan.concurrency_for(false), info.size_bytes)),
    };
    let settings = Settings {
        source: info.arn.clone(),
        target: src.target_id.clone(),
        mapping: src.plan.fingerprint_label(),
        segments,
    };
    let mut cp = match existing {
        Some(cp) => {
            let diffs = cp.settings.differences(&settings);
            if !diffs.is_empty() {
                return Err(Error::config(format!(
                    "checkpoint {} was written under different settings:\n  - {}\n\
                     resume with the original settings, or add --restart to discard the \
                     checkpoint and start over (rows already written are upserted again, not duplicated)",
                    files.checkpoint.display(),
                    diffs.join("\n  - ")
                )));
            }
            cp
        }
        None => Checkpoint::new(settings),
    };
    if let Some(s) = stream {
        crate::follow::attach(&mut cp, s)?;
    }
    // Reject lines a killed run wrote for pages it did not commit: those pages are read again.
    if let (Some(n), false) = (cp.rejects_bytes, dry) {
        let cut = Rejects::trim_to(&files.rejects, n)?;
        if cut > 0 {
            eprintln!(
                "ddb2pg: removed {cut} bytes of reject lines from {} that belong to batches the \
                 last run did not commit (they are processed again)",
                files.rejects.display()
            );
        }
    }
    Ok(cp)
}

/// `--restart`: the checkpoint removed, the earlier rejects set aside.
fn discard_checkpoint(files: &RunFiles) -> Result<()> {
    match std::fs::remove_file(&files.checkpoint) {
        Ok(()) => eprintln!(
            "ddb2pg: --restart: discarded {}",
            files.checkpoint.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file(&files.checkpoint, e)),
    }
    set_rejects_aside(&files.rejects)
}

/// `--restart`: the run rejects its items again, so the old rejects file is renamed (kept,
/// with the time in its name) rather than appended to twice.
fn set_rejects_aside(path: &std::path::Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let old = path.with_extension(format!("{}.jsonl", crate::checkpoint::now_secs()));
    std::fs::rename(path, &old).map_err(|e| Error::file(path, e))?;
    eprintln!(
        "ddb2pg: --restart: the earlier rejects are kept in {}",
        old.display()
    );
    Ok(())
}

/// Whether this run's checkpoint (read-only peek) already follows a stream.
pub(super) fn follows_already(args: &MigrateArgs, info: &TableInfo, target_id: &str) -> bool {
    let files = RunFiles::new(&args.checkpoint_dir, &info.name, &info.arn, target_id);
    matches!(Checkpoint::load(&files.checkpoint), Ok(Some(cp)) if cp.stream.is_some())
}
