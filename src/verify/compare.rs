//! Verify, step 4: compare each scratch table with its target table, in PostgreSQL.
//!
//! The expected rows are, per key, the scratch's last operation when it is a write (see
//! `scratch`). A FULL JOIN on the key with the target gives `matched`, `missing_in_target`,
//! `extra_in_target` and `mismatched`; a missing row whose item is among migrate's rejects
//! (see `known`) is `rejected_known`, not missing. Values compare as PostgreSQL compares them; `json`
//! columns (and domains over json, json[]), which have no equality operator, compare as
//! `jsonb` (the same document: key order, spacing and duplicate keys ignored, numbers by
//! value), and other types without one (xml, point) by their text. Keys that several source rows of one
//! source produce (a table, or one export) are `collisions`: the target keeps one of them, so
//! it cannot be said to equal the source. Column names reach SQL only as quoted identifiers or
//! as query parameters, never inside a string literal.

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::report::TableResult;
use super::scratch::ScratchTable;
use crate::error::{pg_message, Error, Result};
use crate::plan::{ident, TablePlan};

/// How one column's values are compared: cast to `ty` when given (see
/// `scratch::ScratchTable::compare_as`).
fn compared(side: &str, column: &str, ty: Option<&str>) -> String {
    match ty {
        Some(ty) => format!("{side}.{column}::{ty}"),
        None => format!("{side}.{column}"),
    }
}

/// `ROW(s.cols) IS NOT DISTINCT FROM ROW(t.cols)` over the columns outside the key.
fn same_content(t: &TablePlan, s: &ScratchTable) -> String {
    let rest: Vec<(String, Option<&str>)> = (0..t.columns.len())
        .filter(|i| !t.key.contains(i))
        .map(|i| (ident(&t.columns[i].name), s.compare_as[i].as_deref()))
        .collect();
    if rest.is_empty() {
        return "true".to_string();
    }
    let side =
        |x: &str| -> Vec<String> { rest.iter().map(|(c, ty)| compared(x, c, *ty)).collect() };
    format!(
        "ROW({}) IS NOT DISTINCT FROM ROW({})",
        side("s").join(", "),
        side("t").join(", ")
    )
}

/// The expected rows: per key, the scratch's last operation, when it is a write (with
/// whether its item is a known reject).
fn expected_rows(t: &TablePlan, s: &ScratchTable) -> String {
    let (all, keys, _) = t.quoted_columns();
    format!(
        "(SELECT {all}, {rej} FROM (SELECT DISTINCT ON ({k}) {all}, {del}, {rej} FROM {name} \
         ORDER BY {k}, {seq} DESC) last WHERE NOT {del})",
        k = keys.join(", "),
        all = all.join(", "),
        del = s.del,
        rej = s.rej,
        seq = s.seq,
        name = s.name,
    )
}

/// Compare one table: the counts and up to `samples` keys of each kind of difference.
pub async fn table(
    client: &Client,
    t: &TablePlan,
    s: &ScratchTable,
    samples: u32,
    sharded: bool,
) -> Result<TableResult> {
    let (_, keys, _) = t.quoted_columns();
    let k0 = &keys[0];
    let same = same_content(t, s);
    let src = expected_rows(t, s);
    let on: Vec<String> = keys.iter().map(|k| format!("s.{k} = t.{k}")).collect();
    // A shard holds only its segments' items: target rows of other shards are not extra.
    let join = if sharded { "LEFT" } else { "FULL" };
    let from = format!(
        "{src} s {join} JOIN {} t ON {}",
        t.sql_name(),
        on.join(" AND ")
    );
    let rej = &s.rej;
    let kinds = [
        (
            "missing_in_target",
            format!("t.{k0} IS NULL AND NOT s.{rej}"),
        ),
        ("extra_in_target", format!("s.{k0} IS NULL")),
        (
            "mismatched",
            format!("s.{k0} IS NOT NULL AND t.{k0} IS NOT NULL AND NOT ({same})"),
        ),
        ("rejected_known", format!("t.{k0} IS NULL AND s.{rej}")),
    ];
    let counts = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE s.{k0} IS NOT NULL AND t.{k0} IS NOT NULL AND {same}), \
                 count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}), \
                 count(*) FILTER (WHERE {}) FROM {from}",
                kinds[0].1, kinds[1].1, kinds[2].1, kinds[3].1
            ),
            &[],
        )
        .await
        .map_err(|e| Error::Sink {
            message: format!("compare {}: {}", t.display_name(), pg_message(&e)),
            retryable: false,
            row_error: false,
            refusal: None,
        })?;
    let mut r = TableResult {
        matched: counts.get::<_, i64>(0) as u64,
        missing_in_target: counts.get::<_, i64>(1) as u64,
        extra_in_target: counts.get::<_, i64>(2) as u64,
        mismatched: counts.get::<_, i64>(3) as u64,
        rejected_known: counts.get::<_, i64>(4) as u64,
        ..TableResult::default()
    };
    let names: Vec<&str> = t.key_columns().map(|c| c.name.as_str()).collect();
    let either: Vec<String> = keys
        .iter()
        .map(|q| format!("COALESCE(s.{q}, t.{q})"))
        .collect();
    for (kind, cond) in &kinds {
        let tail = format!("FROM {from} WHERE {cond}");
        let keys = sample_keys(client, &names, &either, &tail, samples).await?;
        if !keys.is_empty() {
            r.samples.insert(kind.to_string(), keys);
        }
    }
    collisions(client, t, s, samples, &mut r).await?;
    Ok(r)
}

/// Keys that several rows of one source map to (within a page of changes the last change of a
/// key already won, as in migrate: those are changes of one item, not collisions).
async fn collisions(
    client: &Client,
    t: &TablePlan,
    s: &ScratchTable,
    samples: u32,
    r: &mut TableResult,
) -> Result<()> {
    let (_, keys, _) = t.quoted_columns();
    let grouped = format!(
        "FROM {name} WHERE NOT {del} GROUP BY {gen}, {k} HAVING count(*) > 1",
        name = s.name,
        del = s.del,
        gen = s.gen,
        k = keys.join(", ")
    );
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM (SELECT 1 {grouped}) c"), &[])
        .await
        .map_err(|e| Error::from_pg("count collisions", e))?
        .get(0);
    r.collisions = n as u64;
    if n > 0 {
        let names: Vec<&str> = t.key_columns().map(|c| c.name.as_str()).collect();
        let found = sample_keys(client, &names, &keys, &grouped, samples).await?;
        r.samples.insert("collisions".into(), found);
    }
    Ok(())
}

/// Up to `limit` keys, `SELECT`ed as `values` (one SQL expression per key column) with `tail`
/// (`FROM ... WHERE ...`), as JSON objects of the key columns. The column names go in as query
/// parameters, never into an SQL literal.
async fn sample_keys(
    client: &Client,
    names: &[&str],
    values: &[String],
    tail: &str,
    limit: u32,
) -> Result<Vec<serde_json::Value>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let obj: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("${}::text, {v}", i + 1))
        .collect();
    let limit = i64::from(limit);
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for n in names {
        params.push(n);
    }
    params.push(&limit);
    let rows = client
        .query(
            &format!(
                "SELECT jsonb_build_object({})::text {tail} LIMIT ${}",
                obj.join(", "),
                names.len() + 1
            ),
            &params,
        )
        .await
        .map_err(|e| Error::from_pg("sample differing keys", e))?;
    Ok(rows
        .iter()
        .filter_map(|row| serde_json::from_str(row.get::<_, &str>(0)).ok())
        .collect())
}

/// Every table's comparison, by display name.
pub async fn all(
    client: &Client,
    plan: &crate::plan::Plan,
    scratch: &[ScratchTable],
    samples: u32,
    sharded: bool,
) -> Result<BTreeMap<String, TableResult>> {
    let mut out = BTreeMap::new();
    for (t, s) in plan.tables.iter().zip(scratch) {
        out.insert(
            t.display_name(),
            table(client, t, s, samples, sharded).await?,
        );
    }
    Ok(out)
}
