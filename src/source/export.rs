//! DynamoDB exports on local disk: the layout AWS writes (`manifest-summary.json`,
//! `manifest-files.json`, `data/*.json.gz`, one DynamoDB-JSON object per line) or a bare
//! directory of `.json` / `.json.gz` files. Each data file is a segment; the cursor inside a
//! file is the number of lines already committed.
//!
//! Manifests are read whole, so each has a cap ([`manifest_cap`]): a larger one is refused,
//! naming it and the cap, before it is read (a local file) or downloaded (an S3 object).
//!
//! The data files of an `s3://` export are downloaded copies: [`read_file`] opens them with
//! `crate::downloads::open_checked`, which refuses a copy that is not the file whose MD5 was
//! checked (see `crate::downloads`).
//!
//! Full exports hold `{"Item": {...}}` lines. Incremental exports hold
//! `{"Keys": {...}, "NewImage": {...}, "OldImage": {...}}` lines: changes, applied by the rules
//! of `crate::changes` (the same as a stream's records).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::scan::{BadLine, Page};
use crate::error::{Error, Result};
use crate::progress::Stats;
use crate::value::{self, Item};

/// The data files of an export and what identifies it.
#[derive(Debug, Clone)]
pub struct Export {
    pub files: Vec<PathBuf>,
    /// Per file, the manifest's `md5Checksum` (base64 of the file's MD5), when it gives one.
    pub md5: Vec<Option<String>>,
    /// Manifest (or file list) with sizes, hashed: part of the checkpoint fingerprint.
    pub identity: String,
    /// The source table's name, from the manifest's table ARN or the directory's name.
    pub table_name: String,
    /// `manifest-summary.json`'s `tableArn`, when it has one: the table whose stream
    /// `migrate --export --follow` applies after the load.
    pub table_arn: Option<String>,
    /// What time the export's data is as of, from `manifest-summary.json`: an incremental
    /// export's `exportToTime` (its end, exclusive), else a full export's `exportTime`. The
    /// field's name and its text as written (parsed where it is used).
    pub as_of: Option<(&'static str, String)>,
}

/// Where an export's files are looked up: a folder on disk ([`Disk`]), or for an `s3://`
/// export the listing of the objects to be downloaded into one, so that the export's identity
/// (and so the checkpoint and lock named after it) is known before anything is written.
pub trait Tree {
    /// The text of a small file (a manifest); None when there is no such file.
    fn text(&self, path: &Path) -> Result<Option<String>>;
    /// The size of a file; None when there is no such file.
    fn size(&self, path: &Path) -> Option<u64>;
    /// The folders directly in `dir`.
    fn dirs(&self, dir: &Path) -> Vec<PathBuf>;
    /// The files directly in `dir` (none when it is not a folder).
    fn files(&self, dir: &Path) -> Result<Vec<PathBuf>>;
    /// Whether `path`, found in the tree under `root`, really lies outside it (a symlink).
    fn escapes(&self, _root: &Path, _path: &Path) -> bool {
        false
    }
}

/// The export folder as it is on disk.
pub struct Disk;

impl Tree for Disk {
    fn text(&self, path: &Path) -> Result<Option<String>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::config(format!("{}: {e}", path.display()))),
        };
        let cap = manifest_cap(path);
        let shown = path.display().to_string();
        if let Ok(m) = f.metadata() {
            check_manifest_size(&shown, m.len(), cap)?;
        }
        // The size again as read (a file may grow after its metadata was read).
        let mut bytes = Vec::new();
        f.take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::config(format!("{shown}: {e}")))?;
        check_manifest_size(&shown, bytes.len() as u64, cap)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| Error::config(format!("{shown}: a manifest that is not UTF-8 ({e})")))
    }
    fn size(&self, path: &Path) -> Option<u64> {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }
    fn dirs(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }
    fn files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for e in
            std::fs::read_dir(dir).map_err(|e| Error::config(format!("{}: {e}", dir.display())))?
        {
            let p = e.map_err(|e| Error::config(e.to_string()))?.path();
            if p.is_file() {
                out.push(p);
            }
        }
        Ok(out)
    }
    fn escapes(&self, root: &Path, path: &Path) -> bool {
        match (root.canonicalize(), path.canonicalize()) {
            (Ok(root), Ok(path)) => !path.starts_with(root),
            _ => true,
        }
    }
}

/// Whether `key`, a `/`-separated path from an export (an S3 key below the prefix, a
/// manifest's `dataFileS3Key`), names a file inside the folder it is joined to: not absolute,
/// and no part of it empty, `.` or `..` (DynamoDB writes none of these).
pub fn stays_inside(key: &str) -> bool {
    key.split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'))
}

/// The largest `manifest-summary.json` read: DynamoDB's are under 2 KB.
pub const SUMMARY_MAX_BYTES: u64 = 1 << 20;
/// The largest `manifest-files.json` read: one line of about 200 bytes per data file, so
/// some 300,000 data files.
pub const FILES_MAX_BYTES: u64 = 64 << 20;

/// The most a manifest (a file named `manifest-summary.json`, else `manifest-files.json`) may
/// hold.
pub fn manifest_cap(path: &Path) -> u64 {
    if path
        .file_name()
        .is_some_and(|n| n == "manifest-summary.json")
    {
        SUMMARY_MAX_BYTES
    } else {
        FILES_MAX_BYTES
    }
}

/// Refuse manifest `shown` of `size` bytes when it is past `cap` (whole MiB; exit 2).
pub fn check_manifest_size(shown: &str, size: u64, cap: u64) -> Result<()> {
    if size <= cap {
        return Ok(());
    }
    Err(Error::config(format!(
        "{shown}: a manifest of {size} bytes or more, past the {} MiB ddb2pg reads of \
         one (DynamoDB's are far smaller): not an export's manifest, or a damaged one. \
         Refused; nothing was read or downloaded. Check that the path or prefix is an export's \
         folder",
        cap >> 20
    )))
}

/// The folder of the export's manifests under `root`: `root` itself, or the one
/// `AWSDynamoDB/<export id>/` that has a `manifest-files.json`.
pub fn find_manifest_dir(tree: &impl Tree, root: &Path) -> Option<PathBuf> {
    if tree.size(&root.join("manifest-files.json")).is_some() {
        return Some(root.to_path_buf());
    }
    // AWS writes AWSDynamoDB/<export id>/manifest-files.json under the prefix.
    let mut dirs: Vec<PathBuf> = tree
        .dirs(&root.join("AWSDynamoDB"))
        .into_iter()
        .filter(|p| tree.size(&p.join("manifest-files.json")).is_some())
        .collect();
    dirs.sort();
    (dirs.len() == 1).then(|| dirs.remove(0))
}

/// The manifests AWS writes in an export's folder: the console shows `manifest-summary.json`.
pub const MANIFESTS: [&str; 2] = ["manifest-summary.json", "manifest-files.json"];

/// The export folder that `--export` names: the folder itself, or the folder of the
/// `manifest-summary.json` (or `manifest-files.json`) given instead, local or `s3://`. Either
/// spelling is the same export (same checkpoint).
pub fn folder_of(given: &Path) -> PathBuf {
    let text = given.to_string_lossy();
    if let Some(rest) = text.strip_prefix("s3://") {
        for m in MANIFESTS {
            if let Some(prefix) = rest.strip_suffix(m).and_then(|p| p.strip_suffix('/')) {
                if !prefix.is_empty() {
                    return PathBuf::from(format!("s3://{prefix}"));
                }
            }
        }
        return given.to_path_buf();
    }
    let named = given
        .file_name()
        .is_some_and(|n| MANIFESTS.iter().any(|m| n == *m));
    if named && given.is_file() {
        return match given.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
    }
    given.to_path_buf()
}

/// Find the data files of the export at `root` (or of the manifest given: see `folder_of`).
pub fn open(root: &Path) -> Result<Export> {
    let root = &folder_of(root);
    if !root.is_dir() {
        return Err(Error::config(format!(
            "--export {}: not a directory (expected an export's folder with manifest-files.json and data/, its manifest-summary.json, or a folder of .json/.json.gz files)",
            root.display()
        )));
    }
    open_in(&Disk, root, &root.display().to_string())
}

/// As `open`, in `tree`, naming the export `label` (e.g. the s3:// URL it is downloaded from).
pub fn open_in(tree: &impl Tree, root: &Path, label: &str) -> Result<Export> {
    let mut hasher = Sha256::new();
    let mut table_name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "export".into());
    let (mut table_arn, mut as_of) = (None, None);
    let (files, md5) = match find_manifest_dir(tree, root) {
        Some(dir) => {
            if let Some(summary) = tree.text(&dir.join("manifest-summary.json"))? {
                hasher.update(summary.as_bytes());
                if let Ok(v) = serde_json::from_str::<Value>(&summary) {
                    table_arn = v["tableArn"].as_str().map(str::to_string);
                    if let Some(name) = table_arn.as_deref().and_then(|a| a.rsplit('/').next()) {
                        table_name = name.to_string();
                    }
                    as_of = summary_time(&v);
                }
            }
            manifest_files(tree, root, &dir)?
        }
        None => {
            let mut files = Vec::new();
            for d in [root.to_path_buf(), root.join("data")] {
                files.extend(tree.files(&d)?.into_iter().filter(|p| {
                    let name = p.to_string_lossy();
                    (name.ends_with(".json") || name.ends_with(".json.gz"))
                        && !name.contains("manifest-")
                }));
            }
            files.sort();
            let md5 = vec![None; files.len()];
            (files, md5)
        }
    };
    if files.is_empty() {
        return Err(Error::config(format!(
            "--export {label}: no data files (.json or .json.gz) found"
        )));
    }
    for f in &files {
        let size = tree.size(f).unwrap_or(0);
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        hasher.update(format!("{name}:{size}\n").as_bytes());
    }
    let hash: String = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Export {
        files,
        md5,
        identity: format!("export {label} ({hash})"),
        table_name,
        table_arn,
        as_of,
    })
}

/// The table name of a table ARN (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`).
pub fn table_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":table/")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .filter(|name| !name.is_empty())
}

/// The time a manifest summary's data is as of: `exportToTime` (incremental), else
/// `exportTime` (full).
fn summary_time(summary: &Value) -> Option<(&'static str, String)> {
    ["exportToTime", "exportTime"]
        .into_iter()
        .find_map(|field| {
            summary[field]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(|t| (field, t.to_string()))
        })
}

type FilesAndMd5 = (Vec<PathBuf>, Vec<Option<String>>);

/// The data files that `dir/manifest-files.json` lists, each found inside the export (at its
/// key below `root`, else in `dir/data/`), with their md5Checksum.
fn manifest_files(tree: &impl Tree, root: &Path, dir: &Path) -> Result<FilesAndMd5> {
    let manifest_path = dir.join("manifest-files.json");
    let manifest = tree
        .text(&manifest_path)?
        .ok_or_else(|| Error::config(format!("{}: not found", manifest_path.display())))?;
    let (mut files, mut md5) = (Vec::new(), Vec::new());
    let lines = manifest
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    for (i, line) in lines {
        let at = || format!("{} line {}", manifest_path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).map_err(|e| Error::config(format!("{}: {e}", at())))?;
        let key = v["dataFileS3Key"]
            .as_str()
            .ok_or_else(|| Error::config(format!("{}: no dataFileS3Key", at())))?;
        if !stays_inside(key) {
            return Err(Error::config(format!(
                "{}: dataFileS3Key {key:?} is absolute or has an empty, `.` or `..` part: an export's \
                 data files lie inside it, so this manifest is damaged or was not written by \
                 DynamoDB; nothing was read. Check where the export came from",
                at()
            )));
        }
        let base = key.rsplit('/').next().unwrap_or(key);
        let candidates = [root.join(key), dir.join("data").join(base)];
        let path = candidates
            .iter()
            .find(|p| tree.size(p).is_some())
            .cloned()
            .ok_or_else(|| {
                Error::config(format!(
                    "the manifest lists {key}, but neither {} nor {} exists",
                    candidates[0].display(),
                    candidates[1].display()
                ))
            })?;
        if tree.escapes(root, &path) {
            return Err(Error::config(format!(
                "{}: data file {} lies outside the export {} (a symbolic link?): refused; copy \
                 the file into the export's folder",
                at(),
                path.display(),
                root.display()
            )));
        }
        files.push(path);
        md5.push(v["md5Checksum"].as_str().map(str::to_string));
    }
    Ok((files, md5))
}

/// A page is cut at this much line text even when it has fewer than `page_size` lines, as
/// DynamoDB cuts a Scan page at 1 MB: memory stays bounded when items are large (up to 400 KB).
pub const PAGE_BYTES: usize = 1 << 20;

/// Where `read_file` puts what it reads, line by line, and where it ends each page.
pub trait Pages {
    /// An item to insert or update, with its line's text.
    fn upsert(&mut self, item: Item, text: &str);
    /// A change (incremental exports), with its line's text.
    fn change(&mut self, change: crate::changes::Change, text: &str);
    /// A line that is not an item.
    fn bad(&mut self, bad: BadLine);
    /// Lines in the current page.
    fn page_lines(&self) -> usize;
    /// End the current page; the file continues after `next` (None: it ended). Returns false
    /// to stop reading.
    fn end_page(&mut self, next: Option<serde_json::Value>) -> bool;
}

/// `Pages` that hands over each page as read (items and their lines kept).
pub struct RawPages<F: FnMut(Page) -> bool> {
    page: Page,
    emit: F,
}

impl<F: FnMut(Page) -> bool> RawPages<F> {
    pub fn new(emit: F) -> Self {
        RawPages {
            page: Page::default(),
            emit,
        }
    }
}

impl<F: FnMut(Page) -> bool> Pages for RawPages<F> {
    fn upsert(&mut self, item: Item, text: &str) {
        self.page.items.push(item);
        self.page.lines.push(text.to_owned());
    }
    fn change(&mut self, change: crate::changes::Change, text: &str) {
        self.page.changes.push((change, text.to_owned()));
    }
    fn bad(&mut self, bad: BadLine) {
        self.page.bad.push(bad);
    }
    fn page_lines(&self) -> usize {
        self.page.len()
    }
    fn end_page(&mut self, next: Option<serde_json::Value>) -> bool {
        let mut page = std::mem::take(&mut self.page);
        page.next = next;
        (self.emit)(page)
    }
}

/// The longest line read as an item. DynamoDB items are at most 400 KB, so a longer line is not
/// an item: it is rejected with an excerpt, and the rest of it is read past, not kept.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// The text of a refused line kept in its reject, in characters.
const EXCERPT_CHARS: usize = 2000;

/// What `next_line` read.
#[derive(Debug, PartialEq)]
enum Line {
    /// A whole line is in the buffer (with its newline, if it had one).
    Whole,
    /// A line longer than the cap: the buffer holds its start; `len` bytes in all, newline
    /// excluded.
    TooLong { len: u64 },
    /// The end of the file.
    End,
}

/// Read the next line into `buf` (cleared first), keeping at most `cap` bytes of it plus the
/// newline; the rest of a longer line is read and dropped, so memory stays flat whatever the
/// line's length. Returns what was read and the bytes it took from the file.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<(Line, u64)> {
    buf.clear();
    let n = r.by_ref().take(cap as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok((Line::End, 0));
    }
    if buf.last() == Some(&b'\n') || n <= cap {
        return Ok((Line::Whole, n as u64));
    }
    // cap + 1 bytes and no newline yet: read past the rest of the line.
    let mut len = n as u64;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok((Line::TooLong { len }, len));
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                len += i as u64;
                return Ok((Line::TooLong { len }, len + 1));
            }
            None => {
                let k = avail.len();
                r.consume(k);
                len += k as u64;
            }
        }
    }
}

/// Read one data file from line `start` (lines already committed) into `pages`, ending a page
/// every `page_size` lines (or about `PAGE_BYTES` of text); stops early, without error, when
/// `shutdown` turns true or `pages` says so. Runs on a blocking thread. A malformed line (not
/// JSON, not UTF-8, longer than `MAX_LINE_BYTES`) becomes a `BadLine`; a file that cannot be
/// read (corrupt or truncated gzip, I/O error) is an error naming file and line.
pub fn read_file(
    path: &Path,
    start: u64,
    page_size: usize,
    shutdown: watch::Receiver<bool>,
    stats: &Stats,
    pages: &mut impl Pages,
) -> Result<()> {
    // An export's file is a file, not DynamoDB: the error names it and what the OS said. A
    // downloaded copy must still be the file whose MD5 was checked.
    let f = crate::downloads::open_checked(path)?;
    let reader: Box<dyn Read> = if path.to_string_lossy().ends_with(".gz") {
        Box::new(MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut lines = BufReader::with_capacity(1 << 16, reader);
    let mut line_no: u64 = 0;
    let mut buf = Vec::new();
    let mut page_bytes = 0;
    loop {
        let (kind, n) = next_line(&mut lines, &mut buf, MAX_LINE_BYTES).map_err(|e| {
            Error::file(
                path,
                format!(
                    "cannot be read after line {line_no}: {e}; if the file is corrupt or \
                         truncated, replace it and run the same command again to resume"
                ),
            )
        })?;
        if kind == Line::End {
            break;
        }
        line_no += 1;
        if line_no <= start {
            continue;
        }
        page_bytes += buf.len();
        if let Line::TooLong { len } = kind {
            pages.bad(too_long(path, line_no, len, &buf));
            // The cap's worth of buffer is not kept for the rest of the file.
            buf = Vec::new();
        } else {
            match std::str::from_utf8(&buf) {
                Ok(text) if text.trim_end().is_empty() => {}
                Ok(text) => parse_line(text.trim_end(), line_no, path, pages),
                Err(e) => pages.bad(not_utf8(path, line_no, n, e, &buf)),
            }
        }
        if pages.page_lines() >= page_size || page_bytes >= PAGE_BYTES {
            page_bytes = 0;
            Stats::add(&stats.items_read, pages.page_lines() as u64);
            if *shutdown.borrow() || !pages.end_page(Some(serde_json::json!({ "line": line_no }))) {
                return Ok(());
            }
        }
    }
    Stats::add(&stats.items_read, pages.page_lines() as u64);
    pages.end_page(None);
    Ok(())
}

/// The start of a line as text for a reject: at most `EXCERPT_CHARS` characters, bytes that
/// are not UTF-8 shown as U+FFFD.
fn excerpt(bytes: &[u8]) -> String {
    let start = &bytes[..bytes.len().min(EXCERPT_CHARS * 4)];
    String::from_utf8_lossy(start)
        .trim_end()
        .chars()
        .take(EXCERPT_CHARS)
        .collect()
}

fn too_long(path: &Path, line: u64, len: u64, start: &[u8]) -> BadLine {
    BadLine {
        file: path.display().to_string(),
        line,
        reason: format!(
            "line of {len} bytes, longer than the {} MiB a line may have (a DynamoDB item is at \
             most 400 KB): not read; `text` holds its start",
            MAX_LINE_BYTES >> 20
        ),
        text: excerpt(start),
    }
}

fn not_utf8(path: &Path, line: u64, len: u64, e: std::str::Utf8Error, bytes: &[u8]) -> BadLine {
    BadLine {
        file: path.display().to_string(),
        line,
        reason: format!(
            "not UTF-8 (an invalid byte at byte {} of the line's {len}; DynamoDB exports are \
             UTF-8): `text` shows invalid bytes as U+FFFD",
            e.valid_up_to() + 1
        ),
        text: excerpt(bytes),
    }
}

fn parse_line(text: &str, line: u64, path: &Path, pages: &mut impl Pages) {
    match value::parse_export_line(text) {
        Ok(value::ExportChange::Upsert(item)) => pages.upsert(item, text),
        Ok(value::ExportChange::Change(change)) => pages.change(change, text),
        Err(e) => pages.bad(BadLine {
            file: path.display().to_string(),
            line,
            reason: e.to_string(),
            text: text.chars().take(EXCERPT_CHARS).collect(),
        }),
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
