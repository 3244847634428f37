//! Changes, and the one set of rules that applies them (pure). A change is what a DynamoDB
//! Stream record or an incremental export line says happened to one item: its keys, the image
//! before and the image after (either may be absent). Streams (`source::stream`) and
//! incremental exports (`source::export`) both end here, so both give the same rows.
//!
//! **A change replaces the item's rows exactly.** The rows the old image maps to are deleted,
//! then the rows the new image maps to are written; a row both produce is simply written.
//! That removes what a shrunken list, or an item that no longer matches a table's `when`,
//! left behind. Without an old image (a `NEW_IMAGE` stream, an export line with only `Keys`),
//! the rows to delete are derived from the item's key attributes, in every table whose key
//! columns all come from them ([`key_rows`]); a deletion that cannot be derived is rejected
//! with the reason, never dropped.
//!
//! **Order.** A batch holds many changes, in source order (a shard's sequence order, a file's
//! line order). Each change is a list of per-row operations (delete this key, write this row);
//! operations on different row keys commute, so keeping only the *last* operation per row key
//! ([`Applier`]) gives exactly the result of applying the changes one by one. A key deleted and
//! re-inserted in one batch ends inserted; inserted then deleted, ends deleted. The sink then
//! runs the batch's deletions (children first) before its writes (parents first), which is safe
//! because the two sets share no row key.
//!
//! **Re-applying is harmless.** After a crash the changes since the checkpoint are applied
//! again; each change's effect depends only on the change, so the end state is the same. The
//! same holds for changes older than the full load's snapshot (they are overwritten by the
//! later changes of the same key, which the stream also holds).

use std::collections::HashMap;

use crate::plan::{ColumnSource, Plan};
use crate::transform::{transform, Cell, Reject, Routed, Row};
use crate::value::Item;

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Change {
    /// The item's key attributes (a stream record's `Keys`, an export line's `Keys`).
    pub keys: Option<Item>,
    /// The item before the change (absent for an insert, or when the source does not say).
    pub old: Option<Item>,
    /// The item after the change (absent for a deletion).
    pub new: Option<Item>,
}

/// How a change is counted (stream records say it themselves: INSERT, MODIFY, REMOVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl Change {
    /// The item to show in a rejects line: the new image, else the old one, else the keys.
    pub fn item(&self) -> Option<&Item> {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .or(self.keys.as_ref())
    }
}

/// Whether the source tells the old image of every change that has one. A `NEW_AND_OLD_IMAGES`
/// stream does (an INSERT has none); a `NEW_IMAGE` stream or an export line without
/// `OldImage` may not, and the rows to delete are then derived from the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldImages {
    /// An absent old image means there was none (the change is an insert).
    Complete,
    /// An absent old image is unknown: derive the rows to delete from the keys.
    Unknown,
}

/// Why the plan cannot derive an item's rows from its keys alone, if it cannot. Each table
/// must hold at most one row per item, keyed by exactly the item's key attributes (every key
/// column from a key attribute, every key attribute in the key): then the row with that key
/// can only be this item's, whatever the table's `when`. `key_attrs` are the item's key
/// attribute names.
pub fn key_derivation_problem(plan: &Plan, key_attrs: &[String]) -> Option<String> {
    if key_attrs.is_empty() {
        return Some("the change names no key attributes".into());
    }
    for t in &plan.tables {
        if t.explode.is_some() {
            return Some(format!(
                "table {} explodes a list: its rows cannot be found from the item's keys",
                t.display_name()
            ));
        }
        let source = |k: usize| match &t.columns[k].source {
            ColumnSource::Path(p) if p.len() == 1 => Some(p[0].as_str()),
            _ => None,
        };
        for &k in &t.key {
            if !source(k).is_some_and(|a| key_attrs.iter().any(|x| x == a)) {
                return Some(format!(
                    "key column {} of table {} does not come from a key attribute ({})",
                    t.columns[k].name,
                    t.display_name(),
                    key_attrs.join(", ")
                ));
            }
        }
        for a in key_attrs {
            if !t.key.iter().any(|&k| source(k) == Some(a.as_str())) {
                return Some(format!(
                    "the key of table {} leaves out the item's key attribute {a}: rows of \
                     different items would share it",
                    t.display_name()
                ));
            }
        }
    }
    None
}

/// The rows (key cells filled, the rest NULL) that an item with these `keys` can have, in every
/// table (see `key_derivation_problem`); a table's `when` conditions on key attributes are
/// checked, the others are assumed to hold (the row, if any, can only be this item's). Fails
/// when the rows cannot be derived.
pub fn key_rows(plan: &Plan, keys: &Item, out: &mut Vec<Row>) -> Result<(), Reject> {
    let attrs: Vec<String> = keys.keys().cloned().collect();
    if let Some(why) = key_derivation_problem(plan, &attrs) {
        return Err(Reject {
            table: None,
            column: None,
            kind: "cannot map a deletion",
            reason: format!(
                "the change has no old image and {why}; use a NEW_AND_OLD_IMAGES stream or export"
            ),
        });
    }
    for (ti, t) in plan.tables.iter().enumerate() {
        let applies = t
            .when
            .iter()
            .filter(|c| c.path.first().is_some_and(|a| keys.contains_key(a)))
            .all(|c| crate::transform::holds(keys, c));
        if !applies {
            continue;
        }
        let mut cells = vec![Cell::Null; t.columns.len()];
        let mut ok = true;
        for &k in &t.key {
            match crate::transform::key_cell(plan, &t.columns[k], keys) {
                Some(c) => cells[k] = c,
                None => ok = false,
            }
        }
        // A key this table's rule cannot take (a missing prefix, say): no row here.
        if ok {
            out.push(Row { table: ti, cells });
        }
    }
    Ok(())
}

/// The last operation per row key of a batch of changes (see the module's documentation).
pub struct Applier<'a> {
    plan: &'a Plan,
    old_images: OldImages,
    slot: HashMap<(usize, Vec<Cell>), usize>,
    ops: Vec<Op>,
    scratch: Vec<Row>,
}

struct Op {
    row: Row,
    /// The change (page index) that asked for it.
    item: u32,
    write: bool,
}

/// A batch's operations: rows to delete and rows to write, each with the page index of the
/// change it came from (non-decreasing).
#[derive(Debug, Default)]
pub struct Applied {
    pub writes: Vec<Row>,
    pub write_item_of: Vec<u32>,
    pub deletes: Vec<Row>,
    pub delete_item_of: Vec<u32>,
}

/// What became of one change.
#[derive(Debug)]
pub struct Outcome {
    /// No table rule took the new image (`unrouted = "skip"`): only its deletions apply.
    pub skipped: bool,
    /// The new image (or the deletion) could not be mapped: its deletions still apply (a
    /// one-shot load of the table would have no rows for it either).
    pub rejected: Option<Reject>,
    /// A new image without its old one, whose old rows cannot be found from its keys (see
    /// `key_derivation_problem`): rows its old version made that it no longer makes may
    /// remain. Counted and reported, never silent.
    pub unsure: Option<String>,
}

impl<'a> Applier<'a> {
    pub fn new(plan: &'a Plan, old_images: OldImages) -> Applier<'a> {
        Applier {
            plan,
            old_images,
            slot: HashMap::new(),
            ops: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn set(&mut self, row: Row, item: u32, write: bool) {
        let key: Vec<Cell> = self.plan.tables[row.table]
            .key
            .iter()
            .map(|&k| row.cells[k].clone())
            .collect();
        let op = Op { row, item, write };
        match self.slot.entry((op.row.table, key)) {
            std::collections::hash_map::Entry::Occupied(e) => self.ops[*e.get()] = op,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.ops.len());
                self.ops.push(op);
            }
        }
    }

    /// Rows written as they are (a full export's items among changes): no deletions.
    pub fn write_rows(&mut self, rows: Vec<Row>, item_of: Vec<u32>) {
        for (row, item) in rows.into_iter().zip(item_of) {
            self.set(row, item, true);
        }
    }

    /// Apply change number `item` of the batch.
    pub fn push(&mut self, item: u32, change: &Change) -> Outcome {
        let mut rejected = None;
        let mut unsure = None;
        // Deletions: what the old image maps to; without one, what the keys can have.
        self.scratch.clear();
        match (&change.old, self.old_images, &change.new) {
            (Some(old), _, _) => {
                // An old image that was itself rejected had no rows.
                let _ = transform(self.plan, old, &mut self.scratch);
            }
            (None, OldImages::Complete, Some(_)) => {}
            (None, _, new) => {
                let derived = match &change.keys {
                    Some(k) => key_rows(self.plan, k, &mut self.scratch),
                    None => Err(Reject {
                        table: None,
                        column: None,
                        kind: "cannot map a deletion",
                        reason: "the change has no Keys and no old image".into(),
                    }),
                };
                // A new image without a known old one: its own rows are written below; only
                // a deletion must be derivable, an update is counted as unsure.
                match (derived, new) {
                    (Err(r), None) => rejected = Some(r),
                    (Err(r), Some(_)) => unsure = Some(r.reason),
                    (Ok(()), _) => {}
                }
            }
        }
        let deletes = std::mem::take(&mut self.scratch);
        for row in deletes {
            self.set(row, item, false);
        }
        let mut skipped = false;
        if let Some(new) = &change.new {
            let mut rows = Vec::new();
            match transform(self.plan, new, &mut rows) {
                Ok(Routed::Rows) => {
                    for row in rows {
                        self.set(row, item, true);
                    }
                }
                Ok(Routed::Skipped) => skipped = true,
                Err(r) => rejected = Some(r),
            }
        }
        Outcome {
            skipped,
            rejected,
            unsure,
        }
    }

    /// The batch's operations, each list in change order.
    pub fn finish(self) -> Applied {
        let mut ops = self.ops;
        ops.sort_by_key(|o| o.item);
        let mut out = Applied::default();
        for op in ops {
            if op.write {
                out.writes.push(op.row);
                out.write_item_of.push(op.item);
            } else {
                out.deletes.push(op.row);
                out.delete_item_of.push(op.item);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
