//! `migrate --scan-only`: the source's limit, measured. Every item is read, decoded and
//! mapped; nothing is written and no checkpoint is kept.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::default_segments;
use super::origin::{load_plan, read_limiter, resolve_origin};
use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::pipeline;
use crate::progress::Stats;
use crate::source::scan::SegmentScan;

/// `--scan-only`: read, decode and map every item; write nothing.
pub(super) async fn scan_only(args: MigrateArgs) -> Result<u8> {
    let started = Instant::now();
    let origin = resolve_origin(&args, &args.checkpoint_dir).await?;
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
    crate::say!(
        "scan only: {items} items from {segments} segments in {secs:.2} s, {:.0} items/s ({} would be rejected)",
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
