//! `ddb2pg migrate`, in the order it runs:
//!
//! 1. **resolve** ([`origin`]): the source (a table, or an export listed but not yet
//!    downloaded), the target's identity, the plan, and with `--follow` the table's stream,
//!    checked before anything is written.
//! 2. **prepare the target**: migrations, the tables the plan creates, the transaction id that
//!    lets batches count collisions.
//! 3. **open the run** ([`open`]): the checkpoint folder, the run's lock, an `s3://` export
//!    downloaded under it, the checkpoint loaded (or discarded by `--restart`) and checked
//!    against this run's settings, reject lines of uncommitted batches cut.
//! 4. **execute**: the pipeline over the segments not done, then the follower.
//! 5. **finish** ([`outcome`]): status, summary, `--report`, the resume line, the exit code.
//!
//! `--scan-only` ([`scan_only`]) is its own short path: read and map, write nothing.

mod open;
mod origin;
mod outcome;
mod scan_only;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::follow::FollowEnd;
use crate::pipeline::{self, Job};
use crate::plan::Plan;
use crate::progress::{self, ProgressInfo, Stats};
use crate::rejects::Rejects;
use crate::sink;
use crate::source::scan::SegmentScan;
use crate::source::stream::Stream;

use open::{follows_already, open_run, Run};
use origin::{load_plan, read_limiter, resolve_origin, Origin};
use outcome::{Ended, Facts};

/// Exit code for a run that finished but rejected items.
pub const EXIT_REJECTS: u8 = 4;
/// Exit code for an interrupted run (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// One segment per this many bytes of table, when that gives more than 4 x concurrency.
const BYTES_PER_SEGMENT: u64 = 512 << 20;

pub fn default_segments(concurrency: u32, table_bytes: u64) -> u32 {
    let by_size = table_bytes.div_ceil(BYTES_PER_SEGMENT).min(1_000_000) as u32;
    (4 * concurrency).max(by_size)
}

pub async fn migrate(args: MigrateArgs) -> Result<u8> {
    if args.scan_only {
        return scan_only::scan_only(args).await;
    }
    let started = Instant::now();
    let mut src = resolve(&args).await?;
    let run_xid = prepare_target(&args, &src).await?;
    let stream = src.stream.take();
    let run = open_run(&args, &src, stream.as_ref()).await?;
    let ended = execute(&args, &src, &run, run_xid, stream).await;
    finish(&args, &mut src, &run, ended, started)
}

/// Step 1: where the items come from and where they go.
struct Resolved {
    target: crate::pgconn::Target,
    target_id: String,
    /// What workers resolve again (empty: from the PG* variables).
    target_url: String,
    origin: Origin,
    plan: Arc<Plan>,
    key_attrs: Vec<String>,
    /// `--follow`: the table's stream, checked before the scan begins.
    stream: Option<Stream>,
}

async fn resolve(args: &MigrateArgs) -> Result<Resolved> {
    let target = crate::pgconn::resolve(args.target.as_deref())?;
    let target_id = target.identity();
    let origin = resolve_origin(args).await?;
    let plan = Arc::new(load_plan(args, &origin.info)?);
    let key_attrs: Vec<String> = origin.info.key.iter().map(|k| k.name.clone()).collect();
    let stream = match (args.follow, &origin.source) {
        (true, Some(source)) => {
            let resuming = !args.restart && follows_already(args, &origin.info, &target_id);
            let table = &origin.info.name;
            let enable = args.enable_stream;
            let s = crate::follow::open(source, table, enable, resuming, &plan, &key_attrs);
            Some(s.await?)
        }
        _ => None,
    };
    Ok(Resolved {
        target,
        target_id,
        target_url: args.target.clone().unwrap_or_default(),
        origin,
        plan,
        key_attrs,
        stream,
    })
}

/// Step 2: migrations, the plan's tables, and (with a mapping file) the transaction id where
/// this run starts, so each batch can count keys written earlier in the run (collisions).
async fn prepare_target(args: &MigrateArgs, src: &Resolved) -> Result<Option<u32>> {
    let mut client = src
        .target
        .connect()
        .await
        .map_err(|e| Error::config(format!("cannot connect to the target: {e}")))?;
    let dry = args.dry_run;
    if dry {
        eprintln!(
            "ddb2pg: dry run: every batch is rolled back; the checkpoint is not touched{}",
            if args.migrations.is_some() || args.create_tables {
                "; --migrations and --create-tables are not applied (the target must have the tables)"
            } else {
                ""
            }
        );
    }
    if let (Some(dir), false) = (&args.migrations, dry) {
        let applied = crate::migrations::apply(&mut client, dir).await?;
        eprintln!(
            "ddb2pg: migrations in {}: {} applied{}",
            dir.display(),
            applied.len(),
            if applied.is_empty() {
                String::new()
            } else {
                format!(" ({})", applied.join(", "))
            }
        );
    }
    // The default mapping always creates its table; a mapping file's tables only on request.
    let create = !dry && (args.create_tables || !src.plan.from_file);
    sink::prepare_target_with(&client, &src.plan, create).await?;
    if !src.plan.from_file {
        return Ok(None);
    }
    let xid: i64 = client
        .query_one("SELECT txid_current()", &[])
        .await
        .map_err(|e| Error::from_pg("read the transaction id", e))?
        .get(0);
    Ok(Some((xid & 0xffff_ffff) as u32))
}

/// What the load and the follower share: counters, rejects, the stop signal.
struct Shared {
    stats: Arc<Stats>,
    rejects: Arc<Rejects>,
    shutdown: watch::Sender<bool>,
    interrupted: Arc<AtomicBool>,
}

/// Step 4: the load over the pending segments, then (with `--follow`, once loaded) the stream.
async fn execute(
    args: &MigrateArgs,
    src: &Resolved,
    run: &Run,
    run_xid: Option<u32>,
    stream: Option<Stream>,
) -> (Ended, Arc<Stats>) {
    let (shutdown, _keep_open) = watch::channel(false);
    let shared = Shared {
        stats: Arc::new(Stats::default()),
        rejects: Arc::new(Rejects::new(run.rejects_path.clone())),
        shutdown,
        interrupted: Arc::new(AtomicBool::new(false)),
    };
    stop_on_signals(shared.shutdown.clone(), shared.interrupted.clone());
    let mut result = Ok(());
    if !run.already_complete {
        result = run_load(args, src, run, run_xid, &shared).await;
    }
    let stream_arn = stream.as_ref().map(|s| s.arn.clone());
    let mut follow_end = None;
    if let Some(stream) = stream {
        let loaded = run.store.snapshot().complete && !shared.interrupted.load(Ordering::SeqCst);
        if result.is_ok() && loaded {
            match run_follow(args, src, run, &shared, stream).await {
                Ok(end) => follow_end = Some(end),
                Err(e) => result = Err(e),
            }
        }
    }
    // A signal that stopped a wait (retries through an outage) is an interruption, not a failure.
    if let Err(e @ Error::Interrupted(_)) = &result {
        eprintln!("ddb2pg: {e}");
        result = Ok(());
        if args.follow {
            follow_end = Some(FollowEnd::Interrupted);
        }
    }
    let ended = Ended {
        result,
        follow_end,
        interrupted: shared.interrupted.load(Ordering::SeqCst),
        stream_arn,
    };
    (ended, shared.stats)
}

/// Ctrl-C or SIGTERM: finish in-flight batches and save the checkpoint; a second one exits at
/// once (the checkpoint on disk only ever covers committed batches).
fn stop_on_signals(tx: watch::Sender<bool>, flag: Arc<AtomicBool>) {
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!(
            "ddb2pg: interrupted: finishing in-flight batches and saving the checkpoint \
             (interrupt again to stop at once) ..."
        );
        flag.store(true, Ordering::SeqCst);
        let _ = tx.send(true);
        wait_for_signal().await;
        eprintln!("ddb2pg: interrupted again: stopping now; run the same command to resume");
        std::process::exit(EXIT_INTERRUPTED.into());
    });
}

/// The pipeline over the segments not done, with the progress display beside it.
async fn run_load(
    args: &MigrateArgs,
    src: &Resolved,
    run: &Run,
    run_xid: Option<u32>,
    shared: &Shared,
) -> Result<()> {
    run.store.flush()?;
    let info = &src.origin.info;
    let (progress_stop, progress_rx) = watch::channel(false);
    let display = tokio::spawn(progress::run(
        ProgressInfo {
            mode: args.progress,
            approx_items: info.item_count,
            items_before: run.items_before,
            segments_total: run.segments as u64,
            segments_done_before: run.segments_skipped,
        },
        shared.stats.clone(),
        progress_rx,
    ));
    let result = match load_job(args, src, run, run_xid, shared) {
        Ok(job) => pipeline::run(job, run.pending.clone(), shared.shutdown.clone()).await,
        Err(e) => Err(e),
    };
    let _ = progress_stop.send(true);
    let _ = display.await;
    result
}

fn load_job(
    args: &MigrateArgs,
    src: &Resolved,
    run: &Run,
    run_xid: Option<u32>,
    shared: &Shared,
) -> Result<Arc<Job>> {
    let origin = &src.origin;
    let segments = match (&origin.export, &origin.source) {
        (Some(e), _) => pipeline::Segments::Export(Arc::new(e.files.clone())),
        (None, Some(source)) => pipeline::Segments::Scan(SegmentScan {
            client: source.client.clone(),
            table: origin.info.name.clone(),
            segment: 0,
            total_segments: run.segments,
            page_size: args.scan.batch_size,
            limiter: read_limiter(args)?,
        }),
        (None, None) => return Err(Error::config("internal error: no source")),
    };
    Ok(Arc::new(Job {
        segments,
        key_attrs: src.key_attrs.clone(),
        plan: src.plan.clone(),
        target_url: src.target_url.clone(),
        total_segments: run.segments,
        concurrency: args.scan.concurrency_for(origin.export.is_some()),
        page_size: args.scan.batch_size,
        max_memory: args.max_memory,
        store: run.store.clone(),
        rejects: shared.rejects.clone(),
        stats: shared.stats.clone(),
        run_xid,
        retry: retry_policy(args),
        dry_run: args.dry_run,
        limit: args.limit.map(std::sync::atomic::AtomicU64::new),
        stop: shared.shutdown.clone(),
    }))
}

fn retry_policy(args: &MigrateArgs) -> crate::sink::resilient::RetryPolicy {
    crate::sink::resilient::RetryPolicy::new(std::time::Duration::from_secs(args.pg_retry_for))
}

/// `--follow`, once the load is complete: the stream's changes until stopped or caught up.
async fn run_follow(
    args: &MigrateArgs,
    src: &Resolved,
    run: &Run,
    shared: &Shared,
    stream: Stream,
) -> Result<FollowEnd> {
    let job = crate::follow::FollowJob {
        stream,
        store: run.store.clone(),
        plan: src.plan.clone(),
        key_attrs: src.key_attrs.clone(),
        rejects: shared.rejects.clone(),
        stats: shared.stats.clone(),
        target_url: src.target_url.clone(),
        retry: retry_policy(args),
        until_caught_up: args.until_caught_up,
        progress: args.progress,
        shutdown: shared.shutdown.subscribe(),
    };
    crate::follow::run(job).await
}

/// Step 5: status, summary, `--report`, the resume line and the exit code.
fn finish(
    args: &MigrateArgs,
    src: &mut Resolved,
    run: &Run,
    (ended, stats): (Ended, Arc<Stats>),
    started: Instant,
) -> Result<u8> {
    let cp = run.store.snapshot();
    let facts = Facts {
        args,
        target_id: &src.target_id,
        plan: &src.plan,
        segments: run.segments,
        segments_skipped: run.segments_skipped,
        segments_resumed: run.segments_resumed,
        already_complete: run.already_complete,
        checkpoint: run.files.checkpoint.clone(),
        rejects: run.rejects_path.clone(),
        duration_s: started.elapsed().as_secs_f64(),
    };
    let status = outcome::status_of(&ended, &facts, &cp);
    let report = outcome::report(&facts, &ended, &cp, &mut src.origin, &stats, status);
    report.print_human();
    if let Some(path) = &args.report {
        report.write_json(path)?;
    }
    outcome::print_resume_line(status, args.dry_run);
    ended.result?;
    Ok(outcome::exit_code(status, &cp))
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_default() {
        assert_eq!(default_segments(8, 0), 32);
        assert_eq!(default_segments(4, 100 << 30), 200);
    }
}
