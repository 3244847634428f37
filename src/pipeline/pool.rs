//! `--connections`: fewer PostgreSQL connections than segments in flight. Each connection
//! reads up to `slots` segments at once; a segment stays on its connection from its first page
//! to its last, so its pages are written in cursor order. The pages queued for a connection
//! when it is free are coalesced into one transaction, up to `COALESCE_PAGES` pages (`Group`);
//! once it commits, the rejects and every page's progress (each segment's cursor, in page
//! order) are recorded in one `Store::commit_page`, so the checkpoint never claims an item that
//! is not committed, and each page's `--max-memory` reservation is given back.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{start_segment, write_page, Job, PageSink, Rejected, Started, PAGES_IN_FLIGHT};
use crate::batch::{Batch, Prepared};
use crate::budget::{Budget, Reserved};
use crate::checkpoint::{commit_segment, Checkpoint, Delta};
use crate::error::{Error, Result};
use crate::progress::Stats;
use crate::sink::resilient::Writer;

/// Pages at most in one transaction (and at most this many times `--batch-size` items): each
/// page is at most ~1 MB of source (DynamoDB ends a Scan page there, an export page at 1 MiB of
/// text), so a transaction stays a few MB.
const COALESCE_PAGES: usize = 4;

/// What a connection hears from the readers of its segments, in each segment's order: its
/// pages, then how its reader ended.
enum Event {
    /// Boxed: a page is moved once, and the channel's slots stay small.
    Page(u32, Box<Batch>),
    Ended(u32, Result<()>),
}

/// Segments read at once per PostgreSQL connection when `--connections` is not given.
pub const SEGMENTS_PER_CONNECTION: u32 = 4;

/// `--connections` for `concurrency` segments at once (0: one connection per segment). More
/// connections than segments would sit idle: lowered, with a note. Default: one connection
/// per `SEGMENTS_PER_CONNECTION` segments, at least 2 (8 segments: 2 connections, 32: 8).
/// Measured here (scripts/bench.sh, 200,000 items, the source on its own core): 2
/// connections for 8 segments wrote 6-10% faster than 8, with 10% less PostgreSQL CPU.
pub fn connections(asked: Option<u32>, concurrency: u32) -> u32 {
    let default = concurrency
        .div_ceil(SEGMENTS_PER_CONNECTION)
        .max(2)
        .min(concurrency);
    match asked {
        Some(n) if n > concurrency => {
            tracing::warn!(
                "--connections {n} is more than --concurrency {concurrency}: using {concurrency} \
                 connections (one per segment read at once)"
            );
            concurrency
        }
        Some(n) => n,
        None if default < concurrency => default,
        None => 0,
    }
}

/// Segments connection `i` reads at once when `workers` segments are read at once over
/// `connections`: the first ones take one more when they do not divide evenly.
pub fn slots(workers: usize, connections: usize, i: usize) -> usize {
    let c = connections.max(1);
    (workers / c + usize::from(i < workers % c)).max(1)
}

/// One connection's loop: keep up to `slots` of the queue's segments reading, and write what
/// they queue, coalesced, until the queue is empty and every segment ended (or the run stops).
pub(super) async fn connection(
    job: Arc<Job>,
    queue: Arc<Mutex<VecDeque<u32>>>,
    shutdown: watch::Receiver<bool>,
    budget: Arc<Budget>,
    slots: usize,
) -> Result<()> {
    let mut sink = Writer::open(
        &job.target_url,
        job.plan.clone(),
        job.run_xid,
        job.retry,
        job.dry_run.clone(),
        Some(shutdown.clone()),
        job.stats.clone(),
    )
    .await?;
    let (tx, mut rx) = mpsc::channel::<Event>(slots * (PAGES_IN_FLIGHT + 1));
    let mut conn = Connection {
        job: &job,
        queue: &queue,
        shutdown: &shutdown,
        budget: &budget,
        slots,
        tx,
        // Dropped with the connection: a stopped run aborts the forwarders (their readers
        // then stop at their next page).
        forwarders: JoinSet::new(),
        reading: HashSet::new(),
        alive: HashSet::new(),
    };
    let mut carry: Option<(u32, Prepared)> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        conn.fill();
        let first = match carry.take() {
            Some(c) => c,
            None => {
                if conn.alive.is_empty() {
                    return Ok(());
                }
                // Every live segment ends with an `Ended`, so this always gets an event.
                match rx.recv().await {
                    Some(Event::Page(segment, b)) => match conn.prepare(segment, *b) {
                        (p, true) => {
                            // The limit ends the run with this page.
                            write_page(&job, &mut sink, segment, p).await?;
                            return Ok(());
                        }
                        (p, false) => (segment, p),
                    },
                    Some(Event::Ended(segment, r)) => {
                        conn.ended(segment, r)?;
                        continue;
                    }
                    None => return Ok(()),
                }
            }
        };
        let mut ended = Vec::new();
        let mut group = Group::new(first);
        if job.limit.is_none() {
            carry = conn.collect(&mut rx, &mut group, &mut ended);
        }
        // Start the next segments while these pages are written.
        conn.fill();
        group.write(&job, &mut sink).await?;
        for (segment, r) in ended {
            conn.ended(segment, r)?;
        }
    }
}

struct Connection<'a> {
    job: &'a Arc<Job>,
    queue: &'a Mutex<VecDeque<u32>>,
    shutdown: &'a watch::Receiver<bool>,
    budget: &'a Arc<Budget>,
    slots: usize,
    tx: mpsc::Sender<Event>,
    forwarders: JoinSet<()>,
    /// Segments whose last page has not arrived yet (each takes a slot).
    reading: HashSet<u32>,
    /// Segments whose reader has not reported its end yet.
    alive: HashSet<u32>,
}

impl Connection<'_> {
    /// Start segments from the queue while a slot is free.
    fn fill(&mut self) {
        while self.reading.len() < self.slots && !*self.shutdown.borrow() {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some(segment) = next else { return };
            let Some(started) =
                start_segment(self.job, segment, self.shutdown.clone(), self.budget)
            else {
                continue;
            };
            self.reading.insert(segment);
            self.alive.insert(segment);
            self.forwarders.spawn(forward(started, self.tx.clone()));
        }
    }

    /// A page as the writer needs it, and whether `--limit` cut it short (see
    /// `super::write_segment`). Its segment's slot is free once its last page is here.
    fn prepare(&mut self, segment: u32, b: Batch) -> (Prepared, bool) {
        let (p, limited) = self.job.prepare(segment, b);
        if p.next.is_none() && !limited {
            self.reading.remove(&segment);
        }
        (p, limited)
    }

    /// Add the pages already queued to `group`, up to `COALESCE_PAGES`; the first that
    /// does not fit is returned, to start the next group. Readers' ends are kept in `ended`.
    fn collect(
        &mut self,
        rx: &mut mpsc::Receiver<Event>,
        group: &mut Group,
        ended: &mut Vec<(u32, Result<()>)>,
    ) -> Option<(u32, Prepared)> {
        let cap = COALESCE_PAGES as u64 * u64::from(self.job.page_size);
        loop {
            match rx.try_recv() {
                Ok(Event::Page(segment, b)) => {
                    let (p, _) = self.prepare(segment, *b);
                    let full =
                        group.parts.len() >= COALESCE_PAGES || group.page.count + p.count > cap;
                    if full || !group.page.can_absorb(&p) {
                        return Some((segment, p));
                    }
                    group.absorb(segment, p);
                }
                Ok(Event::Ended(segment, r)) => ended.push((segment, r)),
                Err(_) => return None,
            }
        }
    }

    /// A segment's reader ended: its error stops the connection.
    fn ended(&mut self, segment: u32, r: Result<()>) -> Result<()> {
        self.alive.remove(&segment);
        self.reading.remove(&segment);
        r
    }
}

/// Hand a started segment's pages to its connection, then how its reader ended.
async fn forward(s: Started, tx: mpsc::Sender<Event>) {
    let Started {
        segment,
        mut rx,
        scanner,
    } = s;
    while let Some(b) = rx.recv().await {
        if tx.send(Event::Page(segment, Box::new(b))).await.is_err() {
            drop(rx);
            scanner.abort();
            return;
        }
    }
    drop(rx);
    let r = match scanner.await {
        Ok(r) => r,
        Err(e) => Err(Error::config(format!(
            "internal error: scanner of segment {segment}: {e}"
        ))),
    };
    let _ = tx.send(Event::Ended(segment, r)).await;
}

/// What one page of a coalesced transaction adds to its segment.
struct Part {
    segment: u32,
    /// Index of the part's first item in the coalesced page.
    first: u32,
    next: Option<serde_json::Value>,
    done: bool,
    items: u64,
    skipped: u64,
    /// Reject lines the transform made.
    rejected: u64,
}

/// Pages written in one transaction.
struct Group {
    page: Prepared,
    /// The first page's segment (the coalesced page's `parts` start with it).
    segment: u32,
    parts: Vec<Part>,
    /// The pages' `--max-memory` reservations, given back once written.
    reserved: Vec<Reserved>,
}

impl Group {
    fn new((segment, mut page): (u32, Prepared)) -> Group {
        let next = page.next.take();
        let part = Part {
            segment,
            first: 0,
            done: next.is_none(),
            next,
            items: page.count,
            skipped: page.skipped,
            rejected: page.rejects.len() as u64,
        };
        let reserved = page.reserved.take().into_iter().collect();
        Group {
            page,
            segment,
            parts: vec![part],
            reserved,
        }
    }

    fn absorb(&mut self, segment: u32, p: Prepared) {
        let (items, skipped, rejected) = (p.count, p.skipped, p.rejects.len() as u64);
        let (next, reserved) = self.page.absorb(self.segment, p, segment);
        let first = self.page.parts.last().map_or(0, |&(start, _)| start);
        self.reserved.extend(reserved);
        self.parts.push(Part {
            segment,
            first,
            done: next.is_none(),
            next,
            items,
            skipped,
            rejected,
        });
    }

    /// Write the pages in one transaction, then record them all in one step.
    async fn write(self, job: &Job, sink: &mut Writer) -> Result<()> {
        let Group {
            mut page,
            segment,
            parts,
            reserved,
        } = self;
        if parts.len() == 1 {
            // A single page: exactly as without --connections.
            page.next = parts.into_iter().next().and_then(|p| p.next);
            page.reserved = reserved.into_iter().next();
            return write_page(job, sink, segment, page).await;
        }
        tracing::debug!(
            "{} pages of {} items coalesced into one transaction",
            parts.len(),
            page.count
        );
        let done = parts.iter().filter(|p| p.done).count() as u64;
        let out = PageSink {
            plan: &job.plan,
            key_attrs: &job.key_attrs,
            rejects: &job.rejects,
            stats: &job.stats,
            segment: None,
        };
        let commit = move |cp: &mut Checkpoint, d: &Delta, refused: &[u32], lines: Rejected| {
            record(cp, parts, d, refused);
            lines.into_iter().map(|(line, _)| line).collect()
        };
        let delta = out.apply(sink, page, &job.store, commit).await?;
        drop(reserved);
        Stats::add(&job.stats.items_committed, delta.items);
        Stats::add(&job.stats.skipped, delta.skipped);
        Stats::add(&job.stats.segments_done, done);
        Ok(())
    }
}

/// Move each part's segment on, in page order. Items refused by PostgreSQL count as their
/// part's rejects; the rows written are counted under the first part (a transaction's counts
/// are not split by page: the totals over all segments stay exact).
fn record(cp: &mut Checkpoint, parts: Vec<Part>, d: &Delta, refused: &[u32]) {
    let mut extra = vec![0u64; parts.len()];
    for &i in refused {
        let k = parts.partition_point(|p| p.first <= i).max(1) - 1;
        extra[k] += 1;
    }
    for (k, part) in parts.into_iter().enumerate() {
        let (rows_written, rows_unchanged) = match k {
            0 => (d.rows_written, d.rows_unchanged),
            _ => (0, 0),
        };
        let delta = Delta {
            items: part.items,
            rows_written,
            rows_unchanged,
            rejected: part.rejected + extra[k],
            skipped: part.skipped,
        };
        commit_segment(cp, part.segment, part.next, part.done, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::slots;

    #[test]
    fn segments_spread_over_connections() {
        assert_eq!((0..2).map(|i| slots(8, 2, i)).collect::<Vec<_>>(), [4, 4]);
        assert_eq!(
            (0..3).map(|i| slots(8, 3, i)).collect::<Vec<_>>(),
            [3, 3, 2]
        );
        assert_eq!(slots(5, 0, 0), 5);
    }

    /// Without --connections: one connection per 4 segments, at least 2; 0 (one per segment)
    /// when that is no fewer than the segments. Asked for: as asked, lowered to the segments.
    #[test]
    fn connections_default_to_one_per_four_segments() {
        let default = |c| super::connections(None, c);
        assert_eq!(
            [1, 2, 3, 4, 8, 9, 16, 32, 256].map(default),
            [0, 0, 2, 2, 2, 3, 4, 8, 64]
        );
        assert_eq!(super::connections(Some(8), 8), 8);
        assert_eq!(super::connections(Some(3), 8), 3);
        assert_eq!(super::connections(Some(9), 8), 8);
    }
}
