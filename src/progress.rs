//! Live counters of a run and their display: indicatif bars on a terminal, a log line every
//! `--progress-interval` seconds otherwise (with `--log-format json`, always the log line, its
//! figures as fields).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::cli::ProgressMode;

/// Counters shared by all stages of this run (this run only, not earlier ones).
#[derive(Debug, Default)]
pub struct Stats {
    /// Items received from the source.
    pub items_read: AtomicU64,
    /// Items whose rows are committed (or that were rejected and recorded).
    pub items_committed: AtomicU64,
    pub rows_inserted: AtomicU64,
    pub rows_updated: AtomicU64,
    pub rows_unchanged: AtomicU64,
    /// Rows deleted (incremental exports).
    pub rows_deleted: AtomicU64,
    pub collisions: AtomicU64,
    pub rejected: AtomicU64,
    pub segments_done: AtomicU64,
    /// Items no table rule matched (skipped).
    pub skipped: AtomicU64,
    /// Stream changes applied (`--follow`), by kind.
    pub changes_inserted: AtomicU64,
    pub changes_modified: AtomicU64,
    pub changes_removed: AtomicU64,
    /// Changes without an old image whose old rows could not be found, and why (one reason).
    pub changes_unsure: AtomicU64,
    pub unsure_reason: Mutex<Option<String>>,
    /// The stream's shards not yet read to their end, and those that are.
    pub shards_open: AtomicU64,
    pub shards_closed: AtomicU64,
    /// ApproximateCreationDateTime (ms) of the newest applied record (0: none).
    pub newest_change_ms: std::sync::atomic::AtomicI64,
    /// The follower's largest shard lag (ms), once `lag_known`.
    pub lag_ms: std::sync::atomic::AtomicI64,
    pub lag_known: std::sync::atomic::AtomicBool,
    /// Since when (epoch ms) the follower has been caught up: every listed shard applied to within
    /// `--caught-up-lag` and none waiting; 0 while it is not (or when not following).
    pub caught_up_since_ms: std::sync::atomic::AtomicI64,
    /// Listed shards not applied to within `--caught-up-lag` (waiting ones included).
    pub shards_behind: AtomicU64,
    /// Per target table.
    pub tables: Mutex<BTreeMap<String, TableTotals>>,
    /// Rejections by table and reason kind.
    pub rejects_by_reason: Mutex<BTreeMap<String, u64>>,
    /// PostgreSQL attempts retried after a transient failure.
    pub pg_retries: AtomicU64,
    /// DynamoDB (Scan) and DynamoDB Streams calls refused for throughput (throttled,
    /// LimitExceeded), as ddb2pg sees them after the SDK's own retries.
    pub ddb_throttles: AtomicU64,
    /// The lag (ms) of each shard being read now, from the follower's last tick.
    pub shard_lag_ms: Mutex<BTreeMap<String, i64>>,
    /// When the checkpoint was last written (epoch ms; 0: not in this run).
    pub checkpoint_written_ms: AtomicI64,
    /// Batch commit times (a page of the load, a lane's batch of the follower).
    pub commit_seconds: crate::metrics::CommitTimes,
    /// The writer's batch commits and the reader's source calls, for /healthz.
    pub writer: crate::metrics::Activity,
    pub reader: crate::metrics::Activity,
    /// The load's memory budget (`--max-memory`), while there is one.
    pub memory: Mutex<Option<Arc<crate::budget::Budget>>>,
    /// `crate::metrics::Phase` as a number.
    pub phase: std::sync::atomic::AtomicU8,
    /// The load part is finished (in this run or an earlier one).
    pub load_done: AtomicBool,
}

/// What this run did to one target table.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TableTotals {
    pub rows_inserted: u64,
    pub rows_updated: u64,
    pub rows_unchanged: u64,
    /// Rows that landed on a key another item of this run also produced (last write wins).
    pub collisions: u64,
}

impl Stats {
    pub fn add_table(&self, table: &str, c: &crate::sink::TableCounts) {
        let mut m = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let t = m.entry(table.to_string()).or_default();
        t.rows_inserted += c.inserted;
        t.rows_updated += c.updated;
        t.rows_unchanged += c.unchanged();
        t.collisions += c.collisions();
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn rows_written(&self) -> u64 {
        Self::get(&self.rows_inserted) + Self::get(&self.rows_updated)
    }

    pub fn set_phase(&self, phase: crate::metrics::Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> crate::metrics::Phase {
        crate::metrics::Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub fn count_reject(&self, key: String) {
        Self::add(&self.rejected, 1);
        let mut m = self
            .rejects_by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_default() += 1;
    }
}

/// What the display needs to know besides the counters.
pub struct ProgressInfo {
    pub mode: ProgressMode,
    /// DescribeTable's ItemCount: approximate, refreshed by DynamoDB every few hours.
    pub approx_items: u64,
    /// Items already committed by earlier runs.
    pub items_before: u64,
    pub segments_total: u64,
    pub segments_done_before: u64,
    /// Between two log lines.
    pub interval: Duration,
}

/// Run the display until `stop` turns true.
pub async fn run(info: ProgressInfo, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let mode = match info.mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() && !crate::say::json() => {
            ProgressMode::Bar
        }
        ProgressMode::Auto => ProgressMode::Log,
        m => m,
    };
    if mode == ProgressMode::None {
        return;
    }
    let started = Instant::now();
    let bar = (mode == ProgressMode::Bar).then(|| {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    });
    let tick = if bar.is_some() {
        Duration::from_millis(200)
    } else {
        info.interval
    };
    let mut interval = tokio::time::interval(tick);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        let read = Stats::get(&stats.items_read);
        let segs = info.segments_done_before + Stats::get(&stats.segments_done);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let line = Line {
            read,
            done: info.items_before + read,
            approx: info.approx_items.max(info.items_before + read),
            rate: read as f64 / secs,
            rows: stats.rows_written(),
            unchanged: Stats::get(&stats.rows_unchanged),
            rejected: Stats::get(&stats.rejected),
            segments: (segs, info.segments_total),
        };
        match &bar {
            Some(pb) => {
                let width = console::Term::stderr()
                    .size_checked()
                    .map_or(80, |(_, w)| w as usize);
                pb.set_message(line.fit(width));
            }
            None => line.say(),
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}

/// One progress line's figures.
struct Line {
    /// Items read by this run.
    read: u64,
    /// Items read by this run and committed by earlier ones.
    done: u64,
    approx: u64,
    rate: f64,
    rows: u64,
    unchanged: u64,
    rejected: u64,
    segments: (u64, u64),
}

/// 987, 12.3k, 4.56M: short enough for a terminal line.
fn short(n: f64) -> String {
    match n {
        n if n < 10_000.0 => format!("{n:.0}"),
        n if n < 1e6 => format!("{:.1}k", n / 1e3),
        n if n < 1e9 => format!("{:.2}M", n / 1e6),
        n => format!("{:.2}G", n / 1e9),
    }
}

impl Line {
    /// The log line: `ddb2pg: <parts> (ItemCount is approximate)`, or its figures as fields.
    fn say(&self) {
        let fields = crate::say::fields_of(&serde_json::json!({
            "items_read": self.read,
            "items_done": self.done,
            "items_approx": self.approx,
            "rate": (self.rate * 10.0).round() / 10.0,
            "eta_s": self.eta_s(),
            "rows_written": self.rows,
            "rows_unchanged": self.unchanged,
            "rejected": self.rejected,
            "segments_done": self.segments.0,
            "segments_total": self.segments.1,
        }));
        crate::say::event(crate::say::Level::Info, "progress", fields, || {
            format!(
                "ddb2pg: {} (ItemCount is approximate)",
                self.parts().join(", ")
            )
        });
    }

    /// Seconds left at this rate, to the approximate count.
    fn eta_s(&self) -> Option<u64> {
        (self.rate > 0.0 && self.approx > self.done)
            .then(|| ((self.approx - self.done) as f64 / self.rate).ceil() as u64)
    }

    /// The parts, most important first.
    fn parts(&self) -> Vec<String> {
        let eta = self.eta_s();
        let mut v = vec![
            format!(
                "{}/~{} items",
                short(self.done as f64),
                short(self.approx as f64)
            ),
            format!("{}/s", short(self.rate)),
        ];
        if let Some(e) = eta {
            v.push(match e {
                e if e < 120 => format!("ETA ~{e}s"),
                e if e < 7200 => format!("ETA ~{}m", e.div_ceil(60)),
                e => format!("ETA ~{}h", e.div_ceil(3600)),
            });
        }
        v.push(format!("{} rejected", short(self.rejected as f64)));
        v.push(format!("{} rows written", short(self.rows as f64)));
        v.push(format!("segments {}/{}", self.segments.0, self.segments.1));
        v.push(format!("{} unchanged", short(self.unchanged as f64)));
        v
    }

    /// A bar and as many parts as fit in `width` columns (never wrapping): the least
    /// important parts go first, then the bar.
    fn fit(&self, width: usize) -> String {
        let mut parts = self.parts();
        let room = width.saturating_sub(1);
        loop {
            let text = parts.join(" | ");
            let bar_room = room.saturating_sub(text.chars().count() + 1);
            if bar_room >= 12 {
                let w = bar_room.min(40);
                let filled = if self.approx == 0 {
                    0
                } else {
                    ((self.done.min(self.approx) as f64 / self.approx as f64) * w as f64) as usize
                };
                return format!("{}{} {text}", "#".repeat(filled), "-".repeat(w - filled));
            }
            if parts.len() > 1 {
                parts.pop();
                continue;
            }
            return text.chars().take(room).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_fits_its_terminal() {
        let l = Line {
            read: 22_192,
            done: 22_192,
            approx: 120_000,
            rate: 14_245.574_6,
            rows: 28_442,
            unchanged: 0,
            rejected: 0,
            segments: (4, 32),
        };
        for width in [20, 40, 60, 80, 120, 200] {
            let s = l.fit(width);
            assert!(s.chars().count() < width, "{width}: {s:?}");
            assert!(!s.contains("5746"), "{s}");
        }
        let wide = l.fit(200);
        assert!(
            wide.contains("14.2k/s") && wide.contains("ETA ~7s"),
            "{wide}"
        );
        assert!(wide.contains("segments 4/32"), "{wide}");
        assert!(
            l.fit(60).starts_with('#'),
            "a bar when it fits: {}",
            l.fit(60)
        );
        assert!(l.fit(20).starts_with("22.2k/~120.0k"), "{}", l.fit(20));
    }
}
