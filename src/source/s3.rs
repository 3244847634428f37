//! `--export s3://bucket/prefix`: the export's manifests and data files are downloaded (streamed
//! to disk) into a folder next to the checkpoint, then read as a local export.
//!
//! In two steps, so that nothing is written before the run holds its lock: [`prepare`] lists
//! the objects below `prefix/` (refusing keys that would land outside the folder) and reads the
//! export's two manifests into memory (each refused past its cap, by its listed size before
//! it is fetched: `export::manifest_cap`), which gives the export's identity, and so the
//! checkpoint and lock names; then, under the lock, [`Download::run`] writes the files.
//!
//! Only what the export reads is downloaded: the manifests of its folder and the data files
//! `manifest-files.json` lists (for a folder without manifests, the `.json` / `.json.gz` files
//! in it and in its `data/`, which is what a local folder is read as). Other objects under the
//! prefix are not fetched.
//!
//! A file already there with the right size is kept when its MD5 is the manifest's
//! `md5Checksum` (else the object's ETag, when that is an MD5), so a resume fetches only what
//! is missing or damaged. Each data file checked (fetched, or found intact) is sealed
//! (`crate::downloads::seal`) from the handle that was checked, so the reader refuses it if it
//! is swapped or changed afterwards. The download folder itself is this user's own, 0700
//! (`crate::private::own_dir`); folders below it are created 0700 and files 0600, never
//! through a symbolic link (see `crate::private`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::export::{self, Export, Tree};
use crate::cli::AwsArgs;
use crate::error::{Error, Result};

/// `s3://bucket/prefix` split; None when `s` is not an s3 URL.
pub fn parse(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_end_matches('/').to_string()))
}

/// The S3 endpoint: the flag, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL.
fn endpoint(flag: &Option<String>) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|s| !s.is_empty())
}

fn s3_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Source {
        message: format!("S3: {what}: {e}"),
        retryable: false,
    }
}

/// An S3 client from the AWS settings (profile, region, credential chain) and the endpoint
/// (`--s3-endpoint-url`, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL): the one exports and
/// an s3:// `--checkpoint-dir` use.
pub async fn client(args: &AwsArgs, s3_endpoint: &Option<String>) -> Result<Client> {
    let ep = endpoint(s3_endpoint);
    let shared = super::aws_config(args, ep.as_deref()).await?;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        // S3-compatible servers (moto, MinIO) want bucket names in the path.
        .force_path_style(ep.is_some())
        .build();
    Ok(Client::from_conf(conf))
}

/// One object of the export and the file it becomes.
#[derive(Debug, Clone)]
struct Object {
    key: String,
    path: PathBuf,
    size: u64,
    etag: Option<String>,
}

/// An `s3://` export listed and its manifests read, nothing written yet.
pub struct Download {
    /// The export as it will be on disk once [`Download::run`] has run.
    pub export: Export,
    client: Client,
    bucket: String,
    /// The download folder.
    dest: PathBuf,
    objects: Vec<Object>,
    /// The manifests as read by `prepare`: written as they were read.
    manifests: HashMap<PathBuf, String>,
}

/// List the export at `url` and read its manifests: what it holds and what it will be in `dest`.
pub async fn prepare(
    args: &AwsArgs,
    s3_endpoint: &Option<String>,
    url: &str,
    dest: &Path,
) -> Result<Download> {
    let (bucket, prefix) =
        parse(url).ok_or_else(|| Error::config(format!("{url}: expected s3://bucket/prefix")))?;
    let client = client(args, s3_endpoint).await?;
    let listed = list(&client, url, &bucket, &prefix, dest).await?;
    let no_texts = HashMap::new();
    let mut listing = Listing {
        sizes: listed.iter().map(|o| (o.path.clone(), o.size)).collect(),
        texts: &no_texts,
    };
    // The manifests of the export's folder, and no others.
    let mut manifests = HashMap::new();
    if let Some(dir) = export::find_manifest_dir(&listing, dest) {
        for name in export::MANIFESTS {
            let path = dir.join(name);
            if let Some(o) = listed.iter().find(|o| o.path == path) {
                let text = get_text(&client, &bucket, o).await?;
                manifests.insert(path, text);
            }
        }
    }
    listing.texts = &manifests;
    let export = export::open_in(&listing, dest, url)?;
    // What the export reads: its manifests and data files; nothing else is downloaded.
    let wanted: HashSet<&PathBuf> = export.files.iter().chain(manifests.keys()).collect();
    let objects = listed
        .iter()
        .filter(|o| wanted.contains(&o.path))
        .cloned()
        .collect();
    Ok(Download {
        export,
        client,
        bucket,
        dest: dest.to_path_buf(),
        objects,
        manifests,
    })
}

/// The objects below `prefix/` that belong to an export (manifests and data files). A key that
/// would be written outside `dest` is refused before anything is written.
async fn list(
    client: &Client,
    url: &str,
    bucket: &str,
    prefix: &str,
    dest: &Path,
) -> Result<Vec<Object>> {
    // `exports/app` is a folder: `exports/app-incr-1/...` is another export.
    let folder = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut objects = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&folder)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::config(format!(
                "cannot list {url}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ))
        })?;
        for o in page.contents() {
            let (Some(key), Some(size)) = (o.key(), o.size()) else {
                continue;
            };
            let rel = key.strip_prefix(&folder).unwrap_or(key);
            if rel.is_empty() || rel.ends_with('/') {
                // The folder itself, or a folder marker: nothing to write.
                continue;
            }
            if !export::stays_inside(rel) {
                return Err(Error::config(format!(
                    "s3://{bucket}/{key}: below the export's prefix this key is {rel:?}, which is \
                     absolute or has an empty, `.` or `..` part: written to disk it would land \
                     outside the download folder {}. Refused; nothing was downloaded. Remove or \
                     rename the object, or give the prefix of a clean export",
                    dest.display()
                )));
            }
            let name = rel.rsplit('/').next().unwrap_or(rel);
            if name.starts_with("manifest-")
                || name.ends_with(".json")
                || name.ends_with(".json.gz")
            {
                objects.push(Object {
                    key: key.to_string(),
                    path: dest.join(rel),
                    size: size.max(0) as u64,
                    etag: o.e_tag().map(|t| t.trim_matches('"').to_string()),
                });
            }
        }
    }
    if objects.is_empty() {
        return Err(Error::config(format!(
            "{url}: no export files under this prefix"
        )));
    }
    Ok(objects)
}

/// A manifest as text: refused past its cap, by its listed size before it is fetched and by
/// what is read (the object may have grown since it was listed).
async fn get_text(client: &Client, bucket: &str, o: &Object) -> Result<String> {
    let key = &o.key;
    let what = format!("s3://{bucket}/{key}");
    let cap = export::manifest_cap(&o.path);
    export::check_manifest_size(&what, o.size, cap)?;
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            s3_err(
                &format!("get {what}"),
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let mut body = out.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_err(&format!("read {what}"), e))?
    {
        bytes.extend_from_slice(&chunk);
        export::check_manifest_size(&what, bytes.len() as u64, cap)?;
    }
    String::from_utf8(bytes)
        .map_err(|e| Error::config(format!("{what}: a manifest that is not UTF-8 ({e})")))
}

/// The listed objects as the files they become (see [`export::Tree`]).
struct Listing<'a> {
    sizes: BTreeMap<PathBuf, u64>,
    texts: &'a HashMap<PathBuf, String>,
}

impl Tree for Listing<'_> {
    fn text(&self, path: &Path) -> Result<Option<String>> {
        Ok(self.texts.get(path).cloned())
    }
    fn size(&self, path: &Path) -> Option<u64> {
        self.sizes.get(path).copied()
    }
    fn dirs(&self, dir: &Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .sizes
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .filter(|rel| rel.components().count() > 1)
            .filter_map(|rel| rel.components().next())
            .map(|c| dir.join(c))
            .collect();
        dirs.dedup();
        dirs
    }
    fn files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(self
            .sizes
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
}

impl Download {
    /// Write the export into its folder: the manifests as `prepare` read them, and each data
    /// file not already there intact; each data file is sealed as checked. Call it under the
    /// run's lock.
    pub async fn run(&self) -> Result<()> {
        crate::private::own_dir(
            &self.dest,
            "the downloaded copies of an s3:// export",
            "give --checkpoint-dir a folder of your own",
        )?;
        let md5: HashMap<&PathBuf, &String> = self
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
                let tmp = part_path(&o.path);
                {
                    use std::io::Write as _;
                    crate::private::create(&tmp)?
                        .write_all(text.as_bytes())
                        .map_err(|e| Error::file(&tmp, e))?;
                }
                rename(&tmp, &o.path).await?;
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
            crate::downloads::seal(&o.path, crate::downloads::Seal::of(&meta));
        } else if let Some(expected) = expected {
            eprintln!(
                "ddb2pg: {}: its content is not what {} says (MD5 differs, size is right): \
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
            Some(Expected::ETag(want)) if digest != *want => eprintln!(
                "ddb2pg: s3://{bucket}/{key}: its ETag is not its MD5 (an object encrypted \
                 with SSE-KMS?): its content could not be checked"
            ),
            _ => {}
        }
        rename(&tmp, &o.path).await?;
        // Sealed as the file just written, found again under its name.
        let found = open_copy(&o.path)?
            .map(|f| f.metadata().map_err(|e| Error::file(&o.path, e)))
            .transpose()?
            .map(|m| crate::downloads::Seal::of(&m));
        match found {
            Some(seal) if seal.same_file(&written) => {
                crate::downloads::seal(&o.path, seal);
                Ok(())
            }
            _ => Err(Error::file(
                &o.path,
                "was replaced by another file as soon as it was downloaded: something other \
                 than this run writes to the download folder. Nothing was read from it; make \
                 sure only you and ddb2pg can write there, then run the same command again",
            )),
        }
    }

    /// Write the object's body to `tmp`; returns its MD5 and what the written file is.
    async fn stream_to(
        &self,
        o: &Object,
        tmp: &Path,
    ) -> Result<([u8; 16], crate::downloads::Seal)> {
        let (bucket, key) = (&self.bucket, &o.key);
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    &format!("get s3://{bucket}/{key}"),
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
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
        Ok((digest(hash), crate::downloads::Seal::of(&meta)))
    }
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
    fn s3_urls() {
        assert_eq!(
            super::parse("s3://b/p/q/"),
            Some(("b".into(), "p/q".into()))
        );
        assert_eq!(super::parse("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(super::parse("/local/dir"), None);
    }

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
    fn a_listing_is_a_tree_of_the_files_it_becomes() {
        let texts = HashMap::new();
        let root = Path::new("/dl");
        let listing = Listing {
            sizes: [
                "AWSDynamoDB/1/data/a.json.gz",
                "AWSDynamoDB/1/data/b.json",
                "c.json",
            ]
            .iter()
            .map(|k| (root.join(k), 3))
            .collect(),
            texts: &texts,
        };
        assert_eq!(listing.dirs(root), [root.join("AWSDynamoDB")]);
        assert_eq!(
            listing.dirs(&root.join("AWSDynamoDB")),
            [root.join("AWSDynamoDB/1")]
        );
        assert_eq!(listing.files(root).expect("files"), [root.join("c.json")]);
        assert_eq!(listing.size(&root.join("c.json")), Some(3));
        assert_eq!(listing.size(&root.join("d.json")), None);
    }
}
