//! `ddb2pg status`: what a checkpoint says, from another terminal or a script.
//!
//! What it reads is checked first, as anyone who can write the folder or prefix may have
//! written it: a checkpoint is decoded and validated (`Checkpoint::decode`: an impossible
//! shard is an error naming the file), its name's `.shard-I-of-N` must agree with the shard
//! it records, shards are listed up to N only for a valid N (at most `MAX_SHARDS`), and a
//! shard's lock is read only when the listing holds it. Text output shows names, holders and
//! settings through `checkpoint::printable` (control characters escaped); `--json` escapes
//! them as JSON does.
//!
//! A checkpoint that cannot be shown (damaged, not ddb2pg's, a name that disagrees with its
//! shard, unreadable) is one entry with its `error` (a reason, no advice meant for `migrate`)
//! among the others, never the end of the listing: whoever can write the folder must not hide
//! the other checkpoints with one junk file. The exit code is then 2, after the listing, with
//! the failing names on stderr. A local name that is not UTF-8 is skipped (ddb2pg writes none).

/// `println!` that ends quietly when stdout is closed (`ddb2pg status | head`), instead of
/// panicking on the broken pipe; what it prints is redacted (a checkpoint's target).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let line = crate::pgconn::redact(&format!($($t)*));
        let _ = writeln!(std::io::stdout(), "{line}");
    }};
}

mod follower;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::checkpoint::{printable, Checkpoint, LocalDir, Names, Storage};
use crate::cli::StatusArgs;
use crate::error::{Error, Result};
use crate::shard::Shard;

/// One checkpoint as JSON (the `--json` form; the text form is printed from it), or why it
/// cannot be shown (a reason without advice: `status` lists it beside the others).
pub fn describe(
    storage: &dyn Storage,
    names: &Names,
) -> std::result::Result<serde_json::Value, String> {
    let at = storage.show(&names.checkpoint);
    let cp = match storage.read(&names.checkpoint) {
        Err(e) => return Err(format!("cannot be read: {e}")),
        Ok(None) => return Err("not found (removed, or renamed while status ran)".into()),
        Ok(Some((bytes, _))) => Checkpoint::inspect(&bytes).map_err(|bad| bad.to_string())?,
    };
    name_agrees(names, &cp)?;
    let rejects_lines = storage
        .lines(&names.rejects)
        .map_err(|e| format!("its rejects file cannot be read: {e}"))?;
    let rejects = rejects_lines.unwrap_or(0);
    let lock = storage.lock_state(&names.lock);
    let lock_problem = lock.problem.as_ref().map(|p| {
        format!(
            "{} (holder {}) is not a lease ddb2pg grants: {p}",
            printable(&storage.show(&names.lock)),
            printable(lock.holder.as_deref().unwrap_or("unknown"))
        )
    });
    let owned = cp.owned();
    let segments: Vec<serde_json::Value> = owned
        .iter()
        .map(|&i| {
            let s = &cp.segments[i as usize];
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
    let rejects_file = rejects_lines
        .is_some()
        .then(|| storage.show(&names.rejects));
    let stream = cp.stream.as_ref().map(|st| {
        let now_ms = crate::follow::now_ms();
        follower::describe(
            st,
            lock.running,
            cp.complete,
            rejects_file.as_deref(),
            now_ms,
        )
    });
    Ok(json!({
        "checkpoint": at,
        "complete": cp.complete,
        "settings": cp.settings,
        "shard": cp.settings.shard.map(|s| s.to_string()),
        "fingerprint": cp.fingerprint,
        "items": cp.segments.iter().map(|s| s.items).sum::<u64>(),
        "rows_written": cp.segments.iter().map(|s| s.rows_written).sum::<u64>(),
        "rejected": cp.segments.iter().map(|s| s.rejected).sum::<u64>(),
        "rejects_file": rejects_file,
        "rejects_lines": rejects,
        "segments_total": owned.len(),
        "segments_done": count("done"),
        "segments_in_progress": count("in_progress"),
        "segments_pending": count("pending"),
        "running": lock.running,
        "lock_holder": if lock.running { lock.holder } else { None },
        "lease_left_s": lock.lease_left_s,
        "lock_problem": lock_problem,
        "updated_at": cp.updated_at,
        "segments": segments,
        "stream": stream,
    }))
}

/// The shard a checkpoint's name says (`.shard-I-of-N`, valid) must be the one it records:
/// `status` lists a migration's shards from the names.
fn name_agrees(names: &Names, cp: &Checkpoint) -> std::result::Result<(), String> {
    let stem = names.checkpoint.trim_end_matches(".json");
    let named = Shard::from_suffix(stem).map(|(_, s)| s);
    if named == cp.settings.shard {
        return Ok(());
    }
    let shown = |s: Option<Shard>| s.map_or("no shard".to_string(), |s| format!("shard {s}"));
    Err(format!(
        "its name says {}, its content {}: renamed, or not written by ddb2pg",
        shown(named),
        shown(cp.settings.shard)
    ))
}

/// The shards of one migration (checkpoints sharing a base name): every shard 0..N with its
/// state (done; running: lock held, lease fresh; failed: stopped before done; not_started).
fn shards_of(
    storage: &dyn Storage,
    base: &str,
    described: &[(Names, serde_json::Value)],
    listed: &BTreeSet<String>,
) -> Option<serde_json::Value> {
    let mine: Vec<(Shard, &serde_json::Value)> = described
        .iter()
        .filter(|(n, _)| n.base == base)
        .filter_map(|(n, d)| {
            let stem = n.checkpoint.trim_end_matches(".json");
            Shard::from_suffix(stem).map(|(_, s)| (s, d))
        })
        .collect();
    let count = mine.iter().map(|(s, _)| s.count).max()?;
    let total = mine
        .first()
        .and_then(|(_, d)| d["settings"]["segments"].as_u64());
    let problem = disagreement(&mine);
    let by_shard: std::collections::HashMap<Shard, &serde_json::Value> =
        mine.iter().map(|(s, d)| (*s, *d)).collect();
    let mut rows = Vec::with_capacity(count as usize);
    for index in 0..count {
        let shard = Shard { index, count };
        let d = by_shard.get(&shard).copied();
        let lock_name = format!("{base}{}.lock", shard.suffix());
        // A shard not started has no lock: only locks the listing holds are read.
        let running = match listed.contains(&lock_name) {
            true => storage.lock_state(&lock_name),
            false => Default::default(),
        };
        let state = match d {
            Some(d) if d["complete"] == true => "done",
            _ if running.running => "running",
            Some(_) => "failed",
            None => "not_started",
        };
        rows.push(json!({
            "shard": shard.to_string(),
            "state": state,
            "items": d.map_or(0, |d| d["items"].as_u64().unwrap_or(0)),
            "segments_done": d.map_or(0, |d| d["segments_done"].as_u64().unwrap_or(0)),
            "segments": shard.segment_count(total.unwrap_or(0) as u32),
            "lock_holder": if running.running { running.holder } else { None },
        }));
    }
    let n = |st: &str| rows.iter().filter(|r| r["state"] == st).count();
    Some(json!({
        "migration": base,
        "shards_total": count,
        "segments_total": total,
        "shards_done": n("done"),
        "shards_running": n("running"),
        "shards_failed": n("failed"),
        "shards_not_started": n("not_started"),
        "items": rows.iter().map(|r| r["items"].as_u64().unwrap_or(0)).sum::<u64>(),
        "complete": problem.is_none() && n("done") == count as usize,
        "problem": problem,
        "shards": rows,
    }))
}

/// Why the shards of one migration cannot add up to the whole table, if they cannot: shard
/// checkpoints of different shard counts, or different segment totals (shards started at the
/// same moment with different `--segments`, before either could see the other's checkpoint),
/// so that some key ranges are read twice and others never.
fn disagreement(mine: &[(Shard, &serde_json::Value)]) -> Option<String> {
    let counts: std::collections::BTreeSet<u32> = mine.iter().map(|(s, _)| s.count).collect();
    if counts.len() > 1 {
        return Some(format!(
            "checkpoints of runs of {counts:?} shards in one folder: every shard of a migration \
             must be given the same N; remove the old run's shard documents"
        ));
    }
    let totals: std::collections::BTreeSet<u64> = mine
        .iter()
        .filter_map(|(_, d)| d["settings"]["segments"].as_u64())
        .collect();
    (totals.len() > 1).then(|| {
        format!(
            "shards disagree on the segment total ({totals:?}): some keys are read twice and \
             others never; start the migration over (--restart on every shard) with one \
             --segments for all"
        )
    })
}

/// What `--checkpoint-dir` names: an s3:// prefix, a directory, or one checkpoint file.
struct Opened {
    storage: Arc<dyn Storage>,
    /// The checkpoints to show.
    names: Vec<Names>,
    /// Every name the folder holds.
    listed: BTreeSet<String>,
}

fn open(args: &StatusArgs) -> Result<Opened> {
    let target = &args.checkpoint_dir;
    let text = target.to_string_lossy();
    let (storage, only): (Arc<dyn Storage>, Option<String>) = if text.starts_with("s3://") {
        let dir = crate::checkpoint::S3Dir::open(&text, &args.s3.aws(), &args.s3.s3_endpoint_url)?;
        (Arc::new(dir), None)
    } else if target.is_dir() {
        (Arc::new(LocalDir::new(target)), None)
    } else {
        let parent = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        (Arc::new(LocalDir::new(parent)), Some(name))
    };
    // One file: its folder's listing tells which locks exist (none if it cannot be listed).
    let listed: BTreeSet<String> = match &only {
        Some(_) => storage.list().unwrap_or_default().into_iter().collect(),
        None => storage.list()?.into_iter().collect(),
    };
    let names: Vec<Names> = match only {
        Some(n) => Names::of_checkpoint(&n).into_iter().collect(),
        None => listed
            .iter()
            .filter_map(|n| Names::of_checkpoint(n))
            .collect(),
    };
    Ok(Opened {
        storage,
        names,
        listed,
    })
}

/// Print every checkpoint of `--checkpoint-dir` (or the one file given), and for a migration
/// split in shards, every shard's state; exit code 0, or an error (exit 2) after the listing
/// when a checkpoint could not be shown.
pub fn run(args: &StatusArgs) -> Result<u8> {
    let Opened {
        storage,
        names,
        listed,
    } = open(args)?;
    if names.is_empty() {
        return Err(Error::config(format!(
            "no checkpoint in {}: nothing has run with this --checkpoint-dir yet",
            args.checkpoint_dir.display()
        )));
    }
    let mut described: Vec<(Names, serde_json::Value)> = Vec::new();
    let mut unreadable: Vec<serde_json::Value> = Vec::new();
    for n in names {
        match describe(storage.as_ref(), &n) {
            Ok(d) => described.push((n, d)),
            Err(why) => unreadable.push(json!({
                "checkpoint": storage.show(&n.checkpoint),
                "error": why,
            })),
        }
    }
    let mut bases: Vec<&str> = described.iter().map(|(n, _)| n.base.as_str()).collect();
    bases.dedup();
    let migrations: Vec<serde_json::Value> = bases
        .iter()
        .filter_map(|b| shards_of(storage.as_ref(), b, &described, &listed))
        .collect();
    let mut all: Vec<serde_json::Value> = described.into_iter().map(|(_, d)| d).collect();
    all.extend(unreadable.iter().cloned());
    if args.json {
        // One shape always, however many checkpoints and migrations.
        let out = json!({"checkpoints": all, "migrations": migrations});
        out!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::config(e.to_string()))?
        );
    } else {
        for m in &migrations {
            print_shards(m);
        }
        for d in &all {
            match d["error"].as_str() {
                Some(why) => print_unreadable(d, why),
                None => print_checkpoint(d, args.segments),
            }
        }
    }
    match unreadable.is_empty() {
        true => Ok(0),
        false => Err(unreadable_error(&unreadable)),
    }
}

/// Exit 2 after the listing, naming the checkpoints that could not be shown (the first few).
fn unreadable_error(unreadable: &[serde_json::Value]) -> Error {
    const NAMED: usize = 5;
    let mut lines: Vec<String> = unreadable
        .iter()
        .take(NAMED)
        .map(|u| format!("  - {}: {}", text(&u["checkpoint"]), text(&u["error"])))
        .collect();
    if unreadable.len() > NAMED {
        lines.push(format!("  - and {} more", unreadable.len() - NAMED));
    }
    Error::config(format!(
        "{} checkpoint(s) could not be shown (listed with the others):\n{}\nA run of such a \
         checkpoint refuses it too; if ddb2pg did not write it, remove it and check who can \
         write this folder or prefix",
        unreadable.len(),
        lines.join("\n")
    ))
}

fn print_unreadable(d: &serde_json::Value, why: &str) {
    out!("{}", text(&d["checkpoint"]));
    out!("  error    {}", printable(why));
}

fn print_shards(m: &serde_json::Value) {
    out!(
        "migration {}: {} shards, {} done, {} running, {} failed, {} not started; {} items{}",
        text(&m["migration"]),
        m["shards_total"],
        m["shards_done"],
        m["shards_running"],
        m["shards_failed"],
        m["shards_not_started"],
        m["items"],
        if m["complete"] == true {
            " (complete)"
        } else {
            ""
        }
    );
    if let Some(p) = m["problem"].as_str() {
        out!("  problem: {p}");
    }
    for r in m["shards"].as_array().into_iter().flatten() {
        out!(
            "  shard {:<7}  {:<11}  {:>9} items  {:>4}/{:<4} segments{}",
            r["shard"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["items"],
            r["segments_done"],
            r["segments"],
            r["lock_holder"]
                .as_str()
                .map(|h| format!("  ({})", printable(h)))
                .unwrap_or_default()
        );
    }
}

/// A string field of the status as shown in text (control characters escaped).
fn text(v: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    printable(v.as_str().unwrap_or(""))
}

fn print_checkpoint(d: &serde_json::Value, list_segments: bool) {
    let s = &d["settings"];
    out!("{}", text(&d["checkpoint"]));
    let follows = d["stream"].as_object();
    if let Some(st) = follows {
        follower::print(d, st);
    }
    out!("  source   {}", text(&s["source"]));
    out!("  target   {}", text(&s["target"]));
    out!("  mapping  {}", text(&s["mapping"]));
    if follows.is_some() {
        if let Some(p) = d["lock_problem"].as_str() {
            out!("  lock     {p}");
        }
        follower::print_load(d);
        if list_segments {
            print_segments(d);
        }
        return;
    }
    out!(
        "  state    {}{}",
        if d["complete"] == true {
            "complete"
        } else {
            "incomplete"
        },
        match (d["running"] == true, d["lock_holder"].as_str()) {
            (true, Some(h)) => format!(", running now ({})", printable(h)),
            (true, None) => ", running now".to_string(),
            _ => ", no run holds the lock".to_string(),
        }
    );
    // Built by `describe` from names already escaped.
    if let Some(p) = d["lock_problem"].as_str() {
        out!("  lock     {p}");
    }
    out!(
        "  segments {} done, {} in progress, {} pending (of {}{})",
        d["segments_done"],
        d["segments_in_progress"],
        d["segments_pending"],
        d["segments_total"],
        d["shard"]
            .as_str()
            .map(|sh| format!(", shard {sh} of {} in all", s["segments"]))
            .unwrap_or_default()
    );
    out!(
        "  items    {} committed, {} rows written, {} rejected{}",
        d["items"],
        d["rows_written"],
        d["rejected"],
        d["rejects_file"]
            .as_str()
            .map(|f| format!(" (see {})", printable(f)))
            .unwrap_or_default()
    );
    print_segments(d);
}

/// One line per segment begun.
fn print_segments(d: &serde_json::Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Settings;

    #[test]
    fn crafted_counts_and_times_are_refused_not_overflowed() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-status-big-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let storage = LocalDir::new(&dir);
        let settings = Settings {
            source: "arn:t".into(),
            target: "postgres://u@h:5432/d".into(),
            mapping: "m".into(),
            segments: 2,
            shard: None,
        };
        let name = "t-0123.json";
        let names = Names::of_checkpoint(name).expect("names");
        type Craft = fn(&mut Checkpoint);
        let crafts: [(&str, Craft); 4] = [
            ("items", |cp| {
                cp.segments.iter_mut().for_each(|s| s.items = u64::MAX)
            }),
            ("newest_applied_ms", |cp| {
                cp.stream = Some(crate::checkpoint::StreamState {
                    newest_applied_ms: Some(i64::MIN),
                    ..Default::default()
                })
            }),
            ("follow_from", |cp| {
                cp.stream = Some(crate::checkpoint::StreamState {
                    follow_from: u64::MAX,
                    ..Default::default()
                })
            }),
            ("runs", |cp| cp.segments[0].runs = u32::MAX),
        ];
        for (what, craft) in crafts {
            let mut cp = Checkpoint::new(settings.clone());
            craft(&mut cp);
            cp.save(&dir.join(name)).expect("save");
            let got = describe(&storage, &names);
            let why = got.expect_err(what);
            assert!(
                why.contains("damaged") && why.contains(what),
                "{what}: {why}"
            );
        }
        // At the bounds: shown, the sums within a u64.
        let mut cp = Checkpoint::new(settings);
        cp.segments
            .iter_mut()
            .for_each(|s| s.items = crate::checkpoint::MAX_COUNT);
        cp.save(&dir.join(name)).expect("save");
        let d = describe(&storage, &names).expect("shown");
        assert_eq!(d["items"], 2 * crate::checkpoint::MAX_COUNT);
    }

    #[test]
    fn a_name_must_agree_with_the_shard_its_checkpoint_records() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-status-name-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let storage = LocalDir::new(&dir);
        let settings = |shard| Settings {
            source: "arn:t".into(),
            target: "postgres://u@h:5432/d".into(),
            mapping: "m".into(),
            segments: 4,
            shard,
        };
        let one = Shard { index: 1, count: 2 };
        for (name, shard, ok) in [
            ("t-0123.shard-1-of-2.json", Some(one), true),
            ("t-0123.shard-0-of-2.json", Some(one), false),
            ("t-0123.json", Some(one), false),
            ("t-0124.shard-1-of-2.json", None, false),
        ] {
            Checkpoint::new(settings(shard))
                .save(&dir.join(name))
                .expect("save");
            let names = Names::of_checkpoint(name).expect("names");
            let got = describe(&storage, &names);
            assert_eq!(got.is_ok(), ok, "{name}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("its name says"), "{e}");
            }
        }
    }
}
