//! The stream's shard lineage against the checkpoint (pure): which shards may be read now,
//! which the checkpoint may forget, and which situations are gaps.
//!
//! - **A child after its parent.** DynamoDB keeps one key in one shard at a time, and a
//!   split closes the parent and opens children for its keys. A child may start only once its
//!   parent is *done*: read to its end and every record committed (`ShardState::closed`).
//!   Waiting for the commit, not only the read, keeps the checkpoint simple: a child's
//!   position is never ahead of an unfinished parent's, so a resume never re-applies a
//!   parent's record after a child's change of the same key.
//! - **A parent listed wins.** Whatever the time, a child whose parent DescribeStream still
//!   lists waits for that parent.
//! - **A parent never seen.** A child whose parent is neither listed nor in the checkpoint had
//!   its parent trimmed before this follower saw it: harmless while everything trimmed is
//!   older than the load (the load began less than the retention ago), a gap otherwise.
//! - **Gone unread.** A shard in the checkpoint, not done, that DescribeStream no longer lists
//!   is a gap: never "finished".
//! - **Pruning.** A done shard that DescribeStream no longer lists and whose known children
//!   are all done is dropped from the checkpoint: nothing will ask for it again, and the
//!   checkpoint stays small over weeks of following.

use std::collections::{BTreeMap, HashMap};

use super::{data_missed, MARGIN_SECS};
use crate::checkpoint::{ShardState, StreamState};
use crate::error::Result;
use crate::source::stream::ShardInfo;

/// What one DescribeStream means for the checkpoint.
#[derive(Debug, Default, PartialEq)]
pub struct Lineage {
    /// The shards the checkpoint knows now (new ones added, pruned ones removed).
    pub known: BTreeMap<String, ShardState>,
    /// Shards that may be read now: not done, and without a parent still to finish.
    pub eligible: Vec<String>,
    /// Shards dropped from the checkpoint.
    pub pruned: usize,
}

/// Whether the load began longer ago than the retention (less the margin): records from
/// before it may have been trimmed unread.
fn long_ago(state: &StreamState, now: u64) -> bool {
    !super::within_retention(state.follow_from, now)
}

/// Plan this DescribeStream's shards against the checkpoint (`now`: epoch seconds).
pub fn plan(state: &StreamState, shards: &[ShardInfo], now: u64) -> Result<Lineage> {
    let described: HashMap<&str, &ShardInfo> = shards.iter().map(|s| (s.id.as_str(), s)).collect();
    for (id, s) in &state.shards {
        if !s.closed && !described.contains_key(id.as_str()) {
            return Err(data_missed(&format!(
                "shard {id} of the stream, not yet read to its end, is gone (past the 24-hour \
                 retention)"
            )));
        }
    }
    let age = now.saturating_sub(state.follow_from);
    let long_ago = long_ago(state, now);
    if long_ago && state.first_round_at.is_none() && state.shards.values().all(|s| s.seq.is_none())
    {
        return Err(data_missed(&format!(
            "the load is as of {} h ago, longer than the stream's 24-hour retention, before the \
             stream was first read",
            age / 3600
        )));
    }
    let mut known = state.shards.clone();
    for s in shards {
        // A shard new to the checkpoint that a shard already in it names as its parent was
        // pruned (done) or trimmed before it was seen: listed again (an inconsistent
        // DescribeStream), it must not be read again after its children moved on.
        let seen_child = state
            .shards
            .values()
            .any(|k| k.parent.as_deref() == Some(s.id.as_str()));
        known.entry(s.id.clone()).or_insert_with(|| ShardState {
            parent: s.parent.clone(),
            closed: seen_child,
            ..ShardState::default()
        });
    }
    refuse_cycles(&known)?;
    let mut eligible = Vec::new();
    for s in shards {
        if known.get(&s.id).is_some_and(|k| k.closed) {
            continue;
        }
        let ready = match &s.parent {
            None => true,
            // Listed, or known: wait until it is done.
            Some(p) if described.contains_key(p.as_str()) || state.shards.contains_key(p) => {
                known.get(p).is_some_and(|k| k.closed)
            }
            // Unknown parent of a shard the checkpoint already holds: it was judged when the
            // shard was first seen (the parent was pruned, or trimmed before this follower
            // began); judging it again once the load is a day old would be a false gap.
            Some(_) if state.shards.contains_key(&s.id) => true,
            // Trimmed before we ever saw it: fine while all it held predates the load.
            Some(p) if long_ago => {
                return Err(data_missed(&format!(
                    "the load is as of {} h ago, longer than the stream's 24-hour retention, and \
                     shard {p} (parent of {}) is gone unread",
                    age / 3600,
                    s.id
                )))
            }
            Some(_) => true,
        };
        if ready {
            eligible.push(s.id.clone());
        }
    }
    let pruned = prune(&mut known, &described);
    Ok(Lineage {
        known,
        eligible,
        pruned,
    })
}

/// A shard that is its own ancestor (DynamoDB Streams never lists one) would wait for itself
/// forever: refused, naming the shards.
fn refuse_cycles(known: &BTreeMap<String, ShardState>) -> Result<()> {
    for start in known.keys() {
        let mut at = start;
        for _ in 0..=known.len() {
            match known.get(at).and_then(|k| k.parent.as_ref()) {
                Some(p) if p == start => {
                    return Err(crate::error::Error::Source {
                        message: format!(
                            "DynamoDB Streams lists shard {start} as its own ancestor (through \
                             {at}): its lineage cannot be read in order. Nothing after it was \
                             applied; report it, and run the same command again later"
                        ),
                        retryable: false,
                    })
                }
                Some(p) => at = p,
                None => break,
            }
        }
    }
    Ok(())
}

/// Drop done shards that are no longer listed and whose known children are all done.
fn prune(known: &mut BTreeMap<String, ShardState>, described: &HashMap<&str, &ShardInfo>) -> usize {
    let mut children_done: HashMap<&str, bool> = HashMap::new();
    for s in known.values() {
        if let Some(p) = &s.parent {
            let e = children_done.entry(p.as_str()).or_insert(true);
            *e &= s.closed;
        }
    }
    let gone: Vec<String> = known
        .iter()
        .filter(|(id, s)| {
            s.closed
                && !described.contains_key(id.as_str())
                && children_done.get(id.as_str()).copied().unwrap_or(true)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in &gone {
        known.remove(id);
    }
    gone.len()
}

/// Whether records trimmed from a shard never read (its start is past the retention) may
/// have been needed: yes when the load began longer ago than the retention, and the oldest
/// record still there (`first_created_ms`, None: none is) is not itself older than the load.
pub fn trim_is_gap(state: &StreamState, now: u64, first_created_ms: Option<i64>) -> bool {
    let from_ms = state.follow_from.saturating_sub(MARGIN_SECS) as i64 * 1000;
    let surviving_predates_load = first_created_ms.is_some_and(|t| t < from_ms);
    long_ago(state, now) && !surviving_predates_load
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
