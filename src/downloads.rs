//! The local copies of an `s3://` export: `<checkpoint-dir>/s3-<bucket_prefix>/`, owner-only
//! (see `crate::private`), removed once a run completes unless `--keep-downloads`.
//!
//! Runs of one export on one host share the copies: shards with one checkpoint directory (or
//! any s3:// one, whose working folder is in the temp directory), and loads into different
//! targets (their checkpoints differ, the folder does not). Each holds a shared lock on
//! `<checkpoint-dir>/s3-<bucket_prefix>.lock` while it reads them, and the copies are removed
//! only when the lock can be made exclusive, so a run never deletes what another is still
//! reading. They take turns downloading (`source::s3`'s `fetch`), so none replaces a copy
//! another has checked.
//!
//! A copy is read as the very file whose MD5 (or size) was checked. The check (a fresh
//! download, or a copy already there) records the checked file's identity as its handle
//! reports it ([`seal`]: device, inode, size, modification and change times); the reader opens
//! the copy by name and compares its handle's identity before reading a byte
//! ([`open_checked`]), so a copy swapped (another inode) or modified (other times or size)
//! after its check is refused, naming it, with nothing read from it. Rows are read from that
//! same handle to the end, so a later swap of the name does not matter either. The other ways
//! were worse: re-hashing every copy when it is opened reads tens of GB a second time, and
//! keeping every checked file open from its check to its read needs one descriptor per data
//! file (thousands, past the usual limit of 1,024). Modifying a copy in place needs write
//! access to a 0600 file of ours, swapping it needs write access to its folder (0700, ours):
//! the comparison is what catches anything that still gets there. The seals live as long as
//! the process (a few dozen bytes per data file).

use std::collections::BTreeMap;
use std::fs::{File, Metadata, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// What a checked copy is: which file (device and inode), its size, and when it was last
/// modified and changed, as its open handle reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seal {
    pub fn of(m: &Metadata) -> Seal {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Seal {
                dev: m.dev(),
                ino: m.ino(),
                size: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos() as i64));
            Seal {
                dev: 0,
                ino: 0,
                size: m.len(),
                mtime: t,
                ctime: t,
            }
        }
    }

    /// Whether `other` is the same file (device and inode), whatever its times.
    pub fn same_file(&self, other: &Seal) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// Whether `other` is the same file with the same size and modification time: what a
    /// rename keeps (it changes only the change time).
    pub fn same_contents(&self, other: &Seal) -> bool {
        self.same_file(other) && (self.size, self.mtime) == (other.size, other.mtime)
    }
}

/// The copies this process checked, by path.
static SEALED: Mutex<BTreeMap<PathBuf, Seal>> = Mutex::new(BTreeMap::new());

fn sealed() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Seal>> {
    // A panic elsewhere while holding it leaves the map whole (inserts are single steps).
    SEALED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Record that the copy at `path` was checked, as `seal` (taken from the checked handle).
pub fn seal(path: &Path, seal: Seal) {
    sealed().insert(path.to_path_buf(), seal);
}

/// Open `path` read-only (never through a symbolic link). When it is a copy this process
/// checked ([`seal`]), its handle must show the very file checked, unchanged: otherwise it is
/// refused (exit 1) naming it, before anything is read from it. Other files (a local export)
/// are opened as they are.
pub fn open_checked(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    let want = sealed().get(path).copied();
    #[cfg(unix)]
    if want.is_some() {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options
        .open(path)
        .map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    let Some(want) = want else {
        return Ok(file);
    };
    let now = Seal::of(&file.metadata().map_err(|e| Error::file(path, e))?);
    if now != want {
        let what = if want.same_file(&now) {
            "was modified"
        } else {
            "was replaced by another file"
        };
        return Err(Error::file(
            path,
            format!(
                "this downloaded copy {what} after its MD5 was checked (it was {} bytes, is \
                 {}): refused, nothing was read from it. The download folder is yours and \
                 0700, so a process running as you (or as root) wrote there: ddb2pg runs on \
                 this machine that download the same export (shards, other targets) take \
                 turns and never replace a copy another has checked, so look for another \
                 program writing into {}, or an older ddb2pg reading the same export. Then run \
                 the same command again: the copy is checked again and fetched again",
                want.size,
                now.size,
                path.parent().unwrap_or(path).display()
            ),
        ));
    }
    Ok(file)
}

impl Downloads {
    /// The folder the copies of `s3://<bucket_prefix>` go to (nothing is created).
    pub fn dir_for(checkpoint_dir: &Path, bucket_prefix: &str) -> PathBuf {
        checkpoint_dir.join(format!("s3-{}", safe_name(bucket_prefix)))
    }

    /// The folder for `s3://<bucket_prefix>` under `checkpoint_dir`, created owner-only, with
    /// the shared lock taken (waits while another run removes the copies).
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
        // The folder itself is made by the download, under the run's lock (refused earlier,
        // by `source::s3::prepare`, when someone else made it).
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
    fn a_sealed_copy_swapped_or_changed_is_refused() {
        use std::io::Read as _;
        let d = std::env::temp_dir().join(format!("ddb2pg-seals-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        let (a, b) = (d.join("a.json"), d.join("b.json"));
        for p in [&a, &b] {
            std::fs::write(p, "checked\n").expect("write");
            let m = std::fs::metadata(p).expect("stat");
            seal(p, Seal::of(&m));
        }
        let mut text = String::new();
        open_checked(&a)
            .expect("as checked")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "checked\n");
        // Swapped: another file of the same size under the name.
        let other = d.join("other");
        std::fs::write(&other, "swapped\n").expect("write");
        std::fs::rename(&other, &a).expect("swap");
        let err = open_checked(&a).expect_err("swapped").to_string();
        assert!(
            err.contains("a.json") && err.contains("replaced by another file"),
            "{err}"
        );
        // Changed in place (same size, a moment later).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&b, "changed\n").expect("write");
        let err = open_checked(&b).expect_err("changed").to_string();
        assert!(err.contains("was modified"), "{err}");
        // A file never checked (a local export) is opened as it is.
        open_checked(&other.with_extension("x"))
            .map(|_| ())
            .expect_err("missing: cannot open");
        std::fs::write(d.join("local.json"), "{}").expect("write");
        open_checked(&d.join("local.json")).expect("not a copy");
    }

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
