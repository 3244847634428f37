//! The follower's verdict: caught up, or behind (pure, but for the clock of the texts).
//!
//! **Caught up** means every shard DescribeStream lists is applied to within `--caught-up-lag`
//! (AWS's cutover gate is an iterator age under a second): a closed shard is; a shard being read
//! is when its lag (`ShardTrack::lag_ms`: the oldest record not committed, zero idle at its end)
//! is within it; a shard not being read (waiting for its parent, or not started yet) is not.
//! The follower keeps since when it has been caught up (`Stats::caught_up_since_ms`, and the
//! checkpoint's `caught_up_since_ms`), and clears it when it falls behind.
//!
//! Exiting caught up (`--until-caught-up`, `ddb2pg finish`) asks more: every open shard also
//! quiet at its end (see `super::run`), so no record is still on its way.

use super::tracker::ShardTrack;

/// One listed shard, as the verdict sees it.
pub enum View<'a> {
    /// Read to its end and committed.
    Closed,
    /// Not being read: waiting for its parent, or not started yet.
    Unread,
    /// Being read.
    Read(&'a ShardTrack),
}

/// Whether every listed shard is applied to within the lag, and how many are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    pub current: bool,
    pub behind: u64,
}

/// The verdict over the listed shards at `now_ms` (none listed: not known, so not caught up).
pub fn assess<'a>(
    shards: impl Iterator<Item = View<'a>>,
    now_ms: i64,
    max_lag_ms: i64,
) -> Assessment {
    let (mut listed, mut behind) = (0u64, 0u64);
    for v in shards {
        listed += 1;
        let ok = match v {
            View::Closed => true,
            View::Unread => false,
            View::Read(t) => t.lag_ms(now_ms).is_some_and(|l| l <= max_lag_ms),
        };
        behind += u64::from(!ok);
    }
    Assessment {
        current: listed > 0 && behind == 0,
        behind,
    }
}

/// `HH:MM:SSZ` of an epoch-ms time (UTC).
pub fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "?".into())
}

/// RFC 3339 (UTC, seconds) of an epoch-ms time.
pub fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// "caught up since HH:MM:SSZ", or "behind: lag X s on N shards".
pub fn state_text(caught_up_since_ms: Option<i64>, lag_s: Option<f64>, behind: u64) -> String {
    match caught_up_since_ms {
        Some(t) => format!("caught up since {}", clock(t)),
        None => format!(
            "behind: lag {} on {behind} shard{}",
            lag_s.map_or("-".into(), |l| format!("{l:.1} s")),
            if behind == 1 { "" } else { "s" }
        ),
    }
}

/// What the exit paragraph says.
pub struct Ending<'a> {
    pub lag_s: f64,
    pub behind: u64,
    /// Changes (and items) this run rejected.
    pub rejected_this_run: u64,
    /// The follower's rejected changes since the load, over all runs.
    pub rejected_since_load: u64,
    pub rejects_file: &'a str,
}

/// The verdict printed when a follower exits caught up: one plain paragraph.
pub fn paragraph(e: &Ending) -> String {
    let mut s = format!(
        "caught up: lag {:.1} s, {} shards behind, ",
        e.lag_s, e.behind
    );
    if e.rejected_this_run == 0 {
        s.push_str("every change applied");
    } else {
        s.push_str(&format!(
            "every change applied or recorded in the rejects file: this run rejected {}",
            e.rejected_this_run
        ));
    }
    let plural = if e.rejected_since_load == 1 { "" } else { "s" };
    match e.rejected_since_load {
        0 => s.push_str("; no change rejected since the load"),
        n => s.push_str(&format!(
            "; {n} change{plural} rejected since the load (see {})",
            e.rejects_file
        )),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_needs_every_listed_shard_within_the_lag() {
        let mut idle = ShardTrack::default();
        idle.page(0, 1_000, 1_000);
        let mut busy = ShardTrack::default();
        busy.dispatch("1".into(), Some(5_000));
        let views = || vec![View::Closed, View::Read(&idle), View::Read(&busy)];
        let a = assess(views().into_iter(), 5_500, 1_000);
        assert_eq!(
            a,
            Assessment {
                current: true,
                behind: 0
            }
        );
        let a = assess(views().into_iter(), 7_000, 1_000);
        assert_eq!(
            a,
            Assessment {
                current: false,
                behind: 1
            }
        );
        // A shard waiting for its parent is behind, whatever the others.
        let a = assess([View::Closed, View::Unread].into_iter(), 5_500, 1_000);
        assert_eq!(
            a,
            Assessment {
                current: false,
                behind: 1
            }
        );
        // Nothing listed: not known.
        assert!(!assess(std::iter::empty(), 0, 1_000).current);
    }

    #[test]
    fn texts() {
        assert_eq!(clock(3_723_000), "01:02:03Z");
        assert_eq!(
            state_text(Some(3_723_000), Some(0.0), 0),
            "caught up since 01:02:03Z"
        );
        assert_eq!(
            state_text(None, Some(12.34), 2),
            "behind: lag 12.3 s on 2 shards"
        );
        let e = Ending {
            lag_s: 0.0,
            behind: 0,
            rejected_this_run: 0,
            rejected_since_load: 2,
            rejects_file: "r.jsonl",
        };
        assert_eq!(
            paragraph(&e),
            "caught up: lag 0.0 s, 0 shards behind, every change applied; 2 changes rejected \
             since the load (see r.jsonl)"
        );
    }
}
