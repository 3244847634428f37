//! One segment of a parallel Scan: pages with ExclusiveStartKey until the segment ends.
//!
//! What a page is, is the caller's (`ScanPages`): the items as parsed (`Items`: pages under
//! `--dry-run --limit`, which their writer may cut short), or the rows made while the body is
//! parsed (`batch::ScanPrep`: migrate, `--scan-only`, verify). The body is parsed inside the
//! SDK's call (`fast_scan`), so that every item is turned into rows while it is still in the
//! CPU's cache and dropped at once: 0.77 -> 0.45 CPU-seconds per 100,000 items on the table
//! path, and pages that hold their body (~1 MB) instead of its parsed maps (several times
//! that). A body the fast parser declines is parsed by the SDK, and its items are sent as a
//! `Page`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use aws_sdk_dynamodb::Client;
use tokio::sync::{mpsc, watch};

use super::fast_scan::{FastScan, ParseBody};
use crate::budget::{self, Budget, Reserved};
use crate::error::{Error, Result};
use crate::progress::Stats;
use crate::value::{Declined, Item};

/// One page of a segment: its items, and the cursor to continue from (None: the segment
/// ended). A scan's cursor is the LastEvaluatedKey in DynamoDB JSON; an export file's is
/// `{"line": n}`.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Changes with their lines (incremental exports), after the items.
    pub changes: Vec<(crate::changes::Change, String)>,
    /// Lines that are not items (exports).
    pub bad: Vec<BadLine>,
    pub next: Option<serde_json::Value>,
    /// Exports: each item's line, parallel to `items` (see `batch`).
    pub lines: Vec<String>,
    /// The page's share of `--max-memory`, given back when the page is dropped.
    pub reserved: Option<Reserved>,
}

impl Page {
    pub fn len(&self) -> usize {
        self.items.len() + self.changes.len() + self.bad.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A line of an export file that could not be read as an item.
#[derive(Debug, Clone)]
pub struct BadLine {
    pub file: String,
    pub line: u64,
    pub reason: String,
    pub text: String,
}

/// `--max-read-units`: a token bucket shared by all segments, fed by the ConsumedCapacity each
/// Scan response reports. When the segments together go over the rate, each waits its share.
pub struct ReadLimiter {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl ReadLimiter {
    pub fn new(per_second: f64) -> ReadLimiter {
        ReadLimiter {
            per_second,
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Record `units` consumed; sleeps while the bucket is in debt.
    pub async fn consume(&self, units: f64) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.per_second;
            s.0 = (s.0 + refill).min(self.per_second) - units;
            s.1 = now;
            if s.0 < 0.0 {
                Duration::from_secs_f64(-s.0 / self.per_second)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Where and how to scan one segment.
#[derive(Clone)]
pub struct SegmentScan {
    pub client: Client,
    pub table: String,
    pub segment: u32,
    pub total_segments: u32,
    /// Items per page (the Scan `Limit`); DynamoDB also stops a page at 1 MB.
    pub page_size: u32,
    pub limiter: Option<Arc<ReadLimiter>>,
}

/// How a segment's Scan pages are made and handed on. `Items` (the default) keeps the parsed
/// items in a `Page`; migrate's `batch::ScanPrep` transforms each item as it is parsed and keeps
/// the body instead (an item is transformed while it is in the CPU's cache, and dropped at once).
pub trait ScanPages: Send + Sync + 'static {
    /// What the scan sends on (made from a `Page` when the SDK parsed the body).
    type Sent: From<Page> + Send + 'static;
    /// A page made from a body.
    type Made: Send + 'static;
    /// Make a page from a 2xx body (`value::parse_scan_items`); the output is the body's
    /// `ScanOutput` without its items. `Err`: the SDK parses the body, and the page is
    /// `Sent::from(Page)` of its items.
    fn parse(&self, body: &[u8]) -> Result<(Self::Made, ScanOutput), Declined>;
    /// Items in the page.
    fn items(made: &Self::Made) -> usize;
    /// Its estimated size (for `--max-memory`).
    fn bytes(made: &Self::Made) -> u64;
    /// The page to send, with its cursor (None: the segment ended) and its reservation.
    fn finish(
        made: Self::Made,
        next: Option<serde_json::Value>,
        reserved: Option<Reserved>,
    ) -> Self::Sent;
}

/// `ScanPages` that keeps each page's items, sent on as `T` (a `Page`, or what is made of one).
pub struct Items<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items(std::marker::PhantomData)
    }
}

impl<T: From<Page> + Send + 'static> ScanPages for Items<T> {
    type Sent = T;
    type Made = Vec<Item>;
    fn parse(&self, body: &[u8]) -> Result<(Vec<Item>, ScanOutput), Declined> {
        let mut out = crate::value::parse_scan_response(body)?;
        let items = out.items.take().unwrap_or_default();
        Ok((items, out))
    }
    fn items(made: &Vec<Item>) -> usize {
        made.len()
    }
    fn bytes(made: &Vec<Item>) -> u64 {
        budget::scan_page_bytes(made)
    }
    fn finish(items: Vec<Item>, next: Option<serde_json::Value>, reserved: Option<Reserved>) -> T {
        T::from(Page {
            items,
            next,
            reserved,
            ..Page::default()
        })
    }
}

/// A page as one Scan call gave it: made from the body by `P`, or the SDK's items.
enum Got<P: ScanPages> {
    Made(P::Made),
    Items(Vec<Item>),
}

impl<P: ScanPages> Got<P> {
    fn items(&self) -> usize {
        match self {
            Got::Made(m) => P::items(m),
            Got::Items(items) => items.len(),
        }
    }
    fn bytes(&self) -> u64 {
        match self {
            Got::Made(m) => P::bytes(m),
            Got::Items(items) => budget::scan_page_bytes(items),
        }
    }
    fn finish(self, next: Option<serde_json::Value>, reserved: Option<Reserved>) -> P::Sent {
        match self {
            Got::Made(m) => P::finish(m, next, reserved),
            Got::Items(items) => Items::<P::Sent>::finish(items, next, reserved),
        }
    }
}

/// The `ParseBody` of one Scan call: what `P` made of the body waits in `made`.
struct Slot<P: ScanPages> {
    pages: Arc<P>,
    made: Mutex<Option<P::Made>>,
}

impl<P: ScanPages> std::fmt::Debug for Slot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scan::Slot")
    }
}

impl<P: ScanPages> ParseBody for Slot<P> {
    fn parse(&self, body: &[u8]) -> std::result::Result<ScanOutput, Declined> {
        let (made, out) = self.pages.parse(body)?;
        *self.made.lock().unwrap_or_else(|p| p.into_inner()) = Some(made);
        Ok(out)
    }
    fn clear(&self) {
        *self.made.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl SegmentScan {
    /// Read the segment from `start` (a checkpoint cursor) to its end, sending each page, made
    /// by `pages`, into `tx`; each page reserves its estimated size in `budget` before it is
    /// queued (and holds it until the page is dropped, after it is written). Stops early,
    /// without error, when `shutdown` turns true or the receiver is gone.
    pub async fn run<P: ScanPages>(
        self,
        pages: Arc<P>,
        budget: Option<Arc<Budget>>,
        start: Option<serde_json::Value>,
        tx: mpsc::Sender<P::Sent>,
        mut shutdown: watch::Receiver<bool>,
        stats: Arc<Stats>,
    ) -> Result<()> {
        let mut cursor = match start {
            Some(v) => Some(crate::value::item_from_ddb_json(&v).map_err(|e| {
                Error::config(format!(
                    "the checkpoint's cursor of segment {} is unreadable ({e}); use --restart",
                    self.segment
                ))
            })?),
            None => None,
        };
        // The next page's guessed size, reserved before its request (see `budget`).
        let mut guess = budget.as_ref().map(|b| b.page_guess(self.page_size));
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let mut reserved = match (&budget, guess) {
                (Some(b), Some(g)) => tokio::select! {
                    r = b.reserve(g) => Some(r),
                    _ = shutdown.changed() => return Ok(()),
                },
                _ => None,
            };
            let (got, next) = tokio::select! {
                out = self.page(&pages, cursor.take(), &stats) => out?,
                _ = shutdown.changed() => return Ok(()),
            };
            let items = got.items();
            stats.items_read.fetch_add(items as u64, Ordering::Relaxed);
            let last = next.is_none();
            if let (Some(b), Some(r)) = (&budget, &mut reserved) {
                let bytes = got.bytes();
                b.observe(bytes, items);
                guess = Some(bytes);
                tokio::select! {
                    _ = r.resize(bytes) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            let page = got.finish(next.as_ref().map(crate::value::item_to_ddb_json), reserved);
            cursor = next;
            if tx.send(page).await.is_err() {
                return Ok(());
            }
            if last {
                return Ok(());
            }
        }
    }

    /// One Scan request from `cursor`, its body parsed by ddb2pg's parser (see `fast_scan`);
    /// the read-capacity limiter is charged what it consumed.
    /// Returns the page and its LastEvaluatedKey (None: the segment ended).
    async fn page<P: ScanPages>(
        &self,
        pages: &Arc<P>,
        cursor: Option<Item>,
        stats: &Stats,
    ) -> Result<(Got<P>, Option<Item>)> {
        let request = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(self.segment as i32)
            .total_segments(self.total_segments as i32)
            .limit(self.page_size as i32)
            .set_exclusive_start_key(cursor)
            .set_return_consumed_capacity(
                self.limiter.as_ref().map(|_| ReturnConsumedCapacity::Total),
            )
            .customize();
        let slot = Arc::new(Slot {
            pages: pages.clone(),
            made: Mutex::new(None),
        });
        let request = match FastScan::shared() {
            Some(fast) => request.interceptor(fast.with(slot.clone())),
            None => request,
        };
        // In flight for /healthz: the request only, not the wait for --max-read-units below
        // (a reader held back on purpose is not stalled).
        let busy = stats.reader.begin();
        let sent = request.send().await.inspect_err(|e| {
            if super::sdk_throttled(e) {
                Stats::add(&stats.ddb_throttles, 1);
            }
        });
        drop(busy);
        let mut out = sent.map_err(|e| Error::Source {
            message: format!(
                "Scan of segment {} of {:?}: {}",
                self.segment,
                self.table,
                super::sdk_message(&e)
            ),
            retryable: super::sdk_retryable(&e),
        })?;
        if let Some(limiter) = &self.limiter {
            let units = out
                .consumed_capacity
                .as_ref()
                .and_then(|c| c.capacity_units)
                .unwrap_or(0.0);
            limiter.consume(units).await;
        }
        let made = slot.made.lock().unwrap_or_else(|p| p.into_inner()).take();
        let got = match made {
            Some(m) => Got::Made(m),
            // The SDK parsed the body (declined, or no fast parser).
            None => Got::Items(out.items.take().unwrap_or_default()),
        };
        let next = out.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((got, next))
    }
}
