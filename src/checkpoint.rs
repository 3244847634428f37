//! The checkpoint: a versioned JSON file per source+target that records, per segment, the
//! cursor after the last committed batch and whether the segment is done.
//!
//! Invariant: the file never covers an item that is not committed in PostgreSQL (the cursor
//! moves only after a commit), so resuming from it loses nothing; upserts being idempotent,
//! re-reading the uncommitted tail duplicates nothing.
//!
//! Writes are atomic (tmp file, fsync, rename, fsync the directory); a checksum detects a
//! damaged file; a fingerprint of source, target, mapping and segment count refuses a resume
//! under different settings. A lock file (flock, released by the OS when a process dies)
//! keeps two runs off the same checkpoint. The files are created owner-only (0600) and never
//! through a symbolic link (see `crate::private`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const VERSION: u32 = 1;

/// The settings a checkpoint is only valid under. Shown to the user when they differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The source table's identity (ARN).
    pub source: String,
    /// The target, without password.
    pub target: String,
    /// The mapping, described.
    pub mapping: String,
    /// Scan TotalSegments: cursors are only valid for the same segmentation.
    pub segments: u32,
}

impl Settings {
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        hex(&Sha256::digest(json.as_bytes()))[..16].to_string()
    }

    /// Human-readable differences between a checkpoint's settings and this run's.
    pub fn differences(&self, now: &Settings) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |what: &str, a: &str, b: &str| {
            if a != b {
                d.push(format!("{what}: checkpoint has {a:?}, this run has {b:?}"));
            }
        };
        cmp("source", &self.source, &now.source);
        cmp("target", &self.target, &now.target);
        cmp("mapping", &self.mapping, &now.mapping);
        cmp(
            "segments",
            &self.segments.to_string(),
            &now.segments.to_string(),
        );
        d
    }
}

/// Progress of one segment, as committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentState {
    pub done: bool,
    /// LastEvaluatedKey (DynamoDB JSON) after the last committed page; null at the start.
    pub cursor: Option<serde_json::Value>,
    /// Items committed (written, unchanged or rejected) in this segment, over all runs.
    pub items: u64,
    pub rows_written: u64,
    pub rows_unchanged: u64,
    pub rejected: u64,
    /// Items no table rule matched (unrouted = "skip").
    #[serde(default)]
    pub skipped: u64,
    /// Runs that worked on this segment.
    pub runs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub tool: String,
    pub fingerprint: String,
    /// SHA-256 of the file with this field empty.
    pub checksum: String,
    pub settings: Settings,
    pub complete: bool,
    pub created_at: u64,
    pub updated_at: u64,
    pub segments: Vec<SegmentState>,
    /// The rejects file's length once the reject lines of every committed page are in it:
    /// lines past it belong to pages a killed run did not commit (they are read again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_bytes: Option<u64>,
    /// `--follow`: where the stream is applied up to (absent without --follow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamState>,
}

/// The stream follower's progress: per shard, the sequence number after the last committed
/// change. Like a segment's cursor, it moves only after the commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// The stream this checkpoint follows; another ARN means the stream was replaced.
    pub arn: String,
    /// When the load's scan began (epoch seconds): records older than this (less a margin)
    /// are already in the load.
    pub follow_from: u64,
    pub shards: std::collections::BTreeMap<String, ShardState>,
    /// Changes applied, over all runs.
    pub inserted: u64,
    pub modified: u64,
    pub removed: u64,
    pub rejected: u64,
    /// ApproximateCreationDateTime (ms) of the newest applied record.
    pub newest_applied_ms: Option<i64>,
    /// When the follower last read every shard to its end (epoch seconds).
    pub caught_up_at: Option<u64>,
    /// When a round of the follower first found nothing new (epoch seconds).
    #[serde(default)]
    pub first_round_at: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub parent: Option<String>,
    /// The last committed sequence number (None: nothing read yet).
    pub seq: Option<String>,
    /// Read to its end (a closed shard): its children may start.
    pub closed: bool,
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Checkpoint {
    pub fn new(settings: Settings) -> Checkpoint {
        let n = settings.segments as usize;
        Checkpoint {
            version: VERSION,
            tool: format!("ddb2pg {}", env!("CARGO_PKG_VERSION")),
            fingerprint: settings.fingerprint(),
            checksum: String::new(),
            settings,
            complete: false,
            created_at: now_secs(),
            updated_at: now_secs(),
            segments: vec![SegmentState::default(); n],
            rejects_bytes: None,
            stream: None,
        }
    }

    fn compute_checksum(&self) -> String {
        let mut c = self.clone();
        c.checksum = String::new();
        let json = serde_json::to_vec(&c).unwrap_or_default();
        hex(&Sha256::digest(&json))
    }

    /// Read a checkpoint. `Ok(None)` when there is none; a damaged file is an error that
    /// names the file and the way out, never a silent start-over.
    /// Never touches the tmp file: a live run may be writing it (see `remove_leftover_tmp`).
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::file(path, e)),
        };
        let damaged = |why: String| {
            Error::config(format!(
                "checkpoint {} is damaged ({why}); it cannot be trusted for a resume. \
                 Run again with --restart to discard it and start over (upserts are idempotent, \
                 so rows already written are not duplicated)",
                path.display()
            ))
        };
        let cp: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| damaged(format!("not valid JSON: {e}")))?;
        if cp.version != VERSION {
            return Err(Error::config(format!(
                "checkpoint {} has format version {}, this ddb2pg reads version {VERSION}; \
                 finish the run with the ddb2pg that wrote it, or use --restart",
                path.display(),
                cp.version
            )));
        }
        if cp.checksum != cp.compute_checksum() {
            return Err(damaged("checksum mismatch".into()));
        }
        if cp.segments.len() != cp.settings.segments as usize {
            return Err(damaged("segment count does not match its settings".into()));
        }
        Ok(Some(cp))
    }

    /// Remove a tmp file left by a crash between writing and renaming it (the real file is
    /// still the last good one). Only the holder of the run's lock may call this.
    pub fn remove_leftover_tmp(path: &Path) {
        let tmp = tmp_path(path);
        if tmp.exists() {
            eprintln!(
                "ddb2pg: removing {} left by an interrupted checkpoint write",
                tmp.display()
            );
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Write atomically: tmp file, fsync, rename over, fsync the directory.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated_at = now_secs();
        self.checksum = self.compute_checksum();
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::file(path, e))?;
        let tmp = tmp_path(path);
        let write = || -> std::io::Result<()> {
            // A fresh owner-only file (whatever was there, a link included, is removed first:
            // only the lock holder writes here); the rename replaces a link at `path` too.
            let _ = fs::remove_file(&tmp);
            let mut f =
                crate::private::open_io(&tmp, OpenOptions::new().write(true).create_new(true))?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                })?
                .sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::file(
                path,
                format!("cannot write checkpoint ({e}); the previous checkpoint stays valid"),
            )
        })
    }

    pub fn segments_done(&self) -> usize {
        self.segments.iter().filter(|s| s.done).count()
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The files of one run (source + target) inside the checkpoint directory.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub checkpoint: PathBuf,
    pub lock: PathBuf,
    pub rejects: PathBuf,
}

impl RunFiles {
    /// `<dir>/<table>-<hash of source and target>.{json,lock,rejects.jsonl}`.
    pub fn new(dir: &Path, table: &str, source_id: &str, target_id: &str) -> RunFiles {
        let h = hex(&Sha256::digest(
            format!("{source_id}\n{target_id}").as_bytes(),
        ));
        let safe: String = table
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stem = format!("{safe}-{}", &h[..12]);
        RunFiles {
            checkpoint: dir.join(format!("{stem}.json")),
            lock: dir.join(format!("{stem}.lock")),
            rejects: dir.join(format!("{stem}.rejects.jsonl")),
        }
    }

    /// Before a run: refuse to start when a file of the run is a symbolic link (exit 2, naming
    /// it; ddb2pg never writes through one, and opens them with `O_NOFOLLOW` too), and tighten
    /// existing files open to others to 0600 (left by an earlier version or a loose umask).
    pub fn secure(&self) -> Result<()> {
        for p in [
            &self.checkpoint,
            &tmp_path(&self.checkpoint),
            &self.lock,
            &self.rejects,
            &self.rejects.with_extension("dry-run.jsonl"),
        ] {
            crate::private::refuse_symlink(p)?;
            crate::private::tighten_file(p)?;
        }
        Ok(())
    }
}

/// An exclusive lock on a run; released when dropped or when the process dies.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    pub fn acquire(path: &Path) -> Result<Lock> {
        let mut file = crate::private::open(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let previous = previous.trim().to_string();
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::config(format!(
                    "another ddb2pg run ({}) holds {}; wait for it to finish or stop it first",
                    if previous.is_empty() {
                        "pid unknown".to_string()
                    } else {
                        previous
                    },
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::file(path, e)),
        }
        if !previous.is_empty() {
            eprintln!(
                "ddb2pg: taking over the lock {} left by a run that is no longer alive ({previous})",
                path.display()
            );
        }
        let me = format!("pid {} on {}", std::process::id(), hostname());
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(me.as_bytes())?;
            f.sync_all()
        };
        write(&mut file).map_err(|e| Error::file(path, e))?;
        Ok(Lock { file })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // A clean exit leaves an empty lock file: nothing to take over next time.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

/// The checkpoint shared by the segment workers: updated in memory after each commit, written
/// to disk by `flush` (the pipeline flushes a few times a second and at the end).
pub struct Store {
    /// False for `--dry-run`: the checkpoint is kept in memory only.
    persist: bool,
    path: PathBuf,
    state: Mutex<Checkpoint>,
    dirty: AtomicBool,
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
    pub fn new(path: PathBuf, cp: Checkpoint) -> Store {
        Store {
            persist: true,
            path,
            state: Mutex::new(cp),
            dirty: AtomicBool::new(true),
        }
    }

    /// A store that never writes its file (dry runs).
    pub fn in_memory(path: PathBuf, cp: Checkpoint) -> Store {
        Store {
            persist: false,
            ..Store::new(path, cp)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
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

    /// Record a committed page (call only after the transaction holding its rows committed) as
    /// one step: append its reject lines to `rejects` and change
    /// the checkpoint with `f`, under the checkpoint's lock, so that no saved checkpoint holds
    /// the one without the other (`rejects_bytes` marks where committed lines end).
    pub fn commit_page(
        &self,
        rejects: &crate::rejects::Rejects,
        lines: &[String],
        f: impl FnOnce(&mut Checkpoint),
    ) -> Result<()> {
        let mut cp = self.lock();
        if !lines.is_empty() {
            cp.rejects_bytes = Some(rejects.append(lines)?);
        }
        f(&mut cp);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Read or change the stream state (marks the checkpoint for the next flush).
    pub fn with_stream<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> Option<R> {
        let mut cp = self.lock();
        let r = cp.stream.as_mut().map(f);
        self.dirty.store(true, Ordering::Release);
        r
    }

    /// Write the checkpoint if it changed since the last flush.
    pub fn flush(&self) -> Result<()> {
        if !self.persist || !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut cp = self.snapshot();
        let r = cp.save(&self.path);
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }
}

/// A committed page's progress in segment `i`.
pub fn commit_segment(
    cp: &mut Checkpoint,
    i: u32,
    cursor: Option<serde_json::Value>,
    done: bool,
    d: Delta,
) {
    let s = &mut cp.segments[i as usize];
    s.cursor = cursor;
    s.done = done;
    s.items += d.items;
    s.rows_written += d.rows_written;
    s.rows_unchanged += d.rows_unchanged;
    s.rejected += d.rejected;
    s.skipped += d.skipped;
    if done && cp.segments.iter().all(|s| s.done) {
        cp.complete = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            source: "arn:t".into(),
            target: "postgres://u@h:5432/d".into(),
            mapping: "m".into(),
            segments: 4,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ddb2pg-cp-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("tempdir");
        d
    }

    #[test]
    fn save_load_round_trip_and_checksum() {
        let d = tempdir("rt");
        let p = d.join("c.json");
        let mut cp = Checkpoint::new(settings());
        cp.segments[1].cursor = Some(serde_json::json!({"PK": {"S": "x"}}));
        cp.save(&p).expect("save");
        let back = Checkpoint::load(&p).expect("load").expect("present");
        assert_eq!(back.segments, cp.segments);
        // A flipped value is detected.
        let text = fs::read_to_string(&p)
            .expect("read")
            .replace("\"runs\": 0", "\"runs\": 7");
        fs::write(&p, text).expect("write");
        let err = Checkpoint::load(&p).expect_err("damaged").to_string();
        assert!(
            err.contains("--restart") && err.contains("checksum"),
            "{err}"
        );
        // Truncated.
        let bytes = fs::read(&p).expect("read");
        fs::write(&p, &bytes[..bytes.len() / 2]).expect("write");
        assert!(Checkpoint::load(&p).is_err());
        // Missing, with a leftover tmp file: load leaves it (a live run may be writing it),
        // the lock holder removes it.
        fs::remove_file(&p).expect("rm");
        fs::write(tmp_path(&p), b"{").expect("tmp");
        assert!(Checkpoint::load(&p).expect("ok").is_none());
        assert!(tmp_path(&p).exists());
        Checkpoint::remove_leftover_tmp(&p);
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn a_failed_write_leaves_the_last_good_checkpoint() {
        let d = tempdir("fail");
        let p = d.join("c.json");
        let mut cp = Checkpoint::new(settings());
        cp.save(&p).expect("first save");
        let good = fs::read(&p).expect("read");
        // The tmp file cannot be created (a directory is in the way), as on a full disk.
        fs::create_dir_all(tmp_path(&p)).expect("block tmp");
        cp.segments[0].items = 99;
        let err = cp.save(&p).expect_err("write fails").to_string();
        assert!(
            err.contains("cannot write checkpoint") && err.contains("stays valid"),
            "{err}"
        );
        assert_eq!(fs::read(&p).expect("read"), good);
        assert!(Checkpoint::load(&p).expect("loads").is_some());
    }

    #[test]
    fn differences_name_the_setting() {
        let a = settings();
        let mut b = settings();
        b.segments = 8;
        let d = a.differences(&b);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("segments"), "{d:?}");
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn lock_is_exclusive_and_reports_stale() {
        let d = tempdir("lock");
        let p = d.join("x.lock");
        let l = Lock::acquire(&p).expect("first");
        let err = Lock::acquire(&p).expect_err("second refused").to_string();
        assert!(err.contains("another ddb2pg run"), "{err}");
        drop(l);
        assert!(Lock::acquire(&p).is_ok());
    }
}
