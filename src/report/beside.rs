//! The report kept beside the checkpoint, where it outlives the machine that ran.
//!
//! With `--checkpoint-dir s3://bucket/prefix`, a run's JSON report (the same document
//! `--report FILE` writes) is also stored as `prefix/<checkpoint stem>.report.json`: one object
//! per shard, named like the shard's checkpoint (`app-<hash>.shard-3-of-8.report.json`), so the
//! shards of an Indexed Job or a Batch array job never overwrite each other's, and a pod's report
//! is not lost with the pod's temp volume. `ddb2pg status` does not take it for a checkpoint.
//!
//! It goes through the run's [`Storage`], under the run's lock: on S3 the write is refused once
//! this process's lease has run out or was taken over (the process that holds the shard now
//! writes its own report). The object is replaced whole, without a version condition: only the
//! lock holder writes it, and a report is not state a later run reads.
//!
//! Which runs keep one: every run that may have changed something (complete, failed,
//! interrupted, caught up). Not a dry run (it writes nothing that outlives it), and not a run
//! that found nothing to do, unless no report is kept yet: a Job's retry after success must not
//! replace the report of the run that did the work with an empty one.
//!
//! A local `--checkpoint-dir` keeps no copy: the machine that ran has the checkpoint, and
//! `--report FILE` writes the report where the user wants it.

use crate::checkpoint::{Names, Storage, Tag};
use crate::error::Result;

use super::Report;

/// Whether `storage` is remote (an `s3://` prefix), where a report is kept.
fn remote(storage: &dyn Storage, names: &Names) -> bool {
    storage.show(&names.checkpoint).starts_with("s3://")
}

/// Keep `report` beside the checkpoint `names` in `storage` when that is an S3 prefix; returns
/// where it was written (None: not kept, see the module doc).
pub fn keep(
    report: &Report,
    storage: &dyn Storage,
    names: &Names,
    dry_run: bool,
) -> Result<Option<String>> {
    if dry_run || !remote(storage, names) {
        return Ok(None);
    }
    let name = names.report();
    if report.status == "nothing_to_do" && storage.read(&name)?.is_some() {
        return Ok(None);
    }
    let at = storage.show(&name);
    let json = report.to_json(&at)?;
    // No version condition (see the module doc): `Tag::Local` makes a plain replace, and the
    // S3 storage still refuses it when this process no longer holds the shard's lock.
    storage.write(&name, &json, &Tag::Local)?;
    Ok(Some(at))
}

/// [`keep`] at the end of a run, with what it prints: where the report went, or why not. When
/// the run failed already, a report that could not be kept is a warning (the run's own error
/// is the one to report and exit with); otherwise it is the run's error (exit 1), so that a
/// Job whose report is lost says so.
pub fn keep_after_run(
    report: &Report,
    storage: &dyn Storage,
    names: &Names,
    dry_run: bool,
    run_failed: bool,
) -> Result<()> {
    match keep(report, storage, names, dry_run) {
        Ok(Some(at)) => {
            crate::say::event(
                crate::say::Level::Info,
                "report kept beside the checkpoint",
                crate::say::field("at", at.as_str()),
                || format!("  report {at}"),
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) if run_failed => {
            crate::say!(warn: "the report could not be kept beside the checkpoint: {e}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
