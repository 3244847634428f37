//! What is checked when a stored checkpoint is read, as anyone who can write the folder or
//! prefix may have written it: JSON of this format version, its checksum, a segment list of
//! its settings' length, a shard some run can be, and counts and times no arithmetic on them
//! can overflow (each count at most [`MAX_COUNT`], so sums over [`MAX_SEGMENTS`] segments fit a
//! u64; times at most the year 9999). [`Checkpoint::decode`] refuses with the way out (for a
//! run); [`Checkpoint::inspect`] gives the reason alone (for `status`).

use super::{printable, Checkpoint, MAX_COUNT, MAX_EPOCH_S, MAX_SEGMENTS, VERSION};
use crate::error::{Error, Result};
use crate::shard::Shard;

/// What is wrong with a stored checkpoint ([`Checkpoint::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// Not JSON, a checksum mismatch, counts that disagree.
    Damaged(String),
    /// Another format version.
    Version(u32),
    /// Something no ddb2pg writes (an impossible shard).
    NotOurs(String),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Damaged(why) => write!(f, "damaged ({why})"),
            Bad::Version(v) => write!(
                f,
                "format version {v}, this ddb2pg reads version {VERSION} (written by another ddb2pg)"
            ),
            Bad::NotOurs(why) => write!(f, "{why}: not written by ddb2pg"),
        }
    }
}

impl Checkpoint {
    /// Parse and check a stored document; `at` names it in messages. A damaged document is an
    /// error that names it and the way out, never a silent start-over.
    pub fn decode(bytes: &[u8], at: &str) -> Result<Checkpoint> {
        let at = printable(at);
        Checkpoint::inspect(bytes).map_err(|bad| {
            Error::config(match bad {
                Bad::Damaged(why) => format!(
                    "checkpoint {at} is damaged ({why}); it cannot be trusted for a resume. \
                     Run again with --restart to discard it and start over (upserts are \
                     idempotent, so rows already written are not duplicated)"
                ),
                Bad::Version(v) => format!(
                    "checkpoint {at} has format version {v}, this ddb2pg reads version \
                     {VERSION}; finish the run with the ddb2pg that wrote it, or use --restart"
                ),
                Bad::NotOurs(why) => format!(
                    "checkpoint {at} {why}: it was not written by ddb2pg. Remove it (and check \
                     who can write this folder or prefix), then run again"
                ),
            })
        })
    }

    /// A stored document parsed and checked, or what is wrong with it, without advice (for
    /// `status`, which shows it beside the readable ones).
    pub fn inspect(bytes: &[u8]) -> std::result::Result<Checkpoint, Bad> {
        let cp: Checkpoint = serde_json::from_slice(bytes)
            .map_err(|e| Bad::Damaged(format!("not valid JSON: {e}")))?;
        if cp.version != VERSION {
            return Err(Bad::Version(cp.version));
        }
        if cp.checksum != cp.compute_checksum() {
            return Err(Bad::Damaged("checksum mismatch".into()));
        }
        if cp.segments.len() != cp.settings.segments as usize {
            return Err(Bad::Damaged(
                "segment count does not match its settings".into(),
            ));
        }
        if let Some(why) = cp.settings.shard.and_then(|s| s.check().err()) {
            let s = cp.settings.shard.unwrap_or(Shard { index: 0, count: 0 });
            return Err(Bad::NotOurs(format!(
                "says it is shard {}/{}, which no ddb2pg run can be ({why})",
                s.index, s.count
            )));
        }
        if cp.settings.segments > MAX_SEGMENTS {
            return Err(Bad::Damaged(format!(
                "{} segments, more than the {MAX_SEGMENTS} ddb2pg scans",
                cp.settings.segments
            )));
        }
        if let Some(why) = cp.out_of_bounds() {
            return Err(Bad::Damaged(why));
        }
        Ok(cp)
    }

    /// A count or time no run can have reached, if any: each count at most [`MAX_COUNT`] (so
    /// sums over [`MAX_SEGMENTS`] segments fit a u64), times (epoch seconds) at most
    /// [`MAX_EPOCH_S`] and the stream's newest record time in 0..=`MAX_EPOCH_S` x 1000 ms, so
    /// that arithmetic on them (lag, sums, seconds to ms) cannot overflow.
    fn out_of_bounds(&self) -> Option<String> {
        let count = |what: &str, n: u64| {
            (n > MAX_COUNT).then(|| format!("{what} {n}, more than any run counts"))
        };
        let time = |what: &str, t: u64| {
            (t > MAX_EPOCH_S).then(|| format!("{what} {t}, past the year 9999"))
        };
        let mut found = time("created_at", self.created_at)
            .or_else(|| time("updated_at", self.updated_at))
            .or_else(|| count("rejects_bytes", self.rejects_bytes.unwrap_or(0)));
        for (i, s) in self.segments.iter().enumerate() {
            let counts = [
                ("items", s.items),
                ("rows_written", s.rows_written),
                ("rows_unchanged", s.rows_unchanged),
                ("rejected", s.rejected),
                ("skipped", s.skipped),
            ];
            found = found
                .or_else(|| {
                    let mut c = counts.iter();
                    c.find_map(|&(what, n)| count(&format!("segment {i}: {what}"), n))
                })
                .or_else(|| (s.runs == u32::MAX).then(|| format!("segment {i}: runs {}", s.runs)));
        }
        if let Some(st) = &self.stream {
            let counts = [
                ("inserted", st.inserted),
                ("modified", st.modified),
                ("removed", st.removed),
                ("rejected", st.rejected),
                ("shards_behind", st.shards_behind),
            ];
            found = found
                .or_else(|| {
                    let mut c = counts.iter();
                    c.find_map(|&(what, n)| count(&format!("stream: {what}"), n))
                })
                .or_else(|| time("stream: follow_from", st.follow_from))
                .or_else(|| time("stream: caught_up_at", st.caught_up_at.unwrap_or(0)))
                .or_else(|| time("stream: first_round_at", st.first_round_at.unwrap_or(0)))
                .or_else(|| {
                    let times = [
                        ("newest_applied_ms", st.newest_applied_ms),
                        ("caught_up_since_ms", st.caught_up_since_ms),
                        ("lag_ms", st.lag_ms),
                        ("lag_at_ms", st.lag_at_ms),
                    ];
                    times.iter().find_map(|&(what, ms)| {
                        let ms = ms.unwrap_or(0);
                        (!(0..=MAX_EPOCH_S as i64 * 1000).contains(&ms))
                            .then(|| format!("stream: {what} {ms}, not a time"))
                    })
                });
        }
        found
    }
}
