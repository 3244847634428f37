//! `ddb2pg migrate`: resolve the source, target, plan and checkpoint, run the pipeline, report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::checkpoint::{Checkpoint, Lock, RunFiles, Settings, Store};
use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::pipeline::{self, Job};
use crate::plan::Plan;
use crate::progress::{self, ProgressInfo, Stats};
use crate::rejects::Rejects;
use crate::report::Report;
use crate::sink;
use crate::source::scan::SegmentScan;
use crate::source::{KeyAttr, KeyAttrType, Source, TableInfo};

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

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command line that resumes this run: the same one, without --restart.
fn resume_command() -> String {
    let args: Vec<String> = std::env::args()
        .enumerate()
        .filter(|(_, a)| a != "--restart")
        .map(|(i, a)| {
            if i == 0 {
                "ddb2pg".to_string()
            } else {
                shell_quote(&crate::pgconn::redact(&a))
            }
        })
        .collect();
    args.join(" ")
}

pub async fn migrate(args: MigrateArgs) -> Result<u8> {
    if args.scan_only {
        return scan_only(args).await;
    }
    let started = Instant::now();
    let target = crate::pgconn::resolve(args.target.as_deref())?;
    let target_id = target.identity();
    // Workers resolve the same string again (empty: from the PG* variables).
    let target_url = args.target.clone().unwrap_or_default();

    let mut origin = resolve_origin(&args).await?;
    let info = origin.info.clone();
    let plan = Arc::new(load_plan(&args, &info)?);
    let key_attrs: Vec<String> = info.key.iter().map(|k| k.name.clone()).collect();
    // --follow: the stream is checked (and noted in the checkpoint) before the scan begins.
    let stream = match (args.follow, &origin.source) {
        (true, Some(src)) => {
            let resuming = !args.restart && follows_already(&args, &info, &target_id);
            let s = crate::follow::open(
                src,
                &info.name,
                args.enable_stream,
                resuming,
                &plan,
                &key_attrs,
            );
            Some(s.await?)
        }
        _ => None,
    };

    let client = target
        .connect()
        .await
        .map_err(|e| Error::config(format!("cannot connect to the target: {e}")))?;
    let mut client = client;
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
    let create = !dry && (args.create_tables || !plan.from_file);
    sink::prepare_target_with(&client, &plan, create).await?;
    // With a mapping file, several items may land on one key: remember where this run starts
    // so each batch can count keys written earlier in the run (collisions).
    let run_xid = if plan.from_file {
        let xid: i64 = client
            .query_one("SELECT txid_current()", &[])
            .await
            .map_err(|e| Error::from_pg("read the transaction id", e))?
            .get(0);
        Some((xid & 0xffff_ffff) as u32)
    } else {
        None
    };
    drop(client);

    let dir = &args.checkpoint_dir;
    crate::private::dir(dir)?;
    let files = RunFiles::new(dir, &info.name, &info.arn, &target_id);
    files.secure()?;
    // A dry run does not touch the checkpoint, so it needs no lock, except to download an
    // s3:// export: files are written only under the run's lock.
    let lock = match (dry, &origin.download) {
        (true, None) => None,
        _ => Some(Lock::acquire(&files.lock)?),
    };
    if let Some(download) = &origin.download {
        download.run().await?;
    }
    let _lock = if dry {
        drop(lock);
        None
    } else {
        Checkpoint::remove_leftover_tmp(&files.checkpoint);
        lock
    };

    let existing = if dry {
        None
    } else if args.restart {
        match std::fs::remove_file(&files.checkpoint) {
            Ok(()) => eprintln!(
                "ddb2pg: --restart: discarded {}",
                files.checkpoint.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::file(&files.checkpoint, e)),
        }
        set_rejects_aside(&files.rejects)?;
        None
    } else {
        Checkpoint::load(&files.checkpoint)?
    };
    let segments = match &origin.export {
        // An export's segments are its files.
        Some(e) => e.files.len() as u32,
        None => args
            .scan
            .segments
            .or(existing.as_ref().map(|c| c.settings.segments))
            .unwrap_or_else(|| default_segments(args.scan.concurrency_for(false), info.size_bytes)),
    };
    let settings = Settings {
        source: info.arn.clone(),
        target: target_id.clone(),
        mapping: plan.fingerprint_label(),
        segments,
    };
    let mut cp = match existing {
        Some(cp) => {
            let diffs = cp.settings.differences(&settings);
            if !diffs.is_empty() {
                return Err(Error::config(format!(
                    "checkpoint {} was written under different settings:\n  - {}\n\
                     resume with the original settings, or add --restart to discard the \
                     checkpoint and start over (rows already written are upserted again, not duplicated)",
                    files.checkpoint.display(),
                    diffs.join("\n  - ")
                )));
            }
            cp
        }
        None => Checkpoint::new(settings),
    };
    if let Some(s) = &stream {
        crate::follow::attach(&mut cp, s)?;
    }
    // Reject lines a killed run wrote for pages it did not commit: those pages are read again.
    if let (Some(n), false) = (cp.rejects_bytes, dry) {
        let cut = Rejects::trim_to(&files.rejects, n)?;
        if cut > 0 {
            eprintln!(
                "ddb2pg: removed {cut} bytes of reject lines from {} that belong to batches the \
                 last run did not commit (they are processed again)",
                files.rejects.display()
            );
        }
    }

    let segments_skipped = cp.segments_done() as u64;
    let segments_resumed = cp
        .segments
        .iter()
        .filter(|s| !s.done && s.cursor.is_some())
        .count() as u64;
    let items_before: u64 = cp.segments.iter().map(|s| s.items).sum();
    let pending: Vec<u32> = (0..segments)
        .filter(|&i| !cp.segments[i as usize].done)
        .collect();
    let already_complete = cp.complete;

    let store = Arc::new(if dry {
        Store::in_memory(files.checkpoint.clone(), cp)
    } else {
        Store::new(files.checkpoint.clone(), cp)
    });
    let rejects_path = if dry {
        // This dry run's rejects only: the file starts empty each time.
        let p = files.rejects.with_extension("dry-run.jsonl");
        let _ = std::fs::remove_file(&p);
        p
    } else {
        files.rejects.clone()
    };
    let stats = Arc::new(Stats::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let interrupted = Arc::new(AtomicBool::new(false));

    let mut result = Ok(());
    {
        let tx = shutdown_tx.clone();
        let flag = interrupted.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!(
                "ddb2pg: interrupted: finishing in-flight batches and saving the checkpoint \
                 (interrupt again to stop at once) ..."
            );
            flag.store(true, Ordering::SeqCst);
            let _ = tx.send(true);
            wait_for_signal().await;
            // The checkpoint on disk only ever covers committed batches: safe to leave now.
            eprintln!("ddb2pg: interrupted again: stopping now; run the same command to resume");
            std::process::exit(EXIT_INTERRUPTED.into());
        });
    }
    let rejects = Arc::new(Rejects::new(rejects_path.clone()));
    if !already_complete {
        store.flush()?;
        let (progress_stop, progress_rx) = watch::channel(false);
        let display = tokio::spawn(progress::run(
            ProgressInfo {
                mode: args.progress,
                approx_items: info.item_count,
                items_before,
                segments_total: segments as u64,
                segments_done_before: segments_skipped,
            },
            stats.clone(),
            progress_rx,
        ));
        let job = Arc::new(Job {
            segments: match (&origin.export, &origin.source) {
                (Some(e), _) => pipeline::Segments::Export(Arc::new(e.files.clone())),
                (None, Some(src)) => pipeline::Segments::Scan(SegmentScan {
                    client: src.client.clone(),
                    table: info.name.clone(),
                    segment: 0,
                    total_segments: segments,
                    page_size: args.scan.batch_size,
                    limiter: read_limiter(&args)?,
                }),
                (None, None) => return Err(Error::config("internal error: no source")),
            },
            key_attrs: key_attrs.clone(),
            plan: plan.clone(),
            target_url: target_url.clone(),
            total_segments: segments,
            concurrency: args.scan.concurrency_for(origin.export.is_some()),
            page_size: args.scan.batch_size,
            store: store.clone(),
            rejects: rejects.clone(),
            stats: stats.clone(),
            run_xid,
            retry: crate::sink::resilient::RetryPolicy::new(std::time::Duration::from_secs(
                args.pg_retry_for,
            )),
            dry_run: dry,
            limit: args.limit.map(std::sync::atomic::AtomicU64::new),
            stop: shutdown_tx.clone(),
        });
        result = pipeline::run(job, pending, shutdown_tx.clone()).await;
        let _ = progress_stop.send(true);
        let _ = display.await;
    }
    let mut follow_end = None;
    let stream_arn = stream.as_ref().map(|s| s.arn.clone());
    if let Some(stream) = stream {
        let loaded = store.snapshot().complete && !interrupted.load(Ordering::SeqCst);
        if result.is_ok() && loaded {
            let job = crate::follow::FollowJob {
                stream,
                store: store.clone(),
                plan: plan.clone(),
                key_attrs: key_attrs.clone(),
                rejects: rejects.clone(),
                stats: stats.clone(),
                target_url: target_url.clone(),
                retry: crate::sink::resilient::RetryPolicy::new(std::time::Duration::from_secs(
                    args.pg_retry_for,
                )),
                until_caught_up: args.until_caught_up,
                progress: args.progress,
                shutdown: shutdown_tx.subscribe(),
            };
            match crate::follow::run(job).await {
                Ok(end) => follow_end = Some(end),
                Err(e) => result = Err(e),
            }
        }
    }
    drop(shutdown_rx);
    // A signal that stopped a wait (retries through an outage) is an interruption, not a failure.
    if let Err(e @ Error::Interrupted(_)) = &result {
        eprintln!("ddb2pg: {e}");
        result = Ok(());
        if args.follow {
            follow_end = Some(crate::follow::FollowEnd::Interrupted);
        }
    }

    let cp = store.snapshot();
    let was_interrupted = interrupted.load(Ordering::SeqCst);
    let status = if result.is_err() {
        "failed"
    } else if let Some(end) = follow_end {
        match end {
            crate::follow::FollowEnd::CaughtUp => "caught_up",
            crate::follow::FollowEnd::Interrupted => "interrupted",
        }
    } else if already_complete {
        "nothing_to_do"
    } else if dry && !was_interrupted {
        "dry_run"
    } else if was_interrupted && !cp.complete {
        "interrupted"
    } else {
        "complete"
    };
    let duration = started.elapsed().as_secs_f64();
    // With --limit the scanners read ahead of what was used: report what was used.
    let items_read = if args.limit.is_some() {
        Stats::get(&stats.items_committed)
    } else {
        Stats::get(&stats.items_read)
    };
    let rejected_total: u64 = cp.segments.iter().map(|s| s.rejected).sum::<u64>()
        + cp.stream.as_ref().map_or(0, |s| s.rejected);
    let downloads = origin
        .downloads
        .take()
        .map(|d| d.settle(status, args.keep_downloads));
    let report = Report {
        status: status.to_string(),
        source_table: origin.describe(),
        target: format!(
            "{target_id} table {}",
            plan.tables
                .iter()
                .map(|t| t.display_name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        items_read,
        rows_written: stats.rows_written(),
        rows_inserted: Stats::get(&stats.rows_inserted),
        rows_updated: Stats::get(&stats.rows_updated),
        rows_unchanged: Stats::get(&stats.rows_unchanged),
        rows_deleted: Stats::get(&stats.rows_deleted),
        collisions: Stats::get(&stats.collisions),
        skipped: Stats::get(&stats.skipped),
        tables: stats.tables.lock().map(|m| m.clone()).unwrap_or_default(),
        rejected: Stats::get(&stats.rejected),
        rejected_total,
        rejects_by_reason: stats
            .rejects_by_reason
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        segments_total: segments as u64,
        segments_done: cp.segments_done() as u64,
        segments_resumed,
        segments_skipped,
        items_total: cp.segments.iter().map(|s| s.items).sum(),
        duration_s: duration,
        items_per_s: if duration > 0.0 {
            items_read as f64 / duration
        } else {
            0.0
        },
        checkpoint: files.checkpoint.display().to_string(),
        rejects_file: (rejected_total > 0 || rejects_path.exists())
            .then(|| rejects_path.display().to_string()),
        error: result.as_ref().err().map(|e| e.to_string()),
        changes_unsure: Stats::get(&stats.changes_unsure),
        unsure_reason: stats
            .unsure_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        downloads,
        follow: stream_arn.map(|arn| crate::follow::FollowSummary::of(&arn, &stats)),
    };
    report.print_human();
    if let Some(path) = &args.report {
        report.write_json(path)?;
    }
    match status {
        "failed" | "interrupted" if !dry => {
            eprintln!(
                "ddb2pg: to resume, run the same command again:\n  {}",
                resume_command()
            );
        }
        _ => {}
    }
    result?;
    Ok(match status {
        "interrupted" => EXIT_INTERRUPTED,
        // Rejects of any run of this checkpoint, not only this one: a resume that finishes a
        // migration whose earlier run rejected items still says so.
        _ if rejected_total > 0 => EXIT_REJECTS,
        _ => 0,
    })
}

/// `--scan-only`: read, decode and map every item; write nothing.
async fn scan_only(args: MigrateArgs) -> Result<u8> {
    let started = Instant::now();
    let origin = resolve_origin(&args).await?;
    let (Some(source), info) = (origin.source, origin.info) else {
        return Err(Error::config(
            "--scan-only reads a live table: give --table",
        ));
    };
    let plan = Arc::new(load_plan(&args, &info)?);
    let segments = args
        .scan
        .segments
        .unwrap_or_else(|| default_segments(args.scan.concurrency_for(false), info.size_bytes));
    let stats = Arc::new(Stats::default());
    let (_tx, rx) = watch::channel(false);
    let template = SegmentScan {
        client: source.client.clone(),
        table: info.name.clone(),
        segment: 0,
        total_segments: segments,
        page_size: args.scan.batch_size,
        limiter: read_limiter(&args)?,
    };
    pipeline::scan_only(
        template,
        plan,
        args.scan.concurrency_for(false),
        stats.clone(),
        rx,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let items = Stats::get(&stats.items_read);
    eprintln!(
        "ddb2pg: scan only: {items} items from {segments} segments in {secs:.2} s, {:.0} items/s ({} would be rejected)",
        items as f64 / secs.max(1e-9),
        Stats::get(&stats.rejected)
    );
    if let Some(path) = &args.report {
        let json = serde_json::json!({
            "status": "scan_only",
            "items_read": items,
            "segments_total": segments,
            "duration_s": secs,
            "items_per_s": items as f64 / secs.max(1e-9),
        });
        std::fs::write(path, json.to_string()).map_err(|e| Error::file(path, e))?;
    }
    Ok(0)
}

/// `--restart`: the run rejects its items again, so the old rejects file is renamed (kept,
/// with the time in its name) rather than appended to twice.
fn set_rejects_aside(path: &std::path::Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let old = path.with_extension(format!("{}.jsonl", crate::checkpoint::now_secs()));
    std::fs::rename(path, &old).map_err(|e| Error::file(path, e))?;
    eprintln!(
        "ddb2pg: --restart: the earlier rejects are kept in {}",
        old.display()
    );
    Ok(())
}

/// Whether this run's checkpoint (read-only peek) already follows a stream.
fn follows_already(args: &MigrateArgs, info: &TableInfo, target_id: &str) -> bool {
    let files = RunFiles::new(&args.checkpoint_dir, &info.name, &info.arn, target_id);
    matches!(Checkpoint::load(&files.checkpoint), Ok(Some(cp)) if cp.stream.is_some())
}

/// Where the items come from: a live table or an export.
struct Origin {
    info: TableInfo,
    source: Option<Source>,
    export: Option<crate::source::export::Export>,
    /// An `s3://` export: listed, to be downloaded under the run's lock.
    download: Option<crate::source::s3::Download>,
    /// An s3:// export's local copies.
    downloads: Option<crate::downloads::Downloads>,
}

impl Origin {
    fn describe(&self) -> String {
        match (&self.source, &self.export) {
            (Some(s), _) => format!("{} ({})", self.info.name, s.describe_location()),
            (_, Some(e)) => format!("{} ({} files)", e.identity, e.files.len()),
            _ => self.info.name.clone(),
        }
    }
}

/// `--key PK[:S|N|B][,SK[:S|N|B]]` (type S by default).
fn parse_key(spec: &str) -> Result<Vec<KeyAttr>> {
    spec.split(',')
        .map(|part| {
            let (name, ty) = part.trim().split_once(':').unwrap_or((part.trim(), "S"));
            let ty = match ty.to_ascii_uppercase().as_str() {
                "S" => KeyAttrType::S,
                "N" => KeyAttrType::N,
                "B" => KeyAttrType::B,
                other => {
                    return Err(Error::config(format!(
                        "--key {spec}: type {other:?} of {name:?} is not S, N or B"
                    )))
                }
            };
            if name.is_empty() {
                return Err(Error::config(format!(
                    "--key {spec}: an attribute name is empty"
                )));
            }
            Ok(KeyAttr {
                name: name.to_string(),
                ty,
            })
        })
        .collect()
}

async fn resolve_origin(args: &MigrateArgs) -> Result<Origin> {
    match (&args.table, &args.export) {
        (Some(table), None) => {
            let source = Source::connect(&args.aws).await?;
            let mut info = source.describe(table).await?;
            if let Some(k) = &args.key {
                info.key = parse_key(k)?;
            }
            Ok(Origin {
                info,
                source: Some(source),
                export: None,
                download: None,
                downloads: None,
            })
        }
        (None, Some(path)) => {
            let text = path.to_string_lossy().to_string();
            let (export, download, downloads) = if let Some(rest) = text.strip_prefix("s3://") {
                // Downloaded next to the checkpoint (files already there intact are not
                // fetched again), once the run holds its lock: here only listed.
                let dest = crate::downloads::Downloads::dir_for(&args.checkpoint_dir, rest);
                let download =
                    crate::source::s3::prepare(&args.aws, &args.s3_endpoint_url, &text, &dest)
                        .await?;
                // Only now, the key list checked, is anything created.
                let d = crate::downloads::Downloads::open(&args.checkpoint_dir, rest)?;
                (download.export.clone(), Some(download), Some(d))
            } else {
                (crate::source::export::open(path)?, None, None)
            };
            let key =
                match &args.key {
                    Some(k) => parse_key(k)?,
                    None if args.mapping.is_some() => Vec::new(),
                    None => return Err(Error::config(
                        "an export carries no key schema: pass --key PK[,SK] (with :N or :B for \
                         number or binary keys) for the default mapping, or a --mapping file",
                    )),
                };
            let info = TableInfo {
                name: export.table_name.clone(),
                arn: export.identity.clone(),
                key,
                item_count: 0,
                size_bytes: 0,
            };
            Ok(Origin {
                info,
                source: None,
                export: Some(export),
                download,
                downloads,
            })
        }
        _ => Err(Error::config("give either --table NAME or --export PATH")),
    }
}

/// The mapping file's plan, or the default mapping.
fn load_plan(args: &MigrateArgs, info: &TableInfo) -> Result<Plan> {
    match &args.mapping {
        Some(path) => crate::mapping::load(path),
        None => Plan::default_checked(info),
    }
}

fn read_limiter(args: &MigrateArgs) -> Result<Option<Arc<crate::source::scan::ReadLimiter>>> {
    match args.max_read_units {
        None => Ok(None),
        Some(n) if n.is_finite() && n > 0.0 => {
            Ok(Some(Arc::new(crate::source::scan::ReadLimiter::new(n))))
        }
        Some(n) => Err(Error::config(format!(
            "--max-read-units {n}: expected a positive number of read capacity units per second"
        ))),
    }
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

    #[test]
    fn identity_and_redaction() {
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
