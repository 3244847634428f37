//! Verify, step 2: the scratch tables, one unlogged table per target table, typed like the
//! target's columns, that the source's rows are copied into; and the COPY of one page into
//! them, which finds the rows the target's column types refuse.
//!
//! Each scratch row carries, besides the mapping's columns, its load order (`_seq`), the source
//! it came from (`_gen`: 0 for a table or the full export, then one per incremental export) and
//! whether it deletes its key (`_del`: an incremental export's deletion), and whether its item
//! is among migrate's rejects (`_rej`, see `super::known`). The expected target is, per key,
//! the last operation: a write, unless it is a deletion.

use bytes::{Bytes, BytesMut};
use tokio_postgres::Client;

use crate::error::{pg_message, Error, Result};
use crate::plan::{ident, Plan, TablePlan};
use crate::sink::{self, encode_row};
use crate::transform::{Cell, Row};

/// One target table's scratch table.
pub struct ScratchTable {
    /// Quoted name.
    pub name: String,
    /// How each column of the plan is compared with the target's: `Some(ty)` as cast to `ty`
    /// (see [`compared_as`]), `None` as it is.
    pub compare_as: Vec<Option<String>>,
    /// Quoted names of the bookkeeping columns.
    pub seq: String,
    pub gen: String,
    pub del: String,
    /// Whether the row's item is among the known rejects (see `super::known`).
    pub rej: String,
    copy_sql: String,
}

/// A name for a bookkeeping column that no column of `t` has.
fn free_name(t: &TablePlan, base: &str) -> String {
    let taken = |n: &str| t.columns.iter().any(|c| c.name == n);
    let mut name = base.to_string();
    let mut i = 0;
    while taken(&name) {
        i += 1;
        name = format!("{base}_{i}");
    }
    ident(&name)
}

/// A target column as a scratch table holds it.
struct ScratchColumn {
    /// The column's type, with every domain replaced by its base type: a scratch row that
    /// deletes its key has NULL cells, which a NOT NULL domain would refuse.
    base: String,
    /// The target's type, when it is a domain: a written row is checked against it.
    domain: Option<String>,
}

/// The target's type of `column` of `t`, and its base type under any domains.
async fn column_type(client: &Client, t: &TablePlan, column: &str) -> Result<ScratchColumn> {
    let row = client
        .query_one(
            "WITH RECURSIVE d(typ, typmod, depth) AS (SELECT atttypid, atttypmod, 0 \
             FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 \
             UNION ALL SELECT ty.typbasetype, ty.typtypmod, d.depth + 1 FROM d \
             JOIN pg_type ty ON ty.oid = d.typ WHERE ty.typtype = 'd') \
             SELECT (SELECT format_type(typ, typmod) FROM d WHERE depth = 0), \
             (SELECT format_type(typ, typmod) FROM d ORDER BY depth DESC LIMIT 1)",
            &[&t.sql_name(), &column],
        )
        .await
        .map_err(|e| Error::from_pg("read target column types", e))?;
    let (Some(ty), Some(base)) = (row.get::<_, Option<String>>(0), row.get(1)) else {
        return Err(Error::config(format!(
            "table {} has no column {column:?}: fix the target schema",
            t.display_name()
        )));
    };
    Ok(ScratchColumn {
        domain: (ty != base).then_some(ty),
        base,
    })
}

/// How values of type `base` are compared (see `compare`): json (and json[]) as jsonb, a type
/// without an `=` of its own (xml, point) by its text, the rest as PostgreSQL compares them.
async fn compared_as(client: &Client, base: &str) -> Option<String> {
    match base {
        "json" => return Some("jsonb".into()),
        "json[]" => return Some("jsonb[]".into()),
        _ => {}
    }
    let probe = format!("SELECT NULL::{base} IS NOT DISTINCT FROM NULL::{base}");
    client.prepare(&probe).await.err().map(|_| "text".into())
}

/// Create the scratch tables, named after this run (`ddb2pg_verify_<pid>_<16 hex random>_<i>`:
/// the pid alone is 1 in every container, so two `verify` pods on one database would meet);
/// a name already taken is an error, never dropped (it is another run's). On an error, those
/// created are dropped.
pub async fn create(client: &Client, plan: &Plan) -> Result<Vec<ScratchTable>> {
    let run = run_name();
    let mut out = Vec::new();
    for (i, t) in plan.tables.iter().enumerate() {
        match create_one(client, t, &format!("{run}_{i}")).await {
            Ok(s) => out.push(s),
            Err(e) => {
                drop_all(client, &out).await;
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// This run's prefix of scratch table names: at most 14 + 10 + 1 + 16 bytes, so that with
/// `_<table index>` it stays within PostgreSQL's 63.
fn run_name() -> String {
    format!(
        "ddb2pg_verify_{}_{:016x}",
        std::process::id(),
        crate::checkpoint::lock::rand_token()
    )
}

async fn create_one(client: &Client, t: &TablePlan, name: &str) -> Result<ScratchTable> {
    let name = name.to_string();
    let mut columns = Vec::new();
    for c in &t.columns {
        columns.push(column_type(client, t, &c.name).await?);
    }
    let mut compare_as = Vec::new();
    for c in &columns {
        compare_as.push(compared_as(client, &c.base).await);
    }
    let cols: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
    let (seq, gen, del, rej) = (
        ident(&t.seq_column()),
        free_name(t, "_gen"),
        free_name(t, "_del"),
        free_name(t, "_rej"),
    );
    // A written row's value must be one the target's domain takes, as migrate's staging
    // (typed as the target) requires; CASE keeps a deletion's NULLs out of the check.
    let typed: Vec<String> = cols
        .iter()
        .zip(&columns)
        .map(|(c, ty)| match &ty.domain {
            None => format!("{c} {}", ty.base),
            Some(d) => format!(
                "{c} {} CHECK (CASE WHEN {del} THEN true ELSE pg_typeof({c}::{d}) IS NOT NULL END)",
                ty.base
            ),
        })
        .collect();
    client
        .batch_execute(&format!(
            "CREATE UNLOGGED TABLE {name} \
             ({seq} int8, {gen} int4, {del} bool, {rej} bool, {})",
            typed.join(", ")
        ))
        .await
        .map_err(|e| Error::from_pg("create a scratch table", e))?;
    let copy_sql = format!(
        "COPY {name} ({seq}, {gen}, {del}, {rej}, {}) FROM STDIN",
        cols.join(", ")
    );
    Ok(ScratchTable {
        name,
        compare_as,
        seq,
        gen,
        del,
        rej,
        copy_sql,
    })
}

/// Drop this run's scratch tables, and no others (best effort: they are unlogged).
pub async fn drop_all(client: &Client, scratch: &[ScratchTable]) {
    for s in scratch {
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", s.name))
            .await;
    }
}

/// One scratch row to load: a row to write, or a key to delete.
pub struct Entry<'a> {
    pub row: &'a Row,
    pub seq: i64,
    pub gen: i32,
    pub del: bool,
    /// The row's item is a known reject.
    pub rej: bool,
}

/// A table's entries of a page in COPY text, one line each.
pub struct Encoded {
    buf: Bytes,
    /// Where each entry's line starts (and one past the last).
    offsets: Vec<usize>,
}

impl Encoded {
    pub fn new(entries: &[Entry<'_>]) -> Encoded {
        let mut buf = BytesMut::new();
        let mut offsets = vec![0];
        let mut cells: Vec<Cell> = Vec::new();
        for e in entries {
            cells.clear();
            cells.push(Cell::Text(e.gen.to_string()));
            cells.push(Cell::Text(if e.del { "t" } else { "f" }.into()));
            cells.push(Cell::Text(if e.rej { "t" } else { "f" }.into()));
            cells.extend(e.row.cells.iter().cloned());
            encode_row(&mut buf, Some(e.seq), &cells);
            offsets.push(buf.len());
        }
        Encoded {
            buf: buf.freeze(),
            offsets,
        }
    }

    fn lines(&self, from: usize, to: usize) -> Bytes {
        self.buf.slice(self.offsets[from]..self.offsets[to])
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

async fn copy(tx: &tokio_postgres::Transaction<'_>, sql: &str, data: Bytes) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in::<_, Bytes>(sql)
        .await
        .map_err(|e| Error::from_pg("copy into a scratch table", e))?;
    sink::send_copy(sink, data, "copy into a scratch table").await
}

/// Load one page, `pages[i]` into `scratch[i]`, in one transaction. An error caused by the
/// rows' values (`Error::is_row_error`) rolls it back and is returned for the caller to find
/// the refused rows ([`refused`]) and load the page again without them.
pub async fn load(client: &mut Client, scratch: &[ScratchTable], pages: &[Encoded]) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::from_pg("begin a scratch load", e))?;
    for (s, p) in scratch.iter().zip(pages) {
        copy(&tx, &s.copy_sql, p.lines(0, p.len())).await?;
    }
    tx.commit()
        .await
        .map_err(|e| Error::from_pg("commit a scratch load", e))
}

/// Which entries of `page` the table's column types refuse, each with PostgreSQL's reason.
/// The page is copied in transactions that are rolled back: PostgreSQL names the line a COPY
/// fails at, so each refused row costs one COPY of the rest of the page (k refused rows, k + 1
/// COPYs). Should an error not name its line, that part is halved down to single rows.
pub async fn refused(
    client: &mut Client,
    s: &ScratchTable,
    page: &Encoded,
) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut todo = vec![(0, page.len())];
    while let Some((from, to)) = todo.pop() {
        if from == to {
            continue;
        }
        let Some((e, line)) = test_copy(client, s, page, from, to).await? else {
            continue;
        };
        match line {
            Some(l) if from + l <= to && l > 0 => {
                out.push((from + l - 1, e));
                todo.push((from + l, to));
            }
            _ if to - from == 1 => out.push((from, e)),
            _ => {
                let mid = (from + to) / 2;
                todo.push((mid, to));
                todo.push((from, mid));
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// COPY entries `from..to` of `page` in a transaction rolled back at once. None when the rows
/// are taken; else PostgreSQL's message for the error the rows' values caused, with the line (1-based, within the
/// part) PostgreSQL says it failed at. An error of another kind is returned as such.
async fn test_copy(
    client: &mut Client,
    s: &ScratchTable,
    page: &Encoded,
    from: usize,
    to: usize,
) -> Result<Option<(String, Option<usize>)>> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::from_pg("begin a scratch test", e))?;
    let tried = async {
        let sink = tx.copy_in::<_, Bytes>(s.copy_sql.as_str()).await?;
        futures_util::pin_mut!(sink);
        futures_util::SinkExt::send(&mut sink, page.lines(from, to)).await?;
        sink.finish().await
    }
    .await;
    // A test only: nothing stays, whether the COPY took the rows or not.
    let _ = tx.rollback().await;
    let Err(pg) = tried else {
        return Ok(None);
    };
    let line = pg
        .as_db_error()
        .and_then(|d| d.where_())
        .and_then(copy_line);
    let reason = pg_message(&pg);
    let e = Error::from_pg("copy into a scratch table", pg);
    if !e.is_row_error() {
        return Err(e);
    }
    Ok(Some((reason, line)))
}

/// The line number in a COPY error's context: `COPY name, line 12, column c: "..."`.
fn copy_line(context: &str) -> Option<usize> {
    let rest = &context[context.find(", line ")? + ", line ".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_differ_per_run_and_fit_postgres() {
        let (a, b) = (run_name(), run_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("ddb2pg_verify_{}_", std::process::id())));
        // The longest: a pid of 10 digits and a table index of 6.
        let longest = format!("ddb2pg_verify_{}_{:016x}_{}", u32::MAX, u64::MAX, 999_999);
        assert!(longest.len() <= 63, "{}", longest.len());
    }

    #[test]
    fn the_line_a_copy_failed_at() {
        let line = super::copy_line;
        assert_eq!(
            line("COPY ddb2pg_verify_1_0, line 12, column score: \"1e12\""),
            Some(12)
        );
        assert_eq!(line("COPY t, line 3"), Some(3));
        assert_eq!(line("COPY t"), None);
    }
}
