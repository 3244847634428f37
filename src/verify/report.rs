//! Verify, step 5: the result, as a human summary on stderr and as JSON (`--report`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::say::Level;

#[derive(Debug, Default, Clone, Serialize)]
pub struct TableResult {
    pub matched: u64,
    pub missing_in_target: u64,
    pub extra_in_target: u64,
    pub mismatched: u64,
    /// Items whose rows this table's column types refuse (migrate rejects them: they are in
    /// its rejects file, not in the target).
    pub refused_by_target: u64,
    /// PostgreSQL's reason for the first refused item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_reason: Option<String>,
    /// Keys that several rows of one source map to (the target keeps only one of them).
    pub collisions: u64,
    /// Up to --samples keys of each kind, as JSON objects of the key columns.
    pub samples: BTreeMap<String, Vec<serde_json::Value>>,
}

impl TableResult {
    pub fn differences(&self) -> u64 {
        self.missing_in_target
            + self.extra_in_target
            + self.mismatched
            + self.refused_by_target
            + self.collisions
    }
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// `identical` or `different`.
    pub status: String,
    /// What was read: the table, or the exports in the order they were applied.
    pub source: String,
    pub items_read: u64,
    /// Items the mapping rejects, and lines that are not items (they are not expected in the
    /// target; migrate records them in its rejects file).
    pub rejected: u64,
    /// Items no table rule matches (unrouted = "skip").
    pub skipped: u64,
    /// Items whose values the target's column types refuse, over all tables.
    pub refused_by_target: u64,
    /// Migrate's rejects files for this source and target that exist.
    pub rejects_files: Vec<String>,
    pub tables: BTreeMap<String, TableResult>,
    pub duration_s: f64,
    /// `--shard I/N`: only this shard's segments were compared, and `extra_in_target` is not
    /// checked (a target row may belong to another shard's segments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

impl VerifyReport {
    pub fn differs(&self) -> bool {
        self.tables.values().any(|t| t.differences() > 0)
    }

    /// The summary on stderr: a few lines for a human, or (`--log-format json`) one line
    /// `"msg":"summary"` with the `--report` JSON's fields, level `warn` when the target
    /// differs.
    pub fn print_summary(&self) {
        let level = if self.differs() {
            Level::Warn
        } else {
            Level::Info
        };
        crate::say::event(level, "summary", crate::say::fields_of(self), || {
            self.human()
        });
    }

    /// A few lines for a human.
    fn human(&self) -> String {
        let mut out = String::new();
        macro_rules! put {
            ($($arg:tt)+) => {{
                let _ = writeln!(out, $($arg)+);
            }};
        }
        put!(
            "ddb2pg verify: {} ({} items read, {} rejected by the mapping, {} skipped, {:.1} s)",
            if self.differs() {
                "TARGET DIFFERS FROM SOURCE"
            } else {
                "target equals source"
            },
            self.items_read,
            self.rejected,
            self.skipped,
            self.duration_s
        );
        put!("  source: {}", self.source);
        if let Some(sh) = &self.shard {
            put!(
                "  shard {sh}: its segments only; extra_in_target is not checked per shard (rows \
                 beyond the sum of every shard's matched + mismatched are extra)"
            );
        }
        for (name, t) in &self.tables {
            put!(
                "  {name:<24} matched {:>9}  missing_in_target {:>6}  extra_in_target {:>6}  \
                 mismatched {:>6}  refused_by_target {:>6}  collisions {:>6}",
                t.matched,
                t.missing_in_target,
                t.extra_in_target,
                t.mismatched,
                t.refused_by_target,
                t.collisions
            );
            if let Some(why) = &t.refused_reason {
                put!("      refused_by_target, the first: {why}");
            }
            for (kind, keys) in &t.samples {
                for k in keys {
                    put!("      {kind}: {k}");
                }
            }
        }
        if self.refused_by_target > 0 {
            match self.rejects_files.as_slice() {
                [] => put!(
                    "  {} items cannot be in the target as its column types stand; migrate \
                     puts them in its rejects file (none found under --checkpoint-dir)",
                    self.refused_by_target
                ),
                files => put!(
                    "  {} items cannot be in the target as its column types stand; migrate's \
                     rejects file: {}",
                    self.refused_by_target,
                    files.join(", ")
                ),
            }
        }
        out.truncate(out.trim_end().len());
        out
    }

    pub fn write_json(&self, path: &std::path::Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::file(path, e))?;
        std::fs::write(path, json).map_err(|e| Error::file(path, e))
    }
}
