//! Changes, and the one set of rules that applies them (pure). A change is what a DynamoDB
//! Stream record or an incremental export line says happened to one item: its keys, the image
//! before and the image after (either may be absent). Streams (`source::stream`) and
//! incremental exports (`source::export`) both end here, so both give the same rows.
//!
//! **A change replaces the item's rows: it deletes only rows that are still the item's.** The
//! rows the new image maps to are written. A row the old image maps to and the new one does
//! not (a shrunken list, an item that no longer matches a table's `when`, a removed item) is
//! deleted only if the target row still holds exactly what the old image maps to: every
//! mapped column the same ([`Deletion`], `IfSame`). A row another item has written since
//! (an order moved to another user: the new item is put, the old one deleted; a lookup table
//! keyed by an e-mail address that another item now holds) differs, and stays. A row of an
//! exploded list (`order_lines`, keyed by the order's key and the index) carries nothing of
//! the item that made it, so it is the removed item's only if its parent row is too: the
//! table's parent ([`parent_of`]: an earlier table with the same `when`, keyed by the list's
//! item key) must also still hold what the old image maps to there.
//!
//! The limit: when two items map the very same row (same key, same content), a row is
//! "still" the removed one's although the other item also makes it, and it is deleted; the
//! target lacks that row until the other item changes again.
//!
//! Without an old image (a `NEW_IMAGE` stream, an export line with only `Keys`), the rows to
//! delete are derived from the item's key attributes, in every table whose key columns all
//! come from them ([`key_rows`]); such a row is keyed by exactly the item's key, so it can only
//! be the item's, and it is deleted whatever it holds (`Always`). A deletion that cannot be
//! derived is rejected with the reason, never dropped. An old image the mapping rejects (a
//! value of a type this ddb2pg does not know where the mapping reads, say) made no rows, since
//! a load or the change that wrote it was rejected too: its key rows are deleted all the same
//! when they can be derived, and nothing else.
//!
//! **The same item gives the same rows, or the same reject, however it arrives** (table scan,
//! export, stream): an image is mapped by the transform the scan path uses. A value of an
//! unknown type in a stream image is kept as the SDK's `Unknown`, as in a Scan response, so
//! the item is rejected only when the mapping reads that value.
//!
//! **Changes of different items commute**: a write and a conditional delete of the same row by
//! two items end the same in either order unless both map that row identically (the limit
//! above), so changes may be applied on several connections, keeping each item's own order,
//! at the same time too: a parent guard locks the parent row it reads, so it never judges by a
//! parent that a concurrent transaction has since rewritten (see `sink::statements`).
//!
//! **Order inside a batch.** A batch holds many changes, in source order; [`Applier`] collapses
//! them to one operation per row key that ends as applying them one by one would (see there),
//! and the sink runs the batch's deletions (children first) before its writes (parents first).
//!
//! **Re-applying is harmless.** After a crash the changes since the checkpoint are applied
//! again: a write writes what it wrote, a conditional deletion finds its row already gone or
//! someone else's. The same holds for changes older than the full load's snapshot.

mod applier;

pub use applier::{Applied, Applier, Outcome};

use crate::plan::{ColumnSource, Plan};
use crate::transform::{Cell, Reject, Row};
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
    /// A value of a type this ddb2pg does not know where the record cannot hold one (its
    /// Keys), or anywhere when this SDK cannot represent it (the images then lack it): the
    /// change is rejected with the reason, never written with the value as NULL.
    pub unreadable: Option<Unreadable>,
}

/// Where a change holds a value of an unknown type, and why it is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub reason: String,
    /// In the old image or the keys: the item's old rows cannot be known, so nothing of the
    /// change is applied. Otherwise (the new image) the new image is rejected and the old
    /// image's rows are deleted as usual, as a one-shot load would have no rows for the item.
    pub whole: bool,
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

/// A row to delete, and on what condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// `Always`: its key cells (the rest may be NULL); `IfSame`: the whole old row.
    pub row: Row,
    pub only: Only,
}

/// When a [`Deletion`] deletes its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Only {
    /// Whatever the row holds: its key is exactly the item's (`key_rows`), or a refused
    /// write's rows are taken out.
    Always,
    /// Only if the target row still holds exactly `row`'s cells, and, with `parent`, if the
    /// table's parent row ([`parent_of`], keyed by the row's parent key cells) still holds
    /// exactly these cells.
    IfSame { parent: Option<Vec<Cell>> },
}

impl Deletion {
    /// Delete the row with `row`'s key, whatever it holds.
    pub fn by_key(row: Row) -> Deletion {
        Deletion {
            row,
            only: Only::Always,
        }
    }
}

/// An exploded table's parent (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// The parent table's index in the plan.
    pub table: usize,
    /// For each of the parent's key columns (in its key's order), the child column that
    /// holds the same value.
    pub cols: Vec<usize>,
}

/// The parent of table `ti`, if it explodes a list and an earlier table has the same `when`,
/// no list, and a key whose every column the child's key also has (the same source, made the
/// same way), the child's other key columns being the list's `$index`: every item that makes
/// the child's rows makes that parent row, and the parent key tells whose list a row is.
pub fn parent_of(plan: &Plan, ti: usize) -> Option<Parent> {
    let t = plan.tables.get(ti)?;
    t.explode.as_ref()?;
    let same = |a: &crate::plan::ColumnPlan, b: &crate::plan::ColumnPlan| {
        matches!(a.source, ColumnSource::Path(_))
            && a.source == b.source
            && a.strip_prefix == b.strip_prefix
            && a.ty == b.ty
            && a.time == b.time
            && a.on_error_null == b.on_error_null
    };
    plan.tables[..ti].iter().enumerate().find_map(|(pi, p)| {
        if p.explode.is_some() || p.when != t.when || p.key.is_empty() {
            return None;
        }
        let cols: Vec<usize> = p
            .key
            .iter()
            .map(|&pk| {
                t.key
                    .iter()
                    .copied()
                    .find(|&ck| same(&p.columns[pk], &t.columns[ck]))
            })
            .collect::<Option<_>>()?;
        let rest_is_index = t
            .key
            .iter()
            .all(|k| cols.contains(k) || t.columns[*k].source == ColumnSource::Index);
        rest_is_index.then_some(Parent { table: pi, cols })
    })
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

#[cfg(test)]
mod sequence_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unknown_tests;
