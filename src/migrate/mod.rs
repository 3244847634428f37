//! `ddb2pg migrate`, in the order it runs:
//!
//! 1. **resolve** ([`origin`]): the source (a table, or an export listed but not yet
//!    downloaded), the target's identity and the plan, read only (after an export with
//!    `--follow`: the table and the export's time, see [`handover`]).
//! 2. **lock** ([`open::lock_run`]): the checkpoint folder and the run's lock, before anything
//!    is written anywhere: a second run of the same source and target exits 2 naming the holder
//!    having applied no migration, created no table and enabled no stream.
//! 3. **the stream** (`--follow`): the table's, checked (and turned on by `--enable-stream`).
//! 4. **prepare the target**: migrations, the tables the plan creates, the transaction id that
//!    lets batches count collisions.
//! 5. **open the run** ([`open::open_run`]): an `s3://` export downloaded under the lock, the
//!    checkpoint loaded (or discarded by `--restart`) and checked against this run's settings,
//!    reject lines of uncommitted batches cut.
//! 6. **execute**: the pipeline over the segments not done, then the follower.
//! 7. **finish** ([`outcome`]): status, summary, `--report`, the report kept beside an `s3://`
//!    checkpoint (`crate::report::beside`), the resume line, the exit code.
//!
//! `--scan-only` ([`scan_only`]) is its own short path: read and map, write nothing.

mod after_shards;
mod handover;
mod open;
mod origin;
mod outcome;
mod scan_only;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::follow::FollowEnd;
use crate::metrics::Phase;
use crate::pipeline::{self, Job};
use crate::plan::Plan;
use crate::progress::{self, ProgressInfo, Stats};
use crate::rejects::Rejects;
use crate::sink;
use crate::source::scan::SegmentScan;
use crate::source::stream::Stream;

use open::{lock_run, open_run, stream_state, Run};
use origin::{load_plan, read_limiter, resolve_origin, Origin};
/// `--key PK[:S|N|B][,SK[:S|N|B]]`, read alike by verify.
pub(crate) use origin::{parse_key, plan_for};
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
    // From the start: SIGUSR1 (`ddb2pg finish`'s local shortcut) would otherwise end the
    // process, a load without --follow or a follower still setting up.
    let usr1 = crate::finish::listen_usr1(args.follow);
    handover::check_flags(&args)?;
    if args.scan_only {
        if args.metrics.metrics_addr.is_some() {
            return Err(Error::config(
                "--metrics-addr serves a run's metrics and probes; --scan-only writes nothing \
                 and has none: drop one of them",
            ));
        }
        return scan_only::scan_only(args).await;
    }
    let started = Instant::now();
    // Served from the start (a bind failure exits 2 before anything is done) to the end.
    let stats = Arc::new(Stats::default());
    let run_info = crate::metrics::exposition::RunInfo::default();
    let _metrics =
        crate::metrics::serve(&args.metrics, stats.clone(), run_info.clone(), args.follow).await?;
    let (mut src, handover) = resolve(&args).await?;
    // The first line, before anything is written (step 4 may create tables): what goes where.
    crate::say!(
        "{}{} -> {} table {}",
        if args.dry_run { "dry run: " } else { "" },
        src.origin.describe(),
        src.target_id,
        outcome::table_names(&src.plan)
    );
    // Declared after `src`, so dropped (released) before the storage it lives in.
    let lock = lock_run(&args, &src).await?;
    // A finish request older than the lock was for an earlier run.
    let locked_ms = crate::follow::now_ms();
    let stream = open_stream(&args, &src, handover.as_ref()).await?;
    let prepared = prepare_target(&args, &src).await?;
    let run = open_run(&args, &src, stream.as_ref(), lock).await?;
    // Listening from the start: a finish asked during the setup or the load is honoured after.
    let asked = stream
        .as_ref()
        .map(|_| crate::finish::Watch::start(src.storage.clone(), &run.names, locked_ms, usr1));
    run_info.segments.store(run.owned as u64, Ordering::Relaxed);
    run_info
        .segments_done_before
        .store(run.segments_skipped, Ordering::Relaxed);
    run.store.report_writes_to(stats.clone());
    let ended = execute(&args, &src, &run, &prepared, stream, asked, stats).await;
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
    /// `--export --follow`: the time the export's data is as of (epoch seconds), which the
    /// stream is followed from (None: from when the scan begins).
    as_of: Option<u64>,
    /// `--checkpoint-dir`: a local directory or an S3 prefix.
    storage: Arc<dyn crate::checkpoint::Storage>,
    /// `--shard` / `--shards`: this process's part of the segments.
    shard: Option<crate::shard::Shard>,
}

/// Step 1, read only: the source, the target, the plan, and with `--export --follow` the
/// table the export hands over to.
async fn resolve(args: &MigrateArgs) -> Result<(Resolved, Option<handover::Handover>)> {
    let target = crate::pgconn::resolve(args.target.as_deref())?;
    let target_id = target.identity();
    let shard = args.shard.resolve()?;
    let storage = crate::checkpoint::open(&args.checkpoint_dir, &args.aws, &args.s3_endpoint_url)?;
    let mut origin = resolve_origin(args, &storage.local_dir()?).await?;
    let handover = handover::resolve(args, &mut origin).await?;
    let plan = Arc::new(load_plan(args, &origin.info)?);
    let key_attrs: Vec<String> = origin.info.key.iter().map(|k| k.name.clone()).collect();
    let resolved = Resolved {
        target,
        target_id,
        target_url: args.target.clone().unwrap_or_default(),
        origin,
        plan,
        key_attrs,
        as_of: handover.as_ref().map(handover::Handover::as_of_secs),
        storage,
        shard,
    };
    Ok((resolved, handover))
}

/// Step 3, under the run's lock: with `--follow`, the table's stream, checked before the scan
/// begins (turned on first by `--enable-stream`).
async fn open_stream(
    args: &MigrateArgs,
    src: &Resolved,
    handover: Option<&handover::Handover>,
) -> Result<Option<Stream>> {
    if !args.follow {
        return Ok(None);
    }
    let (origin, plan, key_attrs) = (&src.origin, &src.plan, &src.key_attrs);
    // The stream this run's checkpoint follows already, if any (read-only peek).
    let state = match args.restart {
        false => stream_state(src.storage.as_ref(), &origin.info, &src.target_id),
        true => None,
    };
    match (&origin.source, handover) {
        (Some(source), _) => {
            let table = &origin.info.name;
            let (enable, resuming) = (args.enable_stream, state.is_some());
            let s = crate::follow::open(source, table, enable, resuming, plan, key_attrs);
            Ok(Some(s.await?))
        }
        (None, Some(h)) => Ok(Some(h.open_stream(plan, key_attrs, state.as_ref()).await?)),
        (None, None) => Ok(None),
    }
}

/// The advisory lock key under which processes prepare a target ("ddb2pg" + 1).
const PREPARE_LOCK: i64 = 0x6464_6232_7067_0001;

/// What step 2 leaves for the writers.
struct Prepared {
    /// With a mapping file: the transaction id where this run starts, so each batch can count
    /// keys written earlier in the run (collisions).
    run_xid: Option<u32>,
    /// `--dry-run`: the setup every writer's connection runs in its rolled-back transaction.
    dry: Option<sink::DryRun>,
    /// One writer only: a dry run whose setup changes the schema (see `sink::dry_run`).
    one_writer: bool,
}

/// Step 2: migrations, the plan's tables, the transaction id for collisions. A dry run does
/// the same inside a transaction that it rolls back (see `sink::dry_run`).
async fn prepare_target(args: &MigrateArgs, src: &Resolved) -> Result<Prepared> {
    let client = src
        .target
        .connect()
        .await
        .map_err(|e| Error::config(format!("cannot connect to the target: {e}")))?;
    // The default mapping always creates its table; a mapping file's tables only on request.
    let create = args.create_tables || !src.plan.from_file;
    let mut prepared = Prepared {
        run_xid: None,
        dry: None,
        one_writer: false,
    };
    if args.dry_run {
        let dry = sink::DryRun {
            migrations: args.migrations.clone(),
            create,
        };
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| Error::from_pg("begin the dry run", e))?;
        let changed = sink::dry_run::setup(&client, &src.plan, &dry).await?;
        prepared.one_writer = changed.any();
        print_dry_run_banner(args, &changed);
        prepared.dry = Some(dry);
    } else {
        // Shards start at once against one target: migrations and CREATE TABLE IF NOT
        // EXISTS are not safe to run concurrently (two creators collide on pg_type), so they
        // are serialized by a session advisory lock, released below or when this connection
        // closes.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&PREPARE_LOCK])
            .await
            .map_err(|e| Error::from_pg("lock the target for its preparation", e))?;
        if let Some(dir) = &args.migrations {
            let applied =
                crate::migrations::apply(&client, dir, crate::migrations::Scope::Own).await?;
            crate::say!(
                "migrations in {}: {} applied{}",
                dir.display(),
                applied.len(),
                listed(&applied)
            );
        }
        sink::prepare_target_with(&client, &src.plan, create).await?;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&PREPARE_LOCK])
            .await
            .map_err(|e| Error::from_pg("unlock the target after its preparation", e))?;
    }
    if src.plan.from_file {
        let xid: i64 = client
            .query_one("SELECT txid_current()", &[])
            .await
            .map_err(|e| Error::from_pg("read the transaction id", e))?
            .get(0);
        prepared.run_xid = Some((xid & 0xffff_ffff) as u32);
    }
    if args.dry_run {
        // Before the writers' connections repeat the setup: what this one created would make
        // them wait until its end.
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| Error::from_pg("roll back the dry run's setup", e))?;
    }
    Ok(prepared)
}

/// ` (a, b)`, or nothing for an empty list.
fn listed(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}

fn print_dry_run_banner(args: &MigrateArgs, changed: &sink::dry_run::Changed) {
    crate::say!("dry run: every batch is rolled back; the checkpoint is not touched");
    if let Some(dir) = &args.migrations {
        crate::say!(
            "dry run: migrations in {}: {} would be applied{}",
            dir.display(),
            changed.applied.len(),
            listed(&changed.applied)
        );
    }
    if !changed.tables.is_empty() {
        crate::say!("dry run: would create table {}", changed.tables.join(", "));
    }
    if changed.any() {
        crate::say!(
            "dry run: these changes are made inside the dry run's transaction and rolled \
             back; PostgreSQL shows uncommitted changes of the schema to one connection only, so \
             this dry run writes through one connection"
        );
    }
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
    prepared: &Prepared,
    stream: Option<Stream>,
    finish: Option<crate::finish::Watch>,
    stats: Arc<Stats>,
) -> (Ended, Arc<Stats>) {
    let (shutdown, _keep_open) = watch::channel(false);
    let shared = Shared {
        stats,
        rejects: Arc::new(
            Rejects::new(run.rejects_path.clone()).shown_as(run.rejects_shown.clone()),
        ),
        shutdown,
        interrupted: Arc::new(AtomicBool::new(false)),
    };
    stop_on_signals(shared.shutdown.clone(), shared.interrupted.clone());
    let load_began = Instant::now();
    let mut result = Ok(());
    if !run.already_complete {
        shared.stats.set_phase(Phase::Load);
        result = run_load(args, src, run, prepared, &shared).await;
    }
    let loaded = run.store.snapshot().complete && !shared.interrupted.load(Ordering::SeqCst);
    if result.is_ok() && loaded {
        shared.stats.load_done.store(true, Ordering::Relaxed);
    }
    let stream_arn = stream.as_ref().map(|s| s.arn.clone());
    let mut follow_end = None;
    if let Some(stream) = stream {
        if result.is_ok() && loaded {
            shared.stats.set_phase(Phase::Follow);
            let table = &src.origin.info.name;
            log_handover(run, table, load_began.elapsed(), args.progress);
            match run_follow(args, src, run, &shared, stream, finish).await {
                Ok(end) => follow_end = Some(end),
                Err(e) => result = Err(e),
            }
        }
    }
    shared.rejects.log().finish();
    // A signal that stopped a wait (retries through an outage) is an interruption, not a failure.
    if let Err(e @ Error::Interrupted(_)) = &result {
        crate::say!("{e}");
        result = Ok(());
        if args.follow {
            follow_end = Some(FollowEnd::Interrupted);
        }
    }
    shared.stats.set_phase(Phase::Done);
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
        crate::say!(
            "interrupted: finishing in-flight batches and saving the checkpoint \
             (interrupt again to stop at once) ..."
        );
        flag.store(true, Ordering::SeqCst);
        let _ = tx.send(true);
        wait_for_signal().await;
        crate::say!("interrupted again: stopping now; run the same command to resume");
        std::process::exit(EXIT_INTERRUPTED.into());
    });
}

/// The pipeline over the segments not done, with the progress display beside it.
async fn run_load(
    args: &MigrateArgs,
    src: &Resolved,
    run: &Run,
    prepared: &Prepared,
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
            interval: Duration::from_secs_f64(args.progress_interval),
        },
        shared.stats.clone(),
        progress_rx,
    ));
    let result = match load_job(args, src, run, prepared, shared) {
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
    prepared: &Prepared,
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
    let concurrency = match prepared.one_writer {
        true => 1,
        false => args.scan.concurrency_for(origin.export.is_some()),
    };
    Ok(Arc::new(Job {
        segments,
        key_attrs: src.key_attrs.clone(),
        plan: src.plan.clone(),
        target_url: src.target_url.clone(),
        total_segments: run.segments,
        concurrency,
        // An export's files keep one connection each unless asked (its readers are CPU-bound
        // and as many as the cores: the default of `connections` was measured on tables).
        connections: match origin.export {
            Some(_) if args.connections.is_none() => 0,
            _ => pipeline::connections(args.connections, concurrency),
        },
        page_size: args.scan.batch_size,
        max_memory: args.max_memory,
        store: run.store.clone(),
        rejects: shared.rejects.clone(),
        stats: shared.stats.clone(),
        run_xid: prepared.run_xid,
        retry: retry_policy(args),
        dry_run: prepared.dry.clone(),
        limit: args.limit.map(std::sync::atomic::AtomicU64::new),
        stop: shared.shutdown.clone(),
    }))
}

fn retry_policy(args: &MigrateArgs) -> crate::sink::resilient::RetryPolicy {
    crate::sink::resilient::RetryPolicy::new(std::time::Duration::from_secs(args.pg_retry_for))
}

/// `--follow`'s connections unless `--connections` says.
const FOLLOW_CONNECTIONS: u32 = 4;

/// `--follow`, once the load is complete: the stream's changes until stopped or caught up.
async fn run_follow(
    args: &MigrateArgs,
    src: &Resolved,
    run: &Run,
    shared: &Shared,
    stream: Stream,
    finish: Option<crate::finish::Watch>,
) -> Result<FollowEnd> {
    let job = crate::follow::FollowJob {
        stream: Arc::new(stream),
        store: run.store.clone(),
        plan: src.plan.clone(),
        key_attrs: src.key_attrs.clone(),
        rejects: shared.rejects.clone(),
        stats: shared.stats.clone(),
        target_url: src.target_url.clone(),
        retry: retry_policy(args),
        until_caught_up: args.until_caught_up,
        caught_up_lag_ms: (args.caught_up_lag * 1000.0).round() as i64,
        finish,
        progress: args.progress,
        progress_interval: Duration::from_secs_f64(args.progress_interval),
        shutdown: shared.shutdown.subscribe(),
        connections: args.connections.unwrap_or(FOLLOW_CONNECTIONS) as usize,
        readers: args.stream_readers as usize,
    };
    crate::follow::run(job).await
}

/// The line between the load and the follow: what was loaded, which stream is followed from
/// when.
fn log_handover(run: &Run, table: &str, took: Duration, progress: crate::cli::ProgressMode) {
    if progress == crate::cli::ProgressMode::None {
        return;
    }
    let cp = run.store.snapshot();
    let items: u64 = cp.segments.iter().map(|s| s.items).sum();
    let from = cp.stream.as_ref().map_or(0, |s| s.follow_from);
    let from = crate::follow::verdict::rfc3339(from as i64 * 1000).unwrap_or_default();
    let load = match run.already_complete {
        true => format!("load done earlier: {items} items"),
        false => format!("load done: {items} items in {:.1} s", took.as_secs_f64()),
    };
    crate::say!(
        "{load}; following the stream of {} from {from}",
        crate::checkpoint::printable(table)
    );
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
        segments: run.owned,
        shard: src.shard,
        segments_skipped: run.segments_skipped,
        segments_resumed: run.segments_resumed,
        already_complete: run.already_complete,
        checkpoint: run.store.path().to_path_buf(),
        rejects: run.rejects_path.clone(),
        rejects_shown: run.rejects_shown.clone(),
        duration_s: started.elapsed().as_secs_f64(),
    };
    let status = outcome::status_of(&ended, &facts, &cp);
    let report = outcome::report(&facts, &ended, &cp, &mut src.origin, &stats, status);
    report.print_summary();
    outcome::print_verdict(&ended, &cp, &stats, &run.rejects_shown);
    // Whole items: not left in the temp folder once S3 holds them (a run fetches them first),
    // whatever becomes of the report below.
    run.store.drop_local_copy();
    let written = match &args.report {
        Some(path) => report.write_json(path),
        None => Ok(()),
    };
    let failed = ended.result.is_err();
    let kept = written.and_then(|()| {
        crate::report::beside::keep_after_run(
            &report,
            &*src.storage,
            &run.names,
            args.dry_run,
            failed,
        )
    });
    outcome::print_resume_line(status, args.dry_run);
    kept?;
    ended.result?;
    let followed = ended.follow_end.is_some();
    Ok(outcome::exit_code(
        status,
        &cp,
        followed,
        Stats::get(&stats.rejected),
    ))
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
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
