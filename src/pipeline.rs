//! Wiring: segment workers pulling segments from a shared queue, each with its own PostgreSQL
//! connection; or, by default from a table (`--connections` below the concurrency), a few
//! connections each serving several segments at once (`pool`). Per segment, a reader feeds
//! pages through a bounded channel into its worker, which writes each page in one transaction
//! (the pool: the pages queued for it, up to 4, in one) and only then moves the segments'
//! cursors in the checkpoint. Readers hand over pages already transformed (`batch`: a Scan
//! page's items as its body is parsed, an export's line by line); the worker transforms only
//! pages handed over as read (`Batch::Raw`: a Scan body the fast parser declined, and pages
//! under `--limit`, which may cut a page short). Memory is bounded by concurrency x (the
//! channel's pages and one more), and by `--max-memory` (`budget`): every page reserves its
//! estimated size in one byte budget shared by all segments before it is queued, and gives it
//! back once written. Where a page goes once prepared (target, rejects, checkpoint) is
//! `page_sink`, shared with the stream follower.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::batch::{self, Batch, Prepared};
use crate::budget::{self, Budget};
use crate::checkpoint::{commit_segment, Checkpoint, Delta, Store};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::progress::Stats;
use crate::rejects::Rejects;
use crate::sink::resilient::{RetryPolicy, Writer};
use crate::source::export;
use crate::source::fast_scan::FastScan;
use crate::source::scan::{Items, SegmentScan};

mod page_sink;
mod pool;
pub use page_sink::{PageSink, Rejected};
pub use pool::connections;

/// Everything the workers share.
/// Where a run's segments come from.
pub enum Segments {
    /// Parallel Scan segments; the template's `segment` is replaced per segment.
    Scan(SegmentScan),
    /// The data files of an export, one segment each.
    Export(Arc<Vec<std::path::PathBuf>>),
}

pub struct Job {
    pub segments: Segments,
    pub key_attrs: Vec<String>,
    pub plan: Arc<Plan>,
    pub target_url: String,
    pub total_segments: u32,
    pub concurrency: u32,
    /// `--connections`: PostgreSQL connections the segments in flight share (see `pool`);
    /// 0, or `concurrency` and more: one per segment.
    pub connections: u32,
    pub page_size: u32,
    /// `--max-memory`: bytes all segments' queued pages may hold at once.
    pub max_memory: u64,
    pub store: Arc<Store>,
    pub rejects: Arc<Rejects>,
    pub stats: Arc<Stats>,
    /// With a mapping file: the run's first transaction id, to count collisions across batches.
    pub run_xid: Option<u32>,
    pub retry: RetryPolicy,
    /// `--dry-run`: the setup each connection runs first; every batch is rolled back.
    pub dry_run: Option<crate::sink::DryRun>,
    /// `--limit`: items still to take; the run stops when it reaches 0.
    pub limit: Option<AtomicU64>,
    /// Stops every stage (set by signals, the first failing worker, or the limit).
    pub stop: watch::Sender<bool>,
}

impl Job {
    /// A page as a writer needs it, and whether `--limit` cut it short (the run then stops:
    /// the segment is not done). Pages handed over as read are transformed here.
    fn prepare(&self, segment: u32, batch: Batch) -> (Prepared, bool) {
        match batch {
            Batch::Ready(p) => (p, false),
            Batch::Raw(mut page) => {
                let keep = self.take(page.items.len());
                let limited = keep < page.items.len();
                if limited {
                    page.items.truncate(keep);
                    page.lines.truncate(keep);
                    let _ = self.stop.send(true);
                }
                let p = batch::prepare(&self.plan, &self.key_attrs, segment, page);
                (p, limited)
            }
        }
    }

    /// Take up to `want` items from the `--limit` budget; all of them when there is no limit.
    fn take(&self, want: usize) -> usize {
        let Some(left) = &self.limit else {
            return want;
        };
        let mut got = 0;
        let _ = left.fetch_update(AtomicOrdering::SeqCst, AtomicOrdering::SeqCst, |l| {
            got = (l as usize).min(want);
            Some(l - got as u64)
        });
        got
    }
}

/// Pages buffered between a segment's scanner and its writer.
const PAGES_IN_FLIGHT: usize = 2;

/// Run the `pending` segments to completion, or until `shutdown` (set by a signal or by the
/// first failing worker). The checkpoint is flushed regularly and once more at the end.
pub async fn run(job: Arc<Job>, pending: Vec<u32>, shutdown: watch::Sender<bool>) -> Result<()> {
    let workers = (job.concurrency as usize).min(pending.len()).max(1);
    let queue = Arc::new(Mutex::new(pending.into_iter().collect::<VecDeque<u32>>()));

    let (flush_stop, mut flush_stop_rx) = watch::channel(false);
    let store = job.store.clone();
    let stop_all = shutdown.clone();
    let flusher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = flush_stop_rx.changed() => return Ok(()),
            }
            let s = store.clone();
            let flushed = tokio::task::spawn_blocking(move || s.flush())
                .await
                .map_err(|e| Error::file(store.path(), e))
                .and_then(|r| r);
            if let Err(e) = flushed {
                // Disk full or similar: stop the run; the last good checkpoint stays valid.
                let _ = stop_all.send(true);
                return Err(e);
            }
        }
    });

    let budget = Budget::new(job.max_memory);
    *job.stats.memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(budget.clone());
    let mut set = JoinSet::new();
    let connections = job.connections as usize;
    if connections > 0 && connections < workers {
        tracing::debug!("{workers} segments at once over {connections} connections");
        for i in 0..connections {
            let slots = pool::slots(workers, connections, i);
            let (job, queue, budget) = (job.clone(), queue.clone(), budget.clone());
            let rx = shutdown.subscribe();
            set.spawn(async move { pool::connection(job, queue, rx, budget, slots).await });
        }
    } else {
        for _ in 0..workers {
            let job = job.clone();
            let queue = queue.clone();
            let rx = shutdown.subscribe();
            let budget = budget.clone();
            set.spawn(async move { worker(job, queue, rx, budget).await });
        }
    }
    let mut first_err: Option<Error> = None;
    while let Some(res) = set.join_next().await {
        let err = match res {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => Error::config(format!("internal error: a worker panicked: {e}")),
        };
        if first_err.is_none() {
            tracing::debug!("stopping all workers after: {err}");
            let _ = shutdown.send(true);
            first_err = Some(err);
        }
    }
    tracing::info!(
        "pages read and not yet written held at most {} bytes of the {}-byte --max-memory",
        budget.peak(),
        job.max_memory
    );
    if let Segments::Scan(_) = &job.segments {
        FastScan::report();
    }
    let _ = flush_stop.send(true);
    let flushed = flusher.await;
    // The last flush happens here, whatever stopped the run.
    let final_flush = job.store.flush();
    if let Some(e) = first_err {
        return Err(e);
    }
    match flushed {
        Ok(r) => r?,
        Err(e) => return Err(Error::file(job.store.path(), e)),
    }
    final_flush
}

async fn worker(
    job: Arc<Job>,
    queue: Arc<Mutex<VecDeque<u32>>>,
    shutdown: watch::Receiver<bool>,
    budget: Arc<Budget>,
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
    let start_next = || loop {
        let next = queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()?;
        if let Some(s) = start_segment(&job, next, shutdown.clone(), &budget) {
            return Some(s);
        }
    };
    // The segment whose scan already runs while the previous one's last page is written.
    let mut next_up: Option<Started> = None;
    loop {
        if *shutdown.borrow() {
            if let Some(s) = next_up {
                s.abort();
            }
            return Ok(());
        }
        let Some(current) = next_up.take().or_else(start_next) else {
            return Ok(());
        };
        let written = write_segment(
            &job,
            &mut sink,
            current,
            &shutdown,
            &mut next_up,
            &start_next,
        )
        .await;
        if let Err(e) = written {
            if let Some(s) = next_up {
                s.abort();
            }
            return Err(e);
        }
    }
}

/// A segment whose reader runs: its pages arrive on `rx`.
struct Started {
    segment: u32,
    rx: mpsc::Receiver<Batch>,
    scanner: tokio::task::JoinHandle<Result<()>>,
}

impl Started {
    /// Stop the reader (its queued pages are dropped, their budget given back).
    fn abort(self) {
        drop(self.rx);
        self.scanner.abort();
    }
}

/// Start reading `segment` (None: it is already done).
fn start_segment(
    job: &Job,
    segment: u32,
    shutdown: watch::Receiver<bool>,
    budget: &Arc<Budget>,
) -> Option<Started> {
    let state = job.store.segment(segment);
    if state.done {
        return None;
    }
    let start = state.cursor.clone();
    job.store.begin_segment(segment);
    let (tx, rx) = mpsc::channel::<Batch>(PAGES_IN_FLIGHT);
    let scanner = match &job.segments {
        Segments::Scan(template) => {
            let scan = SegmentScan {
                segment,
                ..template.clone()
            };
            let budget = Some(budget.clone());
            let stats = job.stats.clone();
            if job.limit.is_none() {
                let prep = Arc::new(batch::ScanPrep {
                    plan: job.plan.clone(),
                    key_attrs: job.key_attrs.clone(),
                    segment,
                });
                tokio::spawn(scan.run(prep, budget, start, tx, shutdown, stats))
            } else {
                // Under --limit the writer cuts pages short, so it prepares them itself.
                let items = Arc::new(Items::<Batch>::default());
                tokio::spawn(scan.run(items, budget, start, tx, shutdown, stats))
            }
        }
        Segments::Export(files) => {
            let path = files[segment as usize].clone();
            let line = start.as_ref().and_then(|v| v["line"].as_u64()).unwrap_or(0);
            let page_size = job.page_size as usize;
            let (stats, plan, key_attrs) =
                (job.stats.clone(), job.plan.clone(), job.key_attrs.clone());
            // Under --limit the writer cuts pages short, so it prepares them itself.
            let ready = job.limit.is_none();
            let budget = budget.clone();
            tokio::task::spawn_blocking(move || {
                let send = |b: Batch| tx.blocking_send(b).is_ok();
                let (path, stats) = (&path, &stats);
                if ready {
                    let mut pages = batch::Preparer::new(&plan, &key_attrs, segment, |mut p| {
                        p.reserved = Some(budget.reserve_blocking(p.approx_bytes()));
                        send(Batch::Ready(p))
                    });
                    export::read_file(path, line, page_size, shutdown, stats, &mut pages)
                } else {
                    let mut pages = export::RawPages::new(|mut p| {
                        let lines: usize = p.lines.iter().map(String::len).sum();
                        let bytes = budget::scan_page_bytes(&p.items) + lines as u64;
                        p.reserved = Some(budget.reserve_blocking(bytes));
                        send(Batch::Raw(p))
                    });
                    export::read_file(path, line, page_size, shutdown, stats, &mut pages)
                }
            })
        }
    };
    Some(Started {
        segment,
        rx,
        scanner,
    })
}

/// Write a started segment's pages, each in its own transaction, until it ends (or the run
/// stops). Its last page is read before it is written: the next segment's scan is started
/// then (into `next_up`, by `start_next`), so that reading it overlaps that write.
async fn write_segment(
    job: &Job,
    sink: &mut Writer,
    current: Started,
    shutdown: &watch::Receiver<bool>,
    next_up: &mut Option<Started>,
    start_next: &impl Fn() -> Option<Started>,
) -> Result<()> {
    let Started {
        segment,
        mut rx,
        scanner,
    } = current;
    let written = async {
        while let Some(batch) = rx.recv().await {
            let (prepared, limited) = job.prepare(segment, batch);
            if prepared.next.is_none() && next_up.is_none() && !limited && !*shutdown.borrow() {
                *next_up = start_next();
                if let Some(n) = next_up {
                    tracing::debug!(
                        "segment {}: scan started while segment {segment}'s last page is written",
                        n.segment
                    );
                }
            }
            write_page(job, sink, segment, prepared).await?;
            if *shutdown.borrow() || limited {
                break;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    drop(rx);
    if let Err(e) = written {
        scanner.abort();
        return Err(e);
    }
    match scanner.await {
        Ok(r) => r,
        Err(e) => Err(Error::config(format!(
            "internal error: scanner of segment {segment}: {e}"
        ))),
    }
}

/// Write one prepared page (see `PageSink::apply`), and only then advance the segment's cursor.
/// The order is what makes the checkpoint safe.
async fn write_page(job: &Job, sink: &mut Writer, segment: u32, p: Prepared) -> Result<()> {
    let done = p.next.is_none();
    let next = p.next.clone();
    let out = PageSink {
        plan: &job.plan,
        key_attrs: &job.key_attrs,
        rejects: &job.rejects,
        stats: &job.stats,
        segment: Some(segment),
    };
    let commit = move |cp: &mut Checkpoint, d: &Delta, _: &[u32], lines: Rejected| {
        commit_segment(cp, segment, next, done, *d);
        lines.into_iter().map(|(line, _)| line).collect()
    };
    let delta = out.apply(sink, p, &job.store, commit).await?;
    Stats::add(&job.stats.items_committed, delta.items);
    Stats::add(&job.stats.skipped, delta.skipped);
    if done {
        Stats::add(&job.stats.segments_done, 1);
    }
    Ok(())
}

/// Scan every segment and transform every item, writing nothing: the source's limit.
/// `template` gives the client, table, segmentation and page size (its `segment` is ignored).
pub async fn scan_only(
    template: SegmentScan,
    plan: Arc<Plan>,
    concurrency: u32,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let total = template.total_segments;
    let queue = Arc::new(Mutex::new((0..total).collect::<VecDeque<u32>>()));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.min(total) {
        let (template, plan, stats, queue, shutdown) = (
            template.clone(),
            plan.clone(),
            stats.clone(),
            queue.clone(),
            shutdown.clone(),
        );
        set.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(segment) = next else {
                    return Ok::<(), Error>(());
                };
                let (tx, mut rx) = mpsc::channel::<Batch>(PAGES_IN_FLIGHT);
                let scan = SegmentScan {
                    segment,
                    ..template.clone()
                };
                // The pages migrate makes: every item transformed as it is parsed.
                let prep = Arc::new(batch::ScanPrep {
                    plan: plan.clone(),
                    key_attrs: Vec::new(),
                    segment,
                });
                let run = scan.run(prep, None, None, tx, shutdown.clone(), stats.clone());
                let scanner = tokio::spawn(run);
                while let Some(batch) = rx.recv().await {
                    let page = batch.into_prepared(&plan, &[], segment);
                    Stats::add(&stats.rejected, page.rejects.len() as u64);
                    Stats::add(&stats.items_committed, page.count);
                }
                scanner
                    .await
                    .map_err(|e| Error::config(format!("internal error: scanner: {e}")))??;
                Stats::add(&stats.segments_done, 1);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| Error::config(format!("internal error: scan worker: {e}")))??;
    }
    Ok(())
}
