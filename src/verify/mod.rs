//! `ddb2pg verify`: prove the target equals the source, both ways.
//!
//! The steps, each a module: [`origin`] resolves the source (a table, or exports in the order
//! they were migrated) and the plan; [`scratch`] creates one unlogged scratch table per target
//! table, typed like the target's columns; [`load`] re-reads the source with migrate's readers
//! and transform and streams its rows into the scratch tables with COPY (rows the target's
//! types refuse are counted, as migrate rejects them); [`compare`] has PostgreSQL compare
//! scratch and target by key with a FULL JOIN, so values compare as PostgreSQL compares them
//! and neither side is ever held in ddb2pg's memory; [`report`] prints and writes the result.
//! The scratch tables are dropped at the end. Rows the target lacks whose item migrate
//! recorded in its rejects file ([`known`]) are counted apart as `rejected_known`: a target
//! equal to the source but for them is `equal_except_known_rejects`, exit 4.

mod compare;
mod known;
mod load;
mod origin;
mod report;
mod scratch;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

pub use report::{TableResult, VerifyReport};

use crate::cli::VerifyArgs;
use crate::error::{Error, Result};
use crate::progress::{self, ProgressInfo, Stats};
use crate::sink;
use origin::Origin;

/// Exit code when the target differs from the source.
pub const EXIT_DIFFERENT: u8 = 3;
/// Exit code when the target equals the source except for rows of items in migrate's rejects
/// file: nothing unexplained, but rows of the source are not in the target, which someone must
/// decide about (fix and run migrate again, or accept). Migrate's own "finished with rejects".
pub const EXIT_KNOWN_REJECTS: u8 = 4;

pub async fn verify(args: VerifyArgs) -> Result<u8> {
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    let info = crate::metrics::exposition::RunInfo::default();
    let _metrics = crate::metrics::serve(&args.metrics, stats.clone(), info.clone(), false).await?;
    let target = crate::pgconn::resolve(args.target.as_deref())?;
    let origin = origin::resolve(&args, &target.identity()).await?;
    let client = target
        .connect()
        .await
        .map_err(|e| Error::config(format!("cannot connect to the target: {e}")))?;
    sink::prepare_target_with(&client, &origin.plan, false).await?;
    let scratch = Arc::new(scratch::create(&client, &origin.plan).await?);
    info.segments.store(
        origin.sources.segments(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // The scratch tables are ordinary tables of the target: dropped on Ctrl-C or SIGTERM too.
    let result = tokio::select! {
        r = read_and_compare(&args, &origin, &scratch, &client, &stats) => r,
        _ = crate::migrate::wait_for_signal() => Err(Error::Interrupted(
            "verify stopped; its scratch tables are dropped".into(),
        )),
    };
    scratch::drop_all(&client, &scratch).await;
    let tables = result?;
    let report = VerifyReport {
        status: VerifyReport::verdict(&tables).into(),
        source: origin.label.clone(),
        items_read: Stats::get(&stats.items_read),
        rejected: Stats::get(&stats.rejected),
        skipped: Stats::get(&stats.skipped),
        refused_by_target: tables.values().map(|t| t.refused_by_target).sum(),
        rejected_known: tables.values().map(|t| t.rejected_known).sum(),
        rejects_files: origin.rejects_files.clone(),
        tables,
        duration_s: started.elapsed().as_secs_f64(),
        shard: origin.shard.map(|s| s.to_string()),
    };
    report.print_summary();
    if let Some(path) = &args.report {
        report.write_json(path)?;
    }
    Ok(report.exit_code())
}

/// Load the source into the scratch tables (with the progress display), then compare.
async fn read_and_compare(
    args: &VerifyArgs,
    origin: &Origin,
    scratch: &Arc<Vec<scratch::ScratchTable>>,
    client: &tokio_postgres::Client,
    stats: &Arc<Stats>,
) -> Result<std::collections::BTreeMap<String, TableResult>> {
    let (progress_stop, progress_rx) = watch::channel(false);
    let display = tokio::spawn(progress::run(
        ProgressInfo {
            mode: args.progress,
            approx_items: origin.approx_items,
            items_before: 0,
            segments_total: origin.sources.segments(),
            segments_done_before: 0,
            interval: std::time::Duration::from_secs_f64(args.progress_interval),
        },
        stats.clone(),
        progress_rx,
    ));
    let scan = args.scan();
    stats.set_phase(crate::metrics::Phase::Load);
    let loaded = load::load(
        origin,
        scratch.clone(),
        args.target.clone().unwrap_or_default(),
        (scan.concurrency_for(false), scan.concurrency_for(true)),
        args.batch_size,
        args.samples,
        stats.clone(),
    )
    .await;
    let _ = progress_stop.send(true);
    let _ = display.await;
    let refused = loaded?;
    stats
        .load_done
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut tables = compare::all(
        client,
        &origin.plan,
        scratch,
        args.samples,
        origin.shard.is_some(),
    )
    .await?;
    for (ti, r) in refused {
        let name = origin.plan.tables[ti].display_name();
        if let Some(t) = tables.get_mut(&name) {
            t.refused_by_target = r.items;
            t.refused_reason = r.reason;
            if !r.samples.is_empty() {
                t.samples.insert("refused_by_target".into(), r.samples);
            }
        }
    }
    stats.set_phase(crate::metrics::Phase::Done);
    Ok(tables)
}
