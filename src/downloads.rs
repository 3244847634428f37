//! The local copies of an `s3://` export: `<checkpoint-dir>/s3-<bucket_prefix>/`, owner-only
//! (see `crate::private`), removed once a run completes unless `--keep-downloads`.
//!
//! Runs of one export into different targets share the copies (their checkpoints differ, the
//! folder does not): each holds a shared lock on `<checkpoint-dir>/s3-<bucket_prefix>.lock`
//! while it reads them, and the copies are removed only when the lock can be made exclusive,
//! so a run never deletes what another is still reading.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// The copies this run reads, and its shared lock on them.
#[derive(Debug)]
pub struct Downloads {
    pub dir: PathBuf,
    lock: File,
}

/// What became of the copies, for the summary and the report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Where the copies are (or were).
    pub dir: String,
    pub removed: bool,
    /// Why they were kept (None when removed).
    pub kept_because: Option<String>,
}

/// `bucket/prefix` as a file name: anything but ASCII letters, digits and `-` becomes `_`.
fn safe_name(bucket_prefix: &str) -> String {
    bucket_prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Downloads {
    /// The folder for `s3://<bucket_prefix>` under `checkpoint_dir`, created owner-only, with
    /// the shared lock taken (waits while another run removes the copies).
    /// The folder the copies of `s3://<bucket_prefix>` go to (nothing is created).
    pub fn dir_for(checkpoint_dir: &Path, bucket_prefix: &str) -> PathBuf {
        checkpoint_dir.join(format!("s3-{}", safe_name(bucket_prefix)))
    }

    pub fn open(checkpoint_dir: &Path, bucket_prefix: &str) -> Result<Downloads> {
        let safe = safe_name(bucket_prefix);
        crate::private::dir(checkpoint_dir)?;
        let dir = checkpoint_dir.join(format!("s3-{safe}"));
        let lock_path = checkpoint_dir.join(format!("s3-{safe}.lock"));
        let lock = crate::private::open(
            &lock_path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        // Held exclusively only while another run removes the copies: wait for that, briefly.
        let mut waited = 0;
        loop {
            match lock.try_lock_shared() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if waited < 300 => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    waited += 1;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::config(format!(
                        "{} is held by another ddb2pg run removing the export's copies; run \
                         again when it has finished",
                        lock_path.display()
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::file(&lock_path, e)),
            }
        }
        // The folder itself is made by the download, under the run's lock.
        Ok(Downloads { dir, lock })
    }

    /// At the end of a run with `status`: after a complete run (or one with nothing left to
    /// do) remove the copies, unless `keep` or another run still reads them.
    pub fn settle(self, status: &str, keep: bool) -> Outcome {
        let kept = |why: &str| Outcome {
            dir: self.dir.display().to_string(),
            removed: false,
            kept_because: Some(why.to_string()),
        };
        if !matches!(status, "complete" | "nothing_to_do") {
            return kept(if status == "dry_run" {
                "a dry run: the real run reads them"
            } else {
                "the run is not complete: running the same command again reads them"
            });
        }
        if keep {
            return kept("--keep-downloads");
        }
        // Exclusive on the same open file: converts our shared lock, fails while others hold one.
        if self.lock.try_lock().is_err() {
            return kept("another ddb2pg run is reading them");
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Outcome {
                dir: self.dir.display().to_string(),
                removed: true,
                kept_because: None,
            },
            Err(e) => kept(&format!("cannot remove them: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_another_run_reads_are_kept() {
        let cp = std::env::temp_dir().join(format!("ddb2pg-downloads-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cp);
        let a = Downloads::open(&cp, "b/exports/app").expect("a");
        let b = Downloads::open(&cp, "b/exports/app").expect("b");
        assert_eq!(a.dir, cp.join("s3-b_exports_app"));
        // The download makes the folder (under the run's lock).
        crate::private::dir(&a.dir).expect("folder");
        std::fs::write(a.dir.join("f.json"), "{}").expect("write");
        let first = a.settle("complete", false);
        assert!(!first.removed, "b still reads them: {first:?}");
        assert!(b.dir.join("f.json").exists());
        let kept = Downloads::open(&cp, "b/exports/app")
            .expect("c")
            .settle("interrupted", false);
        assert!(kept
            .kept_because
            .is_some_and(|w| w.contains("not complete")));
        let last = b.settle("nothing_to_do", false);
        assert!(last.removed, "{last:?}");
        assert!(!cp.join("s3-b_exports_app").exists());
    }
}
