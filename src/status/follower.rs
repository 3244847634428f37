//! `status` of a checkpoint that follows a stream (`migrate --follow`): the follower first (is
//! it running, caught up since when or behind by how much, its shards, its changes and
//! rejects), the load it began with in one line.
//!
//! **Lag** comes from what the follower saved (`StreamState::lag_ms` as of `lag_at_ms`, kept
//! on every write of the checkpoint, never by a write of its own): a running follower that is
//! caught up is within `--caught-up-lag`; one that is behind falls further behind by the time
//! since, unless it committed something, which would have written the checkpoint again. A
//! stopped follower's lag is the one it had when it stopped (`lag_as_of`).

use serde_json::{json, Value};

use super::text;
use crate::checkpoint::{printable, StreamState};
use crate::follow::verdict;

/// The `stream` object of a checkpoint's status. `running`: a run holds the lock;
/// `loaded`: the load is complete.
pub(super) fn describe(
    st: &StreamState,
    running: bool,
    loaded: bool,
    rejects_file: Option<&str>,
    now_ms: i64,
) -> Value {
    let shards = crate::follow::shard_counts(st);
    let state = match (running, loaded) {
        (true, true) => "following",
        (true, false) => "loading",
        (false, _) => "stopped",
    };
    let following = state == "following";
    let caught_up = following && st.caught_up_since_ms.is_some();
    let lag_ms = match (st.lag_ms, st.lag_at_ms) {
        (Some(l), Some(at)) if following && !caught_up => {
            Some(l + now_ms.saturating_sub(at).max(0))
        }
        (Some(l), Some(_)) => Some(l),
        _ => None,
    };
    json!({
        "arn": st.arn,
        "follow_from": st.follow_from,
        "state": state,
        "caught_up": caught_up,
        "caught_up_since": st.caught_up_since_ms.and_then(verdict::rfc3339),
        "caught_up_since_ms": st.caught_up_since_ms,
        "lag_s": lag_ms.map(|l| l.max(0) as f64 / 1000.0),
        "lag_as_of": st.lag_at_ms.and_then(verdict::rfc3339),
        "shards_behind": st.shards_behind,
        "shards_open": shards.get("open").copied().unwrap_or(0),
        "shards_closed": shards.get("closed").copied().unwrap_or(0),
        "changes_inserted": st.inserted,
        "changes_modified": st.modified,
        "changes_removed": st.removed,
        "rejected_since_load": st.rejected,
        "rejects_file": rejects_file,
        "caught_up_at": st.caught_up_at,
    })
}

/// The follower's section of the text status, then the load in one line (its segments with
/// `--segments`).
pub(super) fn print(d: &Value, st: &serde_json::Map<String, Value>) {
    let lag = st["lag_s"]
        .as_f64()
        .map_or("unknown".to_string(), |l| format!("{l:.1} s"));
    let since = st["caught_up_since_ms"].as_i64();
    let holder = d["lock_holder"]
        .as_str()
        .map(|h| format!(" ({})", printable(h)))
        .unwrap_or_default();
    out!("  follower {}{holder}", state_line(st));
    let verdict = match st["state"].as_str() {
        Some("following") => match since {
            Some(t) => format!("caught up since {} (lag {lag})", verdict::clock(t)),
            None => format!(
                "behind: lag {lag} on {} of the listed shards",
                st["shards_behind"]
            ),
        },
        Some("loading") => "not following yet: the stream is applied once the load is done".into(),
        _ => match since {
            Some(t) => format!(
                "was caught up (since {}) when it stopped; lag then {lag}",
                verdict::clock(t)
            ),
            None => format!("was behind when it stopped (lag then {lag})"),
        },
    };
    out!("  verdict  {verdict}");
    out!(
        "  changes  {} inserted, {} modified, {} removed",
        st["changes_inserted"],
        st["changes_modified"],
        st["changes_removed"]
    );
    out!(
        "  shards   {} open, {} closed",
        st["shards_open"],
        st["shards_closed"]
    );
    out!(
        "  rejects  {} since the load{}",
        st["rejected_since_load"],
        st["rejects_file"]
            .as_str()
            .map(|f| format!(" (see {})", printable(f)))
            .unwrap_or_default()
    );
    let from = st["follow_from"]
        .as_i64()
        .and_then(|s| verdict::rfc3339(s.saturating_mul(1000)))
        .unwrap_or_default();
    out!("  stream   {} (from {from})", text(&st["arn"]));
}

fn state_line(st: &serde_json::Map<String, Value>) -> &'static str {
    match st["state"].as_str() {
        Some("following") => "following now",
        Some("loading") => "loading now (follows once loaded)",
        _ => "stopped (no run holds the lock)",
    }
}

/// The load in one line.
pub(super) fn print_load(d: &Value) {
    out!(
        "  load     {} items, {} rows written, {} rejected; {}/{} segments done{}",
        d["items"],
        d["rows_written"],
        d["rejected"],
        d["segments_done"],
        d["segments_total"],
        if d["complete"] == true {
            " (complete)"
        } else {
            ""
        }
    );
}
