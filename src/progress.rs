//! Live counters of a run and their display: indicatif bars on a terminal, a log line every
//! few seconds otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Per target table.
    pub tables: Mutex<BTreeMap<String, TableTotals>>,
    /// Rejections by table and reason kind.
    pub rejects_by_reason: Mutex<BTreeMap<String, u64>>,
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
}

/// Run the display until `stop` turns true.
pub async fn run(info: ProgressInfo, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let mode = match info.mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::Log,
        m => m,
    };
    if mode == ProgressMode::None {
        return;
    }
    let started = Instant::now();
    let bar = (mode == ProgressMode::Bar).then(|| {
        let len = info.approx_items.max(info.items_before);
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/~{human_len} items ({per_sec}, ETA ~{eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_position(info.items_before);
        pb
    });
    let tick = if bar.is_some() {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
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
        let msg = format!(
            "| {} rows written, {} unchanged, {} rejected | segments {segs}/{}",
            stats.rows_written(),
            Stats::get(&stats.rows_unchanged),
            Stats::get(&stats.rejected),
            info.segments_total
        );
        match &bar {
            Some(pb) => {
                pb.set_position(info.items_before + read);
                pb.set_message(msg);
            }
            None => {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "ddb2pg: {} items read of ~{} (ItemCount is approximate), {:.0} items/s {msg}",
                    info.items_before + read,
                    info.approx_items,
                    read as f64 / secs
                );
            }
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}
