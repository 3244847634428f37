//! `migrate --follow` after a load split in shards. Shards do not follow (`--follow` is refused
//! with `--shard`/`--shards`): a stream's shards are few, their order matters (a child only
//! after its parent) and one process applies them at a rate far above any table's write rate,
//! while splitting them would put N followers on one lineage. So the load runs as N shards,
//! and once every shard is done one `migrate --follow` (the same command without `--shard`)
//! takes their load as its own: its checkpoint starts complete, made of the shards' segments,
//! and follows the stream from when the first shard began (`created_at` of the oldest shard
//! checkpoint), so no change made while any shard scanned is missed.
//!
//! Refused, with what to do: a shard not done, shards that disagree, or a stream created after
//! the first shard began (its earlier changes are in no stream: the shards must load again).
//! An export loaded in shards is followed from the export's time instead (checked by
//! `super::handover`).

use crate::checkpoint::{Checkpoint, Names, Settings, Storage, StreamState};
use crate::error::{Error, Result};
use crate::shard::Shard;
use crate::source::stream::Stream;

/// The checkpoint of a follower over the completed shards of `names.base`, or None when this
/// run was never sharded. `as_of`: an export's time (epoch seconds), followed from instead of
/// when the first shard began.
pub(super) fn adopt(
    storage: &dyn Storage,
    names: &Names,
    settings: &Settings,
    stream: &Stream,
    as_of: Option<u64>,
) -> Result<Option<Checkpoint>> {
    let shards = shard_checkpoints(storage, &names.base)?;
    let Some((first, _)) = shards.first() else {
        return Ok(None);
    };
    let count = first.count;
    let status = format!("ddb2pg status --checkpoint-dir {}", storage.show(""));
    let status = status.trim_end_matches('/');
    let done: std::collections::HashSet<Shard> = shards
        .iter()
        .filter(|(_, cp)| cp.complete)
        .map(|(s, _)| *s)
        .collect();
    for index in 0..count {
        if !done.contains(&Shard { index, count }) {
            return Err(Error::config(format!(
                "--follow: this table was loaded in {count} shards and shard {index}/{count} is \
                 not done; run --follow (without --shard) once every shard is done (see `{status}`)"
            )));
        }
    }
    let total = shards[0].1.settings.segments;
    let mut want = settings.clone();
    want.segments = total;
    for (s, cp) in &shards {
        want.shard = Some(*s);
        let mut diffs = cp.settings.differences(&want);
        if s.count != count {
            diffs.push(format!("shards: {count} and {} in one folder", s.count));
        }
        if !diffs.is_empty() {
            return Err(Error::config(format!(
                "--follow: shard {s}'s checkpoint {} does not match this run:\n  - {}\n\
                 follow with the settings the shards used",
                storage.show(&format!("{}{}.json", names.base, s.suffix())),
                diffs.join("\n  - ")
            )));
        }
    }
    want.shard = None;
    let began = shards
        .iter()
        .map(|(_, cp)| cp.created_at)
        .min()
        .unwrap_or(0);
    let from = match as_of {
        Some(t) => t,
        None => {
            stream_on_since(stream, began)?;
            began
        }
    };
    let mut cp = Checkpoint::new(want);
    for (s, shard_cp) in &shards {
        for i in s.segments(total) {
            cp.segments[i as usize] = shard_cp.segments[i as usize].clone();
        }
    }
    cp.complete = true;
    cp.stream = Some(StreamState {
        arn: stream.arn.clone(),
        follow_from: from,
        // The shards' reject lines stay in their own files: not this run's to bound.
        rejected_elsewhere: cp.rejected(),
        ..StreamState::default()
    });
    let items: u64 = cp.segments.iter().map(|s| s.items).sum();
    let since = match as_of {
        Some(_) => "the export's time",
        None => "when the first shard began",
    };
    crate::say!(
        "--follow: the load was done by {count} shards ({items} items); following the \
         stream from {since} ({from}, epoch s)"
    );
    Ok(Some(cp))
}

/// Refuse a stream created after `began` (its earlier changes are in no stream); warn when its
/// ARN does not tell when it was created.
fn stream_on_since(stream: &Stream, began: u64) -> Result<()> {
    let created = stream_created(&stream.arn);
    if created.is_none() {
        crate::say!(
            warn: "cannot tell from {} when the stream was created: it must have \
             been on before the first shard began, or changes made in between are missed",
            stream.arn
        );
    }
    if let Some(created) = created.filter(|&c| c > began) {
        return Err(Error::config(format!(
            "--follow: the stream {} was created at {created} (epoch s), after the first shard \
             began at {began}: changes made in between are in no stream. Load again with the \
             stream on (--restart on every shard), then follow",
            stream.arn
        )));
    }
    Ok(())
}

/// The shard checkpoints of `base`, by shard.
fn shard_checkpoints(storage: &dyn Storage, base: &str) -> Result<Vec<(Shard, Checkpoint)>> {
    let mut v = Vec::new();
    for name in storage.list()? {
        let Some((b, shard)) = name.strip_suffix(".json").and_then(Shard::from_suffix) else {
            continue;
        };
        if b != base {
            continue;
        }
        if let Some((cp, _)) = Checkpoint::load_from(storage, &name)? {
            v.push((shard, cp));
        }
    }
    v.sort_by_key(|(s, _)| (s.count, s.index));
    Ok(v)
}

/// When a stream was created, from its ARN's label (`.../stream/2026-12-01T23:00:00.000`).
fn stream_created(arn: &str) -> Option<u64> {
    let label = arn.rsplit_once("/stream/")?.1;
    let t = chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    u64::try_from(t.and_utc().timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_label_is_its_creation_time() {
        let arn = "arn:aws:dynamodb:eu-west-1:1:table/app/stream/2024-01-02T03:04:05.678";
        assert_eq!(stream_created(arn), Some(1_704_164_645));
        assert_eq!(stream_created("arn:aws:dynamodb:x:1:table/app"), None);
    }
}
