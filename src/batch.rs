//! The transform stage applied to a whole page: the rows to write, the deletions, and the
//! rejects to record once they are committed.
//!
//! An export's page is prepared on its reader's thread, item by item right after each line is
//! parsed (`Preparer` is the reader's `Pages`): the item is still in the CPU's cache, and it is
//! dropped at once, so the queues to the writers hold compact rows instead of parsed items. A
//! row PostgreSQL refuses is reported with its item parsed again from the line it came from. A
//! scan's page is prepared by its writer (the SDK hands over whole pages anyway) and keeps its
//! items.

use std::borrow::Cow;

use crate::plan::Plan;
use crate::rejects::Rejects;
use crate::source::export::Pages;
use crate::source::scan::{BadLine, Page};
use crate::transform::{transform, Reject, Routed, Row};
use crate::value::{self, ExportChange, Item};

/// What a segment's reader hands its writer.
pub enum Batch {
    /// A page as read: the writer prepares it (scans; and exports under `--limit`, which may
    /// cut a page short).
    Raw(Page),
    /// A page the reader already prepared.
    Ready(Prepared),
}

impl From<Page> for Batch {
    fn from(page: Page) -> Self {
        Batch::Raw(page)
    }
}

/// A page after the transform stage.
pub struct Prepared {
    /// Lines of the page: items, deletions and lines that are not items.
    pub count: u64,
    pub rows: Vec<Row>,
    /// `item_of[i]`: the page index of the item that produced `rows[i]` (non-decreasing).
    pub item_of: Vec<u32>,
    /// Rows whose keys are deleted (incremental exports).
    pub deletes: Vec<Row>,
    /// Reject lines, each with the key it is counted under in the summary.
    pub rejects: Vec<(String, String)>,
    /// Items that no table rule matched, skipped as the plan says.
    pub skipped: u64,
    /// Where the segment continues after this page (None: it ended).
    pub next: Option<serde_json::Value>,
    originals: Originals,
}

/// The page's items, for reporting the ones whose rows PostgreSQL refuses.
enum Originals {
    Items(Vec<Item>),
    /// Each item's export line, parsed again when needed.
    Lines(Vec<String>),
}

impl Prepared {
    /// The item at page index `i`.
    pub fn item(&self, i: usize) -> Option<Cow<'_, Item>> {
        match &self.originals {
            Originals::Items(items) => items.get(i).map(Cow::Borrowed),
            Originals::Lines(lines) => match value::parse_export_line(lines.get(i)?) {
                Ok(ExportChange::Upsert(item)) => Some(Cow::Owned(item)),
                _ => None,
            },
        }
    }
}

/// Transform every item of a page handed over as read: a scan's (its items are kept, to
/// report refused rows), or an export's under `--limit` (its items are dropped as they go,
/// their lines kept); and map its deletions to the rows they remove.
pub fn prepare(plan: &Plan, key_attrs: &[String], segment: u32, page: Page) -> Prepared {
    let Page {
        items,
        deletes,
        bad,
        next,
        lines,
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
    for d in deletes {
        p.delete(d);
    }
    p.take(next)
}

/// Prepares pages line by line as an export file is read (see the module's documentation),
/// handing each finished page to `emit`.
pub struct Preparer<'a, F: FnMut(Prepared) -> bool> {
    plan: &'a Plan,
    key_attrs: &'a [String],
    segment: u32,
    page: Prepared,
    /// Items seen in this page (the index of the next one).
    items: u32,
    emit: F,
}

impl<'a, F: FnMut(Prepared) -> bool> Preparer<'a, F> {
    pub fn new(plan: &'a Plan, key_attrs: &'a [String], segment: u32, emit: F) -> Self {
        Preparer {
            plan,
            key_attrs,
            segment,
            page: empty(),
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
        match transform(self.plan, item, &mut p.rows) {
            Ok(Routed::Rows) => p.item_of.resize(p.rows.len(), i),
            Ok(Routed::Skipped) => p.skipped += 1,
            Err(r) => p.rejects.push((
                Rejects::line(&r, self.key_attrs, item, Some(self.segment)),
                format!("{}: {}", r.table.as_deref().unwrap_or("-"), r.kind),
            )),
        }
    }

    /// The page so far, with its cursor; the next page starts empty.
    fn take(&mut self, next: Option<serde_json::Value>) -> Prepared {
        self.items = 0;
        let mut page = std::mem::replace(&mut self.page, empty());
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
        rejects: Vec::new(),
        skipped: 0,
        next: None,
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

    fn delete(&mut self, keys: Item) {
        let p = &mut self.page;
        p.count += 1;
        if let Err(r) = transform(self.plan, &keys, &mut p.deletes) {
            let r = Reject {
                kind: "cannot map a deletion",
                ..r
            };
            p.rejects.push((
                Rejects::line(&r, self.key_attrs, &keys, Some(self.segment)),
                format!("-: {}", r.kind),
            ));
        }
    }

    fn bad(&mut self, bad: BadLine) {
        self.page.count += 1;
        self.page
            .rejects
            .push((Rejects::bad_line(&bad), "-: malformed line".to_string()));
    }

    fn page_lines(&self) -> usize {
        self.page.count as usize
    }

    fn end_page(&mut self, next: Option<serde_json::Value>) -> bool {
        let page = self.take(next);
        (self.emit)(page)
    }
}
