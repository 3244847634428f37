//! The PostgreSQL sink: batched idempotent upserts, fed by COPY into a staging table.
//!
//! Per connection, each target table gets a temporary staging table (`ON COMMIT DELETE ROWS`).
//! A batch is one transaction: COPY the rows (text format) into the staging tables, then one
//! prepared statement per table:
//!
//! ```sql
//! WITH src AS (SELECT DISTINCT ON (key) ... FROM stage ORDER BY key, _seq DESC),
//!      up  AS (INSERT INTO t SELECT ... FROM src
//!              ON CONFLICT (key) DO UPDATE SET ... WHERE (t.cols) IS DISTINCT FROM (excluded.cols)
//!              RETURNING xmax = 0 AS inserted)
//! SELECT (SELECT count(*) FROM src), count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
//! ```
//!
//! `DISTINCT ON` keeps the last of repeated keys in a batch (no SQLSTATE 21000), and the
//! `WHERE ... IS DISTINCT FROM` makes a re-run rewrite nothing.

pub mod resilient;

use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::{Client, Statement};

use crate::error::{pg_message, Error, Result};
use crate::plan::{ident, Plan, TablePlan};
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

/// Create missing tables and check existing ones (see `prepare_target_with`).
pub async fn prepare_target(client: &Client, plan: &Plan) -> Result<()> {
    prepare_target_with(client, plan, true).await
}

/// Check that the target can take the plan's rows, before any item is read: every table and
/// column exists, each declared type is assignable to its column, and the key has a unique
/// index. Missing tables are created when `create` is set. Reports every problem at once.
pub async fn prepare_target_with(client: &Client, plan: &Plan, create: bool) -> Result<()> {
    let mut problems = Vec::new();
    for t in &plan.tables {
        let sql_name = t.sql_name();
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&sql_name])
            .await
            .map_err(|e| Error::from_pg("look up target table", e))?
            .get(0);
        if !exists && !create {
            problems.push(format!(
                "table {} does not exist: create it (`ddb2pg schema --mapping FILE` prints the DDL), \
                 or pass --create-tables or --migrations DIR",
                t.display_name()
            ));
            continue;
        }
        if !exists {
            client.batch_execute(&t.create_sql()).await.map_err(|e| {
                Error::config(format!(
                    "cannot create {}: {}",
                    t.display_name(),
                    pg_message(&e)
                ))
            })?;
            tracing::info!("created table {}", t.display_name());
            continue;
        }
        let cols: Vec<String> = client
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) \
                 AND attnum > 0 AND NOT attisdropped",
                &[&sql_name],
            )
            .await
            .map_err(|e| Error::from_pg("read target columns", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for c in &t.columns {
            if !cols.contains(&c.name) {
                problems.push(format!(
                    "table {} has no column {:?} (expected {})",
                    t.display_name(),
                    c.name,
                    c.ty.sql()
                ));
                continue;
            }
            // PostgreSQL itself decides assignability: preparing (not running) an INSERT of a
            // typed NULL fails when no assignment cast exists.
            let probe = format!(
                "INSERT INTO {} ({}) SELECT NULL::{} WHERE false",
                sql_name,
                ident(&c.name),
                c.ty.sql()
            );
            if let Err(e) = client.prepare(&probe).await {
                problems.push(format!(
                    "table {} column {:?}: the mapping's type {} is not assignable: {}",
                    t.display_name(),
                    c.name,
                    c.ty.sql(),
                    pg_message(&e)
                ));
            }
        }
        let mut key: Vec<String> = t.key_columns().map(|c| c.name.clone()).collect();
        key.sort();
        let unique: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) \
                 AND i.indisunique AND i.indpred IS NULL AND (SELECT array_agg(a.attname::text \
                 ORDER BY a.attname::text) FROM pg_attribute a WHERE a.attrelid = i.indrelid \
                 AND a.attnum = ANY(i.indkey)) = $2::text[])",
                &[&sql_name, &key],
            )
            .await
            .map_err(|e| Error::from_pg("read target indexes", e))?
            .get(0);
        if !unique {
            problems.push(format!(
                "table {} has no primary key or unique index on ({}): upserts need one",
                t.display_name(),
                key.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::config(format!(
            "the target does not match the mapping:\n  - {}\nfix the target schema (or drop the table to let ddb2pg create it)",
            problems.join("\n  - ")
        )))
    }
}

struct TableSink {
    copy_sql: String,
    upsert: Statement,
    delete: Statement,
    buf: BytesMut,
}

/// One connection's writer: staging tables and prepared upserts for every table of the plan.
pub struct Sink {
    client: Client,
    tables: Vec<TableSink>,
    /// Roll every batch back instead of committing it (`--dry-run`).
    pub dry_run: bool,
}

impl Sink {
    pub async fn open(url: &str, plan: &Plan) -> Result<Sink> {
        Self::open_with(url, plan, None).await
    }

    /// With `run_xid` (the 32-bit transaction id at the start of the run), each batch also
    /// counts the keys that earlier transactions of this run wrote: collisions across batches.
    pub async fn open_with(url: &str, plan: &Plan, run_xid: Option<u32>) -> Result<Sink> {
        let client = connect(url).await?;
        let mut tables = Vec::with_capacity(plan.tables.len());
        for (i, t) in plan.tables.iter().enumerate() {
            let stage = format!("ddb2pg_stage_{i}");
            let cols: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{} {}", ident(&c.name), c.ty.sql()))
                .collect();
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} (_seq int8, {}) ON COMMIT DELETE ROWS",
                    cols.join(", ")
                ))
                .await
                .map_err(|e| Error::from_pg("create staging table", e))?;
            let names: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
            let copy_sql = format!(
                "COPY pg_temp.{stage} (_seq, {}) FROM STDIN",
                names.join(", ")
            );
            let upsert = client
                .prepare(&upsert_sql(t, &stage, run_xid))
                .await
                .map_err(|e| {
                    Error::from_pg(&format!("prepare upsert into {}", t.display_name()), e)
                })?;
            let (_, key, _) = t.quoted_columns();
            let on: Vec<String> = key.iter().map(|k| format!("t.{k} = d.{k}")).collect();
            let delete = client
                .prepare(&format!(
                    "DELETE FROM {} t USING (SELECT DISTINCT {} FROM pg_temp.{stage}) d WHERE {}",
                    t.sql_name(),
                    key.join(", "),
                    on.join(" AND ")
                ))
                .await
                .map_err(|e| {
                    Error::from_pg(&format!("prepare delete from {}", t.display_name()), e)
                })?;
            tables.push(TableSink {
                copy_sql,
                upsert,
                delete,
                buf: BytesMut::with_capacity(1 << 20),
            });
        }
        Ok(Sink {
            client,
            tables,
            dry_run: false,
        })
    }

    /// Encode `rows` into their tables' COPY buffers; returns the rows per table.
    fn encode(&mut self, rows: &[Row]) -> Vec<u64> {
        let mut staged = vec![0u64; self.tables.len()];
        for t in &mut self.tables {
            t.buf.clear();
        }
        for (seq, row) in rows.iter().enumerate() {
            encode_row(&mut self.tables[row.table].buf, seq as i64, &row.cells);
            staged[row.table] += 1;
        }
        staged
    }

    /// Commit, or roll back in a dry run.
    async fn finish(tx: tokio_postgres::Transaction<'_>, dry_run: bool) -> Result<()> {
        if dry_run {
            tx.rollback()
                .await
                .map_err(|e| Error::from_pg("rollback", e))
        } else {
            tx.commit().await.map_err(|e| Error::from_pg("commit", e))
        }
    }

    /// Write `rows` in one transaction; returns per-table counts once committed.
    pub async fn write(&mut self, rows: &[Row]) -> Result<Vec<TableCounts>> {
        let staged = self.encode(rows);
        let mut counts = vec![TableCounts::default(); self.tables.len()];
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| Error::from_pg("begin", e))?;
        for (i, t) in self.tables.iter_mut().enumerate() {
            if staged[i] == 0 {
                continue;
            }
            copy_to_stage(&tx, t).await?;
            let r = tx
                .query_one(&t.upsert, &[])
                .await
                .map_err(|e| Error::from_pg("upsert", e))?;
            counts[i] = TableCounts {
                staged: staged[i],
                distinct: r.get::<_, i64>(0) as u64,
                inserted: r.get::<_, i64>(1) as u64,
                updated: r.get::<_, i64>(2) as u64,
                earlier: r.get::<_, i64>(3) as u64,
            };
        }
        Self::finish(tx, self.dry_run).await?;
        Ok(counts)
    }

    /// Delete the rows with the keys of `rows` (only their key cells matter), in one
    /// transaction; returns how many rows were deleted.
    pub async fn delete(&mut self, rows: &[Row]) -> Result<u64> {
        let staged = self.encode(rows);
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| Error::from_pg("begin", e))?;
        let mut deleted = 0;
        // Children first: the mapping lists parents before their exploded children.
        for (i, t) in self.tables.iter_mut().enumerate().rev() {
            if staged[i] == 0 {
                continue;
            }
            copy_to_stage(&tx, t).await?;
            deleted += tx
                .execute(&t.delete, &[])
                .await
                .map_err(|e| Error::from_pg("delete", e))?;
        }
        Self::finish(tx, self.dry_run).await?;
        Ok(deleted)
    }
}

/// COPY a table's encoded buffer into its staging table.
async fn copy_to_stage(tx: &tokio_postgres::Transaction<'_>, t: &mut TableSink) -> Result<()> {
    let sink = tx
        .copy_in::<_, bytes::Bytes>(&t.copy_sql)
        .await
        .map_err(|e| Error::from_pg("copy into staging table", e))?;
    send_copy(sink, t.buf.split().freeze(), "copy into staging table").await
}

fn upsert_sql(t: &TablePlan, stage: &str, run_xid: Option<u32>) -> String {
    let (all, key, rest) = t.quoted_columns();
    let on_conflict = if rest.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = rest.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        let old: Vec<String> = rest.iter().map(|c| format!("t.{c}")).collect();
        let new: Vec<String> = rest.iter().map(|c| format!("EXCLUDED.{c}")).collect();
        format!(
            "DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})",
            set.join(", "),
            old.join(", "),
            new.join(", ")
        )
    };
    // Rows already in the target that a transaction of this run wrote (xmin newer than the
    // run's start; wraparound-safe through age()). The CTE sees the table before this INSERT.
    let earlier = match run_xid {
        Some(xid) => format!(
            ", old AS (SELECT 1 FROM {target} t JOIN src USING ({key}) WHERE age(t.xmin) <= age('{xid}'::xid))",
            target = t.sql_name(),
            key = key.join(", "),
        ),
        None => ", old AS (SELECT 1 WHERE false)".to_string(),
    };
    format!(
        "WITH src AS (SELECT DISTINCT ON ({key}) {all} FROM pg_temp.{stage} ORDER BY {key}, _seq DESC){earlier}, \
         up AS (INSERT INTO {target} AS t ({all}) SELECT {all} FROM src ON CONFLICT ({key}) {on_conflict} \
         RETURNING (xmax = 0) AS inserted) \
         SELECT (SELECT count(*) FROM src), count(*) FILTER (WHERE inserted), \
         count(*) FILTER (WHERE NOT inserted), (SELECT count(*) FROM old) FROM up",
        key = key.join(", "),
        all = all.join(", "),
        target = t.sql_name(),
    )
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

/// Append one row in COPY text format: tab-separated, `\N` for NULL, backslash escapes.
pub fn encode_row(buf: &mut BytesMut, seq: i64, cells: &[Cell]) {
    // Formatted straight into the buffer: no String per row.
    let _ = std::fmt::Write::write_fmt(buf, format_args!("{seq}"));
    for cell in cells {
        buf.put_u8(b'\t');
        match cell {
            Cell::Null => buf.put_slice(b"\\N"),
            Cell::Text(s) => escape_text(buf, s.as_bytes()),
            Cell::Bytes(b) => {
                // bytea hex input `\x...`, with the backslash escaped for COPY.
                buf.put_slice(b"\\\\x");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for &x in b {
                    buf.put_u8(HEX[(x >> 4) as usize]);
                    buf.put_u8(HEX[(x & 15) as usize]);
                }
            }
        }
    }
    buf.put_u8(b'\n');
}

fn escape_text(buf: &mut BytesMut, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        buf.put_slice(&s[start..i]);
        buf.put_slice(esc);
        start = i + 1;
    }
    buf.put_slice(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_encoding() {
        let mut b = BytesMut::new();
        encode_row(
            &mut b,
            7,
            &[
                Cell::Text("a\tb\\c\nd\re".into()),
                Cell::Null,
                Cell::Bytes(vec![0, 255, 16]),
            ],
        );
        assert_eq!(&b[..], b"7\ta\\tb\\\\c\\nd\\re\t\\N\t\\\\x00ff10\n");
    }
}
