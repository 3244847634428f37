//! `ddb2pg verify`: prove the target equals the source, both ways.
//!
//! The source is re-read (segmented, in parallel) and transformed with the same mapping; its
//! rows are streamed with COPY into one unlogged scratch table per target table, typed like the
//! target's columns. PostgreSQL then compares scratch and target by key with a FULL JOIN, so
//! values compare as PostgreSQL compares them (numeric 1.50 = 1.5, jsonb key order ignored) and
//! neither side is ever held in ddb2pg's memory. The scratch tables are dropped at the end.
//! Column names reach SQL only as quoted identifiers or as query parameters, never inside a
//! string literal.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cli::VerifyArgs;
use crate::error::{pg_message, Error, Result};
use crate::plan::{ident, Plan};
use crate::progress::Stats;
use crate::sink::{self, encode_row};
use crate::source::scan::{Page, SegmentScan};
use crate::source::Source;
use crate::transform::{transform, Routed, Row};

/// Exit code when the target differs from the source.
pub const EXIT_DIFFERENT: u8 = 3;

#[derive(Debug, Default, Clone, Serialize)]
pub struct TableResult {
    pub matched: u64,
    pub missing_in_target: u64,
    pub extra_in_target: u64,
    pub mismatched: u64,
    /// Up to --samples keys of each kind, as JSON objects of the key columns.
    pub samples: BTreeMap<String, Vec<serde_json::Value>>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub status: String,
    pub items_read: u64,
    /// Items the mapping rejects (they are not expected in the target).
    pub rejected: u64,
    /// Items no table rule matches (unrouted = "skip").
    pub skipped: u64,
    pub tables: BTreeMap<String, TableResult>,
    pub duration_s: f64,
    /// `--shard I/N`: only this shard's segments were compared, and `extra_in_target` is not
    /// checked (a target row may belong to another shard's segments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

pub async fn verify(mut args: VerifyArgs) -> Result<u8> {
    let started = Instant::now();
    // `--shards N` resolved once (from the index variables), as `--shard I/N` from here on.
    if let Some(s) = args.shard.resolve()? {
        args.shard = crate::cli::ShardArgs {
            shard: Some(s.to_string()),
            shards: None,
        };
    }
    let target = crate::pgconn::resolve(args.target.as_deref())?;
    let source = Source::connect(&args.aws).await?;
    let info = source.describe(&args.table).await?;
    let plan = Arc::new(match &args.mapping {
        Some(p) => crate::mapping::load(p)?,
        None => Plan::default_checked(&info)?,
    });
    let client = target
        .connect()
        .await
        .map_err(|e| Error::config(format!("cannot connect to the target: {e}")))?;
    sink::prepare_target_with(&client, &plan, false).await?;

    // Scratch tables typed like the target's columns.
    let scratch: Vec<String> = (0..plan.tables.len())
        .map(|i| format!("ddb2pg_verify_{}_{i}", std::process::id()))
        .collect();
    for (t, name) in plan.tables.iter().zip(&scratch) {
        let mut cols = Vec::new();
        for c in &t.columns {
            let ty: String = client
                .query_one(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = to_regclass($1) AND attname = $2",
                    &[&t.sql_name(), &c.name],
                )
                .await
                .map_err(|e| Error::from_pg("read target column types", e))?
                .get(0);
            cols.push(format!("{} {ty}", ident(&c.name)));
        }
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {name}; CREATE UNLOGGED TABLE {name} ({} int8, {})",
                ident(&t.seq_column()),
                cols.join(", ")
            ))
            .await
            .map_err(|e| Error::from_pg("create a scratch table", e))?;
    }
    let result = load_and_compare(
        &args,
        &source,
        &info.name,
        &plan,
        &scratch,
        &client,
        info.size_bytes,
    )
    .await;
    for name in &scratch {
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
            .await;
    }
    let (stats, tables) = result?;
    let differs = tables
        .values()
        .any(|t| t.missing_in_target + t.extra_in_target + t.mismatched > 0);
    let report = VerifyReport {
        status: if differs { "different" } else { "identical" }.into(),
        items_read: Stats::get(&stats.items_read),
        rejected: Stats::get(&stats.rejected),
        skipped: Stats::get(&stats.skipped),
        tables,
        duration_s: started.elapsed().as_secs_f64(),
        shard: args.shard.shard.clone(),
    };
    eprintln!(
        "ddb2pg verify: {} ({} items read, {} rejected by the mapping, {} skipped, {:.1} s)",
        if differs {
            "TARGET DIFFERS FROM SOURCE"
        } else {
            "target equals source"
        },
        report.items_read,
        report.rejected,
        report.skipped,
        report.duration_s
    );
    if let Some(sh) = &report.shard {
        eprintln!(
            "  shard {sh}: its segments only; extra_in_target is not checked per shard (rows \
             beyond the sum of every shard's matched + mismatched are extra)"
        );
    }
    for (name, t) in &report.tables {
        eprintln!(
            "  {name:<24} matched {:>9}  missing_in_target {:>6}  extra_in_target {:>6}  mismatched {:>6}",
            t.matched, t.missing_in_target, t.extra_in_target, t.mismatched
        );
        for (kind, keys) in &t.samples {
            for k in keys {
                eprintln!("      {kind}: {k}");
            }
        }
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::file(path, e))?;
        std::fs::write(path, json).map_err(|e| Error::file(path, e))?;
    }
    Ok(if differs { EXIT_DIFFERENT } else { 0 })
}

async fn load_and_compare(
    args: &VerifyArgs,
    source: &Source,
    table: &str,
    plan: &Arc<Plan>,
    scratch: &[String],
    client: &tokio_postgres::Client,
    size_bytes: u64,
) -> Result<(Arc<Stats>, BTreeMap<String, TableResult>)> {
    let shard = args.shard.resolve()?;
    let segments = match (args.scan.segments, shard) {
        (Some(n), _) => n,
        (None, None) => {
            crate::migrate::default_segments(args.scan.concurrency_for(false), size_bytes)
        }
        (None, Some(s)) => {
            return Err(Error::config(format!(
                "verify --shard {s}: give --segments, the same number to every shard"
            )))
        }
    };
    let stats = Arc::new(Stats::default());
    let mine: Vec<u32> = shard.map_or_else(|| (0..segments).collect(), |s| s.segments(segments));
    let queue = Arc::new(Mutex::new(mine.into_iter().collect::<VecDeque<u32>>()));
    let seq = Arc::new(AtomicU64::new(0));
    let (_stop, stop_rx) = watch::channel(false);
    let mut set = JoinSet::new();
    for _ in 0..args.scan.concurrency_for(false).min(segments) {
        let template = SegmentScan {
            client: source.client.clone(),
            table: table.to_string(),
            segment: 0,
            total_segments: segments,
            page_size: args.scan.batch_size,
            limiter: None,
        };
        let (plan, stats, queue, seq, stop_rx) = (
            plan.clone(),
            stats.clone(),
            queue.clone(),
            seq.clone(),
            stop_rx.clone(),
        );
        let url = args.target.clone().unwrap_or_default();
        let copy_sql: Vec<String> = plan
            .tables
            .iter()
            .zip(scratch)
            .map(|(t, name)| {
                let cols: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
                format!(
                    "COPY {name} ({}, {}) FROM STDIN",
                    ident(&t.seq_column()),
                    cols.join(", ")
                )
            })
            .collect();
        set.spawn(async move {
            let client = sink::connect(&url).await?;
            let mut rows: Vec<Row> = Vec::new();
            let mut bufs: Vec<BytesMut> = vec![BytesMut::new(); plan.tables.len()];
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(segment) = next else {
                    return Ok::<(), Error>(());
                };
                let (tx, mut rx) = mpsc::channel::<Page>(2);
                let scan = SegmentScan {
                    segment,
                    ..template.clone()
                };
                let scanner = tokio::spawn(scan.run(None, tx, stop_rx.clone(), stats.clone()));
                while let Some(page) = rx.recv().await {
                    rows.clear();
                    for item in &page.items {
                        match transform(&plan, item, &mut rows) {
                            Ok(Routed::Rows) => {}
                            Ok(Routed::Skipped) => Stats::add(&stats.skipped, 1),
                            Err(_) => Stats::add(&stats.rejected, 1),
                        }
                    }
                    for r in &rows {
                        encode_row(
                            &mut bufs[r.table],
                            Some(seq.fetch_add(1, Ordering::Relaxed) as i64),
                            &r.cells,
                        );
                    }
                    for (i, buf) in bufs.iter_mut().enumerate() {
                        if buf.is_empty() {
                            continue;
                        }
                        let sink = client
                            .copy_in::<_, bytes::Bytes>(&copy_sql[i])
                            .await
                            .map_err(|e| Error::from_pg("copy into a scratch table", e))?;
                        sink::send_copy(sink, buf.split().freeze(), "copy into a scratch table")
                            .await?;
                    }
                }
                scanner
                    .await
                    .map_err(|e| Error::config(format!("internal error: scanner: {e}")))??;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| Error::config(format!("internal error: verify worker: {e}")))??;
    }

    let mut results = BTreeMap::new();
    for (t, name) in plan.tables.iter().zip(scratch) {
        let (all, keys, rest) = t.quoted_columns();
        let on: Vec<String> = keys.iter().map(|k| format!("s.{k} = t.{k}")).collect();
        let k0 = &keys[0];
        let same = if rest.is_empty() {
            "true".to_string()
        } else {
            let a: Vec<String> = rest.iter().map(|c| format!("s.{c}")).collect();
            let b: Vec<String> = rest.iter().map(|c| format!("t.{c}")).collect();
            format!(
                "ROW({}) IS NOT DISTINCT FROM ROW({})",
                a.join(", "),
                b.join(", ")
            )
        };
        let src = format!(
            "(SELECT DISTINCT ON ({k}) {all} FROM {name} ORDER BY {k}, {seq} DESC)",
            k = keys.join(", "),
            all = all.join(", "),
            seq = ident(&t.seq_column()),
        );
        // A shard holds only its segments' items: target rows of other shards are not extra.
        let join = if shard.is_some() { "LEFT" } else { "FULL" };
        let from = format!(
            "{src} s {join} JOIN {} t ON {}",
            t.sql_name(),
            on.join(" AND ")
        );
        let kinds = [
            ("missing_in_target", format!("t.{k0} IS NULL")),
            ("extra_in_target", format!("s.{k0} IS NULL")),
            (
                "mismatched",
                format!("s.{k0} IS NOT NULL AND t.{k0} IS NOT NULL AND NOT ({same})"),
            ),
        ];
        let counts = client
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE s.{k0} IS NOT NULL AND t.{k0} IS NOT NULL AND {same}), \
                     count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}) FROM {from}",
                    kinds[0].1, kinds[1].1, kinds[2].1
                ),
                &[],
            )
            .await
            .map_err(|e| Error::Sink {
                message: format!("compare {}: {}", t.display_name(), pg_message(&e)),
                retryable: false,
                row_error: false,
            })?;
        let mut r = TableResult {
            matched: counts.get::<_, i64>(0) as u64,
            missing_in_target: counts.get::<_, i64>(1) as u64,
            extra_in_target: counts.get::<_, i64>(2) as u64,
            mismatched: counts.get::<_, i64>(3) as u64,
            samples: BTreeMap::new(),
        };
        for (kind, cond) in &kinds {
            if args.samples == 0 {
                break;
            }
            let keys = sample_keys(client, t, &from, cond, args.samples).await?;
            if !keys.is_empty() {
                r.samples.insert(kind.to_string(), keys);
            }
        }
        results.insert(t.display_name(), r);
    }
    Ok((stats, results))
}

/// Up to `limit` keys of the rows of `from` (scratch `s` FULL JOIN target `t`) that meet
/// `cond`, as JSON objects of the key columns, from whichever side has the row. The column
/// names go in as query parameters, never into an SQL literal.
async fn sample_keys(
    client: &tokio_postgres::Client,
    t: &crate::plan::TablePlan,
    from: &str,
    cond: &str,
    limit: u32,
) -> Result<Vec<serde_json::Value>> {
    let names: Vec<&str> = t.key_columns().map(|c| c.name.as_str()).collect();
    let obj: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let q = ident(name);
            format!("${}::text, COALESCE(s.{q}, t.{q})", i + 1)
        })
        .collect();
    let limit = i64::from(limit);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    for n in &names {
        params.push(n);
    }
    params.push(&limit);
    let rows = client
        .query(
            &format!(
                "SELECT jsonb_build_object({})::text FROM {from} WHERE {cond} LIMIT ${}",
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
