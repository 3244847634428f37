//! Verify, step 1: resolve the source (a live table, or exports in the order they were
//! migrated), the plan, and the rejects files migrate writes for this source and target.
//!
//! Exports are opened by the very code `migrate --export` uses (`source::export::open`, and
//! for `s3://` `source::s3::prepare` then `Download::run`), so verify reads the same files.
//!
//! `--checkpoint-dir` is opened as migrate opens it (`checkpoint::open`): a local directory or
//! an `s3://` prefix, where the rejects files are looked up; `s3://` exports are downloaded
//! into that storage's local working folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::known::Known;
use crate::checkpoint::{Names, Storage};
use crate::cli::VerifyArgs;
use crate::downloads::Downloads;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::source::export::Export;
use crate::source::scan::SegmentScan;
use crate::source::{Source, TableInfo};

/// What verify reads and how it maps it.
pub struct Origin {
    pub plan: Arc<Plan>,
    /// The item's key attributes (named in the reject lines the reader builds).
    pub key_attrs: Vec<String>,
    pub sources: Sources,
    /// DescribeTable's ItemCount (0 for exports): the progress display's estimate.
    pub approx_items: u64,
    /// What was read, for the report.
    pub label: String,
    /// The rejects files migrate wrote for this source and target (one per export) that
    /// exist, as shown (a path or an s3:// URL).
    pub rejects_files: Vec<String>,
    /// The keys of the items those files hold.
    pub known: Arc<Known>,
    /// The folder of this run's copies of s3:// exports, removed when verify ends.
    pub _downloads: Option<DownloadDir>,
    /// `--shard I/N` (a table only): the segments `s % N == I` are read, and rows of the target
    /// that other shards' segments hold are not extra.
    pub shard: Option<crate::shard::Shard>,
}

/// Where the items come from.
pub enum Sources {
    /// A table's parallel Scan; the template's `segment` is replaced per segment.
    Table(SegmentScan),
    /// Exports in the order they were migrated: the full export, then incremental ones.
    Exports(Vec<Export>),
}

impl Sources {
    /// Segments over all sources (an export's are its data files).
    pub fn segments(&self) -> u64 {
        match self {
            Sources::Table(t) => t.total_segments as u64,
            Sources::Exports(e) => e.iter().map(|e| e.files.len() as u64).sum(),
        }
    }
}

/// A folder removed (with what is in it) when dropped.
pub struct DownloadDir(PathBuf);

impl Drop for DownloadDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn resolve(args: &VerifyArgs, target_id: &str) -> Result<Origin> {
    match (&args.table, args.export.as_slice()) {
        (Some(table), []) => resolve_table(args, table, target_id).await,
        (None, exports) if !exports.is_empty() => resolve_exports(args, exports, target_id).await,
        _ => Err(Error::config("give either --table NAME or --export PATH")),
    }
}

fn load_plan(args: &VerifyArgs, info: &TableInfo) -> Result<Plan> {
    crate::migrate::plan_for(args.mapping.as_deref(), args.target_table.as_deref(), info)
}

async fn resolve_table(args: &VerifyArgs, table: &str, target_id: &str) -> Result<Origin> {
    let source = Source::connect(&args.aws).await?;
    let mut info = source.describe(table).await?;
    if let Some(k) = &args.key {
        info.key = crate::migrate::parse_key(k)?;
    }
    let plan = Arc::new(load_plan(args, &info)?);
    let scan = args.scan();
    let shard = args.shard.resolve()?;
    let segments = match (scan.segments, shard) {
        (Some(n), _) => n,
        (None, None) => {
            crate::migrate::default_segments(scan.concurrency_for(false), info.size_bytes)
        }
        (None, Some(s)) => {
            return Err(Error::config(format!(
                "verify --shard {s}: give --segments, the same number to every shard"
            )))
        }
    };
    let names = Names::new(&info.name, &info.arn, target_id, shard);
    let key_attrs: Vec<String> = info.key.iter().map(|k| k.name.clone()).collect();
    let (rejects, known) = existing_rejects(args, &[names], &key_attrs)?;
    Ok(Origin {
        plan,
        key_attrs,
        sources: Sources::Table(SegmentScan {
            client: source.client.clone(),
            table: info.name.clone(),
            segment: 0,
            total_segments: segments,
            page_size: args.batch_size,
            limiter: None,
        }),
        approx_items: info.item_count,
        label: format!("{} ({})", info.name, source.describe_location()),
        rejects_files: rejects,
        known: Arc::new(known),
        _downloads: None,
        shard,
    })
}

async fn resolve_exports(args: &VerifyArgs, paths: &[PathBuf], target_id: &str) -> Result<Origin> {
    if args.shard.shard.is_some() || args.shards_given() {
        // A key's lines in the full export and in an incremental one are in files of unrelated
        // numbers: split by file, a shard could see a delete without the put it undoes.
        return Err(Error::config(
            "verify --shard reads a table; verify an export as one process",
        ));
    }
    let mut downloads = None;
    let mut exports = Vec::new();
    for path in paths {
        let text = path.to_string_lossy().to_string();
        let export = match text.strip_prefix("s3://") {
            Some(rest) => {
                if downloads.is_none() {
                    let storage = checkpoint_storage(args)?;
                    downloads = Some(download_dir(&storage.local_dir()?)?);
                }
                let Some(dir) = downloads.as_ref().map(|d| d.0.as_path()) else {
                    return Err(Error::config("internal error: no download folder"));
                };
                let dest = Downloads::dir_for(dir, rest);
                let download =
                    crate::source::s3::prepare(&args.aws, &args.s3_endpoint_url, &text, &dest)
                        .await?;
                download.run().await?;
                download.export
            }
            None => crate::source::export::open(path)?,
        };
        exports.push(export);
    }
    let key = match &args.key {
        Some(k) => crate::migrate::parse_key(k)?,
        None if args.mapping.is_some() => Vec::new(),
        None => {
            return Err(Error::config(
                "an export carries no key schema: pass --key PK[,SK] as given to migrate (with \
                 :N or :B for number or binary keys) for the default mapping, or the --mapping file",
            ))
        }
    };
    // The default mapping's table is named after the first (full) export, as migrate names it.
    let info = TableInfo {
        name: exports[0].table_name.clone(),
        arn: exports[0].identity.clone(),
        key,
        item_count: 0,
        size_bytes: 0,
    };
    let plan = Arc::new(load_plan(args, &info)?);
    let names: Vec<Names> = exports
        .iter()
        .map(|e| Names::new(&e.table_name, &e.identity, target_id, None))
        .collect();
    let key_attrs: Vec<String> = info.key.iter().map(|k| k.name.clone()).collect();
    let (rejects_files, known) = existing_rejects(args, &names, &key_attrs)?;
    let label = exports
        .iter()
        .map(|e| format!("{} ({} files)", e.identity, e.files.len()))
        .collect::<Vec<_>>()
        .join(", then ");
    Ok(Origin {
        plan,
        key_attrs,
        sources: Sources::Exports(exports),
        approx_items: 0,
        label,
        rejects_files,
        known: Arc::new(known),
        _downloads: downloads,
        shard: None,
    })
}

/// `--checkpoint-dir`, opened as migrate opens it.
fn checkpoint_storage(args: &VerifyArgs) -> Result<Arc<dyn Storage>> {
    crate::checkpoint::open(&args.checkpoint_dir, &args.aws, &args.s3_endpoint_url)
}

fn is_s3(dir: &Path) -> bool {
    dir.to_string_lossy().starts_with("s3://")
}

/// The rejects files of `names` that `--checkpoint-dir` holds, as shown (on S3 a folder of
/// parts, see `checkpoint::s3`), and the keys of the items they hold.
fn existing_rejects(
    args: &VerifyArgs,
    names: &[Names],
    key_attrs: &[String],
) -> Result<(Vec<String>, Known)> {
    // A local folder that does not exist (nothing migrated with it) holds none.
    if !is_s3(&args.checkpoint_dir) && !args.checkpoint_dir.exists() {
        return Ok((Vec::new(), Known::default()));
    }
    let storage = checkpoint_storage(args)?;
    let mut shown = Vec::new();
    let mut held = Vec::new();
    for n in names {
        if storage.holds(&n.rejects)? {
            shown.push(storage.show(&n.rejects));
            held.push(n.rejects.clone());
        }
    }
    let known = Known::read(storage.as_ref(), &held, key_attrs)?;
    Ok((shown, known))
}

/// This run's own folder for s3:// copies (owner-only, like migrate's), so that a migrate of
/// the same export, or another verify, never meets a half-written file of ours.
fn download_dir(checkpoint_dir: &Path) -> Result<DownloadDir> {
    crate::private::dir(checkpoint_dir)?;
    let dir = checkpoint_dir.join(format!("verify-{}", std::process::id()));
    crate::private::own_dir(
        &dir,
        "verify's copies of s3:// exports",
        "give --checkpoint-dir a folder of your own",
    )?;
    Ok(DownloadDir(dir))
}
