//! A sink that rides out failures: transient PostgreSQL errors (lost connection, restart or
//! failover, admin shutdown, serialization failure, deadlock, statement timeout) are retried
//! with a fresh connection and jittered exponential backoff for a bounded time (batches are
//! idempotent, so a retry is safe); a permanent error caused by particular rows is narrowed
//! down by bisection to the items that cause it, which are returned as rejects while the rest
//! of the batch lands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Sink, TableCounts};
use crate::changes::Deletion;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::transform::Row;

/// How long and how fast to retry transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Give up after failing for this long (default rides out an Aurora failover, ~30 s).
    pub max_elapsed: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub fn new(max_elapsed: Duration) -> RetryPolicy {
        RetryPolicy {
            max_elapsed,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Full jitter: a random duration in [backoff/2, backoff].
fn jittered(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let frac = 0.5 + (nanos % 1000) as f64 / 2000.0;
    backoff.mul_f64(frac)
}

#[derive(Clone, Copy)]
enum Op<'a> {
    Write(&'a [Row]),
    Delete(&'a [Deletion]),
}

enum Done {
    Written(Vec<TableCounts>),
    Deleted(u64),
}

impl<'a> Op<'a> {
    fn len(&self) -> usize {
        match self {
            Op::Write(rows) => rows.len(),
            Op::Delete(rows) => rows.len(),
        }
    }

    /// The same operation on `range` of its rows.
    fn slice(&self, range: std::ops::Range<usize>) -> Op<'a> {
        match self {
            Op::Write(rows) => Op::Write(&rows[range]),
            Op::Delete(rows) => Op::Delete(&rows[range]),
        }
    }

    async fn run(self, sink: &mut Sink) -> Result<Done> {
        match self {
            Op::Write(rows) => sink.write(rows).await.map(Done::Written),
            Op::Delete(rows) => sink.delete(rows).await.map(Done::Deleted),
        }
    }
}

/// Rows an item produced that PostgreSQL refused, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedItem {
    /// Index of the item in the page.
    pub item: u32,
    pub error: String,
    /// What PostgreSQL refused, in words, and in which table.
    pub refusal: Option<crate::refusal::Refusal>,
}

impl RefusedItem {
    fn new(item: u32, e: &Error) -> RefusedItem {
        RefusedItem {
            item,
            error: e.to_string(),
            refusal: e.refusal().cloned(),
        }
    }
}

pub struct Writer {
    sink: Option<Sink>,
    /// `--dry-run`: every connection runs this setup, and every batch is rolled back.
    dry: Option<super::DryRun>,
    url: String,
    plan: Arc<Plan>,
    run_xid: Option<u32>,
    policy: RetryPolicy,
    /// Set by a signal: stop waiting between retries (the batch is not committed).
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Counts the retries.
    stats: Arc<crate::progress::Stats>,
}

impl Writer {
    /// Connect (retrying transient failures too, until `stop` turns true).
    pub async fn open(
        url: &str,
        plan: Arc<Plan>,
        run_xid: Option<u32>,
        policy: RetryPolicy,
        dry: Option<super::DryRun>,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
        stats: Arc<crate::progress::Stats>,
    ) -> Result<Writer> {
        let mut w = Writer {
            sink: None,
            dry,
            url: url.to_string(),
            plan,
            run_xid,
            policy,
            stop,
            stats,
        };
        w.write_retrying(&[]).await?;
        Ok(w)
    }

    async fn write_retrying(&mut self, rows: &[Row]) -> Result<Vec<TableCounts>> {
        match self.retrying(Op::Write(rows)).await? {
            Done::Written(c) => Ok(c),
            Done::Deleted(_) => Ok(Vec::new()),
        }
    }

    /// Run `op` on a live sink, reconnecting and retrying while errors are transient.
    async fn retrying(&mut self, op: Op<'_>) -> Result<Done> {
        let started = Instant::now();
        let mut backoff = self.policy.initial_backoff;
        loop {
            let attempt = match self.sink.as_mut() {
                Some(sink) => op.run(sink).await,
                // A new dry-run connection runs the setup again, in its own transaction.
                None => match self.open_sink().await {
                    Ok(sink) => op.run(self.sink.insert(sink)).await,
                    Err(e) => Err(e),
                },
            };
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && started.elapsed() < self.policy.max_elapsed => {
                    tracing::warn!("{e}; retrying in {backoff:?} with a new connection");
                    crate::progress::Stats::add(&self.stats.pg_retries, 1);
                    // Riding out an outage is progress for /healthz: only a call that
                    // hangs without an error is a stall.
                    self.stats.writer.touch();
                    self.sink = None;
                    self.pause(jittered(backoff), &e).await?;
                    self.stats.writer.touch();
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                }
                Err(e) if e.is_retryable() => {
                    return Err(Error::Sink {
                        message: format!(
                            "{e} (still failing after retrying for {:.0} s)",
                            started.elapsed().as_secs_f64()
                        ),
                        retryable: false,
                        row_error: false,
                        refusal: None,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open_sink(&self) -> Result<Sink> {
        match &self.dry {
            Some(dry) => Sink::open_dry(&self.url, &self.plan, self.run_xid, dry).await,
            None => Sink::open_with(&self.url, &self.plan, self.run_xid).await,
        }
    }

    /// Sleep before the next attempt, unless a signal asks to stop (then `Interrupted`).
    async fn pause(&mut self, d: std::time::Duration, why: &Error) -> Result<()> {
        let Some(stop) = self.stop.as_mut() else {
            tokio::time::sleep(d).await;
            return Ok(());
        };
        let interrupted = || {
            Error::Interrupted(format!(
                "while retrying PostgreSQL ({why}); the batch in flight was not committed"
            ))
        };
        if *stop.borrow() {
            return Err(interrupted());
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = stop.changed() => Err(interrupted()),
        }
    }

    /// Write `rows` (grouped by item: `item_of[i]` is the page index of the item that produced
    /// `rows[i]`, non-decreasing). Returns the counts of what landed and the items refused.
    pub async fn write(
        &mut self,
        rows: &[Row],
        item_of: &[u32],
    ) -> Result<(Vec<TableCounts>, Vec<RefusedItem>)> {
        let (done, refused) = self.bisect(Op::Write(rows), item_of).await?;
        let mut counts = Vec::new();
        for d in done {
            if let Done::Written(c) = d {
                merge(&mut counts, &c);
            }
        }
        Ok((counts, refused))
    }

    /// Run `rows`' deletions (grouped by change, as in `write`; see `Sink::delete`): a
    /// deletion PostgreSQL refuses (a foreign key, say) is isolated by bisection and returned,
    /// the rest lands. Returns how many rows were deleted and the changes refused.
    pub async fn delete(
        &mut self,
        rows: &[Deletion],
        item_of: &[u32],
    ) -> Result<(u64, Vec<RefusedItem>)> {
        let (done, refused) = self.bisect(Op::Delete(rows), item_of).await?;
        let deleted = done
            .iter()
            .map(|d| match d {
                Done::Deleted(n) => *n,
                Done::Written(_) => 0,
            })
            .sum();
        Ok((deleted, refused))
    }

    /// Run `op` on all of its rows; when PostgreSQL refuses it for its data, on halves, down
    /// to the single items that cause it (returned) while the rest lands.
    async fn bisect(
        &mut self,
        op: Op<'_>,
        item_of: &[u32],
    ) -> Result<(Vec<Done>, Vec<RefusedItem>)> {
        let first = match self.retrying(op).await {
            Ok(d) => return Ok((vec![d], Vec::new())),
            Err(e) if e.is_row_error() => e,
            Err(e) => return Err(e),
        };
        let mut items: Vec<u32> = item_of.to_vec();
        items.dedup();
        if items.len() <= 1 {
            let refused = items
                .first()
                .map(|&item| RefusedItem::new(item, &first))
                .into_iter()
                .collect();
            return Ok((Vec::new(), refused));
        }
        tracing::info!("a batch failed on its data ({first}); isolating the offending items");
        let span = |lo: usize, hi: usize| {
            let a = item_of.partition_point(|&x| x < items[lo]);
            let b = if hi < items.len() {
                item_of.partition_point(|&x| x < items[hi])
            } else {
                op.len()
            };
            a..b
        };
        let mut done = Vec::new();
        let mut refused = Vec::new();
        let mid = items.len() / 2;
        let mut stack = vec![(mid, items.len()), (0, mid)];
        while let Some((lo, hi)) = stack.pop() {
            match self.retrying(op.slice(span(lo, hi))).await {
                Ok(d) => done.push(d),
                Err(e) if e.is_row_error() => {
                    if hi - lo == 1 {
                        refused.push(RefusedItem::new(items[lo], &e));
                    } else {
                        let m = lo + (hi - lo) / 2;
                        stack.push((m, hi));
                        stack.push((lo, m));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok((done, refused))
    }
}

fn merge(into: &mut Vec<TableCounts>, add: &[TableCounts]) {
    if into.len() < add.len() {
        into.resize(add.len(), TableCounts::default());
    }
    for (a, b) in into.iter_mut().zip(add) {
        a.staged += b.staged;
        a.distinct += b.distinct;
        a.inserted += b.inserted;
        a.updated += b.updated;
        a.earlier += b.earlier;
    }
}
