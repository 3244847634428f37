//! [`Applier`]: a batch of changes collapsed to one operation per row key, ending as applying
//! the changes one by one would.
//!
//! Per row key, a change does one of three things to the target's row: write it (`W(c)`),
//! delete it whatever it holds (`A`), or delete it if it still holds `c` (`D(c)`; with a
//! guard on the parent row for exploded tables: see `crate::changes`). Applied one after the
//! other, a sequence of them on one key always reduces to one of four forms:
//!
//! - `W(c)` or `A`: whatever came before is overwritten (`… W(c)` is `W(c)`, `… A` is `A`);
//! - `D(S)`, "delete if it holds any of the set `S`": `D(c) D(d)` deletes in both cases;
//! - `W(c)` followed by `D(S)`: ends deleted if `c` is in `S`, else written: `A` or `W(c)`.
//!
//! Equality is the cells' text, as the mapping writes them: a `W(c)` then `D(d)` of two items
//! whose texts differ but that PostgreSQL stores alike (`2.5` and `2.50` in a `numeric(12,2)`)
//! keeps `c`, which is what applying the delete first would give (changes of different items
//! may be applied in either order).
//!
//! A guard is decided here when the batch already holds an operation on the parent row before
//! the deletion (the parent written: compare; deleted, or possibly deleted with these very
//! cells: the guard fails and the deletion is dropped); otherwise it is left to PostgreSQL,
//! which checks it against the parent row as the batch found it (the sink deletes children
//! before parents, and writes after deleting). A change pushes its deletions children first
//! (tables in reverse order), so its own parent deletion comes after its guards.
//!
//! The sink runs the `A` and `D(S)` keys' deletions before the `W` keys' writes; the two sets
//! share no row key, so the order between them does not matter.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::{key_rows, parent_of, Change, Deletion, OldImages, Only, Parent};
use crate::plan::Plan;
use crate::transform::{transform, Cell, Reject, Routed, Row};

/// The operations of a batch of changes, one per row key (see the module's documentation).
pub struct Applier<'a> {
    plan: &'a Plan,
    old_images: OldImages,
    /// Each table's parent (see `crate::changes::parent_of`).
    parents: Vec<Option<Parent>>,
    slot: HashMap<(usize, Vec<Cell>), usize>,
    ops: Vec<Pending>,
    scratch: Vec<Row>,
}

/// What a row key ends as, so far.
#[derive(Debug)]
enum Pending {
    /// `W(c)`, from change `item`.
    Write(Row, u32),
    /// `A`: deleted whatever it holds.
    Always(Row, u32),
    /// `D(S)`: deleted if it holds any of these rows (each with its parent guard and change).
    IfSame(Vec<Cond>),
}

#[derive(Debug)]
struct Cond {
    row: Row,
    parent: Option<Vec<Cell>>,
    item: u32,
}

/// A batch's operations: rows to delete and rows to write, each with the page index of the
/// change it came from (non-decreasing).
#[derive(Debug, Default)]
pub struct Applied {
    pub writes: Vec<Row>,
    pub write_item_of: Vec<u32>,
    pub deletes: Vec<Deletion>,
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
            parents: (0..plan.tables.len()).map(|t| parent_of(plan, t)).collect(),
            slot: HashMap::new(),
            ops: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn key_of(&self, row: &Row) -> (usize, Vec<Cell>) {
        let key = self.plan.tables[row.table]
            .key
            .iter()
            .map(|&k| row.cells.get(k).cloned().unwrap_or(Cell::Null))
            .collect();
        (row.table, key)
    }

    fn pending(&self, key: &(usize, Vec<Cell>)) -> Option<&Pending> {
        self.slot.get(key).map(|&i| &self.ops[i])
    }

    /// `op` after whatever the row key holds so far.
    fn set(&mut self, row: Row, op: impl FnOnce(Row, Option<Pending>) -> Pending) {
        let key = self.key_of(&row);
        match self.slot.entry(key) {
            Entry::Occupied(e) => {
                let i = *e.get();
                let before = std::mem::replace(&mut self.ops[i], Pending::IfSame(Vec::new()));
                self.ops[i] = op(row, Some(before));
            }
            Entry::Vacant(e) => {
                e.insert(self.ops.len());
                self.ops.push(op(row, None));
            }
        }
    }

    fn write(&mut self, row: Row, item: u32) {
        self.set(row, |row, _| Pending::Write(row, item));
    }

    fn delete_always(&mut self, row: Row, item: u32) {
        self.set(row, |row, _| Pending::Always(row, item));
    }

    /// `D(row)`, guarded by the parent row the old image maps to (`parent_old`).
    fn delete_if_same(&mut self, row: Row, parent_old: Option<Vec<Cell>>, item: u32) {
        let parent = match (parent_old, &self.parents[row.table]) {
            (Some(cells), Some(p)) => {
                let key = (
                    p.table,
                    p.cols.iter().map(|&c| row.cells[c].clone()).collect(),
                );
                match self.pending(&key) {
                    None => Some(cells),
                    // Written in this batch: the guard holds if it was written as it was.
                    Some(Pending::Write(w, _)) if w.cells == cells => None,
                    Some(Pending::Write(..)) | Some(Pending::Always(..)) => return,
                    Some(Pending::IfSame(conds)) if conds.iter().any(|c| c.row.cells == cells) => {
                        return
                    }
                    // Checked by PostgreSQL against the parent row as the batch found it.
                    Some(Pending::IfSame(_)) => Some(cells),
                }
            }
            _ => None,
        };
        self.set(row, |row, before| match before {
            None => Pending::IfSame(vec![Cond { row, parent, item }]),
            Some(Pending::Write(w, _)) if parent.is_none() && w.cells == row.cells => {
                Pending::Always(w, item)
            }
            // Another write, or (it cannot happen: a child row is written with its parent,
            // which decides the guard above) a guard PostgreSQL would check after the write.
            Some(w @ Pending::Write(..)) => w,
            Some(a @ Pending::Always(..)) => a,
            Some(Pending::IfSame(mut conds)) => {
                if !conds
                    .iter()
                    .any(|c| c.row.cells == row.cells && c.parent == parent)
                {
                    conds.push(Cond { row, parent, item });
                }
                Pending::IfSame(conds)
            }
        });
    }

    /// Rows written as they are (a full export's items among changes): no deletions.
    pub fn write_rows(&mut self, rows: Vec<Row>, item_of: Vec<u32>) {
        for (row, item) in rows.into_iter().zip(item_of) {
            self.write(row, item);
        }
    }

    /// Apply change number `item` of the batch.
    pub fn push(&mut self, item: u32, change: &Change) -> Outcome {
        let unreadable = change.unreadable.as_ref().map(|u| {
            let reject = Reject {
                table: None,
                column: None,
                kind: "invalid value",
                reason: u.reason.clone(),
            };
            (u.whole, reject)
        });
        if let Some((true, reject)) = unreadable {
            return Outcome {
                skipped: false,
                rejected: Some(reject),
                unsure: None,
            };
        }
        let (always, mut rejected, unsure) = self.old_rows(change);
        let old = std::mem::take(&mut self.scratch);
        if always {
            for row in old {
                self.delete_always(row, item);
            }
        } else {
            self.delete_old(&old, item);
        }
        let mut skipped = false;
        if let Some((_, reject)) = unreadable {
            rejected = Some(reject);
        } else if let Some(new) = &change.new {
            let mut rows = Vec::new();
            match transform(self.plan, new, &mut rows) {
                Ok(Routed::Rows) => {
                    for row in rows {
                        self.write(row, item);
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

    /// The rows `change` replaces, into `scratch`: what its old image maps to, or without one
    /// (or with one the mapping rejects: it made no rows) the rows its keys can have. Returns
    /// whether those are deleted whatever they hold, a reject (a deletion that cannot be
    /// mapped) and the reason an update is unsure (its old rows cannot be derived).
    fn old_rows(&mut self, change: &Change) -> (bool, Option<Reject>, Option<String>) {
        self.scratch.clear();
        let from_keys = match (&change.old, self.old_images, &change.new) {
            // An old image the mapping rejects (a value of an unknown type it reads, say) made
            // no rows, as its load or earlier change was rejected too; the rows its keys can
            // have are deleted all the same when they can be derived (only this item's).
            (Some(old), _, _) => match transform(self.plan, old, &mut self.scratch) {
                Ok(_) => return (false, None, None),
                Err(_) => {
                    let derived = change
                        .keys
                        .as_ref()
                        .map(|k| key_rows(self.plan, k, &mut self.scratch));
                    if !matches!(derived, Some(Ok(()))) {
                        self.scratch.clear();
                    }
                    return (true, None, None);
                }
            },
            (None, OldImages::Complete, Some(_)) => return (false, None, None),
            (None, _, new) => (change.keys.as_ref(), new),
        };
        let derived = match from_keys.0 {
            Some(k) => key_rows(self.plan, k, &mut self.scratch),
            None => Err(Reject {
                table: None,
                column: None,
                kind: "cannot map a deletion",
                reason: "the change has no Keys and no old image".into(),
            }),
        };
        // A new image without a known old one: its own rows are written by the caller; only a
        // deletion must be derivable, an update is counted as unsure.
        match (derived, from_keys.1) {
            (Err(r), None) => (true, Some(r), None),
            (Err(r), Some(_)) => (true, None, Some(r.reason)),
            (Ok(()), _) => (true, None, None),
        }
    }

    /// The old image's rows, deleted if still the same; children first, each guarded by the
    /// parent row the same old image maps to (none there: no guard is possible).
    fn delete_old(&mut self, old: &[Row], item: u32) {
        let guard = |row: &Row| -> Option<Vec<Cell>> {
            let p = self.parents[row.table].as_ref()?;
            let parent = old.iter().find(|r| {
                r.table == p.table
                    && self.plan.tables[p.table]
                        .key
                        .iter()
                        .zip(&p.cols)
                        .all(|(&pk, &ck)| r.cells.get(pk) == row.cells.get(ck))
            })?;
            Some(parent.cells.clone())
        };
        let mut order: Vec<usize> = (0..old.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(old[i].table));
        let guarded: Vec<(usize, Option<Vec<Cell>>)> =
            order.into_iter().map(|i| (i, guard(&old[i]))).collect();
        for (i, parent) in guarded {
            self.delete_if_same(old[i].clone(), parent, item);
        }
    }

    /// The batch's operations, each list in change order.
    pub fn finish(self) -> Applied {
        let mut deletes: Vec<(Deletion, u32)> = Vec::new();
        let mut writes: Vec<(Row, u32)> = Vec::new();
        for op in self.ops {
            match op {
                Pending::Write(row, item) => writes.push((row, item)),
                Pending::Always(row, item) => deletes.push((Deletion::by_key(row), item)),
                Pending::IfSame(conds) => deletes.extend(conds.into_iter().map(|c| {
                    let d = Deletion {
                        row: c.row,
                        only: Only::IfSame { parent: c.parent },
                    };
                    (d, c.item)
                })),
            }
        }
        // Stable: rows of one change stay in the order they were pushed.
        writes.sort_by_key(|w| w.1);
        deletes.sort_by_key(|d| d.1);
        let (writes, write_item_of) = writes.into_iter().unzip();
        let (deletes, delete_item_of) = deletes.into_iter().unzip();
        Applied {
            writes,
            write_item_of,
            deletes,
            delete_item_of,
        }
    }
}
