//! The PostgreSQL sink: batched idempotent upserts, fed by COPY.
//!
//! A batch is one transaction, written one of two ways:
//!
//! - **Direct**: COPY the rows straight into the target tables. This is the fast path of a
//!   fresh load (PostgreSQL does about half the work of an upsert). It can only insert, so it
//!   is used only while the keys are new: a batch with a repeated key never takes it, and a
//!   batch whose keys exist fails with a unique violation (23505), is rolled back and written
//!   again as an upsert. The outcome is the same either way; only the cost differs.
//! - **Upsert**: per connection, each target table has a temporary staging table (`ON COMMIT
//!   DELETE ROWS`). COPY the rows into the staging tables, then one prepared statement per
//!   table (`_seq` is the batch order; it takes another name when the table has a `_seq`
//!   column: see `TablePlan::seq_column`):
//!
//! ```sql
//! WITH src AS (SELECT DISTINCT ON (key) ... FROM stage ORDER BY key, _seq DESC),
//!      up  AS (INSERT INTO t SELECT ... FROM src
//!              ON CONFLICT (key) DO UPDATE SET ... WHERE (t.cols) IS DISTINCT FROM (excluded.cols)
//!              RETURNING xmax = 0 AS inserted)
//! SELECT (SELECT count(*) FROM src), count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
//! ```
//!
//! The staging tables have the target columns' own types (not the mapping's): the rows' text
//! is read by the same input function either way, so both ways write the same value. A
//! mapping type that differs from the column's (`numeric` into `integer`, `timestamptz` into
//! `timestamp`) is converted by the column type's input, never by a cast: `1.5` is refused
//! by an `integer` column (the item goes to the rejects file) instead of being rounded, and
//! `2024-05-01T10:00:00+00:00` lands in a `timestamp` column as `2024-05-01 10:00:00`, its
//! UTC time, whatever the session's time zone.
//!
//! `DISTINCT ON` keeps the last of repeated keys in a batch (no SQLSTATE 21000), and the
//! `WHERE ... IS DISTINCT FROM` makes a re-run rewrite nothing. A column whose type has no
//! `=` operator (json above all), or one whose `=` finds values equal that are written
//! differently (citext, numeric, jsonb, floats: see `target::TargetColumn`), is compared by
//! its text there: a row is rewritten when its text changes, and ends as a fresh load writes it. A batch whose keys are all
//! different (checked here, by their text) uses the same statement without `DISTINCT ON`, which
//! saves PostgreSQL a sort; should two keys still be equal to PostgreSQL (say `1.0` and `1` in
//! a numeric key), it refuses with 21000 and the batch is written again with `DISTINCT ON`.
//!
//! Which way a batch goes is decided per connection by `Mode`: after a direct batch hits
//! existing keys, the next batches are upserts, and the direct way is tried again only after
//! 1, 2, 4 ... 64 upserts in a row that found no existing key. A re-run over a loaded table
//! thus pays one failed COPY per connection; a resumed run, one per segment it resumes (per
//! connection, where segments share one: `--connections`).

mod copy_text;
pub mod dry_run;
pub mod resilient;
mod statements;
mod target;

pub use copy_text::encode_row;
pub use dry_run::DryRun;
pub use target::{prepare_target, prepare_target_created, prepare_target_with};

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use dry_run::Scope;
use statements::TableSink;

use crate::changes::{Deletion, Only};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::transform::{Cell, Row};

/// What one batch did, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableCounts {
    /// Rows sent.
    pub staged: u64,
    /// Rows left after repeated keys in the batch collapsed (last wins).
    pub distinct: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Keys that an earlier batch of this run already wrote (only counted with a mapping file).
    pub earlier: u64,
}

impl TableCounts {
    pub fn unchanged(&self) -> u64 {
        self.distinct.saturating_sub(self.inserted + self.updated)
    }
    /// Rows that landed on a key another item of this run also produced: in this batch, or
    /// in an earlier one.
    pub fn collisions(&self) -> u64 {
        self.staged.saturating_sub(self.distinct) + self.earlier
    }
}

/// Open a connection (TLS and credentials as libpq would: see `pgconn`).
pub async fn connect(url: &str) -> Result<Client> {
    crate::pgconn::resolve(Some(url))?.connect().await
}

/// Which way the next batch is written (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    /// Upserts in a row, without existing keys, still needed before trying direct again.
    wait: u32,
    /// What `wait` is set to after the next failed direct attempt.
    backoff: u32,
}

impl Mode {
    const MAX_BACKOFF: u32 = 64;

    fn direct() -> Mode {
        Mode {
            wait: 0,
            backoff: 1,
        }
    }
    fn try_direct(&self) -> bool {
        self.wait == 0
    }
    fn direct_succeeded(&mut self) {
        *self = Mode::direct();
    }
    fn direct_conflicted(&mut self) {
        self.wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Self::MAX_BACKOFF);
    }
    /// After an upsert batch: `all_new` when every row was inserted.
    fn upserted(&mut self, all_new: bool) {
        if all_new {
            self.wait = self.wait.saturating_sub(1);
        }
    }
}

/// How a batch was written (for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct,
    Upsert,
    UpsertDistinct,
}

/// One connection's writer: staging tables and prepared upserts for every table of the plan.
pub struct Sink {
    client: Client,
    tables: Vec<TableSink>,
    /// Roll every batch back to the dry run's savepoint instead of committing it.
    dry_run: bool,
    /// Whether to try the direct way next.
    mode: Mode,
    /// The way the last batch was written.
    pub last_path: Option<Path>,
    /// Whether the direct way may be tried at all.
    direct_allowed: bool,
}

impl Sink {
    pub async fn open(url: &str, plan: &Plan) -> Result<Sink> {
        Self::open_with(url, plan, None).await
    }

    /// With `run_xid` (the 32-bit transaction id at the start of the run), each batch also
    /// counts the keys that earlier transactions of this run wrote: collisions across batches.
    pub async fn open_with(url: &str, plan: &Plan, run_xid: Option<u32>) -> Result<Sink> {
        Self::open_inner(url, plan, run_xid, None).await
    }

    /// A dry run's sink: its connection stays in one transaction, where `dry`'s setup runs
    /// first, and every batch is rolled back (see `dry_run`).
    pub async fn open_dry(
        url: &str,
        plan: &Plan,
        run_xid: Option<u32>,
        dry: &DryRun,
    ) -> Result<Sink> {
        Self::open_inner(url, plan, run_xid, Some(dry)).await
    }

    async fn open_inner(
        url: &str,
        plan: &Plan,
        run_xid: Option<u32>,
        dry: Option<&DryRun>,
    ) -> Result<Sink> {
        let client = connect(url).await?;
        if let Some(dry) = dry {
            dry_run::begin(&client, plan, dry).await?;
        }
        let mut tables = Vec::with_capacity(plan.tables.len());
        for i in 0..plan.tables.len() {
            tables.push(statements::table_sink(&client, plan, i, run_xid).await?);
        }
        if dry.is_some() {
            dry_run::savepoint(&client).await?;
        }
        Ok(Sink {
            client,
            tables,
            dry_run: dry.is_some(),
            mode: Mode::direct(),
            last_path: None,
            // For measuring what the direct way buys (scripts/bench.sh); not a user setting.
            direct_allowed: std::env::var_os("DDB2PG_NO_DIRECT_COPY").is_none(),
        })
    }

    /// Encode `rows` into their tables' COPY buffers (with `_seq` for the staging tables);
    /// returns each table's rows, as one buffer, and how many.
    fn encode(&mut self, rows: &[Row], seq: bool) -> Vec<(Bytes, u64)> {
        let mut staged = vec![0u64; self.tables.len()];
        for (i, row) in rows.iter().enumerate() {
            let seq = seq.then_some(i as i64);
            encode_row(&mut self.tables[row.table].buf, seq, &row.cells);
            staged[row.table] += 1;
        }
        self.tables
            .iter_mut()
            .zip(staged)
            .map(|(t, n)| (t.buf.split().freeze(), n))
            .collect()
    }

    /// Each table's deletions as COPY rows: `Always` ones as their key cells alone (for the
    /// keys table), `IfSame` ones as their old row, with the guard if the table has a parent
    /// (for the olds table). Per table: (keys, how many), (olds, how many).
    fn encode_deletions(&mut self, rows: &[Deletion]) -> Vec<[(Bytes, u64); 2]> {
        let n = self.tables.len();
        let mut olds: Vec<BytesMut> = (0..n).map(|_| BytesMut::new()).collect();
        let mut staged = vec![[0u64; 2]; n];
        let mut cells = Vec::new();
        for d in rows {
            let ti = d.row.table;
            let t = &mut self.tables[ti];
            cells.clear();
            match &d.only {
                Only::Always => {
                    cells.extend(
                        t.key
                            .iter()
                            .map(|&k| d.row.cells.get(k).cloned().unwrap_or(Cell::Null)),
                    );
                    encode_row(&mut t.buf, None, &cells);
                    staged[ti][0] += 1;
                }
                Only::IfSame { parent } => {
                    cells.extend(d.row.cells.iter().cloned());
                    if let Some(width) = t.parent_width {
                        let guarded = if parent.is_some() { "t" } else { "f" };
                        cells.push(Cell::Text(guarded.into()));
                        match parent {
                            Some(p) => cells.extend(p.iter().cloned()),
                            None => cells.extend(std::iter::repeat_n(Cell::Null, width)),
                        }
                    }
                    encode_row(&mut olds[ti], None, &cells);
                    staged[ti][1] += 1;
                }
            }
        }
        self.tables
            .iter_mut()
            .zip(olds)
            .zip(staged)
            .map(|((t, o), [k, d])| [(t.buf.split().freeze(), k), (o.freeze(), d)])
            .collect()
    }

    /// Whether two rows of a table have the same key (by text: PostgreSQL may still find
    /// keys equal that differ in text, see the module's documentation).
    fn has_repeated_keys(&self, rows: &[Row]) -> bool {
        use std::hash::{BuildHasher, Hash, Hasher};
        let state = std::collections::hash_map::RandomState::new();
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let mut h = state.build_hasher();
            row.table.hash(&mut h);
            for &k in &self.tables[row.table].key {
                if let Some(cell) = row.cells.get(k) {
                    cell.hash(&mut h);
                }
            }
            // A hash collision only costs the slower (DISTINCT ON) statement.
            if !seen.insert(h.finish()) {
                return true;
            }
        }
        false
    }

    /// Write `rows` in one transaction; returns per-table counts once committed.
    pub async fn write(&mut self, rows: &[Row]) -> Result<Vec<TableCounts>> {
        let repeated = self.has_repeated_keys(rows);
        if self.direct_allowed && self.mode.try_direct() && !repeated {
            let data = self.encode(rows, false);
            match self.write_direct(&data).await {
                Ok(counts) => {
                    self.mode.direct_succeeded();
                    self.last_path = Some(Path::Direct);
                    return Ok(counts);
                }
                Err((e, _)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    tracing::debug!("direct COPY met existing keys; upserting this batch");
                    self.mode.direct_conflicted();
                }
                Err((e, table)) => {
                    let err = Error::from_pg("copy into the target", e);
                    return Err(match table {
                        Some(i) => err.in_table(&self.tables[i].name),
                        None => err,
                    });
                }
            }
        }
        let data = self.encode(rows, true);
        let first = self.write_upsert(&data, repeated).await;
        let counts = match first {
            // Keys PostgreSQL finds equal although their text differs.
            Err(e) if !repeated && e.code() == Some(&SqlState::CARDINALITY_VIOLATION) => {
                self.write_upsert(&data, true).await
            }
            r => r,
        }
        .map_err(PgOr::into_error)?;
        let all_new = counts.iter().all(|c| c.inserted == c.staged);
        self.mode.upserted(all_new);
        Ok(counts)
    }

    /// The direct way: COPY into the target tables. Errors are returned raw so that the
    /// caller can tell a unique violation (existing keys) from the rest, with the index of the
    /// table being written, if any.
    async fn write_direct(
        &mut self,
        data: &[(Bytes, u64)],
    ) -> Result<Vec<TableCounts>, (tokio_postgres::Error, Option<usize>)> {
        let tx = Scope::begin(&mut self.client, self.dry_run)
            .await
            .map_err(|e| (e, None))?;
        let mut counts = vec![TableCounts::default(); self.tables.len()];
        for (i, t) in self.tables.iter().enumerate() {
            let (bytes, n) = &data[i];
            if *n == 0 {
                continue;
            }
            copy_raw(tx.client(), &t.direct_copy, bytes.clone())
                .await
                .map_err(|e| (e, Some(i)))?;
            counts[i] = TableCounts {
                staged: *n,
                distinct: *n,
                inserted: *n,
                updated: 0,
                earlier: 0,
            };
        }
        tx.end().await.map_err(|e| (e, None))?;
        Ok(counts)
    }

    /// The upsert way: COPY into the staging tables, then one upsert per table. Errors with
    /// SQLSTATE 21000 are returned raw (see `write`).
    async fn write_upsert(
        &mut self,
        data: &[(Bytes, u64)],
        distinct: bool,
    ) -> Result<Vec<TableCounts>, PgOr> {
        self.last_path = Some(if distinct {
            Path::UpsertDistinct
        } else {
            Path::Upsert
        });
        let mut counts = vec![TableCounts::default(); self.tables.len()];
        let tx = Scope::begin(&mut self.client, self.dry_run)
            .await
            .map_err(|e| Error::from_pg("begin", e))?;
        for (i, t) in self.tables.iter().enumerate() {
            let (bytes, n) = &data[i];
            if *n == 0 {
                continue;
            }
            copy_to(tx.client(), &t.stage_copy, bytes.clone())
                .await
                .map_err(|e| e.in_table(&t.name))?;
            let statement = if distinct {
                &t.upsert_distinct
            } else {
                &t.upsert
            };
            let r = match tx.client().query_one(statement, &[]).await {
                Ok(r) => r,
                Err(e) if !distinct && e.code() == Some(&SqlState::CARDINALITY_VIOLATION) => {
                    return Err(PgOr::Pg(e))
                }
                Err(e) => return Err(Error::from_pg("upsert", e).in_table(&t.name).into()),
            };
            counts[i] = TableCounts {
                staged: *n,
                distinct: r.get::<_, i64>(0) as u64,
                inserted: r.get::<_, i64>(1) as u64,
                updated: r.get::<_, i64>(2) as u64,
                earlier: r.get::<_, i64>(3) as u64,
            };
        }
        tx.end().await.map_err(|e| Error::from_pg("commit", e))?;
        Ok(counts)
    }

    /// Run `rows`' deletions in one transaction (see `changes::Deletion`): `Always` ones by
    /// key, `IfSame` ones only where the row (and its parent row, if guarded) still holds what
    /// they say; returns how many rows were deleted.
    pub async fn delete(&mut self, rows: &[Deletion]) -> Result<u64> {
        let data = self.encode_deletions(rows);
        let tx = Scope::begin(&mut self.client, self.dry_run)
            .await
            .map_err(|e| Error::from_pg("begin", e))?;
        let mut deleted = 0;
        // Children first: the mapping lists parents before their exploded children (and a
        // child's guard reads its parent as the batch found it).
        for (i, t) in self.tables.iter().enumerate().rev() {
            let [(keys, by_key), (olds, if_same)] = &data[i];
            for (n, copy, bytes, statement) in [
                (if_same, &t.olds_copy, olds, &t.delete_same),
                (by_key, &t.key_copy, keys, &t.delete),
            ] {
                if *n == 0 {
                    continue;
                }
                copy_to(tx.client(), copy, bytes.clone())
                    .await
                    .map_err(|e| e.in_table(&t.name))?;
                deleted += tx
                    .client()
                    .execute(statement, &[])
                    .await
                    .map_err(|e| Error::from_pg("delete", e).in_table(&t.name))?;
            }
        }
        tx.end().await.map_err(|e| Error::from_pg("commit", e))?;
        Ok(deleted)
    }
}

/// An error of `write_upsert`: ours, or PostgreSQL's raw one for the caller to look at.
enum PgOr {
    Pg(tokio_postgres::Error),
    Err(Error),
}

impl From<Error> for PgOr {
    fn from(e: Error) -> Self {
        PgOr::Err(e)
    }
}

impl PgOr {
    fn into_error(self) -> Error {
        match self {
            PgOr::Pg(e) => Error::from_pg("upsert", e),
            PgOr::Err(e) => e,
        }
    }

    fn code(&self) -> Option<&SqlState> {
        match self {
            PgOr::Pg(e) => e.code(),
            PgOr::Err(_) => None,
        }
    }
}

/// COPY an encoded buffer with `sql` (a `COPY ... FROM STDIN`).
async fn copy_to(tx: &Client, sql: &str, data: Bytes) -> Result<()> {
    copy_raw(tx, sql, data)
        .await
        // Typed as the target, the staging table refuses what the target refuses, with the
        // same words as the direct COPY: a reject's reason does not depend on the way taken.
        .map_err(|e| Error::from_pg("copy into the target", e))
}

/// As `copy_to`, with PostgreSQL's error as it is.
async fn copy_raw(tx: &Client, sql: &str, data: Bytes) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in::<_, Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.finish().await?;
    Ok(())
}

/// Send one buffer of COPY text rows and finish the COPY.
pub async fn send_copy(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    data: bytes::Bytes,
    context: &str,
) -> Result<()> {
    futures_util::pin_mut!(sink);
    sink.send(data)
        .await
        .map_err(|e| Error::from_pg(context, e))?;
    sink.finish()
        .await
        .map_err(|e| Error::from_pg(context, e))?;
    Ok(())
}
