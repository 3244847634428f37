//! Verify, step 3: read the source and load it into the scratch tables.
//!
//! Segments (a table's Scan segments, an export's data files) are read in parallel by the
//! readers migrate uses: `SegmentScan` pages made by `batch::ScanPrep`, export files read by
//! `source::export::read_file` into a `batch::Preparer` (so an incremental export's lines go
//! through `changes::Applier`, the rules migrate applies). Exports are loaded one after the
//! other, each a generation of its own, so that an incremental export's operations come after
//! the full export's. A page's rows are copied into the scratch tables in one transaction;
//! when the target's column types refuse some of them, the items they belong to are found and
//! counted as refused (as migrate rejects them), and the page is loaded without them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::Client;

use super::known::Known;
use super::origin::{Origin, Sources};
use super::scratch::{self, Encoded, Entry, ScratchTable};
use crate::batch::{self, Batch, Prepared};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::progress::Stats;
use crate::source::export;
use crate::source::scan::SegmentScan;
use crate::transform::{Cell, Row};

/// Pages buffered between a segment's reader and its loader.
const PAGES_IN_FLIGHT: usize = 2;

/// Items whose rows a target table's column types refuse.
#[derive(Debug, Default, Clone)]
pub struct Refused {
    pub items: u64,
    /// Up to --samples keys, as JSON objects of the key columns (values as text).
    pub samples: Vec<serde_json::Value>,
    /// PostgreSQL's reason for the first one.
    pub reason: Option<String>,
}

/// What the loaders share.
struct Ctx {
    plan: Arc<Plan>,
    key_attrs: Vec<String>,
    scratch: Arc<Vec<ScratchTable>>,
    target_url: String,
    page_size: u32,
    samples: usize,
    stats: Arc<Stats>,
    known: Arc<Known>,
    seq: AtomicI64,
    refused: Mutex<BTreeMap<usize, Refused>>,
    stop: watch::Receiver<bool>,
}

/// Where one generation's segments come from.
#[derive(Clone)]
enum Reader {
    Scan(SegmentScan),
    Files(Arc<Vec<PathBuf>>),
}

/// Read every source into the scratch tables; returns, per table index, the refused items.
pub async fn load(
    origin: &Origin,
    scratch: Arc<Vec<ScratchTable>>,
    target_url: String,
    concurrency: (u32, u32),
    page_size: u32,
    samples: u32,
    stats: Arc<Stats>,
) -> Result<BTreeMap<usize, Refused>> {
    let (_stop, stop) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        plan: origin.plan.clone(),
        key_attrs: origin.key_attrs.clone(),
        scratch,
        target_url,
        page_size,
        samples: samples as usize,
        stats,
        known: origin.known.clone(),
        seq: AtomicI64::new(0),
        refused: Mutex::new(BTreeMap::new()),
        stop,
    });
    match &origin.sources {
        Sources::Table(template) => {
            let reader = Reader::Scan(template.clone());
            let total = template.total_segments;
            let mine = origin
                .shard
                .map_or_else(|| (0..total).collect(), |s| s.segments(total));
            run_generation(&ctx, 0, reader, mine, concurrency.0).await?;
            crate::source::fast_scan::FastScan::report();
        }
        Sources::Exports(exports) => {
            for (gen, e) in exports.iter().enumerate() {
                let reader = Reader::Files(Arc::new(e.files.clone()));
                let segments = (0..e.files.len() as u32).collect();
                run_generation(&ctx, gen as i32, reader, segments, concurrency.1).await?;
            }
        }
    }
    let refused = ctx
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(refused)
}

/// Load `segments` of one source with `workers` loaders, each with its own PostgreSQL
/// connection.
async fn run_generation(
    ctx: &Arc<Ctx>,
    gen: i32,
    reader: Reader,
    segments: Vec<u32>,
    workers: u32,
) -> Result<()> {
    let n = segments.len() as u32;
    let queue = Arc::new(Mutex::new(segments.into_iter().collect::<VecDeque<u32>>()));
    let mut set = JoinSet::new();
    for _ in 0..workers.min(n).max(1) {
        let (ctx, queue, reader) = (ctx.clone(), queue.clone(), reader.clone());
        set.spawn(async move {
            let mut client = crate::sink::connect(&ctx.target_url).await?;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(segment) = next else {
                    return Ok::<(), Error>(());
                };
                load_segment(&ctx, &mut client, gen, &reader, segment).await?;
                Stats::add(&ctx.stats.segments_done, 1);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| Error::config(format!("internal error: verify worker: {e}")))??;
    }
    Ok(())
}

async fn load_segment(
    ctx: &Arc<Ctx>,
    client: &mut Client,
    gen: i32,
    reader: &Reader,
    segment: u32,
) -> Result<()> {
    let (tx, mut rx) = mpsc::channel::<Prepared>(PAGES_IN_FLIGHT);
    let read = spawn_reader(ctx, reader, segment, tx);
    let loaded = async {
        while let Some(page) = rx.recv().await {
            load_page(ctx, client, gen, page).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    drop(rx);
    if let Err(e) = loaded {
        read.abort();
        return Err(e);
    }
    read.await
        .map_err(|e| Error::config(format!("internal error: reader of segment {segment}: {e}")))?
}

/// Read one segment into prepared pages, as migrate's pipeline reads it.
fn spawn_reader(
    ctx: &Arc<Ctx>,
    reader: &Reader,
    segment: u32,
    tx: mpsc::Sender<Prepared>,
) -> JoinHandle<Result<()>> {
    let (ctx, stop) = (ctx.clone(), ctx.stop.clone());
    match reader {
        Reader::Scan(template) => {
            let scan = SegmentScan {
                segment,
                ..template.clone()
            };
            tokio::spawn(async move {
                let (ptx, mut prx) = mpsc::channel::<Batch>(PAGES_IN_FLIGHT);
                let prep = Arc::new(batch::ScanPrep {
                    plan: ctx.plan.clone(),
                    key_attrs: ctx.key_attrs.clone(),
                    segment,
                });
                let stats = ctx.stats.clone();
                let scanner = tokio::spawn(scan.run(prep, None, None, ptx, stop, stats));
                while let Some(batch) = prx.recv().await {
                    let p = batch.into_prepared(&ctx.plan, &ctx.key_attrs, segment);
                    if tx.send(p).await.is_err() {
                        break;
                    }
                }
                drop(prx);
                scanner
                    .await
                    .map_err(|e| Error::config(format!("internal error: scanner: {e}")))?
            })
        }
        Reader::Files(files) => {
            let path = files[segment as usize].clone();
            tokio::task::spawn_blocking(move || {
                let send = |p: Prepared| tx.blocking_send(p).is_ok();
                let mut pages = batch::Preparer::new(&ctx.plan, &ctx.key_attrs, segment, send);
                let page_size = ctx.page_size as usize;
                export::read_file(&path, 0, page_size, stop, &ctx.stats, &mut pages)
            })
        }
    }
}

/// Load one prepared page: its rows and deletions, less what the target refuses.
async fn load_page(ctx: &Ctx, client: &mut Client, gen: i32, p: Prepared) -> Result<()> {
    Stats::add(&ctx.stats.skipped, p.skipped);
    Stats::add(&ctx.stats.rejected, p.rejects.len() as u64);
    Stats::add(&ctx.stats.changes_unsure, p.unsure);
    // Items whose rows the target refuses (page index -> the table that refused them).
    let mut refused_items: HashMap<u32, usize> = HashMap::new();
    // Deletions the target refuses (their key cannot be typed): they delete nothing.
    let mut refused_deletes: Vec<bool> = vec![false; p.deletes.len()];
    let mut no_tombstone: HashSet<u32> = HashSet::new();
    let known = known_items(ctx, &p);
    for _attempt in 0..3 {
        let tombstones = tombstones(&ctx.plan, &p, &refused_items, &no_tombstone);
        let (entries, origins) = entries(
            ctx,
            gen,
            &p,
            (&refused_items, &refused_deletes),
            &tombstones,
            &known,
        );
        let pages: Vec<Encoded> = entries.iter().map(|e| Encoded::new(e)).collect();
        let err = match scratch::load(client, &ctx.scratch, &pages).await {
            Ok(()) => {
                Stats::add(&ctx.stats.items_committed, p.count);
                Stats::add(
                    &ctx.stats.rows_inserted,
                    entries.iter().map(|e| e.len() as u64).sum(),
                );
                return Ok(());
            }
            Err(e) if e.is_row_error() => e,
            Err(e) => return Err(e),
        };
        let mut found = false;
        for (ti, page) in pages.iter().enumerate() {
            for (i, reason) in scratch::refused(client, &ctx.scratch[ti], page).await? {
                found = true;
                match origins[ti][i] {
                    EntryOf::Write(item) => {
                        if refused_items.insert(item, ti).is_none() {
                            record_refusal(ctx, ti, entries[ti][i].row, reason);
                        }
                    }
                    EntryOf::Delete(d) => refused_deletes[d] = true,
                    // The item's key itself is refused: it can have no row to delete.
                    EntryOf::Tombstone(item) => {
                        no_tombstone.insert(item);
                    }
                }
            }
        }
        if !found {
            return Err(err);
        }
    }
    Err(Error::config(
        "internal error: a scratch page was refused three times",
    ))
}

/// Where a scratch entry comes from.
#[derive(Clone, Copy)]
enum EntryOf {
    /// A row of the page's item at this page index.
    Write(u32),
    /// The page's deletion at this index.
    Delete(usize),
    /// The deletion of the rows of a refused item (at this page index).
    Tombstone(u32),
}

type Entries<'a> = (Vec<Vec<Entry<'a>>>, Vec<Vec<EntryOf>>);

/// The page indices of the items among the known rejects (see `super::known`).
fn known_items(ctx: &Ctx, p: &Prepared) -> HashSet<u32> {
    if ctx.known.is_empty() {
        return HashSet::new();
    }
    let mut wanted = p.item_of.clone();
    wanted.dedup();
    let items = p.items(&wanted);
    wanted
        .into_iter()
        .zip(items)
        .filter(|(_, it)| {
            it.as_ref()
                .is_some_and(|it| ctx.known.holds(it, &ctx.key_attrs))
        })
        .map(|(i, _)| i)
        .collect()
}

/// The page's entries per table, leaving out refused items' rows and refused deletions
/// (`refused`: the refused items, and whether each deletion is), the rows of `known` items
/// marked as known rejects.
fn entries<'a>(
    ctx: &Ctx,
    gen: i32,
    p: &'a Prepared,
    refused: (&HashMap<u32, usize>, &[bool]),
    tombstones: &'a [(Row, u32)],
    known: &HashSet<u32>,
) -> Entries<'a> {
    let (refused_items, refused_deletes) = refused;
    let n = ctx.plan.tables.len();
    let mut entries: Vec<Vec<Entry<'a>>> = (0..n).map(|_| Vec::new()).collect();
    let mut origins: Vec<Vec<EntryOf>> = vec![Vec::new(); n];
    let mut push = |row: &'a Row, del: bool, origin: EntryOf| {
        let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
        let rej = matches!(origin, EntryOf::Write(i) if known.contains(&i));
        entries[row.table].push(Entry {
            row,
            seq,
            gen,
            del,
            rej,
        });
        origins[row.table].push(origin);
    };
    for (i, d) in p.deletes.iter().enumerate() {
        if !refused_deletes[i] {
            push(&d.row, true, EntryOf::Delete(i));
        }
    }
    for (row, &item) in p.rows.iter().zip(&p.item_of) {
        if !refused_items.contains_key(&item) {
            push(row, false, EntryOf::Write(item));
        }
    }
    for (row, item) in tombstones {
        push(row, true, EntryOf::Tombstone(*item));
    }
    (entries, origins)
}

/// A page of changes replaces items' rows: when an item's new rows are refused, migrate deletes
/// the rows it had (a one-shot load would have none). The rows (key cells only) to delete.
fn tombstones(
    plan: &Plan,
    p: &Prepared,
    refused_items: &HashMap<u32, usize>,
    no_tombstone: &HashSet<u32>,
) -> Vec<(Row, u32)> {
    if !p.replaces || refused_items.is_empty() {
        return Vec::new();
    }
    p.rows
        .iter()
        .zip(&p.item_of)
        .filter(|(_, item)| refused_items.contains_key(item) && !no_tombstone.contains(item))
        .map(|(row, &item)| (key_only(plan, row), item))
        .collect()
}

fn key_only(plan: &Plan, row: &Row) -> Row {
    let key = &plan.tables[row.table].key;
    let cells = (0..row.cells.len())
        .map(|i| {
            if key.contains(&i) {
                row.cells[i].clone()
            } else {
                Cell::Null
            }
        })
        .collect();
    Row {
        table: row.table,
        cells,
    }
}

fn record_refusal(ctx: &Ctx, table: usize, row: &Row, reason: String) {
    let mut all = ctx.refused.lock().unwrap_or_else(|p| p.into_inner());
    let r = all.entry(table).or_default();
    r.items += 1;
    r.reason.get_or_insert(reason);
    if r.samples.len() < ctx.samples {
        r.samples.push(key_json(&ctx.plan, row));
    }
}

/// The key cells of `row` as a JSON object of the key columns (values as text; bytes as hex).
fn key_json(plan: &Plan, row: &Row) -> serde_json::Value {
    let t = &plan.tables[row.table];
    let mut obj = serde_json::Map::new();
    for &k in &t.key {
        let v = match &row.cells[k] {
            Cell::Null => serde_json::Value::Null,
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Bytes(b) => {
                serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            }
        };
        obj.insert(t.columns[k].name.clone(), v);
    }
    serde_json::Value::Object(obj)
}
