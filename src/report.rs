//! The end-of-run summary: printed for humans, written as JSON with `--report`, and with an
//! `s3://` checkpoint location also kept beside the checkpoint ([`beside`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::say::Level;

pub mod beside;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// complete | nothing_to_do | interrupted | failed
    pub status: String,
    pub source_table: String,
    pub target: String,
    /// Items read from the source in this run.
    pub items_read: u64,
    /// Rows inserted or changed in this run.
    pub rows_written: u64,
    pub rows_inserted: u64,
    pub rows_updated: u64,
    /// Rows that were already identical in the target.
    pub rows_unchanged: u64,
    /// Rows deleted (incremental exports).
    pub rows_deleted: u64,
    /// Items of this run that landed on a key another item of the same batch also produced.
    pub collisions: u64,
    pub rejected: u64,
    /// Items rejected over all runs of this checkpoint.
    pub rejected_total: u64,
    /// Rejections by "table: reason".
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// Items no table rule matched (unrouted = "skip").
    pub skipped: u64,
    /// Per target table: rows inserted, updated, unchanged, collisions.
    pub tables: BTreeMap<String, crate::progress::TableTotals>,
    /// Segments of this run: all, or (with --shard) its shard's.
    pub segments_total: u64,
    /// `--shard I/N`: which part of the segments this run took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Segments finished, over all runs.
    pub segments_done: u64,
    /// Segments this run continued from a saved cursor.
    pub segments_resumed: u64,
    /// Segments already finished by an earlier run and not scanned again.
    pub segments_skipped: u64,
    /// Items committed over all runs of this checkpoint.
    pub items_total: u64,
    pub duration_s: f64,
    pub items_per_s: f64,
    pub checkpoint: String,
    pub rejects_file: Option<String>,
    pub error: Option<String>,
    /// Changes without an old image whose old rows could not be found (may have left rows).
    pub changes_unsure: u64,
    pub unsure_reason: Option<String>,
    /// `--dry-run`: nothing persists, no checkpoint is written (for the human summary).
    #[serde(skip)]
    pub dry_run: bool,
    /// An s3:// export: where its downloaded copies are, and whether they were removed.
    pub downloads: Option<crate::downloads::Outcome>,
    /// `--follow`: the stream's changes applied by this run, shards, lag.
    #[serde(flatten)]
    pub follow: Option<crate::follow::FollowSummary>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = self.to_json(&path.display().to_string())?;
        std::fs::write(path, json).map_err(|e| Error::file(path, e))
    }

    /// The report as `--report` writes it (and as it is kept beside an S3 checkpoint), its
    /// free texts (the target, the error) redacted like stderr; `at` names where it goes, for
    /// an error.
    pub fn to_json(&self, at: &str) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.shown()).map_err(|e| Error::file(at, e))
    }

    /// The report with its free texts redacted.
    fn shown(&self) -> Report {
        let redact = |s: &str| crate::pgconn::redact(s);
        let mut shown = self.clone();
        shown.target = redact(&self.target);
        shown.error = self.error.as_deref().map(redact);
        shown.unsure_reason = self.unsure_reason.as_deref().map(redact);
        shown
    }

    /// The summary on stderr: a few lines for a human, or (`--log-format json`) one line
    /// `"msg":"summary"` with the `--report` JSON's fields; level `error` when the run failed,
    /// `warn` when it was interrupted, rejected items or may have left rows, else `info`.
    pub fn print_summary(&self) {
        let level = match self.status.as_str() {
            "failed" => Level::Error,
            "interrupted" => Level::Warn,
            _ if self.rejected_total > 0 || self.changes_unsure > 0 => Level::Warn,
            _ => Level::Info,
        };
        crate::say::event(
            level,
            "summary",
            crate::say::fields_of(&self.shown()),
            || self.human(),
        );
    }

    /// A few lines for a human.
    fn human(&self) -> String {
        let mut out = String::new();
        macro_rules! put {
            ($($arg:tt)+) => {{
                let _ = writeln!(out, $($arg)+);
            }};
        }
        let head = match self.status.as_str() {
            "complete" => "migration complete",
            "nothing_to_do" => "nothing left to do: this migration already completed",
            "interrupted" => "interrupted: checkpoint saved",
            "caught_up" => "caught up: the stream is applied to its end (the verdict follows)",
            "dry_run" => {
                "dry run: this is what would happen; every batch was rolled back, nothing persists"
            }
            _ if self.dry_run => "dry run failed: every batch was rolled back, nothing persists",
            _ => "migration failed: checkpoint saved",
        };
        put!("ddb2pg: {head}");
        put!(
            "  {} -> {}",
            self.source_table,
            crate::pgconn::redact(&self.target)
        );
        put!(
            "  items read {:>10}   rows written {:>10} (inserted {}, updated {})   unchanged {}",
            self.items_read,
            self.rows_written,
            self.rows_inserted,
            self.rows_updated,
            self.rows_unchanged
        );
        put!(
            "  segments {}/{} done{} ({} resumed, {} already done)   {:.1} s, {:.0} items/s",
            self.segments_done,
            self.segments_total,
            self.shard
                .as_ref()
                .map(|s| format!(" of shard {s}"))
                .unwrap_or_default(),
            self.segments_resumed,
            self.segments_skipped,
            self.duration_s,
            self.items_per_s
        );
        if self.tables.len() > 1 || self.collisions > 0 || self.status == "dry_run" {
            for (name, t) in &self.tables {
                put!(
                    "    {name:<24} inserted {:>9}  updated {:>9}  unchanged {:>9}  collisions {}",
                    t.rows_inserted,
                    t.rows_updated,
                    t.rows_unchanged,
                    t.collisions
                );
            }
        }
        if let Some(f) = &self.follow {
            put!(
                "  stream: {} inserted, {} modified, {} removed   shards {} open, {} closed   lag {}",
                f.changes_inserted,
                f.changes_modified,
                f.changes_removed,
                f.shards_open,
                f.shards_closed,
                f.lag_s.map_or("-".to_string(), |l| format!("{l:.1} s"))
            );
        }
        if self.changes_unsure > 0 {
            put!(
                "  warning: {} changes had no old image, and their old rows cannot be found from \
                 their keys ({}): rows their old versions made and the new ones do not may \
                 remain; use NEW_AND_OLD_IMAGES exports or streams for exact results",
                self.changes_unsure,
                self.unsure_reason.as_deref().unwrap_or("")
            );
        }
        if self.rows_deleted > 0 {
            put!(
                "  deleted {} rows (changes: incremental export or stream)",
                self.rows_deleted
            );
        }
        if self.skipped > 0 {
            put!(
                "  skipped {} items that no table rule matches (unrouted = \"skip\")",
                self.skipped
            );
        }
        if self.collisions > 0 {
            put!(
                "  collisions {} (several items mapped to one key; the last won)",
                self.collisions
            );
        }
        if self.rejected_total > 0 {
            let file = self.rejects_file.as_deref().unwrap_or("the rejects file");
            if self.dry_run {
                put!(
                    "  REJECTED {} items (dry run); reasons in {file}",
                    self.rejected
                );
            } else {
                put!(
                    "  REJECTED {} items in this run, {} over all runs of this checkpoint; \
                     reasons in {file}",
                    self.rejected,
                    self.rejected_total
                );
            }
            for (k, n) in &self.rejects_by_reason {
                put!("    {n:>8}  {k}");
            }
        }
        if let Some(d) = &self.downloads {
            match &d.kept_because {
                None => put!(
                    "  export copies removed from {} (--keep-downloads keeps them)",
                    d.dir
                ),
                Some(why) => put!("  export copies kept in {} ({why})", d.dir),
            }
        }
        if !self.dry_run {
            put!("  checkpoint {}", self.checkpoint);
        }
        out.truncate(out.trim_end().len());
        out
    }
}
