//! The transform stage applied to a whole page: the rows to write, the deletions, and the
//! rejects to record once they are committed.
//!
//! An export's page is prepared on its reader's thread, item by item right after each line is
//! parsed: the item is still in the CPU's cache, and it is dropped at once, so the queues to the
//! writers hold compact rows instead of parsed items (about 3x less memory). A row PostgreSQL
//! refuses is reported with its item parsed again from the line it came from. A scan's page is
//! prepared by its writer (the SDK hands over whole pages anyway) and keeps its items.

use std::borrow::Cow;

use crate::plan::Plan;
use crate::rejects::Rejects;
use crate::source::scan::Page;
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

/// Transform every item of `page` (its items are dropped as they go when the page carries
/// their export lines, kept otherwise), and map its deletions to the rows they remove.
pub fn prepare(plan: &Plan, key_attrs: &[String], segment: u32, page: Page) -> Prepared {
    let count = page.len() as u64;
    let Page {
        items,
        deletes,
        bad,
        next,
        lines,
    } = page;
    let mut p = Prepared {
        count,
        rows: Vec::with_capacity(items.len()),
        item_of: Vec::with_capacity(items.len()),
        deletes: Vec::new(),
        rejects: Vec::new(),
        skipped: 0,
        next,
        originals: Originals::Items(Vec::new()),
    };
    let one = |i: usize, item: &Item, p: &mut Prepared| match transform(plan, item, &mut p.rows) {
        Ok(Routed::Rows) => p.item_of.resize(p.rows.len(), i as u32),
        Ok(Routed::Skipped) => p.skipped += 1,
        Err(r) => p.rejects.push((
            Rejects::line(&r, key_attrs, item, Some(segment)),
            format!("{}: {}", r.table.as_deref().unwrap_or("-"), r.kind),
        )),
    };
    if lines.len() == items.len() && !lines.is_empty() {
        for (i, item) in items.into_iter().enumerate() {
            one(i, &item, &mut p);
        }
        p.originals = Originals::Lines(lines);
    } else {
        for (i, item) in items.iter().enumerate() {
            one(i, item, &mut p);
        }
        p.originals = Originals::Items(items);
    }
    for b in &bad {
        p.rejects
            .push((Rejects::bad_line(b), "-: malformed line".to_string()));
    }
    for item in &deletes {
        if let Err(r) = transform(plan, item, &mut p.deletes) {
            let r = Reject {
                kind: "cannot map a deletion",
                ..r
            };
            p.rejects.push((
                Rejects::line(&r, key_attrs, item, Some(segment)),
                format!("-: {}", r.kind),
            ));
        }
    }
    p
}
