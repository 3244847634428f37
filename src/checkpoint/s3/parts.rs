//! A file kept in S3 as numbered part objects: the rejects `<stem>.rejects.jsonl` are the
//! objects `<stem>.rejects/part-00000001.jsonl`, `part-00000002.jsonl`, ... Joined in number
//! order they are the file (`aws s3 cp --recursive`, then `cat part-*.jsonl`).
//!
//! Each publish uploads only the bytes appended since the last one, as the next part, created
//! with `If-None-Match: *`: what a run uploads adds up to the file's length however often the
//! checkpoint is written, and no object is written twice while a run appends. Publishing up to
//! the length the checkpoint about to be written counts (`Storage::publish_prefix`) makes every
//! part end where some checkpoint's `rejects_bytes` does, so a resume that cuts the lines a
//! killed run did not commit removes whole parts; a part cut in the middle (a checkpoint that
//! counts less than a part, edited or older) is replaced with `If-Match` on the ETag this
//! process read.
//!
//! The file is the parts numbered 1, 2, 3, ... without a gap. Appends and cut-backs never
//! make one (a cut-back, and moving the parts aside, delete the last part first), so a gap
//! is made outside ddb2pg or by a process that lost the shard. `fetch` deletes the parts past
//! a gap only when the parts before it hold every byte the checkpoint counts (they are then
//! a lost process's or a killed run's uncommitted lines); otherwise lines the checkpoint
//! counts are missing, and it stops (exit 1) naming the missing part, deleting nothing: the
//! parts after it may be the only record of rejected items. Two processes on one shard cannot both add the
//! same part: the second's `If-None-Match` is refused and it stops (exit 1); nor add one after
//! the other cut the file back (the last part it knows is checked with `If-Match` first); and
//! a process that lost its lock stops before it writes (the [`super::Fence`]). A part past the stored checkpoint's count is cut by the
//! next resume like any uncommitted line.

use std::io::Write as _;
use std::path::Path;

use super::{detail, s3_err, status, Body, S3Dir};
use crate::checkpoint::storage::{LineCount, Storage, Tag};
use crate::error::{Error, Result};

/// One part of a stored file: its number, where it starts in the file, its length and the
/// ETag it was read or written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    n: u64,
    start: u64,
    len: u64,
    etag: String,
}

/// A part object as listed.
#[derive(Debug, Clone)]
struct Listed {
    n: u64,
    size: u64,
    etag: String,
}

/// The folder of the file `name` (`x.rejects.jsonl`: `x.rejects/`).
pub(super) fn folder(name: &str) -> String {
    format!("{}/", name.strip_suffix(".jsonl").unwrap_or(name))
}

/// The name of part `n` of `name`.
fn part_name(name: &str, n: u64) -> String {
    format!("{}part-{n:08}.jsonl", folder(name))
}

/// The number of a part's file name (`part-00000012.jsonl`: 12).
fn number(file: &str) -> Option<u64> {
    let digits = file.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The file: the parts numbered from 1 without a gap (sorted by number), and the others.
fn chain(mut listed: Vec<Listed>) -> (Vec<Part>, Vec<u64>) {
    listed.sort_by_key(|l| l.n);
    let (mut parts, mut strays) = (Vec::<Part>::new(), Vec::new());
    for l in listed {
        let end = parts.last().map_or(0, |p| p.start + p.len);
        if l.n == parts.len() as u64 + 1 {
            parts.push(Part {
                n: l.n,
                start: end,
                len: l.size,
                etag: l.etag,
            });
        } else {
            strays.push(l.n);
        }
    }
    (parts, strays)
}

/// `s` for a `CopySource` header: percent-encoded but for unreserved characters and `/`.
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl S3Dir {
    fn refused(&self, name: &str) -> Error {
        Error::file(
            self.show(name),
            "changed by another process since this run fetched or wrote it (conditional write \
             refused): two runs on one shard? This one stops; the stored checkpoint stays valid",
        )
    }

    /// The error for a gap before part `last` of `name`, at part `missing`: the parts before
    /// it hold `end` bytes, the checkpoint counts `committed`.
    fn gap(&self, name: &str, missing: u64, last: u64, end: u64, committed: Option<u64>) -> Error {
        let counted = match committed {
            Some(c) => format!(
                "the checkpoint counts {c} bytes of reject lines, the parts before it hold {end}"
            ),
            None => "no checkpoint counts these parts".to_string(),
        };
        Error::file(
            self.show(name),
            format!(
                "part-{missing:08}.jsonl is missing while parts after it are stored (up to \
                 part-{last:08}.jsonl); {counted}. The rejects are the parts joined in number \
                 order, so lines were removed outside ddb2pg. Nothing was deleted: the parts \
                 after the gap may be the only record of rejected items. Restore \
                 part-{missing:08}.jsonl (e.g. an earlier version of the object) and run the \
                 same command again, or add --restart to migrate from the start (the parts are \
                 set aside and every rejected item is recorded again)"
            ),
        )
    }

    /// The part objects under `name`'s folder (other objects there are left alone).
    fn list_parts(&self, name: &str) -> Result<Vec<Listed>> {
        let folder = self.key(&folder(name));
        let objects = self.objects(&folder, false, &self.show(name))?;
        Ok(objects
            .iter()
            .filter_map(|o| {
                let n = number(o.key()?.strip_prefix(&folder)?)?;
                Some(Listed {
                    n,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// The parts of `name` this process fetched or published last.
    fn parts_known(&self, name: &str) -> Result<Vec<Part>> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies.get(name).cloned().ok_or_else(|| {
            Error::config(format!(
                "internal error: {} published before it was fetched",
                self.show(name)
            ))
        })
    }

    fn set_parts(&self, name: &str, parts: Vec<Part>) {
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies.insert(name.to_string(), parts);
    }

    /// Replace `local` with the stored file `name` (empty parts: no file), in pieces. Parts
    /// past a gap are deleted when the parts before it hold the `committed` bytes the
    /// checkpoint counts; else the fetch stops, deleting nothing (see the module docs).
    pub(super) fn fetch_parts(
        &self,
        name: &str,
        local: &Path,
        committed: Option<u64>,
    ) -> Result<()> {
        let (parts, strays) = chain(self.list_parts(name)?);
        if let Some(&last) = strays.last() {
            let end = parts.last().map_or(0, |p| p.start + p.len);
            // The parts before the gap must hold every byte the checkpoint counts.
            if committed.is_none_or(|c| end < c) {
                return Err(self.gap(name, parts.len() as u64 + 1, last, end, committed));
            }
        }
        for n in strays {
            self.delete(&part_name(name, n))?;
        }
        let _ = std::fs::remove_file(local);
        if !parts.is_empty() {
            let objects: Vec<_> = parts
                .iter()
                .map(|p| (self.object(&part_name(name, p.n)), p.len, self.show(name)))
                .collect();
            let path = local.to_path_buf();
            self.block(async move {
                let mut f = crate::private::open(
                    &path,
                    std::fs::OpenOptions::new().write(true).create_new(true),
                )?;
                for (object, len, shown) in objects {
                    let Some(mut out) = object.await? else {
                        return Err(Error::file(&shown, "a part was removed while it was read"));
                    };
                    let mut got = 0u64;
                    while let Some(chunk) = out.body.next().await {
                        let chunk = chunk.map_err(|e| s3_err(&format!("read {shown}"), e))?;
                        got += chunk.len() as u64;
                        f.write_all(&chunk).map_err(|e| Error::file(&path, e))?;
                    }
                    if got != len {
                        return Err(Error::file(&shown, "a part changed while it was read"));
                    }
                }
                f.sync_all().map_err(|e| Error::file(&path, e))
            })??;
        }
        self.set_parts(name, parts);
        Ok(())
    }

    /// Make the stored `name` hold the first `len` bytes of `local`, from the parts this
    /// process fetched or published last: the bytes past them as the next part, or the parts
    /// past `len` removed (the last one cut to it).
    pub(super) fn publish_parts(&self, name: &str, local: &Path, len: u64) -> Result<()> {
        self.fence.check(&self.show(name))?;
        let mut parts = self.parts_known(name)?;
        let end = parts.last().map_or(0, |p| p.start + p.len);
        if len > end {
            // Another process that cut the file back has removed or replaced the last part;
            // one that added parts has taken the next number (`If-None-Match` refuses it).
            if let Some(last) = parts.last() {
                if !self.unchanged(name, last)? {
                    return Err(self.refused(name));
                }
            }
            let n = parts.last().map_or(1, |p| p.n + 1);
            let body = Body::Range(local.to_path_buf(), end, len - end);
            let etag = self.put_from(&part_name(name, n), body, &Tag::Absent)?;
            let etag = etag.ok_or_else(|| self.refused(name))?;
            parts.push(Part {
                n,
                start: end,
                len: len - end,
                etag,
            });
        }
        while let Some(p) = parts.last().filter(|p| p.start >= len) {
            self.delete(&part_name(name, p.n))?;
            parts.pop();
        }
        if let Some(last) = parts.last_mut().filter(|p| p.start + p.len > len) {
            let body = Body::Range(local.to_path_buf(), last.start, len - last.start);
            let expect = Tag::ETag(last.etag.clone());
            let etag = self.put_from(&part_name(name, last.n), body, &expect)?;
            last.etag = etag.ok_or_else(|| self.refused(name))?;
            last.len = len - last.start;
        }
        self.set_parts(name, parts);
        Ok(())
    }

    /// Whether `part` of `name` is still stored in the version this process knows.
    fn unchanged(&self, name: &str, part: &Part) -> Result<bool> {
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        let key = self.key(&part_name(name, part.n));
        let (etag, shown) = (part.etag.clone(), self.show(name));
        self.block(async move {
            let head = client
                .head_object()
                .bucket(&bucket)
                .key(&key)
                .if_match(etag);
            match head.send().await {
                Ok(_) => Ok(true),
                Err(e) if matches!(status(&e), Some(404 | 412)) => Ok(false),
                Err(e) => Err(s3_err(&format!("read {shown}"), detail(&e))),
            }
        })?
    }

    /// Whether `name` has parts stored.
    pub(super) fn has_parts(&self, name: &str) -> Result<bool> {
        Ok(!self.list_parts(name)?.is_empty())
    }

    /// The non-empty lines of the stored file `name`, read in pieces; None without parts.
    pub(super) fn count_parts_lines(&self, name: &str) -> Result<Option<u64>> {
        let (parts, strays) = chain(self.list_parts(name)?);
        if let Some(first) = strays.first() {
            // Past the chain: a killed run's uncommitted tail (the next run removes it), or
            // parts after one removed by hand (the next run stops, naming it).
            crate::say!(
                warn: "{}: part {} and later are not counted (part {} is missing, \
                 or they are the uncommitted tail of a killed run)",
                self.show(name),
                first,
                parts.len() + 1
            );
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let objects: Vec<_> = parts
            .iter()
            .map(|p| self.object(&part_name(name, p.n)))
            .collect();
        let shown = self.show(name);
        self.block(async move {
            let mut count = LineCount::default();
            for object in objects {
                let Some(mut out) = object.await? else {
                    continue;
                };
                while let Some(chunk) = out.body.next().await {
                    count.feed(&chunk.map_err(|e| s3_err(&format!("read {shown}"), e))?);
                }
            }
            Ok(Some(count.lines()))
        })?
    }

    /// Move the parts of `from` to `to` (copied inside S3, then deleted); false without parts.
    pub(super) fn rename_parts(&self, from: &str, to: &str) -> Result<bool> {
        let listed = self.list_parts(from)?;
        if listed.is_empty() {
            return Ok(false);
        }
        if !self.list_parts(to)?.is_empty() {
            return Err(Error::config(format!("{} exists already", self.show(to))));
        }
        for l in &listed {
            let source = format!(
                "{}/{}",
                self.bucket,
                encode_path(&self.key(&part_name(from, l.n)))
            );
            let (client, bucket) = (self.client.clone(), self.bucket.clone());
            let key = self.key(&part_name(to, l.n));
            let shown = self.show(to);
            self.block(async move {
                client
                    .copy_object()
                    .bucket(&bucket)
                    .key(&key)
                    .copy_source(source)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| s3_err(&format!("write {shown}"), detail(&e)))
            })??;
        }
        // The last first: a run killed here leaves no gap in `from` (see `fetch_parts`).
        let mut numbers: Vec<u64> = listed.iter().map(|l| l.n).collect();
        numbers.sort_unstable();
        for n in numbers.into_iter().rev() {
            self.delete(&part_name(from, n))?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(n: u64, size: u64) -> Listed {
        Listed {
            n,
            size,
            etag: format!("e{n}"),
        }
    }

    #[test]
    fn parts_are_named_in_a_folder_and_read_back() {
        assert_eq!(folder("t-1.rejects.jsonl"), "t-1.rejects/");
        assert_eq!(
            part_name("t-1.rejects.jsonl", 12),
            "t-1.rejects/part-00000012.jsonl"
        );
        assert_eq!(number("part-00000012.jsonl"), Some(12));
        assert_eq!(number("part-123456789.jsonl"), Some(123_456_789));
        for other in [
            "part-.jsonl",
            "part-1x.jsonl",
            "part-1.json",
            "x-1.jsonl",
            "part-+1.jsonl",
        ] {
            assert_eq!(number(other), None, "{other}");
        }
    }

    #[test]
    fn the_file_is_the_parts_from_one_without_a_gap() {
        let (parts, strays) = chain(vec![listed(2, 5), listed(1, 3), listed(4, 7)]);
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.n, p.start, p.len))
                .collect::<Vec<_>>(),
            [(1, 0, 3), (2, 3, 5)]
        );
        assert_eq!(strays, [4]);
        let (parts, strays) = chain(vec![listed(2, 5)]);
        assert!(parts.is_empty());
        assert_eq!(strays, [2]);
    }

    #[test]
    fn copy_sources_are_encoded() {
        assert_eq!(encode_path("a b/ü+x.jsonl"), "a%20b/%C3%BC%2Bx.jsonl");
    }
}
