//! Per target table, what a sink's connection writes it with: its staging tables and the SQL of
//! its COPYs, upserts and deletions (see the module documentation of `sink`).
//!
//! A change's deletions (`changes::Deletion`) are staged by COPY too, each kind in its own
//! temporary table: `Always` ones as their key cells alone (`ddb2pg_keys_N`: their other cells
//! would be NULLs that a column type, a NOT NULL domain, may refuse), `IfSame` ones as the
//! whole old row (`ddb2pg_olds_N`), with, for an exploded table that has a parent
//! (`changes::parent_of`), whether it is guarded and the parent's old row. Their statement:
//!
//! ```sql
//! DELETE FROM t USING ddb2pg_olds_N d
//! WHERE t.key = d.key AND ROW(t.*) IS NOT DISTINCT FROM ROW(d.*)
//!   AND (NOT d.guarded OR EXISTS (SELECT 1 FROM parent p
//!        WHERE p.key = t.parent_key AND ROW(p.*) IS NOT DISTINCT FROM ROW(d.parent_*)
//!        FOR SHARE))
//! ```
//!
//! where columns compared by text (`by_text`, as in the upsert) are compared as `::text`.
//!
//! **The guard locks the parent row it reads (`FOR SHARE`).** Another connection may be
//! writing another item's rows at the same time (an order moved to another user: the new
//! item's lane rewrites the `orders` row and its identical `order_lines` while this lane
//! deletes the old item's). Under READ COMMITTED a plain subquery reads the parent as the
//! statement's snapshot has it, even after the statement waited for that writer's lock on the
//! child row and the writer committed: it would see the old parent, find the child still the
//! removed item's and delete the other item's lines. A locking read waits for a concurrent
//! writer of the parent and re-checks the newest committed version; and once taken, the lock
//! keeps the parent as checked until this transaction commits. The condition on the row itself
//! needs no lock: PostgreSQL re-checks it against the newest version of the row it deletes.

use bytes::BytesMut;
use tokio_postgres::{Client, Statement};

use super::target::{self, TargetColumn};
use crate::changes::parent_of;
use crate::error::{Error, Result};
use crate::plan::{ident, Plan, TablePlan};

/// One target table's staging tables and statements, on one connection.
pub(super) struct TableSink {
    /// The table's display name: a refusal of its rows is filed under it.
    pub(super) name: String,
    /// COPY into the staging table (with `_seq`, or the name `TablePlan::seq_column` gives).
    pub(super) stage_copy: String,
    /// COPY straight into the target table.
    pub(super) direct_copy: String,
    /// The upsert for a batch with repeated keys (`DISTINCT ON`, last wins).
    pub(super) upsert_distinct: Statement,
    /// The upsert for a batch without repeated keys.
    pub(super) upsert: Statement,
    /// COPY a deletion's keys into the keys table.
    pub(super) key_copy: String,
    pub(super) delete: Statement,
    /// COPY a conditional deletion's old row (and guard) into the olds table.
    pub(super) olds_copy: String,
    pub(super) delete_same: Statement,
    /// The parent table's column count, if the table has a parent: its olds rows carry the
    /// guard flag and the parent's old cells.
    pub(super) parent_width: Option<usize>,
    /// Positions of the key columns among the row's cells.
    pub(super) key: Vec<usize>,
    pub(super) buf: BytesMut,
}

/// Table `i` of the plan: its staging tables (created in this connection) and statements.
pub(super) async fn table_sink(
    client: &Client,
    plan: &Plan,
    i: usize,
    run_xid: Option<u32>,
) -> Result<TableSink> {
    let t = &plan.tables[i];
    let stage = format!("ddb2pg_stage_{i}");
    // The target's own types: see the module's documentation.
    let types = target::column_types(client, t).await?;
    let cols: Vec<String> = t
        .columns
        .iter()
        .zip(&types)
        .map(|(c, ty)| format!("{} {}", ident(&c.name), ty.sql_type))
        .collect();
    let seq = ident(&t.seq_column());
    // A deletion's keys alone: its other cells would be NULLs that a column type (a
    // NOT NULL domain) may refuse, and a refused write's old rows must still go.
    let keys = format!("ddb2pg_keys_{i}");
    let key_cols: Vec<String> = t.key.iter().map(|&k| cols[k].clone()).collect();
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} ({seq} int8, {}) ON COMMIT DELETE ROWS; \
             CREATE TEMP TABLE IF NOT EXISTS {keys} ({}) ON COMMIT DELETE ROWS",
            cols.join(", "),
            key_cols.join(", ")
        ))
        .await
        .map_err(|e| Error::from_pg("create staging table", e))?;
    let names: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
    let stage_copy = format!(
        "COPY pg_temp.{stage} ({seq}, {}) FROM STDIN",
        names.join(", ")
    );
    let direct_copy = format!("COPY {} ({}) FROM STDIN", t.sql_name(), names.join(", "));
    let by_text: Vec<bool> = types.iter().map(|c| c.by_text).collect();
    let prepare = |distinct: bool| {
        let sql = upsert_sql(t, &by_text, &stage, run_xid, distinct);
        async move {
            client.prepare(&sql).await.map_err(|e| {
                Error::from_pg(&format!("prepare upsert into {}", t.display_name()), e)
            })
        }
    };
    let upsert_distinct = prepare(true).await?;
    let upsert = prepare(false).await?;
    let key: Vec<String> = t.key.iter().map(|&k| names[k].clone()).collect();
    let key_copy = format!("COPY pg_temp.{keys} ({}) FROM STDIN", key.join(", "));
    let on: Vec<String> = key.iter().map(|k| format!("t.{k} = d.{k}")).collect();
    let delete = client
        .prepare(&format!(
            "DELETE FROM {} t USING (SELECT DISTINCT {} FROM pg_temp.{keys}) d WHERE {}",
            t.sql_name(),
            key.join(", "),
            on.join(" AND ")
        ))
        .await
        .map_err(|e| Error::from_pg(&format!("prepare delete from {}", t.display_name()), e))?;
    let olds = olds_table(client, plan, i, &types).await?;
    let delete_same = client.prepare(&olds.delete_sql).await.map_err(|e| {
        Error::from_pg(
            &format!("prepare conditional delete from {}", t.display_name()),
            e,
        )
    })?;
    Ok(TableSink {
        name: t.display_name(),
        stage_copy,
        direct_copy,
        key_copy,
        upsert_distinct,
        upsert,
        delete,
        olds_copy: olds.copy_sql,
        delete_same,
        parent_width: olds.parent_width,
        key: t.key.clone(),
        buf: BytesMut::with_capacity(1 << 20),
    })
}

/// Table `i`'s olds table (created in this connection), and its SQL.
struct Olds {
    copy_sql: String,
    delete_sql: String,
    parent_width: Option<usize>,
}

/// A name no column of `t` has, from `base`.
fn free_name(t: &TablePlan, base: &str) -> String {
    let taken = |n: &str| t.columns.iter().any(|c| c.name == n);
    let mut name = base.to_string();
    while taken(&name) {
        name.push('_');
    }
    name
}

/// Column `c` of `t` on `side`, as compared (see `by_text`).
fn compared(side: &str, t: &TablePlan, c: usize, by_text: bool, name: Option<&str>) -> String {
    let c = ident(name.unwrap_or(&t.columns[c].name));
    if by_text {
        format!("({side}.{c}::text COLLATE \"C\")")
    } else {
        format!("{side}.{c}")
    }
}

async fn olds_table(
    client: &Client,
    plan: &Plan,
    i: usize,
    types: &[TargetColumn],
) -> Result<Olds> {
    let t = &plan.tables[i];
    let olds = format!("ddb2pg_olds_{i}");
    let mut cols: Vec<String> = t
        .columns
        .iter()
        .zip(types)
        .map(|(c, ty)| format!("{} {}", ident(&c.name), ty.sql_type))
        .collect();
    let mut names: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
    let key: Vec<String> = t.key.iter().map(|&k| names[k].clone()).collect();
    let mut on: Vec<String> = key.iter().map(|k| format!("t.{k} = d.{k}")).collect();
    let all = |side: &str| -> Vec<String> {
        (0..t.columns.len())
            .map(|c| compared(side, t, c, types[c].by_text, None))
            .collect()
    };
    on.push(format!(
        "ROW({}) IS NOT DISTINCT FROM ROW({})",
        all("t").join(", "),
        all("d").join(", ")
    ));
    let mut parent_width = None;
    if let Some(parent) = parent_of(plan, i) {
        let p = &plan.tables[parent.table];
        let ptypes = target::column_types(client, p).await?;
        let guarded = free_name(t, "ddb2pg_guarded");
        let pnames: Vec<String> = (0..p.columns.len())
            .map(|c| free_name(t, &format!("ddb2pg_parent_{c}")))
            .collect();
        cols.push(format!("{} bool", ident(&guarded)));
        names.push(ident(&guarded));
        for (n, ty) in pnames.iter().zip(&ptypes) {
            cols.push(format!("{} {}", ident(n), ty.sql_type));
            names.push(ident(n));
        }
        let pkey: Vec<String> = p
            .key
            .iter()
            .zip(&parent.cols)
            .map(|(&pk, &ck)| {
                format!(
                    "p.{} = t.{}",
                    ident(&p.columns[pk].name),
                    ident(&t.columns[ck].name)
                )
            })
            .collect();
        let (pt, pd): (Vec<String>, Vec<String>) = (0..p.columns.len())
            .map(|c| {
                let by_text = ptypes[c].by_text;
                (
                    compared("p", p, c, by_text, None),
                    compared("d", p, c, by_text, Some(&pnames[c])),
                )
            })
            .unzip();
        on.push(format!(
            "(NOT d.{guarded} OR EXISTS (SELECT 1 FROM {parent} p WHERE {pkey} AND \
             ROW({pt}) IS NOT DISTINCT FROM ROW({pd}) FOR SHARE))",
            guarded = ident(&guarded),
            parent = p.sql_name(),
            pkey = pkey.join(" AND "),
            pt = pt.join(", "),
            pd = pd.join(", "),
        ));
        parent_width = Some(p.columns.len());
    }
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {olds} ({}) ON COMMIT DELETE ROWS",
            cols.join(", ")
        ))
        .await
        .map_err(|e| Error::from_pg("create staging table", e))?;
    Ok(Olds {
        copy_sql: format!("COPY pg_temp.{olds} ({}) FROM STDIN", names.join(", ")),
        delete_sql: format!(
            "DELETE FROM {} t USING pg_temp.{olds} d WHERE {}",
            t.sql_name(),
            on.join(" AND ")
        ),
        parent_width,
    })
}

/// `by_text[i]`: compare column `i` by its text, byte for byte (its type has no `=`, or one
/// that is not sameness: see `target::TargetColumn`).
pub(super) fn upsert_sql(
    t: &TablePlan,
    by_text: &[bool],
    stage: &str,
    run_xid: Option<u32>,
    distinct: bool,
) -> String {
    let (all, key, rest) = t.quoted_columns();
    let on_conflict = if rest.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = rest.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        let compared = |side: &str| -> Vec<String> {
            (0..t.columns.len())
                .filter(|i| !t.key.contains(i))
                .map(|i| {
                    let c = ident(&t.columns[i].name);
                    match by_text.get(i) {
                        Some(true) => format!("({side}.{c}::text COLLATE \"C\")"),
                        _ => format!("{side}.{c}"),
                    }
                })
                .collect()
        };
        let (old, new) = (compared("t"), compared("EXCLUDED"));
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
    let src = if distinct {
        format!(
            "SELECT DISTINCT ON ({key}) {all} FROM pg_temp.{stage} ORDER BY {key}, {seq} DESC",
            key = key.join(", "),
            all = all.join(", "),
            seq = ident(&t.seq_column()),
        )
    } else {
        format!("SELECT {} FROM pg_temp.{stage}", all.join(", "))
    };
    format!(
        "WITH src AS ({src}){earlier}, \
         up AS (INSERT INTO {target} AS t ({all}) SELECT {all} FROM src ON CONFLICT ({key}) {on_conflict} \
         RETURNING (xmax = 0) AS inserted) \
         SELECT (SELECT count(*) FROM src), count(*) FILTER (WHERE inserted), \
         count(*) FILTER (WHERE NOT inserted), (SELECT count(*) FROM old) FROM up",
        key = key.join(", "),
        all = all.join(", "),
        target = t.sql_name(),
    )
}
