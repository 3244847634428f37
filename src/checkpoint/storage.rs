//! The seam between a run and where its checkpoint, lock and rejects are kept: a local
//! directory or an S3 prefix. A run names its documents ([`Names`]); the storage reads and
//! writes them whole, replaces one only in the version it was read in (on S3: `If-Match`), and
//! holds the run's lock.
//!
//! The rejects file is appended to locally (fsynced line by line, see `crate::rejects`); a
//! storage that is not the local disk keeps a copy (`keeps_copies`), brought up to the lines
//! the checkpoint counts by `publish_prefix` before every checkpoint write, and fetched back
//! by `fetch` when a run starts (on S3 only the new lines are uploaded each time: see
//! `super::s3::parts`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cli::AwsArgs;
use crate::error::Result;
use crate::shard::Shard;

/// The stored version a document was read (or written) in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// Not there: a write creates it, and fails if another process created it meanwhile.
    Absent,
    /// A local file (the run's `flock` keeps other writers out).
    Local,
    /// An S3 object's ETag: a write replaces this version only.
    ETag(String),
}

/// Whether a lock is held by a live run, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockState {
    pub running: bool,
    /// "pid N on HOST" of the last holder, when known.
    pub holder: Option<String>,
    /// Seconds until the holder's lease ends (S3 locks).
    pub lease_left_s: Option<u64>,
    /// Why the lock is not one a live ddb2pg holds (a crafted S3 lease), if it is not.
    pub problem: Option<String>,
}

/// A held lock: released when dropped (a dead process's lock is released by the OS, or on S3
/// taken over once its lease has expired).
pub trait Held: Send + Sync + std::fmt::Debug {}

/// Where a run keeps its checkpoint, lock and rejects.
pub trait Storage: Send + Sync {
    /// `name`'s location as shown to the user (a path or an s3:// URL).
    fn show(&self, name: &str) -> String;
    /// The whole document, and its version; `None` when absent.
    fn read(&self, name: &str) -> Result<Option<(Vec<u8>, Tag)>>;
    /// A small document others may have put there (a finish request): an error naming it when
    /// it is longer than `limit` bytes, or, locally, not a regular file of this user (a link,
    /// a FIFO, a device, another user's file in a folder others may add names to), which is
    /// never read; `None` when absent.
    fn read_small(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>>;
    /// Replace `name` atomically, only if it is still in version `expect` (`Tag::Absent`:
    /// only if absent). Returns the new version.
    fn write(&self, name: &str, bytes: &[u8], expect: &Tag) -> Result<Tag>;
    /// The number of non-empty lines of `name`, read in pieces (a large rejects file is never
    /// held in memory); `None` when absent.
    fn lines(&self, name: &str) -> Result<Option<u64>>;
    /// Remove `name` (absent is fine).
    fn remove(&self, name: &str) -> Result<()>;
    /// Move `from` to `to` (absent `from`: nothing to do; returns whether it moved).
    fn rename(&self, from: &str, to: &str) -> Result<bool>;
    /// The names of the documents in this storage.
    fn list(&self) -> Result<Vec<String>>;
    /// Whether `name` is stored (a copied file such as the rejects included, which S3 keeps
    /// as a folder of parts that `list` does not show).
    fn holds(&self, name: &str) -> Result<bool> {
        Ok(self.list()?.iter().any(|n| n == name))
    }
    /// Take the lock `name` for this process, or fail (exit 2) naming the live holder. `lease`:
    /// how long an S3 lock stays valid without renewal (it is renewed every third of it).
    fn lock(&self, name: &str, lease: Duration) -> Result<Box<dyn Held>>;
    /// Whether this process still holds the lock `name` it took, checked before each page is
    /// written to the target: an error once an S3 lease has run out or was taken over (a
    /// local `flock` is held until the process dies).
    fn still_held(&self, name: &str) -> Result<()> {
        let _ = name;
        Ok(())
    }
    /// The lock's state, read without taking it.
    fn lock_state(&self, name: &str) -> LockState;
    /// A local directory for this storage's working files (the rejects being appended, s3://
    /// export downloads): the directory itself, or a private folder under the temp directory.
    fn local_dir(&self) -> Result<PathBuf>;
    /// Copy the local file `local` to `name` (S3), or nothing when `local` is `name` itself.
    /// Replaces only the version this process fetched or published last (refused, exit 1,
    /// when another process changed it); call `fetch` first.
    fn publish(&self, name: &str, local: &Path) -> Result<()>;
    /// Make the stored `name` hold the first `len` bytes of the local file `local` (a file
    /// only ever appended to, or cut back), from what this process fetched or published last:
    /// on S3 only the bytes past it are uploaded. Nothing when `local` is `name` itself.
    fn publish_prefix(&self, name: &str, local: &Path, len: u64) -> Result<()> {
        let _ = len;
        self.publish(name, local)
    }
    /// Whether the files `publish` and `fetch` copy are kept by the storage itself, so the
    /// local copy can be removed once a run is over (S3); false when they are the same file.
    fn keeps_copies(&self) -> bool {
        false
    }
    /// Replace `local` with the stored `name` (S3), or nothing when `local` is `name` itself.
    /// `committed`: the length of `name` the checkpoint counts (None: no checkpoint counts it);
    /// S3 stops (exit 1, deleting nothing) when part of those bytes is missing.
    fn fetch(&self, name: &str, local: &Path, committed: Option<u64>) -> Result<()>;
    /// Before a run writes: create a local directory (owner-only), refuse to start when a
    /// document of the run is unsafe to write (a symbolic link), tighten permissions.
    fn secure(&self, names: &Names) -> Result<()>;
}

/// Counts the non-empty lines of a document fed in pieces.
#[derive(Debug, Default)]
pub(super) struct LineCount {
    lines: u64,
    /// The last byte fed was inside a line (not a newline).
    open: bool,
}

impl LineCount {
    pub(super) fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if b == b'\n' {
                self.open = false;
            } else if !self.open {
                self.open = true;
                self.lines += 1;
            }
        }
    }

    pub(super) fn lines(&self) -> u64 {
        self.lines
    }
}

/// The documents of one run (source + target, and shard) inside the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `<table>-<hash>`: the same for every shard of a run.
    pub base: String,
    pub checkpoint: String,
    pub lock: String,
    pub rejects: String,
}

impl Names {
    /// `<table>-<hash of source and target>[.shard-I-of-N].{json,lock,rejects.jsonl}`.
    pub fn new(table: &str, source_id: &str, target_id: &str, shard: Option<Shard>) -> Names {
        let h = super::hex(&Sha256::digest(
            format!("{source_id}\n{target_id}").as_bytes(),
        ));
        let base = format!("{}-{}", Names::safe(table), &h[..12]);
        let stem = format!("{base}{}", shard.map(|s| s.suffix()).unwrap_or_default());
        Names {
            checkpoint: format!("{stem}.json"),
            lock: format!("{stem}.lock"),
            rejects: format!("{stem}.rejects.jsonl"),
            base,
        }
    }

    /// The table's name as the names begin with it (other characters than letters, digits,
    /// `-` and `_` replaced by `_`).
    pub fn safe(table: &str) -> String {
        table
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Whether these are the names of a run of `table` (any source and target): the base is
    /// `<safe table>-<12 hex digits>`.
    pub fn of_table(&self, table: &str) -> bool {
        self.base
            .strip_prefix(&Names::safe(table))
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// The request to a running follower to finish once caught up (`crate::finish`):
    /// `<stem>.finish`, beside the checkpoint.
    pub fn finish(&self) -> String {
        format!("{}.finish", self.stem())
    }

    /// The checkpoint's name without `.json`.
    fn stem(&self) -> &str {
        self.checkpoint
            .strip_suffix(".json")
            .unwrap_or(&self.checkpoint)
    }

    /// The run's report kept beside its checkpoint (`<stem>.report.json`, see
    /// `crate::report::beside`): one per shard, like the checkpoint.
    pub fn report(&self) -> String {
        format!("{}.report.json", self.stem())
    }

    /// The names of the checkpoint `name` (`<stem>.json`) of a listing.
    pub fn of_checkpoint(name: &str) -> Option<Names> {
        let stem = name.strip_suffix(".json")?;
        if stem.ends_with(".tmp") || stem.contains(".rejects") || stem.ends_with(".report") {
            return None;
        }
        let base = Shard::from_suffix(stem).map_or(stem.to_string(), |(b, _)| b);
        Some(Names {
            base,
            checkpoint: name.to_string(),
            lock: format!("{stem}.lock"),
            rejects: format!("{stem}.rejects.jsonl"),
        })
    }
}

/// `--checkpoint-dir`: a local directory, or `s3://bucket/prefix` (with the AWS settings and
/// `--s3-endpoint-url` an s3:// export uses).
pub fn open(dir: &Path, aws: &AwsArgs, s3_endpoint: &Option<String>) -> Result<Arc<dyn Storage>> {
    let text = dir.to_string_lossy();
    if text.starts_with("s3://") {
        Ok(Arc::new(super::s3::S3Dir::open(&text, aws, s3_endpoint)?))
    } else {
        Ok(Arc::new(super::local::LocalDir::new(dir)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_share_the_base() {
        let a = Names::new("app", "arn", "pg", None);
        let b = Names::new("app", "arn", "pg", Some(Shard { index: 1, count: 4 }));
        assert_eq!(a.base, b.base);
        assert_eq!(b.checkpoint, format!("{}.shard-1-of-4.json", a.base));
        assert_eq!(Names::of_checkpoint(&b.checkpoint), Some(b.clone()));
        assert_eq!(Names::of_checkpoint(&a.checkpoint), Some(a.clone()));
        assert_eq!(Names::of_checkpoint("x.json.tmp"), None);
        // A shard's report is beside its checkpoint, and is not a checkpoint of a listing.
        assert_eq!(b.report(), format!("{}.shard-1-of-4.report.json", a.base));
        assert_eq!(Names::of_checkpoint(&b.report()), None);
        assert_eq!(Names::of_checkpoint(&a.report()), None);
    }

    #[test]
    fn lines_are_counted_across_pieces() {
        let mut c = LineCount::default();
        for piece in [&b"ab"[..], b"c\n\nd", b"", b"\ne", b"f"] {
            c.feed(piece);
        }
        // "abc", "d", "ef" (the last without its newline); the empty line is not one.
        assert_eq!(c.lines(), 3);
    }
}
