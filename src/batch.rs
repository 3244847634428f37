//! The transform stage applied to a whole page: the rows to write, the deletions, and the
//! rejects to record once they are committed.
//!
//! An export's page is prepared on its reader's thread, item by item right after each line is
//! parsed (`Preparer` is the reader's `Pages`): the item is still in the CPU's cache, and it is
//! dropped at once, so the queues to the writers hold compact rows instead of parsed items. A
//! row PostgreSQL refuses is reported with its item parsed again from the line it came from. A
//! Scan page is made the same way from its response body (`ScanPrep`, called by the SDK's
//! deserializer through `source::scan::ScanPages`): each item is transformed as soon as it is
//! parsed and dropped; the page keeps the body, parsed again only when PostgreSQL refuses a
//! row. Pages handed over as read (`Batch::Raw`: a body the fast parser declines, and pages
//! under `--limit`) are prepared by their writer with `prepare`, which keeps their items; both
//! give the same rows (tests). A page of changes (an incremental export's, or a stream's:
//! `prepare_changes`) goes through `changes::Applier`, which turns it into rows to delete and
//! rows to write.

use std::borrow::Cow;

use crate::changes::{Applier, Change, Deletion, OldImages};
use crate::plan::Plan;
use crate::reject_log::Noted;
use crate::rejects::Rejects;
use crate::source::export::Pages;
use crate::source::scan::{BadLine, Page, ScanPages};
use crate::transform::{transform, Reject, Routed, Row};
use crate::value::{self, ExportChange, Item};

/// What a segment's reader hands its writer.
pub enum Batch {
    /// A page as read, which its writer prepares: a Scan body the fast parser declined (its
    /// items as the SDK parsed them), and pages under `--limit` (which may cut a page short).
    Raw(Page),
    /// A page the reader already prepared.
    Ready(Prepared),
}

impl Batch {
    /// The page prepared (a page handed over as read is transformed now).
    pub fn into_prepared(self, plan: &Plan, key_attrs: &[String], segment: u32) -> Prepared {
        match self {
            Batch::Ready(p) => p,
            Batch::Raw(page) => prepare(plan, key_attrs, segment, page),
        }
    }
}

impl From<Page> for Batch {
    fn from(page: Page) -> Self {
        Batch::Raw(page)
    }
}

/// `Prepared::reject_of` of a line that is not an item.
pub const NOT_AN_ITEM: u32 = u32::MAX;

/// A page after the transform stage.
pub struct Prepared {
    /// Lines of the page: items, deletions and lines that are not items.
    pub count: u64,
    pub rows: Vec<Row>,
    /// `item_of[i]`: the page index of the item that produced `rows[i]` (non-decreasing).
    pub item_of: Vec<u32>,
    /// Rows deleted (changes: see `changes::Deletion`), before `rows` are written.
    pub deletes: Vec<Deletion>,
    /// `delete_item_of[i]`: the page index of the change that deletes `deletes[i]`.
    pub delete_item_of: Vec<u32>,
    /// Reject lines, each with what the log and the summary say of it.
    pub rejects: Vec<(String, Noted)>,
    /// `reject_of[i]`: the page index of the item or change of `rejects[i]` (`NOT_AN_ITEM`
    /// for a line that is not one).
    pub reject_of: Vec<u32>,
    /// Items that no table rule matched, skipped as the plan says.
    pub skipped: u64,
    /// Changes: the page replaces items' rows (a refused write then also deletes the rows
    /// the item had, as a one-shot load would have none).
    pub replaces: bool,
    /// Changes without an old image whose old rows cannot be found (see `changes::Outcome`),
    /// with one reason.
    pub unsure: u64,
    pub unsure_reason: Option<String>,
    /// Where the segment continues after this page (None: it ended).
    pub next: Option<serde_json::Value>,
    /// The page's share of `--max-memory`, given back when the page is dropped (written).
    pub reserved: Option<crate::budget::Reserved>,
    /// Pages coalesced into this one (see `absorb`): `(first page index, segment)` of each,
    /// in order; empty for a single page.
    pub parts: Vec<(u32, u32)>,
    originals: Originals,
}

/// The page's items, for reporting the ones whose rows PostgreSQL refuses.
enum Originals {
    Items(Vec<Item>),
    /// Each item's export line, parsed again when needed.
    Lines(Vec<String>),
    /// Scan response bodies (one per page coalesced here), parsed again when needed.
    Bodies(Vec<ScanBody>),
}

/// A Scan response body whose items are the page's items `first..first + count`.
struct ScanBody {
    first: u32,
    count: u32,
    /// A copy of the body: the SDK's bytes may be a slice of a larger read buffer, which
    /// `--max-memory` would not see.
    body: bytes::Bytes,
}

impl ScanBody {
    /// The items at page indices `wanted` (sorted, all within this body), parsed again in one
    /// pass that keeps only those: the body parsed the same way when the page was made.
    fn items(&self, wanted: &[u32]) -> Vec<(u32, Item)> {
        let mut found = Vec::with_capacity(wanted.len());
        let mut at = self.first;
        let mut next = wanted.iter().peekable();
        let _ = value::parse_scan_items(&self.body, &mut |item| {
            if next.next_if(|&&w| w == at).is_some() {
                found.push((at, item));
            }
            at += 1;
        });
        found
    }
}

impl Originals {
    fn len(&self) -> usize {
        match self {
            Originals::Items(items) => items.len(),
            Originals::Lines(lines) => lines.len(),
            Originals::Bodies(bodies) => bodies.iter().map(|b| b.count as usize).sum(),
        }
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn kind(&self) -> u8 {
        match self {
            Originals::Items(_) => 0,
            Originals::Lines(_) => 1,
            Originals::Bodies(_) => 2,
        }
    }
}

impl Prepared {
    /// Estimated heap bytes the page holds (for `--max-memory`).
    pub fn approx_bytes(&self) -> u64 {
        use std::mem::size_of;
        let row = |r: &Row| size_of::<Row>() + r.cells.iter().map(cell_bytes).sum::<usize>();
        let rows = |rows: &[Row]| -> usize { rows.iter().map(row).sum() };
        let deletes: usize = self
            .deletes
            .iter()
            .map(|d| {
                let parent = match &d.only {
                    crate::changes::Only::IfSame { parent: Some(p) } => {
                        p.iter().map(cell_bytes).sum()
                    }
                    _ => 0,
                };
                row(&d.row) + parent
            })
            .sum();
        let originals: usize = match &self.originals {
            Originals::Items(items) => items.iter().map(value::approx_bytes).sum(),
            Originals::Lines(lines) => lines.iter().map(|l| l.len() + size_of::<String>()).sum(),
            Originals::Bodies(bodies) => bodies.iter().map(|b| b.body.len()).sum(),
        };
        let rejects: usize = self.rejects.iter().map(|(a, b)| a.len() + b.size()).sum();
        (rows(&self.rows)
            + deletes
            + 4 * (self.item_of.len() + self.delete_item_of.len())
            + originals
            + rejects) as u64
    }

    /// Whether `other` can be written in the same transaction as this page (`absorb`): pages
    /// of plain items only (changes delete before they write, which a merge would reorder),
    /// whose items are kept the same way.
    pub fn can_absorb(&self, other: &Prepared) -> bool {
        let plain = |p: &Prepared| p.deletes.is_empty() && !p.replaces && p.unsure == 0;
        let (a, b) = (&self.originals, &other.originals);
        let same = a.kind() == b.kind() || a.is_empty() || b.is_empty();
        plain(self) && plain(other) && same
    }

    /// Append `other`, a page of `segment`, to this page of `first` (check `can_absorb`
    /// first): one page whose items are both pages' items, numbered on. Its `parts` tell
    /// which items came from which segment. The cursor (`next`) and the reservation stay the
    /// caller's to keep per part: both are taken from `other` and returned.
    pub fn absorb(
        &mut self,
        first: u32,
        mut other: Prepared,
        segment: u32,
    ) -> (Option<serde_json::Value>, Option<crate::budget::Reserved>) {
        if self.parts.is_empty() {
            self.parts.push((0, first));
        }
        let offset = self.originals_len() as u32;
        self.parts.push((offset, segment));
        self.count += other.count;
        self.skipped += other.skipped;
        self.rows.append(&mut other.rows);
        self.item_of
            .extend(other.item_of.iter().map(|i| i + offset));
        self.rejects.append(&mut other.rejects);
        self.reject_of.extend(other.reject_of.iter().map(|&i| {
            if i == NOT_AN_ITEM {
                i
            } else {
                i + offset
            }
        }));
        match (&mut self.originals, other.originals) {
            (Originals::Items(a), Originals::Items(mut b)) => a.append(&mut b),
            (Originals::Lines(a), Originals::Lines(mut b)) => a.append(&mut b),
            (Originals::Bodies(a), Originals::Bodies(b)) => {
                a.extend(b.into_iter().map(|body| ScanBody {
                    first: body.first + offset,
                    ..body
                }))
            }
            (mine, theirs) => {
                if mine.is_empty() {
                    *mine = theirs;
                }
            }
        }
        (other.next.take(), other.reserved.take())
    }

    fn originals_len(&self) -> usize {
        self.originals.len()
    }

    /// Which part (index into `parts`) page index `i` belongs to (None: a single page).
    pub fn part_of(&self, i: u32) -> Option<usize> {
        if self.parts.is_empty() {
            return None;
        }
        Some(self.parts.partition_point(|&(start, _)| start <= i).max(1) - 1)
    }

    /// The item at page index `i`.
    pub fn item(&self, i: u32) -> Option<Cow<'_, Item>> {
        self.items(&[i]).pop().flatten()
    }

    /// The items at page indices `wanted`, in that order (None: no such item). A Scan body is
    /// parsed again once for all the items wanted from it.
    pub fn items(&self, wanted: &[u32]) -> Vec<Option<Cow<'_, Item>>> {
        let Originals::Bodies(bodies) = &self.originals else {
            return wanted.iter().map(|&i| self.item_kept(i as usize)).collect();
        };
        let mut sorted = wanted.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut found = std::collections::HashMap::with_capacity(sorted.len());
        for b in bodies {
            let end = b.first.saturating_add(b.count);
            let lo = sorted.partition_point(|&i| i < b.first);
            let hi = sorted.partition_point(|&i| i < end);
            if lo < hi {
                found.extend(b.items(&sorted[lo..hi]));
            }
        }
        wanted
            .iter()
            .map(|i| found.get(i).cloned().map(Cow::Owned))
            .collect()
    }

    /// The item at page index `i` of a page that keeps its items or their lines.
    fn item_kept(&self, i: usize) -> Option<Cow<'_, Item>> {
        match &self.originals {
            Originals::Items(items) => items.get(i).map(Cow::Borrowed),
            Originals::Lines(lines) => match value::parse_export_line(lines.get(i)?) {
                Ok(ExportChange::Upsert(item)) => Some(Cow::Owned(item)),
                Ok(ExportChange::Change(c)) => c.item().cloned().map(Cow::Owned),
                Err(_) => None,
            },
            Originals::Bodies(_) => None,
        }
    }
}

fn cell_bytes(c: &crate::convert::Cell) -> usize {
    use crate::convert::Cell;
    std::mem::size_of::<Cell>()
        + match c {
            Cell::Null => 0,
            Cell::Text(s) => s.len(),
            Cell::Bytes(b) => b.len(),
        }
}

/// Transform every item of a page handed over as read: a scan's (its items are kept, to
/// report refused rows), or an export's under `--limit` (its items are dropped as they go,
/// their lines kept); and map its deletions to the rows they remove.
pub fn prepare(plan: &Plan, key_attrs: &[String], segment: u32, page: Page) -> Prepared {
    let Page {
        items,
        changes,
        bad,
        next,
        lines,
        reserved,
    } = page;
    let mut p = Preparer::new(plan, key_attrs, segment, |_| true);
    if lines.len() == items.len() && !lines.is_empty() {
        for (item, line) in items.into_iter().zip(&lines) {
            p.upsert(item, line);
        }
    } else {
        for item in &items {
            p.transform(item);
        }
        p.page.originals = Originals::Items(items);
    }
    for b in bad {
        p.bad(b);
    }
    for (change, text) in changes {
        p.change(change, &text);
    }
    let mut prepared = p.take(next);
    prepared.reserved = reserved;
    prepared
}

/// Scan pages made straight from the response bodies (see `source::scan::ScanPages`): each
/// item is transformed as soon as it is parsed, then dropped; the page keeps the body, to
/// report the items whose rows PostgreSQL refuses. Gives the rows `prepare` gives.
pub struct ScanPrep {
    pub plan: std::sync::Arc<Plan>,
    pub key_attrs: Vec<String>,
    /// The segment named in reject lines.
    pub segment: u32,
}

impl ScanPages for ScanPrep {
    type Sent = Batch;
    type Made = Prepared;
    fn parse(
        &self,
        body: &[u8],
    ) -> Result<(Prepared, aws_sdk_dynamodb::operation::scan::ScanOutput), value::Declined> {
        let mut p = Preparer::new(&self.plan, &self.key_attrs, self.segment, |_| true);
        let out = value::parse_scan_items(body, &mut |item| p.transform(&item))?;
        let mut page = p.take(None);
        page.originals = Originals::Bodies(vec![ScanBody {
            first: 0,
            count: page.count as u32,
            body: bytes::Bytes::copy_from_slice(body),
        }]);
        Ok((page, out))
    }
    fn items(made: &Prepared) -> usize {
        made.count as usize
    }
    fn bytes(made: &Prepared) -> u64 {
        made.approx_bytes()
    }
    fn finish(
        mut made: Prepared,
        next: Option<serde_json::Value>,
        reserved: Option<crate::budget::Reserved>,
    ) -> Batch {
        made.next = next;
        made.reserved = reserved;
        Batch::Ready(made)
    }
}

/// A page of stream records' changes, in sequence order: rows to delete and rows to write,
/// and the rejects (their lines name no segment).
pub fn prepare_changes(
    plan: &Plan,
    key_attrs: &[String],
    old_images: OldImages,
    changes: Vec<Change>,
    next: Option<serde_json::Value>,
) -> Prepared {
    let mut p = Preparer::new(plan, key_attrs, 0, |_| true);
    p.label = None;
    p.old_images = old_images;
    let mut shown = Vec::with_capacity(changes.len());
    for c in &changes {
        p.apply(c);
        shown.push(c.item().cloned().unwrap_or_default());
    }
    let mut page = p.take(next);
    page.originals = Originals::Items(shown);
    page
}

/// Prepares pages line by line as an export file is read (see the module's documentation),
/// handing each finished page to `emit`.
pub struct Preparer<'a, F: FnMut(Prepared) -> bool> {
    plan: &'a Plan,
    key_attrs: &'a [String],
    /// The segment named in reject lines.
    label: Option<u32>,
    page: Prepared,
    /// The page's changes, once it has one (its plain items then join them).
    changes: Option<Applier<'a>>,
    old_images: OldImages,
    /// Items seen in this page (the index of the next one).
    items: u32,
    emit: F,
}

impl<'a, F: FnMut(Prepared) -> bool> Preparer<'a, F> {
    pub fn new(plan: &'a Plan, key_attrs: &'a [String], segment: u32, emit: F) -> Self {
        Preparer {
            plan,
            key_attrs,
            label: Some(segment),
            page: empty(),
            changes: None,
            // An export line without OldImage may have had one (a NEW_IMAGE export).
            old_images: OldImages::Unknown,
            items: 0,
            emit,
        }
    }

    /// Transform the page's next item.
    fn transform(&mut self, item: &Item) {
        let p = &mut self.page;
        let i = self.items;
        self.items += 1;
        p.count += 1;
        if let Some(changes) = &mut self.changes {
            // Among changes, an item is a change without an old image that deletes nothing.
            let out = changes.push(
                i,
                &Change {
                    new: Some(item.clone()),
                    ..Change::default()
                },
            );
            if out.skipped {
                p.skipped += 1;
            }
            if let Some(r) = out.rejected {
                let line = self.reject_line(&r, item);
                self.page.rejects.push(line);
                self.page.reject_of.push(i);
            }
            return;
        }
        match transform(self.plan, item, &mut p.rows) {
            Ok(Routed::Rows) => p.item_of.resize(p.rows.len(), i),
            Ok(Routed::Skipped) => p.skipped += 1,
            Err(r) => {
                let line = self.reject_line(&r, item);
                self.page.rejects.push(line);
                self.page.reject_of.push(i);
            }
        }
    }

    fn reject_line(&self, r: &Reject, item: &Item) -> (String, Noted) {
        (
            Rejects::line(r, self.key_attrs, item, self.label),
            Noted::new(r, self.key_attrs, item),
        )
    }

    /// Apply the page's next change (see `crate::changes`).
    fn apply(&mut self, change: &Change) {
        let i = self.items;
        self.items += 1;
        self.page.count += 1;
        let (plan, old_images) = (self.plan, self.old_images);
        let changes = self.changes.get_or_insert_with(|| {
            let mut a = Applier::new(plan, old_images);
            // The page's plain items so far come first.
            let rows = std::mem::take(&mut self.page.rows);
            let item_of = std::mem::take(&mut self.page.item_of);
            a.write_rows(rows, item_of);
            a
        });
        let out = changes.push(i, change);
        if out.skipped {
            self.page.skipped += 1;
        }
        if let Some(why) = out.unsure {
            self.page.unsure += 1;
            self.page.unsure_reason.get_or_insert(why);
        }
        if let Some(r) = out.rejected {
            let r = match change.new {
                None => Reject {
                    kind: "cannot map a deletion",
                    ..r
                },
                Some(_) => r,
            };
            let empty = Item::new();
            let line = self.reject_line(&r, change.item().unwrap_or(&empty));
            self.page.rejects.push(line);
            self.page.reject_of.push(i);
        }
    }

    /// The page so far, with its cursor; the next page starts empty.
    fn take(&mut self, next: Option<serde_json::Value>) -> Prepared {
        self.items = 0;
        let mut page = std::mem::replace(&mut self.page, empty());
        if let Some(changes) = self.changes.take() {
            page.replaces = true;
            let done = changes.finish();
            page.rows = done.writes;
            page.item_of = done.write_item_of;
            page.deletes = done.deletes;
            page.delete_item_of = done.delete_item_of;
        }
        page.next = next;
        page
    }
}

fn empty() -> Prepared {
    Prepared {
        count: 0,
        rows: Vec::new(),
        item_of: Vec::new(),
        deletes: Vec::new(),
        delete_item_of: Vec::new(),
        rejects: Vec::new(),
        reject_of: Vec::new(),
        skipped: 0,
        replaces: false,
        unsure: 0,
        unsure_reason: None,
        next: None,
        reserved: None,
        parts: Vec::new(),
        originals: Originals::Lines(Vec::new()),
    }
}

impl<F: FnMut(Prepared) -> bool> Pages for Preparer<'_, F> {
    fn upsert(&mut self, item: Item, text: &str) {
        self.transform(&item);
        if let Originals::Lines(lines) = &mut self.page.originals {
            lines.push(text.to_owned());
        }
    }

    fn change(&mut self, change: Change, text: &str) {
        self.apply(&change);
        if let Originals::Lines(lines) = &mut self.page.originals {
            lines.push(text.to_owned());
        }
    }

    fn bad(&mut self, bad: BadLine) {
        self.page.count += 1;
        self.page
            .rejects
            .push((Rejects::bad_line(&bad), Noted::bad_line(&bad)));
        self.page.reject_of.push(NOT_AN_ITEM);
    }

    fn page_lines(&self) -> usize {
        self.page.count as usize
    }

    fn end_page(&mut self, next: Option<serde_json::Value>) -> bool {
        let page = self.take(next);
        (self.emit)(page)
    }
}

#[cfg(test)]
mod tests;
