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
    /// Rows the target lacks whose item is in migrate's rejects file: absent as expected,
    /// reported apart from `missing_in_target` and not a difference.
    pub rejected_known: u64,
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
    /// `identical`, `equal_except_known_rejects` (every row the target lacks belongs to an
    /// item of migrate's rejects file) or `different`.
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
    /// Rows absent from the target whose item is in migrate's rejects file, over all tables.
    pub rejected_known: u64,
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

    /// The verdict: `identical`, `equal_except_known_rejects` or `different`.
    pub fn verdict(tables: &BTreeMap<String, TableResult>) -> &'static str {
        if tables.values().any(|t| t.differences() > 0) {
            "different"
        } else if tables.values().any(|t| t.rejected_known > 0) {
            "equal_except_known_rejects"
        } else {
            "identical"
        }
    }

    /// The exit code of the verdict (see `super::EXIT_DIFFERENT`, `super::EXIT_KNOWN_REJECTS`).
    pub fn exit_code(&self) -> u8 {
        match Self::verdict(&self.tables) {
            "different" => super::EXIT_DIFFERENT,
            "equal_except_known_rejects" => super::EXIT_KNOWN_REJECTS,
            _ => 0,
        }
    }

    /// The summary on stderr: a few lines for a human, or (`--log-format json`) one line
    /// `"msg":"summary"` with the `--report` JSON's fields, level `warn` when the target
    /// differs or has known rejects.
    pub fn print_summary(&self) {
        let level = if self.exit_code() != 0 {
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
        let headline = if self.differs() {
            "TARGET DIFFERS FROM SOURCE".to_string()
        } else if self.rejected_known > 0 {
            format!(
                "target equals source except {} known rejects (rows of items in migrate's \
                 rejects file, absent from the target as expected)",
                self.rejected_known
            )
        } else {
            "target equals source".to_string()
        };
        put!(
            "ddb2pg verify: {headline} ({} items read, {} rejected by the mapping, {} skipped, {:.1} s)",
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
                 mismatched {:>6}  refused_by_target {:>6}  collisions {:>6}  rejected_known {:>6}",
                t.matched,
                t.missing_in_target,
                t.extra_in_target,
                t.mismatched,
                t.refused_by_target,
                t.collisions,
                t.rejected_known
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
        match self.rejects_files.as_slice() {
            [] => put!("  rejects file: none found under --checkpoint-dir"),
            files => put!("  rejects file read: {}", files.join(", ")),
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
