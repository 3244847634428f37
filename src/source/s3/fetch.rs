//! Writing an `s3://` export into its download folder ([`Download::run`]), under the run's
//! lock: the manifests as `prepare` read them, and each data file not already there intact.
//!
//! Runs on one host share the folder: shards of one export (`--shard I/N` with one checkpoint
//! directory, or any `--checkpoint-dir s3://...`, whose working folder is in the temp
//! directory), and loads of one export into other targets. Each takes its turn: the whole
//! download runs under an exclusive `flock` on the folder itself (released by the OS when a
//! process dies), and a run that finds another's turn waits for it, saying so. When its turn
//! comes, the copies the other run fetched are found intact (size and MD5) and used as they
//! are: sealed as this run checked them, never replaced. So a copy another run checked (and
//! may be about to read) is never renamed over by a sibling; a copy is replaced only when it
//! is missing, has the wrong size or the wrong MD5. A manifest already there with the very text
//! `prepare` read is left as it is too.
//!
//! A fetched file is streamed to `<name>.<pid>.part` (this process's own), its MD5 checked,
//! then renamed over the name; the file found under the name afterwards must be the one
//! written (device and inode), with the size and modification time it had when written (not
//! its change time: the rename changes it), or it is refused: then something running as this
//! user (or root) wrote to the folder, which is 0700 and ours.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{s3_err, Download, Object};
use crate::downloads::Seal;
use crate::error::{Error, Result};

/// What the download folder holds, and what to do instead, for `private::own_dir`.
pub(super) const HOLDS: &str = "the downloaded copies of an s3:// export";
pub(super) const INSTEAD: &str = "give --checkpoint-dir a folder of your own";

impl Download {
    /// Write the export into its folder: the manifests as `prepare` read them, and each data
    /// file not already there intact; each data file is sealed as checked. Call it under the
    /// run's lock; it waits for another run's turn at the folder (see the module doc).
    pub async fn run(&self) -> Result<()> {
        crate::private::own_dir(&self.dest, HOLDS, INSTEAD)?;
        let _turn = self.take_turn().await?;
        let md5: std::collections::HashMap<&PathBuf, &String> = self
            .export
            .files
            .iter()
            .zip(&self.export.md5)
            .filter_map(|(f, m)| Some((f, m.as_ref()?)))
            .collect();
        for o in &self.objects {
            if let Some(dir) = o.path.parent() {
                crate::private::dir(dir)?;
            }
            if let Some(text) = self.manifests.get(&o.path) {
                write_manifest(&o.path, text).await?;
                continue;
            }
            let expected = match md5.get(&o.path) {
                Some(m) => Some(Expected::Manifest(decode_md5(m, &o.key)?)),
                None => o.etag.as_deref().and_then(etag_md5).map(Expected::ETag),
            };
            if self.intact(o, expected.as_ref()).await? {
                continue;
            }
            self.fetch(o, expected.as_ref()).await?;
        }
        Ok(())
    }

    /// This run's turn at the download folder: an exclusive `flock` on the folder, held until
    /// the returned handle is dropped. Waits (saying so once) while another run has its turn.
    async fn take_turn(&self) -> Result<std::fs::File> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW);
        }
        let dir = options
            .open(&self.dest)
            .map_err(|e| Error::file(&self.dest, e))?;
        let mut said = false;
        loop {
            match dir.try_lock() {
                Ok(()) => return Ok(dir),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !said {
                        crate::say!(
                            "another ddb2pg run on this machine is downloading this \
                             export into {}: waiting for it to finish (the copies it fetches \
                             are then checked and used, not fetched again)",
                            self.dest.display()
                        );
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::file(&self.dest, e)),
            }
        }
    }

    /// Whether the file is already there, with the object's size and the expected MD5 (then
    /// sealed as the handle checked shows it).
    async fn intact(&self, o: &Object, expected: Option<&Expected>) -> Result<bool> {
        let Some(file) = open_copy(&o.path)? else {
            return Ok(false);
        };
        let meta = file.metadata().map_err(|e| Error::file(&o.path, e))?;
        if !meta.is_file() || meta.len() != o.size {
            return Ok(false);
        }
        let ok = match expected {
            None => true,
            Some(expected) => handle_md5(&o.path, file).await? == expected.digest(),
        };
        if ok {
            crate::downloads::seal(&o.path, Seal::of(&meta));
        } else if let Some(expected) = expected {
            crate::say!(
                "{}: its content is not what {} says (MD5 differs, size is right): \
                 fetching it again",
                o.path.display(),
                expected.source()
            );
        }
        Ok(ok)
    }

    /// Stream one object to its file, via a tmp file of this process renamed when complete and
    /// checked.
    async fn fetch(&self, o: &Object, expected: Option<&Expected>) -> Result<()> {
        let (bucket, key) = (&self.bucket, &o.key);
        let tmp = part_path(&o.path);
        let got = self.stream_to(o, &tmp).await;
        let (digest, written) = match got {
            Ok(d) => d,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        match expected {
            Some(Expected::Manifest(want)) if digest != *want => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(Error::file(
                    &o.path,
                    format!(
                        "s3://{bucket}/{key} was downloaded, but its MD5 is {} where the \
                         manifest's md5Checksum is {}: the object is damaged or is not the file \
                         the manifest lists. Nothing was read from it; check the export (or \
                         export the table again)",
                        STANDARD.encode(digest),
                        STANDARD.encode(want)
                    ),
                ));
            }
            Some(Expected::ETag(want)) if digest != *want => crate::say!(
                "s3://{bucket}/{key}: its ETag is not its MD5 (an object encrypted \
                 with SSE-KMS?): its content could not be checked"
            ),
            _ => {}
        }
        rename(&tmp, &o.path).await?;
        crate::downloads::seal(&o.path, found_as_written(&o.path, &written)?);
        Ok(())
    }

    /// Write the object's body to `tmp`; returns its MD5 and what the written file is.
    async fn stream_to(&self, o: &Object, tmp: &Path) -> Result<([u8; 16], Seal)> {
        let (bucket, key) = (&self.bucket, &o.key);
        let out = super::get_object(&self.client, bucket, key).await?;
        let mut f = tokio::fs::File::from_std(crate::private::create(tmp)?);
        let mut hash = Md5::new();
        let mut body = out.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| s3_err(&format!("read s3://{bucket}/{key}"), e))?
        {
            hash.update(&chunk);
            f.write_all(&chunk).await.map_err(|e| Error::file(tmp, e))?;
        }
        f.sync_all().await.map_err(|e| Error::file(tmp, e))?;
        let meta = f.metadata().await.map_err(|e| Error::file(tmp, e))?;
        Ok((digest(hash), Seal::of(&meta)))
    }
}

/// The file under `path` just after `written` was renamed there, as its handle shows it: it
/// must be that file (device and inode), with the size and modification time it was written
/// with, or it is refused, naming it.
fn found_as_written(path: &Path, written: &Seal) -> Result<Seal> {
    let found = open_copy(path)?
        .map(|f| f.metadata().map_err(|e| Error::file(path, e)))
        .transpose()?
        .map(|m| Seal::of(&m));
    match found {
        Some(seal) if seal.same_contents(written) => Ok(seal),
        Some(seal) if seal.same_file(written) => Err(changed(path, "was modified")),
        _ => Err(changed(path, "was replaced by another file")),
    }
}

fn changed(path: &Path, what: &str) -> Error {
    Error::file(
        path,
        format!(
            "{what} as soon as it was downloaded. Nothing was read from it. The download \
             folder is yours and 0700, so a process running as you (or as root) wrote there: \
             ddb2pg runs on this machine that download the same export (shards, other targets) \
             take turns and never replace a copy another has checked, so look for another \
             program writing into {}, or an older ddb2pg downloading the same export. Then run \
             the same command again: the copy is checked again and fetched again",
            path.parent().unwrap_or(path).display()
        ),
    )
}

/// Write a manifest as `prepare` read it, unless the file already holds exactly that (another
/// run wrote it: it is left as it is).
async fn write_manifest(path: &Path, text: &str) -> Result<()> {
    if let Some(file) = open_copy(path)? {
        let mut f = tokio::fs::File::from_std(file);
        let mut have = Vec::new();
        f.read_to_end(&mut have)
            .await
            .map_err(|e| Error::file(path, e))?;
        if have == text.as_bytes() {
            return Ok(());
        }
    }
    let tmp = part_path(path);
    {
        use std::io::Write as _;
        crate::private::create(&tmp)?
            .write_all(text.as_bytes())
            .map_err(|e| Error::file(&tmp, e))?;
    }
    rename(&tmp, path).await
}

/// An MD5 a data file must have, and where it comes from.
enum Expected {
    /// The manifest's `md5Checksum`: a mismatch after a fresh download is an error.
    Manifest([u8; 16]),
    /// The object's ETag, which is its MD5 unless it was uploaded in parts or encrypted with
    /// SSE-KMS: a mismatch after a fresh download is only reported.
    ETag([u8; 16]),
}

impl Expected {
    fn digest(&self) -> [u8; 16] {
        match self {
            Expected::Manifest(d) | Expected::ETag(d) => *d,
        }
    }
    fn source(&self) -> &'static str {
        match self {
            Expected::Manifest(_) => "the manifest's md5Checksum",
            Expected::ETag(_) => "the object's ETag",
        }
    }
}

/// A manifest's `md5Checksum` (base64 of 16 bytes).
fn decode_md5(b64: &str, key: &str) -> Result<[u8; 16]> {
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| {
            Error::config(format!(
                "manifest-files.json: the md5Checksum of {key} is {b64:?}, not the base64 of an \
                 MD5: the manifest is damaged"
            ))
        })
}

/// An ETag that is an MD5 (32 hex digits: a single-part upload); None for a multipart ETag.
fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    if etag.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(etag.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn digest(hash: Md5) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(hash.finalize().as_slice());
    out
}

/// A copy opened for reading, never through a symbolic link; None when there is none (or a
/// link: it is replaced by the download).
fn open_copy(path: &Path) -> Result<Option<std::fs::File>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    match options.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if crate::private::is_symlink_error(&e) => Ok(None),
        Err(e) => Err(Error::file(path, e)),
    }
}

/// The MD5 of what `file` (open at `path`) holds.
async fn handle_md5(path: &Path, file: std::fs::File) -> Result<[u8; 16]> {
    let mut f = tokio::fs::File::from_std(file);
    let mut hash = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(|e| Error::file(path, e))?;
        if n == 0 {
            return Ok(digest(hash));
        }
        hash.update(&buf[..n]);
    }
}

/// `<path>.<pid>.part`: a download in progress, this process's own.
fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}.part", std::process::id()));
    PathBuf::from(s)
}

async fn rename(tmp: &Path, path: &Path) -> Result<()> {
    tokio::fs::rename(tmp, path)
        .await
        .map_err(|e| Error::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_of_real_manifests_and_etags() {
        // A real export's manifest line (shared/real-data, scylla-migrator's S3ExportTest).
        let d = decode_md5("rzAeIrtALbOlNdK5Hh8tgA==", "k").expect("md5");
        assert_eq!(etag_md5("af301e22bb402db3a535d2b91e1f2d80"), Some(d));
        // Multipart ETags are not an MD5 of the object.
        assert_eq!(etag_md5("d1663e415aedcbf3c4977cde7002d2bf-1"), None);
        assert_eq!(etag_md5("zz301e22bb402db3a535d2b91e1f2d80"), None);
        assert!(decode_md5("not base64!", "k").is_err());
        assert!(decode_md5("aGVsbG8=", "k").is_err());
        assert_eq!(
            digest(Md5::new()),
            etag_md5("d41d8cd98f00b204e9800998ecf8427e").expect("e")
        );
    }

    #[test]
    fn a_download_changed_right_after_its_rename_is_refused() {
        let d = std::env::temp_dir().join(format!("ddb2pg-fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        let (tmp, path) = (d.join("f.json.1.part"), d.join("f.json"));
        std::fs::write(&tmp, "written\n").expect("write");
        let written = Seal::of(&std::fs::metadata(&tmp).expect("stat"));
        std::fs::rename(&tmp, &path).expect("rename");
        // As written (the rename changed only its change time): accepted.
        found_as_written(&path, &written).expect("as written");
        // The same file (inode), its content changed in place: refused.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "changed!\n").expect("write");
        let err = found_as_written(&path, &written)
            .expect_err("modified")
            .to_string();
        assert!(
            err.contains("f.json") && err.contains("was modified"),
            "{err}"
        );
        // Another file under the name: refused.
        std::fs::write(&tmp, "written\n").expect("write");
        std::fs::rename(&tmp, &path).expect("swap");
        let err = found_as_written(&path, &written)
            .expect_err("replaced")
            .to_string();
        assert!(err.contains("replaced by another file"), "{err}");
    }
}
