//! The rejects file: one JSON line per item that could not be written, with the reason and the
//! whole item in DynamoDB JSON so it can be fixed and replayed. Appended across resumes and
//! fsynced before the checkpoint moves past the items it holds; a resume cuts only lines past
//! the checkpoint's `rejects_bytes` (pages a killed run did not commit), and `--restart` sets
//! the old file aside. Created 0600, never through a symbolic link (see `crate::private`).
//!
//! The file is bounded by `--max-rejects` ([`within_limit`]): the rejected items recorded over
//! all runs of a checkpoint (the checkpoint counts them per segment and for the stream) may not
//! pass it. The batch that would is not recorded and the run stops (exit 1): the checkpoint
//! does not move past that batch, so a resume with a higher limit reads it again and records
//! its rejects then, each once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use crate::error::{Error, Result};
use crate::transform::Reject;
use crate::value::{self, Item};

/// `--max-rejects`' default: far more than a mapping being fixed produces, and at the size of a
/// sample line (a few hundred bytes) a few MiB of file; a hostile export of items that are all
/// rejected stops there instead of filling the disk. A fraction of the items read would not
/// bound that export (every line of it is rejected).
pub const DEFAULT_MAX: u64 = 10_000;

/// Whether `adding` more rejected items after the `recorded` ones stay within `max` (0: no
/// limit); else the error that stops the run (exit 1), naming the count, the limit, the
/// rejects file `shown` and what to do.
pub fn within_limit(recorded: u64, adding: u64, max: u64, shown: &str) -> Result<()> {
    let total = recorded.saturating_add(adding);
    if max == 0 || total <= max {
        return Ok(());
    }
    Err(Error::file(
        shown,
        format!(
            "stopped: {total} items rejected over the runs of this checkpoint, more than \
             --max-rejects {max} allows; the batch that passed it is not recorded ({recorded} \
             rejected items are in the file, each with its reason). Look at the reasons, \
             fix the mapping or the data and run the same command again, or resume with a \
             higher --max-rejects (0 for no limit)"
        ),
    ))
}

pub struct Rejects {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Rejects {
    pub fn new(path: PathBuf) -> Rejects {
        Rejects {
            path,
            file: Mutex::new(None),
        }
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
        assert!(within_limit(0, 10, 10, "f").is_ok());
        assert!(within_limit(9_990, 10, 10_000, "f").is_ok());
        assert!(within_limit(u64::MAX, 5, 0, "f").is_ok(), "0: no limit");
        let e = within_limit(8, 3, 10, "/x/t.rejects.jsonl").expect_err("past the limit");
        assert_eq!(e.exit_code(), 1);
        let text = e.to_string();
        for part in [
            "/x/t.rejects.jsonl:",
            "11 items rejected",
            "--max-rejects 10 ",
            "(8 rejected items are in the file",
            "higher --max-rejects (0 for no limit)",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }
}
