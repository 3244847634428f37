//! The rejects file: one JSON line per item that could not be written, with the reason and the
//! whole item in DynamoDB JSON so it can be fixed and replayed. Appended across resumes and
//! fsynced before the checkpoint moves past the items it holds; a resume cuts only lines past
//! the checkpoint's `rejects_bytes` (pages a killed run did not commit), and `--restart` sets
//! the old file aside. Created 0600, never through a symbolic link (see `crate::private`).
//! Each reject recorded is also a warning in the log (`crate::reject_log`), without the item.
//!
//! The file is bounded by `--max-rejects` ([`within_limit`]): the rejected items recorded over
//! all runs of a checkpoint (the checkpoint counts them per segment and for the stream) may not
//! pass it. The batch that would is not recorded and the run stops (exit 1): the checkpoint
//! does not move past that batch, so a resume with a higher limit reads it again and records
//! its rejects then, each once. The error names no count of the moment it was raised: batches
//! committing beside the one that passed the limit may still be recorded (each within it), so
//! the true count is the saved checkpoint's, which the summary prints. A dry run (which starts
//! from nothing, records into its own file and saves no checkpoint) gets its own message.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use crate::error::{Error, Result};
use crate::reject_log::RejectLog;
use crate::transform::Reject;
use crate::value::{self, Item};

/// `--max-rejects`' default: far more than a mapping being fixed produces, and at the size of a
/// sample line (a few hundred bytes) a few MiB of file; a hostile export of items that are all
/// rejected stops there instead of filling the disk. A fraction of the items read would not
/// bound that export (every line of it is rejected).
pub const DEFAULT_MAX: u64 = 10_000;

/// Where a run that passed `--max-rejects` keeps its rejects, for [`within_limit`]'s message.
pub enum Kept<'a> {
    /// A real run: the rejects file (a path or an s3:// folder), as shown.
    Run(&'a str),
    /// A dry run: its own rejects file, None while it holds no line (it is not created then).
    DryRun(Option<&'a Path>),
}

/// Whether `adding` more rejected items after the `recorded` ones stay within `max` (0: no
/// limit); else the error that stops the run (exit 1), naming the limit, where the rejects
/// recorded so far are (`kept`) and what to do.
pub fn within_limit(recorded: u64, adding: u64, max: u64, kept: Kept) -> Result<()> {
    if max == 0 || recorded.saturating_add(adding) <= max {
        return Ok(());
    }
    Err(match kept {
        Kept::Run(shown) => Error::file(
            shown,
            format!(
                "stopped: more than --max-rejects {max} items rejected over the runs of this \
                 checkpoint; the batch that passed the limit is not recorded. The file holds \
                 exactly the rejected items the saved checkpoint counts (the summary above \
                 counts them), each with its reason. Look at the reasons, fix the mapping or the data and \
                 run the same command again, or resume with a higher --max-rejects (0 for no \
                 limit)"
            ),
        ),
        Kept::DryRun(file) => {
            let found = match file {
                Some(p) => format!(
                    "the items rejected before it are in {}, each with its reason",
                    p.display()
                ),
                None => "no rejected item was written".to_string(),
            };
            Error::file(
                "dry run",
                format!(
                    "stopped: more than --max-rejects {max} items rejected (a real run from the \
                     start would stop here too); the batch that passed the limit is not \
                     recorded, {found}. Nothing was saved: fix the mapping or the data and try \
                     the dry run again, or give a higher --max-rejects (0 for no limit)"
                ),
            )
        }
    })
}

pub struct Rejects {
    path: PathBuf,
    file: Mutex<Option<File>>,
    log: RejectLog,
}

impl Rejects {
    pub fn new(path: PathBuf) -> Rejects {
        let shown = path.display().to_string();
        Rejects {
            path,
            file: Mutex::new(None),
            log: RejectLog::new(shown),
        }
    }

    /// The same, named `shown` in the log (an s3:// checkpoint's rejects are appended to a
    /// local copy).
    pub fn shown_as(self, shown: String) -> Rejects {
        Rejects {
            log: RejectLog::new(shown),
            ..self
        }
    }

    /// Where recorded rejects are logged (see `crate::reject_log`).
    pub fn log(&self) -> &RejectLog {
        &self.log
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One JSON line for a rejected item.
    pub fn line(
        reject: &Reject,
        key_attrs: &[String],
        item: &Item,
        segment: Option<u32>,
    ) -> String {
        let key: serde_json::Map<String, serde_json::Value> = key_attrs
            .iter()
            .filter_map(|k| {
                item.get(k)
                    .map(|v| (k.clone(), value::value_to_ddb_json(v)))
            })
            .collect();
        json!({
            "table": reject.table,
            "column": reject.column,
            "reason": reject.reason,
            "key": key,
            "segment": segment,
            "item": value::item_to_ddb_json(item),
        })
        .to_string()
    }

    /// One JSON line for an export line that is not an item: file, line number, reason, text.
    pub fn bad_line(bad: &crate::source::scan::BadLine) -> String {
        json!({
            "file": bad.file,
            "line": bad.line,
            "reason": bad.reason,
            "text": bad.text,
        })
        .to_string()
    }

    /// Append `lines` and fsync them (once this returns they survive a crash); returns the
    /// file's length after them.
    pub fn append(&self, lines: &[String]) -> Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            // Whole items (personal data): owner-only, never through a symbolic link.
            let f = crate::private::open(&self.path, OpenOptions::new().create(true).append(true))?;
            *guard = Some(f);
        }
        let Some(f) = guard.as_mut() else {
            return Err(Error::file(&self.path, "rejects file not open"));
        };
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())
            .and_then(|()| f.sync_data())
            .and_then(|()| f.metadata())
            .map(|m| m.len())
            .map_err(|e| Error::file(&self.path, format!("cannot record rejected items: {e}")))
    }

    /// Cut the file back to `committed` bytes: lines past it were written for pages that a
    /// killed run did not commit, and will be written again when those pages are. Returns how
    /// many bytes were cut.
    pub fn trim_to(path: &Path, committed: u64) -> Result<u64> {
        let len = match std::fs::symlink_metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::file(path, e)),
        };
        if len <= committed {
            return Ok(0);
        }
        let f = crate::private::open(path, OpenOptions::new().write(true))?;
        f.set_len(committed)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::file(path, e))?;
        Ok(len - committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_every_run_and_zero_is_none() {
        let run = Kept::Run("/x/t.rejects.jsonl");
        assert!(within_limit(0, 10, 10, Kept::Run("f")).is_ok());
        assert!(within_limit(9_990, 10, 10_000, Kept::Run("f")).is_ok());
        assert!(
            within_limit(u64::MAX, 5, 0, Kept::Run("f")).is_ok(),
            "0: no limit"
        );
        let e = within_limit(8, 3, 10, run).expect_err("past the limit");
        assert_eq!(e.exit_code(), 1);
        let text = e.to_string();
        for part in [
            "/x/t.rejects.jsonl:",
            "more than --max-rejects 10 items rejected over the runs of this checkpoint",
            "the saved checkpoint counts",
            "higher --max-rejects (0 for no limit)",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        // Counts of the moment (8 recorded, 11 with the batch) may be stale by the end.
        assert!(!text.contains('8') && !text.contains("11"), "{text}");
    }

    #[test]
    fn a_dry_run_past_the_limit_names_only_what_it_wrote() {
        let none = within_limit(0, 11, 10, Kept::DryRun(None)).expect_err("past");
        let file = Path::new("/x/t.rejects.dry-run.jsonl");
        let some = within_limit(4, 7, 10, Kept::DryRun(Some(file))).expect_err("past");
        for e in [&none, &some] {
            assert_eq!(e.exit_code(), 1);
            let text = e.to_string();
            assert!(
                text.starts_with("dry run: stopped: more than --max-rejects 10"),
                "{text}"
            );
            for wrong in ["resume", "runs of this checkpoint", "saved checkpoint"] {
                assert!(!text.contains(wrong), "{wrong:?} in {text}");
            }
        }
        assert!(none.to_string().contains("no rejected item was written"));
        assert!(some
            .to_string()
            .contains("are in /x/t.rejects.dry-run.jsonl"));
    }
}
