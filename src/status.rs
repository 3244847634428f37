//! `ddb2pg status`: what a checkpoint says, from another terminal or a script.

/// `println!` that ends quietly when stdout is closed (`ddb2pg status | head`), instead of
/// panicking on the broken pipe.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// Whether a live process holds the lock next to a checkpoint, and who. Read without taking
/// the lock (a `status` beside a starting `migrate` must not make it exit 2): a run writes
/// "pid N on HOST" into the file, keeps it open while it runs and empties it when it ends; a
/// pid on this host is live if it still has the file open (/proc/N/fd), one on another host
/// is taken as live.
fn lock_state(lock: &Path) -> (bool, Option<String>) {
    let holder = std::fs::read_to_string(lock)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let live = holder.as_deref().is_some_and(|h| holder_alive(h, lock));
    (live, holder)
}

/// Whether the holder "pid N on HOST" of `lock` is a live process holding it.
fn holder_alive(holder: &str, lock: &Path) -> bool {
    let mut words = holder.split_whitespace();
    let (Some("pid"), Some(pid), Some("on"), Some(host)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return true;
    };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host != here || pid.parse::<u32>().is_err() {
        return true;
    }
    let Ok(lock) = std::fs::canonicalize(lock) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == lock))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}"))
}

/// The checkpoint files of a directory (not tmp, lock or rejects files).
pub fn checkpoints_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::config(format!("checkpoint directory {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    Ok(v)
}

/// One checkpoint as JSON (the `--json` form; the text form is printed from it).
pub fn describe(path: &Path) -> Result<serde_json::Value> {
    let cp = Checkpoint::load(path)?
        .ok_or_else(|| Error::config(format!("no checkpoint at {}", path.display())))?;
    let rejects_path = sibling(path, ".rejects.jsonl");
    let rejects = std::fs::File::open(&rejects_path)
        .map(|f| std::io::BufReader::new(f).lines().count())
        .unwrap_or(0);
    let (locked, holder) = lock_state(&sibling(path, ".lock"));
    let segments: Vec<serde_json::Value> = cp
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let state = if s.done {
                "done"
            } else if s.cursor.is_some() || s.runs > 0 {
                "in_progress"
            } else {
                "pending"
            };
            json!({"segment": i, "state": state, "items": s.items, "rows_written": s.rows_written,
                   "rows_unchanged": s.rows_unchanged, "rejected": s.rejected, "runs": s.runs})
        })
        .collect();
    let count = |st: &str| segments.iter().filter(|s| s["state"] == st).count();
    let stream = cp.stream.as_ref().map(|st| {
        let shards = crate::follow::shard_counts(st);
        let now_ms = crate::checkpoint::now_secs() as i64 * 1000;
        json!({
            "arn": st.arn,
            "follow_from": st.follow_from,
            "changes_inserted": st.inserted,
            "changes_modified": st.modified,
            "changes_removed": st.removed,
            "rejected": st.rejected,
            "shards_open": shards.get("open").copied().unwrap_or(0),
            "shards_closed": shards.get("closed").copied().unwrap_or(0),
            // Lag as of the last commit: now minus the newest applied record's creation.
            "lag_s": st.newest_applied_ms.map(|t| (now_ms - t).max(0) as f64 / 1000.0),
            "caught_up_at": st.caught_up_at,
        })
    });
    Ok(json!({
        "checkpoint": path.display().to_string(),
        "complete": cp.complete,
        "settings": cp.settings,
        "fingerprint": cp.fingerprint,
        "items": cp.segments.iter().map(|s| s.items).sum::<u64>(),
        "rows_written": cp.segments.iter().map(|s| s.rows_written).sum::<u64>(),
        "rejected": cp.segments.iter().map(|s| s.rejected).sum::<u64>(),
        "rejects_file": rejects_path.exists().then(|| rejects_path.display().to_string()),
        "rejects_lines": rejects,
        "segments_done": count("done"),
        "segments_in_progress": count("in_progress"),
        "segments_pending": count("pending"),
        "running": locked,
        "lock_holder": if locked { holder } else { None },
        "updated_at": cp.updated_at,
        "segments": segments,
        "stream": stream,
    }))
}

/// Print every checkpoint of `dir` (or the one file given); exit code 0.
pub fn run(target: &Path, as_json: bool) -> Result<u8> {
    let files = if target.is_dir() {
        checkpoints_in(target)?
    } else {
        vec![target.to_path_buf()]
    };
    if files.is_empty() {
        return Err(Error::config(format!(
            "no checkpoint in {}: nothing has run with this --checkpoint-dir yet",
            target.display()
        )));
    }
    let all: Vec<serde_json::Value> = files.iter().map(|f| describe(f)).collect::<Result<_>>()?;
    if as_json {
        let out = if all.len() == 1 {
            all[0].clone()
        } else {
            json!(all)
        };
        out!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::config(e.to_string()))?
        );
        return Ok(0);
    }
    for d in &all {
        let s = &d["settings"];
        out!("{}", d["checkpoint"].as_str().unwrap_or(""));
        out!("  source   {}", s["source"].as_str().unwrap_or(""));
        out!("  target   {}", s["target"].as_str().unwrap_or(""));
        out!("  mapping  {}", s["mapping"].as_str().unwrap_or(""));
        out!(
            "  state    {}{}",
            if d["complete"] == true {
                "complete"
            } else {
                "incomplete"
            },
            match (d["running"] == true, d["lock_holder"].as_str()) {
                (true, Some(h)) => format!(", running now ({h})"),
                (true, None) => ", running now".to_string(),
                _ => ", no run holds the lock".to_string(),
            }
        );
        out!(
            "  segments {} done, {} in progress, {} pending (of {})",
            d["segments_done"],
            d["segments_in_progress"],
            d["segments_pending"],
            s["segments"]
        );
        out!(
            "  items    {} committed, {} rows written, {} rejected{}",
            d["items"],
            d["rows_written"],
            d["rejected"],
            d["rejects_file"]
                .as_str()
                .map(|f| format!(" (see {f})"))
                .unwrap_or_default()
        );
        if let Some(st) = d["stream"].as_object() {
            out!(
                "  stream   {} inserted, {} modified, {} removed, {} rejected | shards {} open, {} closed | lag {}{}",
                st["changes_inserted"],
                st["changes_modified"],
                st["changes_removed"],
                st["rejected"],
                st["shards_open"],
                st["shards_closed"],
                st["lag_s"]
                    .as_f64()
                    .map_or("-".to_string(), |l| format!("{l:.0} s")),
                if st["caught_up_at"].is_u64() {
                    " (was caught up)"
                } else {
                    ""
                }
            );
        }
        for seg in d["segments"].as_array().into_iter().flatten() {
            if seg["state"] != "pending" {
                out!(
                    "    segment {:>4}  {:<11}  {:>9} items  {:>9} written  {:>6} rejected",
                    seg["segment"],
                    seg["state"].as_str().unwrap_or(""),
                    seg["items"],
                    seg["rows_written"],
                    seg["rejected"]
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_read_not_taken() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-status-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("x.lock");
        let lock = crate::checkpoint::Lock::acquire(&path).expect("lock");
        // This process holds it: alive.
        let (live, holder) = lock_state(&path);
        assert!(live, "{holder:?}");
        // Reading it did not take it: the holder still has it, and a second run is refused.
        assert!(crate::checkpoint::Lock::acquire(&path).is_err());
        drop(lock);
        assert_eq!(lock_state(&path), (false, None));
        std::fs::write(&path, "pid 4194999 on nowhere-else").expect("write");
        assert!(lock_state(&path).0, "another host: taken as live");
        let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        std::fs::write(&path, format!("pid 4194999 on {}", here.trim())).expect("write");
        assert!(!lock_state(&path).0, "a dead pid on this host");
    }
}
