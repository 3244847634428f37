//! Where a prepared page goes, for the load's segments and the stream follower alike: its
//! deletions and rows to the target (through a `Writer`, which isolates the items PostgreSQL
//! refuses), then, in one step with the checkpoint (`Store::commit_page`), its reject lines
//! and progress, and the counters.

use std::sync::Arc;

use crate::batch::Prepared;
use crate::changes::Deletion;
use crate::checkpoint::{Checkpoint, Delta, Store};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::progress::Stats;
use crate::reject_log::Noted;
use crate::rejects::Rejects;
use crate::sink::resilient::{RefusedItem, Writer};
use crate::transform::Reject;

/// A page's reject lines, each with the page index of its item or change
/// (`batch::NOT_AN_ITEM`: a line that is not one).
pub type Rejected = Vec<(String, u32)>;

/// Where a prepared page goes: the target (through a `Writer`), the rejects file and the
/// counters. Shared by the load's segments and the stream follower.
pub struct PageSink<'a> {
    pub plan: &'a Plan,
    pub key_attrs: &'a [String],
    pub rejects: &'a Arc<Rejects>,
    pub stats: &'a Stats,
    /// The segment named in reject lines (None: a stream).
    pub segment: Option<u32>,
}

impl PageSink<'_> {
    /// Apply one prepared page: its deletions (children first), then its rows (parents
    /// first), each in one transaction, or, when PostgreSQL refuses some items' rows, in
    /// several that leave those items out; then, as one step (`Store::commit_page`), `commit`
    /// the page's progress to the checkpoint (given what it adds to its counts, the page
    /// indices of the items PostgreSQL refused, and the page's reject lines; it returns the
    /// lines to record now) and record them. Returns that delta.
    pub async fn apply(
        &self,
        sink: &mut Writer,
        mut p: Prepared,
        store: &Arc<Store>,
        commit: impl FnOnce(&mut Checkpoint, &Delta, &[u32], Rejected) -> Vec<String> + Send + 'static,
    ) -> Result<Delta> {
        store.still_held()?;
        // In flight for /healthz; its time into the batch commit histogram.
        let _busy = self.stats.writer.begin();
        let started = std::time::Instant::now();
        let mut delta = Delta {
            items: p.count,
            skipped: p.skipped,
            ..Delta::default()
        };
        // Counted once recorded (a page past --max-rejects is not).
        let (lines, mut counted_as): (Vec<String>, Vec<Noted>) =
            std::mem::take(&mut p.rejects).into_iter().unzip();
        let mut reject_lines: Rejected = lines.into_iter().zip(p.reject_of.clone()).collect();
        let mut refused_all = Vec::new();
        if !p.deletes.is_empty() {
            let (deleted, refused) = sink.delete(&p.deletes, &p.delete_item_of).await?;
            Stats::add(&self.stats.rows_deleted, deleted);
            delta.rows_written += deleted;
            refused_all.extend(
                refused
                    .into_iter()
                    .map(|r| (r, "deletion refused by PostgreSQL")),
            );
        }
        if p.unsure > 0 {
            Stats::add(&self.stats.changes_unsure, p.unsure);
            let mut r = self
                .stats
                .unsure_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = p.unsure_reason.take();
            }
        }
        if !p.rows.is_empty() {
            let (counts, refused) = sink.write(&p.rows, &p.item_of).await?;
            if p.replaces && !refused.is_empty() {
                // The item's new rows were refused: its old rows must not stay behind.
                let (rows, item_of) = rows_of_items(&p, &refused);
                let (deleted, _) = sink.delete(&rows, &item_of).await?;
                Stats::add(&self.stats.rows_deleted, deleted);
                delta.rows_written += deleted;
            }
            for (ti, c) in counts.iter().enumerate() {
                self.stats
                    .add_table(&self.plan.tables[ti].display_name(), c);
                delta.rows_written += c.inserted + c.updated;
                delta.rows_unchanged += c.unchanged();
                Stats::add(&self.stats.rows_inserted, c.inserted);
                Stats::add(&self.stats.rows_updated, c.updated);
                Stats::add(&self.stats.rows_unchanged, c.unchanged());
                Stats::add(&self.stats.collisions, c.collisions());
            }
            refused_all.extend(refused.into_iter().map(|r| (r, "refused by PostgreSQL")));
        }
        let refused_items: Vec<u32> = refused_all.iter().map(|(r, _)| r.item).collect();
        for (line, item, counted) in self.refused_lines(&p, refused_all, &refused_items)? {
            reject_lines.push((line, item));
            counted_as.push(counted);
        }
        delta.rejected = reject_lines.len() as u64;
        let (rejects, store, d) = (self.rejects.clone(), store.clone(), delta);
        tokio::task::spawn_blocking(move || {
            store.commit_page(&rejects, d.rejected, |cp| {
                commit(cp, &d, &refused_items, reject_lines)
            })
        })
        .await
        .map_err(|e| Error::file(self.rejects.path(), e))??;
        self.rejects.log().recorded(&counted_as);
        for noted in &counted_as {
            self.stats.count_reject(noted.counted_as());
        }
        self.stats.commit_seconds.observe(started);
        Ok(delta)
    }
}

impl PageSink<'_> {
    /// The reject lines of the items of `p` PostgreSQL refused (`refused_items`: their page
    /// indices), each with its item's index and the key it is counted under.
    fn refused_lines(
        &self,
        p: &Prepared,
        refused: Vec<(RefusedItem, &'static str)>,
        refused_items: &[u32],
    ) -> Result<Vec<(String, u32, Noted)>> {
        let originals = p.items(refused_items);
        let mut out = Vec::with_capacity(refused.len());
        for ((r, kind), item) in refused.into_iter().zip(originals) {
            // A coalesced page names the segment each item came from.
            let segment = p.part_of(r.item).map(|k| p.parts[k].1).or(self.segment);
            let reject = match r.refusal {
                Some(refusal) => Reject {
                    reason: refusal.reason(),
                    table: refusal.table,
                    column: refusal.column,
                    kind,
                },
                None => Reject {
                    table: None,
                    column: None,
                    kind,
                    reason: r.error,
                },
            };
            let item = item.ok_or_else(|| {
                Error::config(format!("internal error: item {} of a page is gone", r.item))
            })?;
            let line = Rejects::line(&reject, self.key_attrs, &item, segment);
            out.push((line, r.item, Noted::new(&reject, self.key_attrs, &item)));
        }
        Ok(out)
    }
}

/// The rows of `p` that the refused items produced (to delete their keys).
fn rows_of_items(p: &Prepared, refused: &[RefusedItem]) -> (Vec<Deletion>, Vec<u32>) {
    let items: std::collections::HashSet<u32> = refused.iter().map(|r| r.item).collect();
    p.rows
        .iter()
        .zip(&p.item_of)
        .filter(|(_, i)| items.contains(i))
        .map(|(r, &i)| (Deletion::by_key(r.clone()), i))
        .unzip()
}
