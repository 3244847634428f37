//! The checkpoint: a versioned JSON document per source+target (and shard) that records, per
//! segment, the cursor after the last committed batch and whether the segment is done.
//!
//! Invariant: the checkpoint never covers an item that is not committed in PostgreSQL (the
//! cursor moves only after a commit), so resuming from it loses nothing; upserts being
//! idempotent, re-reading the uncommitted tail duplicates nothing.
//!
//! A checksum detects a damaged document; a fingerprint of source, target, mapping, segment
//! count and shard refuses a resume under different settings.
//!
//! [`Store`] holds a run's checkpoint in memory and flushes it. Where the checkpoint, its
//! lock and its rejects live is a [`Storage`]: a local directory
//! (`local`: atomic tmp+rename writes, an `flock` lock released by the OS when a process
//! dies, files 0600 never through a symbolic link) or an S3 prefix (`s3`: conditional writes,
//! a lock with a renewed lease, see [`lock`]), chosen by `--checkpoint-dir DIR|s3://bucket/prefix`.

mod check;
mod local;
pub mod lock;
mod s3;
mod storage;
mod store;

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::shard::Shard;

pub use check::Bad;
pub(crate) use local::holder_id;
pub use local::{LocalDir, Lock};
pub use s3::S3Dir;
pub use storage::{open, Held, LockState, Names, Storage, Tag};
pub use store::{Delta, Store};

pub const VERSION: u32 = 1;
/// The most scan segments a run has (`--segments`' bound).
pub const MAX_SEGMENTS: u32 = 1_000_000;
/// The largest count a checkpoint may hold (per segment, and per kind for the stream): 2^43,
/// about 8.8 x 10^12 items; [`MAX_SEGMENTS`] of them still sum within a u64.
pub const MAX_COUNT: u64 = 1 << 43;
/// The latest time a checkpoint may hold: 9999-12-31T23:59:59Z (epoch seconds).
pub const MAX_EPOCH_S: u64 = 253_402_300_799;

/// The settings a checkpoint is only valid under. Shown to the user when they differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The source table's identity (ARN).
    pub source: String,
    /// The target, without password.
    pub target: String,
    /// The mapping, described.
    pub mapping: String,
    /// Scan TotalSegments: cursors are only valid for the same segmentation. With shards, the
    /// total of all shards (identical for every shard).
    pub segments: u32,
    /// `--shard I/N`: this checkpoint covers the segments `s % N == I` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
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
        let shard = |s: &Option<Shard>| s.map_or("none".to_string(), |s| s.to_string());
        cmp("shard", &shard(&self.shard), &shard(&now.shard));
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
    /// lines past it belong to pages a killed run did not commit (they are read again). Set
    /// from a checkpoint's creation (to the length of a rejects file already there), so that
    /// lines uploaded for the first rejecting page before a kill are cut too; None only in
    /// checkpoints written before this count existed.
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
    /// The time the load is as of (epoch seconds): when its scan began, or an export's own
    /// time. Records older than this (less a margin) are already in the load.
    pub follow_from: u64,
    pub shards: std::collections::BTreeMap<String, ShardState>,
    /// Changes applied, over all runs.
    pub inserted: u64,
    pub modified: u64,
    pub removed: u64,
    pub rejected: u64,
    /// ApproximateCreationDateTime (ms) of the newest applied record.
    pub newest_applied_ms: Option<i64>,
    /// When a follower last ended caught up (`--until-caught-up` or `ddb2pg finish`; epoch
    /// seconds).
    pub caught_up_at: Option<u64>,
    /// Since when (epoch ms) the running follower has been caught up: every listed shard
    /// applied to within `--caught-up-lag`, none waiting for its parent. None while it is
    /// behind; cleared when a follower starts; as of the stop for a stopped one.
    #[serde(default)]
    pub caught_up_since_ms: Option<i64>,
    /// The follower's largest shard lag (ms) and how many shards were behind, as of
    /// `lag_at_ms` (epoch ms): refreshed on every tick in memory, saved with the checkpoint's
    /// next write (a tick alone never writes it).
    #[serde(default)]
    pub lag_ms: Option<i64>,
    #[serde(default)]
    pub lag_at_ms: Option<i64>,
    #[serde(default)]
    pub shards_behind: u64,
    /// When a round of the follower first found nothing new (epoch seconds).
    #[serde(default)]
    pub first_round_at: Option<u64>,
    /// Rejected items the segments count whose lines are in other files: a load done by
    /// shards, taken over by this follower (each shard's rejects file holds its own).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected_elsewhere: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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

/// `s` as it can be shown on a terminal or in a log: as it is, or, when it holds a control
/// character (an escape sequence, a line break, ...) or another character Rust's `{:?}` escapes,
/// quoted with those characters escaped (`{:?}`, as manifest values are quoted in messages).
/// For names read from places others can write: lock holders, file and object names.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let quoted = format!("{s:?}");
    if quoted.len() == s.len() + 2 {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(quoted)
    }
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
            // Counted from the start (None: a checkpoint older than the count, whose rejects
            // file is kept as it is).
            rejects_bytes: Some(0),
            stream: None,
        }
    }

    /// Rejected items recorded over all runs of this checkpoint: its segments' and stream's.
    pub fn rejected(&self) -> u64 {
        self.segments.iter().map(|s| s.rejected).sum::<u64>()
            + self.stream.as_ref().map_or(0, |s| s.rejected)
    }

    /// The rejected items whose lines are in this checkpoint's own rejects file (what
    /// `--max-rejects` bounds).
    pub fn rejected_here(&self) -> u64 {
        let elsewhere = self.stream.as_ref().map_or(0, |s| s.rejected_elsewhere);
        self.rejected().saturating_sub(elsewhere)
    }

    fn compute_checksum(&self) -> String {
        let mut c = self.clone();
        c.checksum = String::new();
        let json = serde_json::to_vec(&c).unwrap_or_default();
        hex(&Sha256::digest(&json))
    }

    /// The document to store: `updated_at` and the checksum set.
    pub fn encode(&mut self) -> Result<Vec<u8>> {
        self.updated_at = now_secs();
        self.checksum = self.compute_checksum();
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::config(format!("internal error: checkpoint not encodable: {e}")))
    }

    /// Read a local checkpoint file. `Ok(None)` when there is none. Never touches the tmp file:
    /// a live run may be writing it (see `remove_leftover_tmp`).
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        local::read_file(path)?
            .map(|b| Checkpoint::decode(&b, &path.display().to_string()))
            .transpose()
    }

    /// Read the checkpoint `name` of `storage`, with the version read (for a conditional write).
    pub fn load_from(storage: &dyn Storage, name: &str) -> Result<Option<(Checkpoint, Tag)>> {
        match storage.read(name)? {
            None => Ok(None),
            Some((bytes, tag)) => Ok(Some((
                Checkpoint::decode(&bytes, &storage.show(name))?,
                tag,
            ))),
        }
    }

    /// Remove a tmp file left by a crash between writing and renaming it (the real file is
    /// still the last good one). Only the holder of the run's lock may call this.
    pub fn remove_leftover_tmp(path: &Path) {
        local::remove_leftover_tmp(path)
    }

    /// Write a local checkpoint file atomically: tmp file, fsync, rename over, fsync the directory.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let bytes = self.encode()?;
        local::write_file(path, &bytes)
    }

    /// The segments this checkpoint's run works on: all, or its shard's.
    pub fn owned(&self) -> Vec<u32> {
        match self.settings.shard {
            Some(s) => s.segments(self.settings.segments),
            None => (0..self.settings.segments).collect(),
        }
    }

    /// Segments done (of this checkpoint's own).
    pub fn segments_done(&self) -> usize {
        self.owned()
            .iter()
            .filter(|&&i| self.segments[i as usize].done)
            .count()
    }
}

/// Before a shard starts: every sibling shard's checkpoint of the same run (same `base`
/// name) must have the same segment total and shard count, else segments would overlap or be
/// missed. Returns the siblings' total when one exists (a shard without `--segments` adopts it).
pub fn siblings_agree(
    storage: &dyn Storage,
    base: &str,
    shard: Shard,
    segments: Option<u32>,
) -> Result<Option<u32>> {
    let mut seen: Option<(u32, String)> = None;
    for name in storage.list()? {
        let Some((b, other)) = name.strip_suffix(".json").and_then(Shard::from_suffix) else {
            continue;
        };
        if b != base || other == shard {
            continue;
        }
        let Some((cp, _)) = Checkpoint::load_from(storage, &name)? else {
            continue;
        };
        let at = printable(&storage.show(&name)).into_owned();
        if other.count != shard.count {
            return Err(Error::config(format!(
                "shard {shard}: checkpoint {at} belongs to a run of {} shards, this one is of {}; \
                 every shard of a migration must be given the same N (to start over with another \
                 N, first remove the old shards' {}*{} documents)",
                other.count,
                shard.count,
                storage.show(base),
                ".shard-"
            )));
        }
        let total = cp.settings.segments;
        if let Some(n) = segments.filter(|&n| n != total) {
            return Err(Error::config(format!(
                "shard {shard}: --segments {n}, but shard {other} ({at}) scans {total} segments; \
                 every shard must use the same total (give --segments {total})"
            )));
        }
        if let Some((t, first)) = &seen {
            if *t != total {
                return Err(Error::config(format!(
                    "shards disagree on the segment total: {first} has {t}, {at} has {total}; \
                     start the migration over with one --segments for every shard"
                )));
            }
        }
        seen = Some((total, at));
    }
    Ok(seen.map(|(t, _)| t))
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
    if done && cp.owned().iter().all(|&j| cp.segments[j as usize].done) {
        cp.complete = true;
    }
}

#[cfg(test)]
mod tests {
    use super::local::tmp_path;
    use super::*;

    #[test]
    fn a_stream_state_saved_before_the_verdict_still_loads() {
        let old = r#"{"arn":"a","follow_from":1,"shards":{},"inserted":1,"modified":0,
            "removed":0,"rejected":2,"newest_applied_ms":5,"caught_up_at":7}"#;
        let st: StreamState = serde_json::from_str(old).expect("an old stream state loads");
        assert_eq!(st.caught_up_at, Some(7));
        assert_eq!(
            (st.caught_up_since_ms, st.lag_ms, st.shards_behind),
            (None, None, 0)
        );
    }
    use std::fs;
    use std::path::PathBuf;

    fn settings() -> Settings {
        Settings {
            source: "arn:t".into(),
            target: "postgres://u@h:5432/d".into(),
            mapping: "m".into(),
            segments: 4,
            shard: None,
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
    fn a_checkpoint_of_an_impossible_shard_is_refused() {
        let d = tempdir("shard");
        let p = d.join("c.json");
        for (index, count) in [(0, 0), (3, 3), (0, u32::MAX)] {
            let mut s = settings();
            s.shard = Some(Shard { index, count });
            Checkpoint::new(s).save(&p).expect("save");
            let err = Checkpoint::load(&p).expect_err("refused").to_string();
            assert!(
                err.contains(&format!("shard {index}/{count}")) && err.contains("c.json"),
                "{err}"
            );
        }
    }

    #[test]
    fn printable_escapes_only_what_needs_it() {
        assert_eq!(printable("pid 1 on host-a"), "pid 1 on host-a");
        assert_eq!(printable("/tmp/ä ö/x.json"), "/tmp/ä ö/x.json");
        assert_eq!(printable("a\u{1b}[31mb\nc"), r#""a\u{1b}[31mb\nc""#);
        assert_eq!(printable("say \"hi\""), r#""say \"hi\"""#);
        assert!(!printable("x\u{7}\u{9b}y").contains(['\u{7}', '\u{9b}']));
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
    fn a_shard_is_complete_when_its_own_segments_are() {
        let mut s = settings();
        s.segments = 5;
        s.shard = Some(Shard { index: 1, count: 2 });
        let mut cp = Checkpoint::new(s);
        assert_eq!(cp.owned(), vec![1, 3]);
        commit_segment(&mut cp, 1, None, true, Delta::default());
        assert!(!cp.complete);
        commit_segment(
            &mut cp,
            3,
            None,
            true,
            Delta {
                items: 2,
                ..Delta::default()
            },
        );
        assert!(cp.complete, "segments 0, 2, 4 belong to shard 0");
        assert_eq!(cp.segments_done(), 2);
        // The shard is part of the fingerprint: a resume as another shard is refused.
        let mut other = cp.settings.clone();
        other.shard = Some(Shard { index: 0, count: 2 });
        assert!(cp.settings.differences(&other)[0].starts_with("shard"));
        // An unsharded checkpoint keeps the fingerprint it had before shards existed.
        assert_eq!(settings().fingerprint(), {
            let json =
                r#"{"source":"arn:t","target":"postgres://u@h:5432/d","mapping":"m","segments":4}"#;
            hex(&Sha256::digest(json.as_bytes()))[..16].to_string()
        });
    }
}
